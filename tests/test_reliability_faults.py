"""Faults: SIGKILL during writes, a results folder that cannot take answers, a model that cannot load.

What must hold: after any kill the database opens cleanly (``PRAGMA integrity_check``) and holds every
answer that was acknowledged before the kill; a folder that is read-only or full stops the app at start with
a message that says so, instead of a study that runs and records nothing; a broken model stops the start
with a message naming the arm and the fix.

Read-only and full folders are made for real, inside a user + mount namespace (``unshare -rm``: a read-only
bind mount, a 1 MB tmpfs), because the tests run as root here and root writes through ``chmod``; where
``unshare`` is not allowed the read-only tests fall back to ``chmod`` (which binds only non-root) or skip,
saying why; the full-disk test needs the namespace. (``tests`` cannot fill the real disk to test "full".)
"""
from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.app_fixtures import (
    REPO,
    Ack,
    answer_until_stopped,
    app_answers,
    can_unshare,
    client,
    integrity_check,
    kill_store_writer,
    missing_acks,
    start_app,
    start_in_namespace,
    study_with_results,
    tiny_study,
)

KILLS = 40


def test_sigkill_during_writes_never_corrupts_or_loses_an_acknowledged_answer(tmp_path: Path) -> None:
    """The app's Store, four writer threads, killed at random points KILLS times on one database file."""
    rounds = kill_store_writer(tmp_path / "study.sqlite", KILLS, seed=8)
    assert len(rounds) == KILLS
    assert [r.integrity for r in rounds] == ["ok"] * KILLS
    assert [r.lost for r in rounds] == [0] * KILLS
    assert rounds[-1].acknowledged > KILLS * 10  # real work was in flight at each kill


def test_the_lost_answer_check_does_find_a_lost_answer(tmp_path: Path) -> None:
    """The checker above must be able to fail: delete one acknowledged answer and it is reported."""
    db = tmp_path / "study.sqlite"
    kill_store_writer(db, 1, seed=3, max_acks=40)
    conn = sqlite3.connect(db)
    sid, letter, rating = conn.execute("SELECT session_id, letter, rating FROM ratings LIMIT 1").fetchone()
    conn.execute("DELETE FROM ratings WHERE session_id = ? AND letter = ?", (sid, letter))
    conn.commit()
    conn.close()
    assert missing_acks(db, [Ack(sid, "rate", letter, rating)]) == [Ack(sid, "rate", letter, rating)]


def test_killed_app_under_concurrent_participants_keeps_every_acknowledged_answer() -> None:
    """The real request path: three participants answering through gradio_client while the app is SIGKILLed,
    then a restart on the same database (bench/faults.py repeats this 20+ times; the loop above is the
    many-kill version of the same write path)."""
    path = tiny_study().with_results("kill-loop")
    acks: list[Ack] = []
    app = None
    for round_ in range(1):
        app = start_app(path)
        stop = threading.Event()
        before = len(acks)
        threads = [threading.Thread(target=answer_until_stopped, args=(app.url, 50 + 3 * round_ + k, acks, stop))
                   for k in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while len(acks) < before + 12 + 7 * round_ and time.monotonic() < deadline:
            time.sleep(0.05)
        app.kill()
        stop.set()
        for t in threads:
            t.join(60)
        assert len(acks) >= before + 12, app.log()[-3000:]
        assert integrity_check(app.study.db_path) == "ok"
        assert missing_acks(app.study.db_path, acks) == []
    again = start_app(path)  # and the app starts again on that file, with everything still there
    try:
        assert app_answers(again)
        assert missing_acks(again.study.db_path, acks) == []
        sid = next(a.session_id for a in acks if a.kind == "preference")
        client(again.url).predict(f"{again.url}?session={sid}", api_name="/resume")
    finally:
        again.stop()


# --- a results folder that cannot take answers -------------------------------------------------------------
def _assert_refused_at_start(r: subprocess.CompletedProcess, *words: str) -> None:
    assert r.returncode == 2, r.stderr[-3000:]
    assert "cannot start the study" in r.stderr, r.stderr[-3000:]
    for w in words:
        assert w in r.stderr, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert "arms ready" not in r.stdout  # refused before serving anything


UNSHARE = can_unshare()
ROOT = os.geteuid() == 0


def _start_read_only(target: Path, study: Path) -> tuple[subprocess.CompletedProcess, str]:
    """Start the app with ``target`` (a folder or the database) read-only; returns the run and the OS's word
    for it. A read-only bind mount where namespaces are allowed; else ``chmod``, which binds only non-root."""
    if UNSHARE:
        return start_in_namespace(f"mount --bind {target} {target}; mount -o remount,bind,ro {target}", study), \
            "Read-only file system"
    mode = target.stat().st_mode
    target.chmod(0o555 if target.is_dir() else 0o444)
    try:
        return subprocess.run([sys.executable, str(REPO / "app.py"), "--study", str(study), "--port", "1"],
                              capture_output=True, text=True, timeout=300, cwd=REPO), "Permission denied"
    finally:
        target.chmod(mode)


@pytest.mark.skipif(ROOT and not UNSHARE, reason="root ignores chmod and `unshare -rm` is not allowed here")
def test_read_only_results_folder_stops_the_start_with_a_clear_message(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    r, why = _start_read_only(results, study_with_results(tmp_path, results))
    _assert_refused_at_start(r, str(results), "cannot be written", why, "writable")


@pytest.mark.skipif(ROOT and not UNSHARE, reason="root ignores chmod and `unshare -rm` is not allowed here")
def test_read_only_database_stops_the_start_with_a_clear_message(tmp_path: Path) -> None:
    """The folder is writable but the database file from an earlier run is not (e.g. copied back read-only).
    SQLite opens such a file without complaint and fails only at the first write: the check must write."""
    results = tmp_path / "results"
    results.mkdir()
    from study.schema import connect

    connect(results / "study.sqlite").close()
    db = results / "study.sqlite"
    r, _ = _start_read_only(db, study_with_results(tmp_path, results))
    _assert_refused_at_start(r, str(db), "cannot be written", "readonly")


@pytest.mark.skipif(not UNSHARE, reason="needs `unshare -rm` (user namespaces) to mount a tiny tmpfs")
def test_full_disk_stops_the_start_with_a_clear_message(tmp_path: Path) -> None:
    """A 1 MB tmpfs as the results folder: the app refuses to start rather than fail on the first photos."""
    results = tmp_path / "results"
    results.mkdir()
    study = study_with_results(tmp_path, results)
    r = start_in_namespace(f"mount -t tmpfs -o size=1m tmpfs {results}", study)
    _assert_refused_at_start(r, str(results), "MB free", "free some disk space")
    # and a tmpfs filled to the last byte fails the write probe itself, with the OS's words
    r = start_in_namespace(f"mount -t tmpfs -o size=256k tmpfs {results}; "
                            f"dd if=/dev/zero of={results}/filler bs=4k 2>/dev/null || true", study)
    _assert_refused_at_start(r, str(results), "No space left on device", "free some disk space")


def test_app_refuses_to_start_when_a_model_file_is_damaged(tmp_path: Path) -> None:
    """A half-copied checkpoint (the generative arm's): the start stops naming that arm and the fix, no traceback.
    (tests/test_app_client.py covers a missing encoder config.)"""
    study = study_with_results(tmp_path, tmp_path / "results")
    # only the generative arm, so the start reaches it without first loading three retrieval arms
    study.write_text(re.sub(r'\[arms\.\w+\]\nkind = "retrieval"\nencoder = "\w+"\n', "", study.read_text()))
    assert study.read_text().count("[arms.") == 1
    (tmp_path / "gan").unlink()
    shutil.copytree(tiny_study().path.parent / "gan", tmp_path / "gan")
    ck = tmp_path / "gan" / "checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    r = subprocess.run([sys.executable, str(REPO / "app.py"), "--study", str(study), "--port", "1"],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    _assert_refused_at_start(r, "quokkadream", "doctor")
