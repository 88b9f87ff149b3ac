"""First start of a fresh clone: seconds from `python app.py` to a serving page, and a copied project's start.

    python -m bench first_start            # a fresh clone of this repository's HEAD, then a copy of it

A fresh clone (``git clone`` of the committed HEAD into a temporary folder: no cache, no results) is started
with ``python app.py`` on its own demo study, with the packages already installed (the install step of
``make run`` is not timed: it is pip's). Timed from the process start until GET /config answers 200: drawing
the catalogue, verifying and unpacking the shipped weights, loading every arm and building the indexes.
Then the whole project folder, cache included, is copied to another folder and started again: that start must
reuse the cache (BUILD.json unchanged, nothing trained), which is what a cache keyed by content rather than by
location buys. The app uses as many torch threads as cores are idle when it starts.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, Run, emit, markdown_table, start_app  # noqa: E402

TARGET_S = 90.0
ARMS_READY = "arms ready"


def start(project: Path, folder: Path, timeout_s: float) -> dict:
    """Start ``project``'s app on its demo study; seconds to GET /config, and what BUILD.json says after."""
    load = os.getloadavg()[0]
    app = start_app(project / "assets" / "demo.toml", folder, timeout_s=timeout_s, marks=(ARMS_READY,), repo=project)
    try:
        log = app.log_tail(1 << 20)
    finally:
        app.stop()
    build = json.loads((project / "cache" / "demo" / "BUILD.json").read_text())
    return {"ready": app.ready_s, "cpu": app.ready_cpu_s, "arms": app.marks.get(ARMS_READY, float("nan")),
            "build": build, "trained": "training" in log, "load": load}


def report(first: dict, copy: dict) -> str:
    rows = [["fresh clone, first start", first["arms"], first["ready"], first["cpu"], first["build"].get("models"),
             f"{first['load']:.2f}", f"<= {TARGET_S:g} s", "yes" if first["ready"] <= TARGET_S else "**no**"],
            ["the project copied to another folder", copy["arms"], copy["ready"], copy["cpu"],
             "cached" if copy["build"] == first["build"] else "**rebuilt**", f"{copy['load']:.2f}", "no retraining",
             "yes" if copy["build"] == first["build"] and not copy["trained"] else "**no**"]]
    return ("A fresh `git clone` of HEAD, packages installed, started with `python app.py` (demo study); then the "
            "whole folder, cache included, copied elsewhere and started again. `arms ready s`: when the app said "
            "every arm was loaded; `GET /config s`: when the page served. Models: how the first start got them "
            "(`shipped`: verified and unpacked from weights/demo; `trained`: the recipes ran). The first start's "
            f"build took {first['build'].get('seconds', float('nan'))} s of it (catalogue drawing, weight check and "
            "unpacking).\n\n"
            + markdown_table(["start", "arms ready s", "GET /config s", "CPU s", "models", "load avg", "target",
                              "met"], rows, digits=1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench first_start", description=__doc__.split("\n\n")[0])
    p.add_argument("--timeout", type=float, default=1800, help="seconds before a start is given up")
    p.add_argument("--keep", action="store_true", help="keep the temporary folders")
    p.add_argument("--no-record", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = p.parse_args(argv)
    run = Run.start("first_start", argv)
    folder = Path(tempfile.mkdtemp(prefix="dressup-bench-first-"))
    try:
        clone = folder / "clone"
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
        print(f"fresh clone of HEAD in {clone}; starting its app", flush=True)
        first = start(clone, folder / "logs-first", args.timeout)
        print(f"  first start: page served after {first['ready']:.1f} s (models {first['build'].get('models')})",
              flush=True)
        moved = folder / "moved" / "project"
        shutil.copytree(clone, moved, symlinks=True)
        copy = start(moved, folder / "logs-copy", args.timeout)
        print(f"  copied project: page served after {copy['ready']:.1f} s", flush=True)
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    emit(run, report(first, copy), save=not args.no_record)
    return 0 if first["ready"] <= TARGET_S and copy["build"] == first["build"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
