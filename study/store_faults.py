"""Kill the store's writers: the app's write path without the app, SIGKILLed at random points.

``store_writer`` is the child (``python -c``): worker threads, as Gradio's, share one ``study.store.Store``
and give whole sessions of answers, printing each as a JSON line only after its call returned (after COMMIT:
a printed answer is an acknowledged one). ``kill_store_writer`` starts it, kills it, reopens the database the
way the app does and checks it against every answer ever acknowledged. Used by the reliability tests and the
fault benchmark.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study.answer_checks import Ack, missing_acks
from study.launcher import REPO
from study.participant_client import LETTERS4
from study.schema import connect
from study.store import ShownRow, Store

WRITER_ARMS = ("arm0", "arm1", "arm2", "arm3")


def store_writer(db_path: str, study: str, threads: int = 4) -> None:
    """The app's write path without the app (``python -c``, killed by a test): ``threads`` workers, as Gradio's,
    share one ``Store`` and give whole sessions of answers. Each answer is printed as a JSON line only after
    its call returned, i.e. after COMMIT: a printed answer is an acknowledged one."""
    store = Store(db_path, study)
    out = threading.Lock()

    def ack(**kw: Any) -> None:
        with out:
            sys.stdout.write(json.dumps(kw) + "\n")
            sys.stdout.flush()

    def worker(t: int) -> None:
        rng = random.Random(f"{os.getpid()}-{t}")
        n = 0
        while True:
            n += 1
            sid = store.create_session(f"w{os.getpid()}-{t}-{n}", order_index=n, seed=t,
                                       assignments=dict(zip(LETTERS4, WRITER_ARMS)))
            ack(sid=sid, kind="session")
            store.save_shown(sid, {x: [ShownRow(x, p, f"item{p}", f"{p:064x}", "", 0.0) for p in range(1, 5)]
                                   for x in LETTERS4})  # answers are taken only about grids that were shown
            for x in LETTERS4:
                marks = [rng.random() < 0.5 for _ in range(4)]
                for pos, m in enumerate(marks, 1):
                    store.answer_relevance(sid, x, pos, m)
                ack(sid=sid, kind="wear", letter=x, value=["Yes" if m else "No" for m in marks])
                rating = rng.randint(1, 10)
                store.answer_rating(sid, x, rating)
                ack(sid=sid, kind="rate", letter=x, value=rating)
                text = f"{sid} {x} " + "".join(rng.choice("abcdefgh <>&\"'") for _ in range(rng.randint(10, 3000)))
                store.answer_feedback(sid, x, text)
                ack(sid=sid, kind="feedback", letter=x, value=text)
            order = rng.sample(list(LETTERS4), 4)
            store.answer_ranking(sid, {x: i + 1 for i, x in enumerate(order)})
            ack(sid=sid, kind="rank", value=order)

    pool = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()


@dataclass
class KillRound:
    """One SIGKILL of a writer: what it had acknowledged, whether the database then opened and checked clean."""

    acknowledged: int
    integrity: str
    lost: int


def kill_store_writer(db_path: Path, rounds: int, *, seed: int = 0, max_acks: int = 120) -> list[KillRound]:
    """Start ``store_writer`` on ``db_path``, SIGKILL it after a random number of acknowledged answers, reopen the
    database the way the app does (read-write, WAL recovery, schema), run PRAGMA integrity_check and compare with
    every answer ever acknowledged; ``rounds`` times on the same file."""
    rng = random.Random(seed)
    acks: list[Ack] = []
    out = []
    for _ in range(rounds):
        proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from study.store_faults import store_writer; "
             "store_writer(sys.argv[1], 'kill-loop')", str(db_path)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def take(line: str) -> None:
            a = json.loads(line)
            if a["kind"] != "session":
                v = tuple(a["value"]) if isinstance(a["value"], list) else a["value"]
                acks.append(Ack(a["sid"], a["kind"], a.get("letter", ""), v))

        target, got = rng.randint(1, max_acks), 0
        try:
            while got < target:
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"writer exited early:\n{proc.stderr.read()[-3000:]}")
                take(line)
                got += 1
            time.sleep(rng.random() * 0.05)  # land the kill at any point of a transaction, not just after a print
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            # lines printed between our last read and the kill were acknowledged too: they count
            for line in proc.stdout.read().splitlines(keepends=True):
                if line.endswith("\n"):
                    take(line)
            proc.stdout.close()
            proc.stderr.close()
        conn = connect(db_path)  # what the restarted app does first
        try:
            integrity = "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check").fetchall())
        finally:
            conn.close()
        out.append(KillRound(len(acks), integrity, len(missing_acks(db_path, acks))))
    return out

