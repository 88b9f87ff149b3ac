"""Idle app: the CPU a started study app uses while nobody is taking the study.

    python -m bench idle_app                 # this repository's app on a copy of the demo study
    python -m bench idle_app --against REF   # and the app of commit REF (a temporary git worktree), to compare

A Space waits for participants most of its life, and on a small machine whatever an idle app burns is taken from
the Submits that matter (and from every other process: the test suite runs several apps at once). The app is
started on a copy of the demo study, left alone ``--settle`` seconds after it first serves, then its CPU
seconds (all threads, from /proc) are read over ``--seconds``: the figure is cores used (CPU s / wall s).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, Run, emit, markdown_table, start_app  # noqa: E402
from bench.common.demo_copy import demo_study_copy  # noqa: E402
from bench.common.memory import process_cpu_s  # noqa: E402


def idle_cores(repo: Path, folder: Path, settle_s: float, seconds: float) -> tuple[float, float]:
    """(cores used while idle, seconds until the app served) for ``repo``'s app on a demo study copy."""
    study = demo_study_copy(folder)
    app = start_app(study, folder / "logs", repo=repo)
    try:
        time.sleep(settle_s)
        cpu0, t0 = process_cpu_s(app.pid), time.perf_counter()
        time.sleep(seconds)
        return (process_cpu_s(app.pid) - cpu0) / (time.perf_counter() - t0), app.ready_s
    finally:
        app.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench idle_app", description=__doc__.split("\n\n")[0])
    p.add_argument("--against", help="also measure this commit's app (e.g. one before a change)")
    p.add_argument("--settle", type=float, default=10.0, help="seconds left alone after the page first serves")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds the idle CPU is measured over")
    p.add_argument("--no-record", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = p.parse_args(argv)
    run = Run.start("idle_app", argv)
    folder = Path(tempfile.mkdtemp(prefix="dressup-bench-idle-"))
    rows = []
    try:
        apps = [("this checkout", REPO)]
        if args.against:
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(folder / "against"),
                            args.against], check=True)
            apps.append((f"commit {args.against}", folder / "against"))
        for name, repo in apps:
            cores, ready = idle_cores(repo, folder / name.replace(" ", "-"), args.settle, args.seconds)
            print(f"{name}: {cores:.3f} cores idle over {args.seconds:g} s (served after {ready:.1f} s)", flush=True)
            rows.append([name, round(cores, 3), f"{100 * cores:.1f}%"])
    finally:
        if args.against:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder / "against")])
        shutil.rmtree(folder, ignore_errors=True)
    body = (f"The demo app started on a copy of the demo study, left alone {args.settle:g} s after it first "
            f"served, then its CPU read over {args.seconds:g} s (all threads, /proc).\n\n"
            + markdown_table(["app", "idle CPU (cores)", "of one core"], rows, digits=3))
    emit(run, body, save=not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
