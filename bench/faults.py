"""Fault injection: SIGKILL the study app during writes (20+ times), kill the store's writers, and start it on a
read-only or full results folder; counts answers lost (the target is zero) and checks the database every time.

    python -m bench faults                 # 20 app kills, 100 store kills, the start-time refusals
    python -m bench faults --kills 5 --store-kills 20 --no-save

The app is ``python app.py`` on the tests' tiny study (study/tiny_study.py: a 200-item drawn catalogue,
three retrieval arms and a DCGAN), restarted on the same results folder after every kill while three
participants answer through gradio_client. An answer counts as acknowledged once its call returned; after
each kill the database is opened read-only, ``PRAGMA integrity_check`` is run and every acknowledged answer
of every round so far is looked up. The store loop is the same write path without Gradio (four threads on
one ``study.store.Store``), killed at random points. Read-only and full folders are real mounts inside a
user + mount namespace (``unshare -rm``), since root ignores ``chmod``.
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Run, emit, markdown_table  # noqa: E402
from study.answer_checks import Ack, answer_until_stopped, integrity_check, missing_acks  # noqa: E402
from study.launcher import can_unshare, start_app, start_in_namespace  # noqa: E402
from study.store_faults import kill_store_writer  # noqa: E402
from study.tiny_study import study_with_results, tiny_study  # noqa: E402


def app_kill_loop(kills: int, seed: int) -> tuple[list[list], int, int]:
    """SIGKILL the app ``kills`` times under three answering participants; rows per round, total acks, lost."""
    rng = random.Random(seed)
    path = tiny_study().with_results("bench-faults")
    acks: list[Ack] = []
    rows = []
    for round_ in range(1, kills + 1):
        t0 = time.perf_counter()
        app = start_app(path)
        started_s = time.perf_counter() - t0
        stop = threading.Event()
        before = len(acks)
        target = rng.randint(3, 25)
        threads = [threading.Thread(target=answer_until_stopped, args=(app.url, 1000 * round_ + k, acks, stop))
                   for k in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 180
        while len(acks) < before + target and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.random() * 0.3)  # land between acknowledgements too, mid-request
        app.kill()
        stop.set()
        for t in threads:
            t.join(60)
        integrity = integrity_check(app.study.db_path)
        lost = missing_acks(app.study.db_path, acks)
        rows.append([round_, len(acks) - before, len(acks), integrity, len(lost), started_s])
        print(f"kill {round_}/{kills}: {len(acks) - before} acknowledged this round, {len(acks)} in all, "
              f"integrity {integrity}, lost {len(lost)}", flush=True)
    final = start_app(path)  # the last kill, too, is followed by a clean start on the same file
    try:
        lost_final = len(missing_acks(final.study.db_path, acks))
    finally:
        final.stop()
    return rows, len(acks), lost_final


def refusals() -> list[list]:
    """Start the app on a read-only folder, a read-only database and full disks; each must refuse, exit 2."""
    if not can_unshare():
        return [["(all)", "skipped: this machine does not allow `unshare -rm`", "", ""]]
    out = []
    cases = {
        "read-only results folder (bind mount ro)": "mount --bind {r} {r}; mount -o remount,bind,ro {r}",
        "read-only database file (bind mount ro)": "mount --bind {r}/study.sqlite {r}/study.sqlite; "
                                                   "mount -o remount,bind,ro {r}/study.sqlite",
        "1 MB tmpfs (under the free-space floor)": "mount -t tmpfs -o size=1m tmpfs {r}",
        "256 kB tmpfs filled to the last byte": "mount -t tmpfs -o size=256k tmpfs {r}; "
                                                "dd if=/dev/zero of={r}/filler bs=4k 2>/dev/null || true",
    }
    from study.schema import connect

    for name, setup in cases.items():
        tmp = Path(tempfile.mkdtemp(prefix="dressup-faults-"))
        results = tmp / "results"
        results.mkdir()
        connect(results / "study.sqlite").close()
        t0 = time.perf_counter()
        r = start_in_namespace(setup.format(r=results), study_with_results(tmp, results))
        message = next((line for line in r.stderr.splitlines() if "cannot start the study" in line), r.stderr[-300:])
        out.append([name, f"exit {r.returncode}", message.replace(str(tmp), "…").replace("|", "/"),
                    time.perf_counter() - t0])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs of the running app (default 20)")
    parser.add_argument("--store-kills", type=int, default=100, help="SIGKILLs of the store writer (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-save", action="store_true", help="print only; do not write bench/RESULTS.md")
    args = parser.parse_args()
    run = Run.start("faults")

    print(f"building the tiny study and killing the app {args.kills} times ...", flush=True)
    rows, total_acks, lost_final = app_kill_loop(args.kills, args.seed)
    app_lost = max((r[4] for r in rows), default=0)
    bad_integrity = sum(r[3] != "ok" for r in rows)

    print(f"killing the store writer {args.store_kills} times ...", flush=True)
    db = Path(tempfile.mkdtemp(prefix="dressup-faults-")) / "study.sqlite"
    store_rounds = kill_store_writer(db, args.store_kills, seed=args.seed)
    store_lost = max((r.lost for r in store_rounds), default=0)
    store_bad = sum(r.integrity != "ok" for r in store_rounds)

    print("starting on read-only and full results folders ...", flush=True)
    refused = refusals()

    body = "\n\n".join([
        "### SIGKILL of the running app under three participants (gradio_client)",
        f"{args.kills} kills; after each, `PRAGMA integrity_check` and a look-up of every answer acknowledged in "
        f"any round so far. **Answers acknowledged: {total_acks}; lost: {app_lost}** (after the final clean "
        f"restart: {lost_final}); rounds whose integrity check was not `ok`: {bad_integrity}.",
        markdown_table(["kill", "acknowledged this round", "acknowledged in all", "integrity_check",
                        "acknowledged answers missing", "app start s"], rows, digits=1),
        "### SIGKILL of the store's writers (the same write path without Gradio)",
        f"{args.store_kills} kills of four writer threads on one `Store`, each after a random 1–120 acknowledged "
        f"answers plus up to 50 ms; the database reopened read-write as the app does (WAL recovery) each time. "
        f"**Answers acknowledged: {store_rounds[-1].acknowledged if store_rounds else 0}; lost: {store_lost}**; "
        f"integrity checks not `ok`: {store_bad}.",
        "### Start on a results folder that cannot take answers",
        "Each must exit with status 2 and a message before loading any model (the free-space floor is "
        "`study.session.MIN_FREE_MB`).",
        markdown_table(["results folder", "outcome", "message", "seconds"], refused, digits=1),
        f"**Faults injected: {args.kills + args.store_kills} kills + {len(refused)} broken folders; "
        f"answers lost: {max(app_lost, store_lost, lost_final)}.**",
    ])
    emit(run, body, save=not args.no_save)
    return 0 if max(app_lost, store_lost, lost_final, bad_integrity, store_bad) == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
