"""How long the analysis takes on a large simulated study (the target: 10,000 sessions in under 30 s).

    PYTHONPATH=. .venv/bin/python bench/analyze_speed.py [--sessions 10000] [--db PATH] [--replicates 2000]

Writes the simulated study through ``study.store.Store`` (timed separately: that is the app's write path,
not the analysis), then times each stage of ``study.analyze``: load, figures, bootstrap, tests, plots,
report. ``--db`` reuses an existing database (written if missing) so repeated runs skip the writing.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from study import analyze, simulate  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--db", help="database to reuse (written first if it does not exist)")
    parser.add_argument("--replicates", type=int, default=2000)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="dressup-bench-"))
    db = Path(args.db) if args.db else workdir / "sim.sqlite"
    write_s = None
    if not db.exists():
        summary = simulate.write_study(db, simulate.PAPER_LIKE_EFFECTS, args.sessions, seed=1,
                                       incomplete=0.05, withdrawn=0.02, attention_fail=0.02)
        write_s = summary.seconds

    t0 = time.perf_counter()
    data = analyze.load(db)
    load_s = time.perf_counter() - t0
    a = analyze.analyze(data, replicates=args.replicates, seed=0)
    out = workdir / "analysis"
    t0 = time.perf_counter()
    pngs = analyze.plot_all(a, out)
    plots_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    analyze.write_tables(a, out)
    (out / "report.md").write_text(analyze.report_markdown(a, pngs), encoding="utf-8")
    report_s = time.perf_counter() - t0

    sessions = len(a.participants)
    rows = [("write through Store (not analysis)", write_s), ("load", load_s),
            ("figures", a.timings["figures"]), (f"bootstrap ({args.replicates} replicates)", a.timings["bootstrap"]),
            ("tests", a.timings["tests"]), ("mixed models (statsmodels)", a.timings["model"]), ("plots", plots_s),
            ("report + tables", report_s)]
    total = sum(v for name, v in rows[1:] if v is not None)
    print(f"sessions in database: {sessions} ({a.n_included} analysed); database {db}")
    print(f"{'stage':<38}{'seconds':>9}")
    for name, v in rows:
        print(f"{name:<38}{'(reused)' if v is None else f'{v:.2f}':>9}")
    print(f"{'analysis total (load .. report)':<38}{total:>9.2f}")
    print(f"outputs: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
