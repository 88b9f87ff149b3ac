"""Demo build and warm restart: a fresh `python -m dressup demo build` end to end, and the app's start on a built cache.

    python -m bench demo_build                 # fresh build into a temporary cache (4-5 min here), then 3 restarts
    python -m bench demo_build --skip-fresh    # restarts only

Fresh build: ``python -m dressup demo build --from-scratch`` on a copy of ``assets/demo.toml`` whose cache,
catalogue, encoder folders and generator checkpoint all live in a temporary folder, so everything is built from
nothing (catalogue drawing, three encoders, the diffusion generator, the four indexes; the shipped weights are
not used) and the real ``cache/demo`` is not touched. A fresh clone's first start, which uses the shipped
weights, is ``python -m bench first_start``. Timed from
the process start to its exit; CPU seconds are the child's (user + system, from ``wait4``). The build itself
uses as many torch threads as cores are idle when it starts (``dressup.demo._choose_threads``).

Warm restart: ``python app.py`` on the real, already built demo cache (answers to a temporary folder), timed
from the process start until GET /config answers, ``--restarts`` times; the median is the figure. If the real
cache is not built for the current study file, one untimed start builds it first (minutes).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (DEMO_STUDY, REPO, Run, demo_build_state, demo_study_copy, emit, markdown_table,  # noqa: E402
                          median, offline_env, process_memory_mb, start_app)

TARGET_BUILD_S = 300.0
TARGET_RESTART_S = 20.0
ARMS_READY = "arms ready"  # app.py prints "study ...: N arms ready" once every model is loaded


def fresh_build(folder: Path, timeout_s: float, heartbeat_s: float = 60) -> dict:
    """Run the demo build into ``folder``'s own cache; wall and CPU seconds, peak RSS, and its BUILD.json."""
    study = demo_study_copy(folder, fresh_cache=True)
    log_path = folder / "build.log"
    print(f"fresh demo build of {study} into {folder / 'cache'} (log: {log_path})", flush=True)
    load = os.getloadavg()[0]
    with open(log_path, "w", encoding="utf-8") as log:
        started = time.perf_counter()
        command = [sys.executable, "-m", "dressup", "demo", "build", "--from-scratch", "--study", str(study)]
        proc = subprocess.Popen(command,
                                cwd=REPO, env=offline_env(), stdout=log, stderr=subprocess.STDOUT)
        next_beat = started + heartbeat_s
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            now = time.perf_counter()
            if now - started > timeout_s:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                raise RuntimeError(f"the demo build ran past {timeout_s:.0f} s; its log is {log_path}")
            if now > next_beat:
                print(f"  ... building, {now - started:.0f} s: {last_line(log_path)}", flush=True)
                next_beat = now + heartbeat_s
            time.sleep(0.5)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"the demo build exited with {proc.returncode}; its log ({log_path}) ends:\n"
                           f"{log_path.read_text(errors='replace')[-3000:]}")
    marker = folder / "cache" / "BUILD.json"
    build = json.loads(marker.read_text()) if marker.is_file() else {}
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024,
            "models_s": build.get("seconds", float("nan")), "load": load,
            "stages": stages(log_path.read_text(errors="replace")), "threads": threads_used(log_path)}


def threads_used(log_path: Path) -> str:
    """The torch thread count the build printed ("demo build: N torch thread(s)"), or "?" if it did not."""
    m = re.search(r"demo build: (\d+) torch thread", log_path.read_text(errors="replace"))
    return m.group(1) if m else "?"


TQDM = re.compile(r"^(?P<desc>[^|]+?):\s+\d+%\|[^|]*\|\s*[\d.]+[kMG]?/[\d.]+[kMG]?\s*\[(?P<elapsed>[\d:]+)<")


def stages(log: str) -> dict[str, tuple[float, int]]:
    """Seconds per progress bar of a build log (tqdm's elapsed time at its last update), summed over the bars of
    the same name (a bar whose clock goes back is the next one); name -> (seconds, bars), in order of first use."""
    done: dict[str, list[float]] = {}
    last: dict[str, float] = {}
    for line in re.split(r"[\r\n]+", log):
        m = TQDM.match(line.strip())
        if not m:
            continue
        desc = m["desc"].strip()
        secs = 0.0
        for part in m["elapsed"].split(":"):
            secs = secs * 60 + float(part)
        done.setdefault(desc, [])
        if desc in last and secs < last[desc]:
            done[desc].append(last[desc])
        last[desc] = secs
    for desc, secs in last.items():
        done[desc].append(secs)
    return {desc: (sum(v), len(v)) for desc, v in done.items()}


def last_line(path: Path) -> str:
    lines = [ln for ln in re.split(r"[\r\n]+", path.read_text(errors="replace")[-2000:]) if ln.strip()]
    return lines[-1][:160] if lines else "(no output yet)"


def warm_restarts(n: int, folder: Path, state: str) -> tuple[list[dict], bool]:
    """Start and stop the app ``n`` times on the real cache; each start's seconds to GET /config."""
    study = demo_study_copy(folder)
    built_first = False
    if state != "built":
        print(f"The real demo models are not built for {DEMO_STUDY.name} "
              f"({'another process is building them now' if state == 'building' else 'missing or out of date'}): "
              "one untimed start builds them first (4-5 minutes here). Waiting.", flush=True)
        start_app(study, folder / "app", timeout_s=3600).stop()
        built_first = True
    out = []
    for i in range(n):
        app = start_app(study, folder / "app", timeout_s=600, marks=(ARMS_READY,))
        try:
            rss, hwm = process_memory_mb(app.pid)
            out.append({"ready": app.ready_s, "cpu": app.ready_cpu_s, "models": app.marks.get(ARMS_READY, float("nan")),
                        "rss": rss, "hwm": hwm})
        finally:
            app.stop()
        print(f"  restart {i + 1}/{n}: GET /config after {app.ready_s:.1f} s ({app.ready_cpu_s:.1f} CPU s)", flush=True)
    return out, built_first


def report(build: dict | None, restarts: list[dict], built_first: bool) -> str:
    parts = []
    if build is not None:
        rows = [["fresh `python -m dressup demo build`", build["wall"], build["cpu"], build["models_s"],
                 build["peak_mb"], f"<= {TARGET_BUILD_S:g} s", "yes" if build["wall"] <= TARGET_BUILD_S else "**no**"]]
        parts.append("Fresh build into an empty temporary cache: catalogue (4,000 items drawn), baseline, finetuned "
                     "and STN encoders, the generator, then the four indexes (`build_arms`). `models s` is the part "
                     "`ensure_demo_build` records in BUILD.json (catalogue, encoders, generator); the rest of the wall "
                     "time is Python start-up, loading the models and building the indexes. Peak RSS is the "
                     f"build process's (`ru_maxrss`). The 1-minute load average was {build['load']:.1f} when it "
                     f"started on {os.cpu_count()} cores; the build trained on {build['threads']} torch thread(s) "
                     "(as many as cores were idle when it started, read from /proc/stat).")
        parts.append(markdown_table(["what", "wall s", "CPU s", "models s", "peak RSS MiB", "target", "met"], rows))
        if build["stages"]:
            st = [[name, bars, secs, secs / build["wall"] * 100] for name, (secs, bars) in build["stages"].items()]
            rest = build["wall"] - sum(secs for secs, _ in build["stages"].values())
            st.append(["outside progress bars (start-up, loading, saving)", float("nan"), rest,
                       rest / build["wall"] * 100])
            parts.append("Where the fresh build's wall time went, from its progress bars (tqdm's elapsed time):")
            parts.append(markdown_table(["stage", "bars", "wall s", "% of build"], st, digits=1))
    if restarts:
        med = median([r["ready"] for r in restarts])
        rows = [[f"start {i + 1}", r["models"], r["ready"], r["cpu"], r["rss"], r["hwm"], "", ""]
                for i, r in enumerate(restarts)]
        rows.append(["median", median([r["models"] for r in restarts]), med, median([r["cpu"] for r in restarts]),
                     median([r["rss"] for r in restarts]), median([r["hwm"] for r in restarts]),
                     f"<= {TARGET_RESTART_S:g} s", "yes" if med <= TARGET_RESTART_S else "**no**"])
        parts.append("Warm restart: `python app.py` on the built real demo cache (answers to a temporary folder), "
                     "from process start to the first 200 from GET /config. `arms ready s`: when the app printed "
                     "that every arm was loaded (the rest is building the page and starting the server). CPU s: "
                     "the app's CPU seconds at that moment; memory is the app's at that moment."
                     + (" The real cache was not built at the start of this run: one untimed start built it first."
                        if built_first else ""))
        parts.append(markdown_table(["warm restart", "arms ready s", "GET /config s", "CPU s", "VmRSS MiB",
                                     "VmHWM MiB", "target", "met"], rows))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench demo_build", description=__doc__.split("\n\n")[0])
    p.add_argument("--skip-fresh", action="store_true", help="skip the fresh build (it takes minutes)")
    p.add_argument("--restarts", type=int, default=3, help="warm restarts to time (default %(default)s); 0 skips them")
    p.add_argument("--build-timeout", type=float, default=3600, help="seconds before the fresh build is killed")
    p.add_argument("--keep", action="store_true", help="keep the temporary folders (fresh cache, logs)")
    p.add_argument("--no-record", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = p.parse_args(argv)
    run = Run.start("demo_build", argv)

    folder = Path(tempfile.mkdtemp(prefix="dressup-bench-build-"))
    try:
        build = None if args.skip_fresh else fresh_build(folder / "fresh", args.build_timeout)
        restarts, built_first = [], False
        if args.restarts > 0:
            restarts, built_first = warm_restarts(args.restarts, folder / "warm", demo_build_state(DEMO_STUDY))
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    emit(run, report(build, restarts, built_first), save=not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
