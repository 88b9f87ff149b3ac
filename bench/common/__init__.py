"""What every benchmark needs, by concern, re-exported here so a benchmark imports it from ``bench.common``:

- ``timing``: calls timed with repeats (wall and CPU seconds), percentiles, a stopwatch, BLAS threads;
- ``memory``: RSS, peak RSS and PSS from ``/proc`` for this process, its tree, or another process;
- ``jpegs``: many real JPEG files of drawn garments, and the built demo catalogue's items;
- ``report``: the machine's description, Markdown tables, a dated section per command in ``bench/RESULTS.md``;
- ``app``: ``python app.py`` started and timed until it serves (through ``study.launcher``), participant photos;
- ``demo_copy``: copies of the demo study file that leave the real results (and, on request, cache) alone.

The machine these run on is shared and often busy, so every timing records CPU time next to wall time
(CPU time per call barely moves with other processes' load; wall time does), comparisons are made inside one
run, and sections say what the load average was while they ran.
"""
from __future__ import annotations

from bench.common.app import (APP_ENV, DEMO_STUDY, PHOTOS, REPO, AppProcess, free_port, offline_env, photos,
                              start_app)
from bench.common.demo_copy import demo_build_state, demo_study_copy
from bench.common.jpegs import DEMO_CATALOGUE, JPEG_DIR, demo_catalogue_items, jpeg_items
from bench.common.memory import (TreeMemorySampler, peak_rss_mb, process_cpu_s, process_memory_mb, process_tree,
                                 reset_peak_rss, rss_mb, tree_pss_mb)
from bench.common.report import (RESULTS, RESULTS_HEADER, Run, command_line, cpu_model, emit, fmt, load_average,
                                 machine, machine_line, markdown_table, record)
from bench.common.timing import Stopwatch, Timing, blas_threads, median, percentile, repeat, stopwatch, time_calls

HERE = REPO / "bench"

__all__ = [
    "APP_ENV", "DEMO_CATALOGUE", "DEMO_STUDY", "HERE", "JPEG_DIR", "PHOTOS", "REPO", "RESULTS", "RESULTS_HEADER",
    "AppProcess", "Run", "Stopwatch", "Timing", "TreeMemorySampler", "blas_threads", "command_line", "cpu_model",
    "demo_build_state", "demo_catalogue_items", "demo_study_copy", "emit", "fmt", "free_port", "jpeg_items",
    "load_average", "machine", "machine_line", "markdown_table", "median", "offline_env", "peak_rss_mb",
    "percentile", "photos", "process_cpu_s", "process_memory_mb", "process_tree", "record", "repeat",
    "reset_peak_rss", "rss_mb", "start_app", "stopwatch", "time_calls", "tree_pss_mb",
]
