"""Hosting that survives: two hosts on one PostgreSQL, the database going away, a Space's wiped disk.

The apps are the real ``app.py`` (tests/app_fixtures.py's launcher) on copies of the tiny study whose
``[study] database`` names a fresh database on the test run's PostgreSQL (tests/postgres.py).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

from study.database import DatabaseUnavailable
from study.export import export
from tests import postgres
from tests.app_fixtures import (
    LETTERS4,
    REPO,
    Answers,
    answer_grids,
    assert_answers_stored,
    client,
    finish,
    give_preference,
    outputs,
    start_app,
    tiny_study,
    value,
)


def _study_on(url: str, name: str):
    """A copy of the tiny study file with its own results folder, storing its answers in ``url``."""
    path = tiny_study().with_results(name)
    text = path.read_text().replace('results_dir = "', f'database = "{url}"\nresults_dir = "', 1)
    path.write_text(text)
    return path


def _hashes(page: dict) -> list[str]:
    out = []
    for x in LETTERS4:
        for i in range(1, 5):
            with urllib.request.urlopen(page[f"img_{x}{i}"]["url"], timeout=30) as r:
                out.append(hashlib.sha256(r.read()).hexdigest())
    return out


def test_two_hosts_on_one_database_share_one_latin_square_and_every_answer(tmp_path):
    url = postgres.server().fresh_database()
    with ThreadPoolExecutor(2) as pool:
        hosts = list(pool.map(lambda n: start_app(_study_on(url, n)), ["host1", "host2"]))
    errors: list[str] = []
    moved: list[str] = []

    def participant(k: int):
        first, other = hosts[k % 2], hosts[(k + 1) % 2]
        try:
            a = Answers.make(k, tag="-2h")
            c = client(first.url)
            sid = value(outputs(c.predict(api_name="/consent"))["link"])
            page = give_preference(c, a.text)
            if k % 5 == 0:  # resumes on the other host: the same grids, served from the shared database
                c = client(other.url)
                again = outputs(c.predict(f"{other.url}?session={sid}", api_name="/resume"))
                assert _hashes(again) == _hashes(page)
                moved.append(sid)
            answer_grids(c, a)
            finish(c, a)
            return sid, a
        except Exception as e:  # noqa: BLE001 — counted; the test fails on any
            errors.append(f"{k}: {type(e).__name__}: {e}"[:300])
            return None

    with ThreadPoolExecutor(8) as pool:
        done = [r for r in pool.map(participant, range(40)) if r]
    for h in hosts:
        h.stop()
    assert errors == [] and len(done) == 40 and len(moved) == 8
    with postgres.Reader(url) as db:
        order = [r[0] for r in db.execute("SELECT order_index FROM sessions ORDER BY order_index").fetchall()]
        assert order == list(range(40))  # no row of the square used twice, none skipped
        at_letter = Counter((r[0], r[1]) for r in db.execute("SELECT arm, letter FROM assignments").fetchall())
        assert len(at_letter) == 16 and set(at_letter.values()) == {10}  # balanced over both hosts together
        for sid, a in done:
            assert_answers_stored(db, sid, a)  # every answer there, once (natural keys)
        statuses = Counter(r[0] for r in db.execute("SELECT status FROM sessions").fetchall())
    assert statuses == {"completed": 40}
    exported = export(url, tmp_path / "export")  # the analysts' export reads the server the same way
    assert len(pd.read_csv(tmp_path / "export" / "long.csv")) == 40 * 16 and exported.files


def test_the_database_going_away_for_ten_seconds_loses_no_acknowledged_answer():
    srv = postgres.server()
    url = srv.fresh_database()
    app = start_app(_study_on(url, "outage"))
    sessions = []
    for k in range(3):
        c = client(app.url)
        sid = value(outputs(c.predict(api_name="/consent"))["link"])
        give_preference(c, f"participant {k}: wool coats")
        sessions.append((sid, c))
    acked: dict[tuple[str, str], int] = {}
    refusals: list[str] = []
    after_outage: list[str] = []
    stop, restarted = threading.Event(), threading.Event()

    def answer(sid: str, c) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            letter, rating = LETTERS4[n % 4], n % 10 + 1
            try:
                c.predict(rating, api_name=f"/rate_{letter}")
                acked[(sid, letter)] = rating
                if restarted.is_set():
                    after_outage.append(sid)
            except Exception as e:  # noqa: BLE001 — what the participant is told
                refusals.append(str(e))
            time.sleep(0.05)

    threads = [threading.Thread(target=answer, args=s) for s in sessions]
    for t in threads:
        t.start()
    time.sleep(3)
    srv.stop("fast")  # the server goes away mid-study
    time.sleep(10)
    srv.start()
    postgres.wait_until_up(srv)
    restarted.set()
    time.sleep(6)
    stop.set()
    for t in threads:
        t.join(60)
    app.stop()
    assert refusals, "the outage was never noticed"
    assert all(DatabaseUnavailable.MESSAGE in r for r in refusals), set(refusals)  # a clear 'try again', no trace
    assert {sid for sid, _ in sessions} <= set(after_outage)  # each participant answered again: reconnected
    with postgres.Reader(url) as db:
        for (sid, letter), rating in acked.items():
            got = db.execute("SELECT rating FROM ratings WHERE session_id = ? AND letter = ?", (sid, letter)).fetchone()
            assert got is not None and got[0] == rating  # the last acknowledged answer is the one stored


def test_a_killed_app_on_postgres_keeps_every_answer_and_resumes():
    url = postgres.server().fresh_database()
    path = _study_on(url, "pgkill")
    app = start_app(path)
    c = client(app.url)
    sid = value(outputs(c.predict(api_name="/consent"))["link"])
    before = _hashes(give_preference(c, "oversized knit jumpers"))
    a = Answers.make(12, tag="-pgkill")
    answer_grids(c, a)
    app.kill()
    with postgres.Reader(url) as db:
        ratings = dict(db.execute("SELECT letter, rating FROM ratings WHERE session_id = ?", (sid,)).fetchall())
    assert ratings == a.ratings
    again = start_app(path)
    try:
        resumed = outputs(client(again.url).predict(f"{again.url}?session={sid}", api_name="/resume"))
        assert _hashes(resumed) == before
        assert [resumed[f"rating_{x}"] for x in LETTERS4] == [a.ratings[x] for x in LETTERS4]
    finally:
        again.stop()


@pytest.mark.parametrize("setting, starts", [({}, False), ({"DATABASE_URL": "postgresql://u:p@127.0.0.1:1/x"}, True),
                                             ({"allow_data_loss": "true"}, True)])
def test_on_a_space_answers_on_the_wiped_disk_are_refused(tmp_path, setting, starts):
    """SPACE_ID set, no /data: the app stops with both fixes named, unless a database or the study file's
    explicit acceptance says otherwise (then it goes on to load the study)."""
    study = tiny_study().path
    path = tmp_path / "space.toml"
    text = study.read_text().replace('root = "catalogue"', f'root = "{study.parent / "catalogue"}"')
    if setting.get("allow_data_loss"):
        text = text.replace("allow_cpu = true\n", "allow_cpu = true\nallow_data_loss = true\n")
    path.write_text(text)
    env = {**os.environ, "SPACE_ID": "someone/dressup", **{k: v for k, v in setting.items() if k.isupper()}}
    env.pop("DRESSUP_STUDY", None)
    r = subprocess.run([sys.executable, str(REPO / "app.py"), "--study", str(path), "--port", "1"],
                       capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    if starts:  # past the hosting check: it fails later (port 1, or the unreachable database), not on storage
        assert "wiped at every restart" not in r.stderr or "allow_data_loss = true, so" in r.stderr
    else:
        assert r.returncode == 2
        assert "wiped at every restart" in r.stderr and "/data" in r.stderr and "DATABASE_URL" in r.stderr


def test_on_a_space_with_persistent_storage_answers_go_under_data(tmp_path, monkeypatch):
    """With the storage upgrade (/data, here a stand-in folder), a relative results folder resolves under it
    and the hosting check lets the study start; without it, the same file is refused."""
    import dressup.config
    import study.hosting
    from dressup.config import load_study
    from study.hosting import HostingError, check_hosting

    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("SPACE_ID", "someone/dressup")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setattr(dressup.config, "SPACES_DATA", data)
    monkeypatch.setattr(study.hosting, "SPACES_DATA", data)
    s = load_study(tiny_study().path)
    assert s.results_dir == data / "results"
    assert check_hosting(s) is None
    monkeypatch.setattr(dressup.config, "SPACES_DATA", tmp_path / "no-storage")
    monkeypatch.setattr(study.hosting, "SPACES_DATA", tmp_path / "no-storage")
    with pytest.raises(HostingError, match="DATABASE_URL"):
        check_hosting(load_study(tiny_study().path))
