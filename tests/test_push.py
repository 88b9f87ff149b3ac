"""The push (issue 17): completed participants appended to a private dataset repo, never overwritten by an
emptier database, withdrawn participants removed from the tree and the history. The real ``HfApi`` builds
every request; a local Hub server (``tests.hub_server``) answers them and keeps each repo's history."""
from __future__ import annotations

import io
import time
from pathlib import Path

import pandas as pd
import pytest
from huggingface_hub import HfApi

from dressup.config import PushSpec
from study import push as P
from study.store import Store
from tests.app_fixtures import client, run_participant, start_app, study_with_results, value
from tests.hub_server import TOKEN, hub_server
from tests.test_export import _session

REPO = "lab/dressup-answers"
RAW_IDS = [f"5f1e0c0ffee000000000000{i}" for i in range(1, 6)]


def _store(path: Path, complete: tuple[str, ...], incomplete: tuple[str, ...] = ()) -> tuple[Store, dict[str, str]]:
    store = Store(path, "demo")
    ids = {p: _session(store, p) for p in complete}
    ids.update({p: _session(store, p, complete=False) for p in incomplete})
    return store, ids


def _pusher(store: Store, hub) -> P.ParticipantPush:
    return P.ParticipantPush(store, REPO, HfApi(endpoint=hub.endpoint, token=TOKEN), every_minutes=1)


def _participants(files: dict[str, bytes]) -> set[str]:
    return {Path(p).stem for p in files if p.startswith("data/long/")}


def test_push_appends_each_completed_participant_once_as_a_private_dataset(tmp_path):
    store, ids = _store(tmp_path / "a.sqlite", RAW_IDS[:2], RAW_IDS[2:3])
    with hub_server() as hub:
        report = _pusher(store, hub).push()
        repo = hub.repos[("dataset", REPO)]
        assert repo.private and len(report.added) == 2 and not report.deleted
        files = hub.files("dataset", REPO)
        assert _participants(files) == set(report.added)  # the incomplete session waits for its completion
        assert {p.split("/")[1] for p in files if p.startswith("data/")} == {"long", "sessions", "feedback"}
        assert "config_name: long" in files["README.md"].decode()
        for s in report.added:
            long = pd.read_csv(io.BytesIO(files[f"data/long/{s}.csv"]))
            assert list(long.columns) == P.LONG_COLUMNS and len(long) == 16 and set(long["session"]) == {s}
            assert sorted(set(long["arm"])) == ["baseline", "finetuned", "generative", "stn"]
        everything = b"".join(files.values())
        assert not any(raw.encode() in everything or sid.encode() in everything for raw, sid in ids.items())

        commits = len(hub.history("dataset", REPO))
        assert _pusher(store, hub).push().added == []  # a second app instance: same pseudonyms, nothing new
        assert len(hub.history("dataset", REPO)) == commits

        store.complete(ids[RAW_IDS[2]])
        later = _pusher(store, hub).push()
        assert len(later.added) == 1
        after = hub.files("dataset", REPO)
        assert all(after[p] == data for p, data in files.items() if p != "README.md")  # nothing rewritten


def test_a_restart_on_an_empty_disk_loses_nothing_already_pushed(tmp_path):
    first, _ = _store(tmp_path / "first" / "study.sqlite", RAW_IDS[:2])
    with hub_server() as hub:
        _pusher(first, hub).push()
        before = hub.files("dataset", REPO)
        fresh, _ = _store(tmp_path / "wiped" / "study.sqlite", ())  # the restarted Space: a new, empty database
        assert _pusher(fresh, hub).push().added == []
        assert hub.files("dataset", REPO) == before
        _session(fresh, RAW_IDS[3])
        assert len(_pusher(fresh, hub).push().added) == 1
        after = hub.files("dataset", REPO)
        assert all(after[p] == data for p, data in before.items())
        assert len(_participants(after)) == 3


def test_a_withdrawal_removes_the_participant_from_the_repo_and_its_history(tmp_path):
    store, ids = _store(tmp_path / "a.sqlite", RAW_IDS[:3])
    with hub_server() as hub:
        pusher = _pusher(store, hub)
        pusher.push()
        gone = pusher.name("S", ids[RAW_IDS[1]])
        assert f"data/long/{gone}.csv" in hub.files("dataset", REPO)
        store.withdraw(ids[RAW_IDS[1]])
        report = pusher.push()
        assert report.deleted == [gone] and report.squashed
        history = hub.history("dataset", REPO)
        assert all(gone not in path for snapshot in history for path in snapshot), "rows left in the history"
        assert len(_participants(hub.files("dataset", REPO))) == 2
        assert ("POST", f"/api/datasets/{REPO}/super-squash/main") in hub.requests
        assert pusher.push().deleted == []  # done once


def test_a_failing_hub_is_logged_and_retried_at_the_next_tick(tmp_path, caplog):
    store, _ = _store(tmp_path / "a.sqlite", RAW_IDS[:1])
    with hub_server() as hub:
        hub.fail_next = [401]
        pusher = P.ParticipantPush(store, REPO, HfApi(endpoint=hub.endpoint, token=TOKEN), every_minutes=0.01).start()
        try:
            deadline = time.monotonic() + 30
            while ("dataset", REPO) not in hub.repos or not _participants(hub.files("dataset", REPO)):
                assert time.monotonic() < deadline, "the push never recovered"
                time.sleep(0.1)
        finally:
            pusher.stop(final_push=False)
    assert "push to lab/dressup-answers failed" in caplog.text


def test_push_settings_that_cannot_work_are_refused(tmp_path, monkeypatch):
    store = Store(tmp_path / "a.sqlite", "demo")

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"the Hub client was used ({name}) although repo_id is empty")

    assert P.start_push(PushSpec(repo_id="  "), store, api=Untouchable()) is None
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(P, "get_token", lambda: None)  # no saved login on this machine either
    with pytest.raises(P.PushError, match="HF_TOKEN"):
        P.start_push(PushSpec(repo_id="lab/x"), store)
    with pytest.raises(P.PushError, match="every_minutes"):
        P.start_push(PushSpec(repo_id="lab/x", every_minutes=0), store, api=Untouchable())


def _wait_for(hub, n: int, timeout: float = 60) -> set[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = _participants(hub.files("dataset", REPO)) if ("dataset", REPO) in hub.repos else set()
        if len(found) == n or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_the_app_pushes_and_a_restarted_app_on_an_empty_disk_adds_to_it(tmp_path):
    """The whole promise through ``python app.py``: push, restart on an empty disk, push, withdraw."""
    with hub_server() as hub:
        env = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN}
        (tmp_path / "one").mkdir()
        study = study_with_results(tmp_path / "one", tmp_path / "disk-1")
        study.write_text(study.read_text() + f'\n[push]\nrepo_id = "{REPO}"\nevery_minutes = 0.02\n')
        app = start_app(study, env=env)
        try:
            run_participant(app.url, 1)
            assert len(_wait_for(hub, 1)) == 1, app.log()[-3000:]
        finally:
            app.stop()
        first = hub.files("dataset", REPO)

        (tmp_path / "two").mkdir()
        study2 = study_with_results(tmp_path / "two", tmp_path / "disk-2")  # a new, empty results folder
        study2.write_text(study2.read_text() + f'\n[push]\nrepo_id = "{REPO}"\nevery_minutes = 0.02\n')
        app = start_app(study2, env=env)
        try:
            _, _, done = run_participant(app.url, 2)
            assert len(_wait_for(hub, 2)) == 2, app.log()[-3000:]
            assert all(hub.files("dataset", REPO)[p] == data for p, data in first.items())
            code = value(done["done"]).split("**")[1]
            assert "deleted" in client(app.url).predict(code, api_name="/withdraw")
            assert len(_wait_for(hub, 1)) == 1, app.log()[-3000:]
        finally:
            app.stop()
        assert _participants(hub.files("dataset", REPO)) == _participants(first)
        assert all(len(_participants(snapshot)) <= 1 or _participants(snapshot) == _participants(first)
                   for snapshot in hub.history("dataset", REPO))
        assert len(hub.history("dataset", REPO)) == 1  # squashed after the withdrawal
