"""Timing for the benchmarks: calls timed with repeats (wall and CPU seconds), percentiles, a stopwatch, and
numpy's BLAS pinned to a number of threads.

Every timing records CPU time next to wall time: on a shared, busy machine CPU time per call barely moves
with other processes' load, wall time does.
"""
from __future__ import annotations

import ctypes
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100, linear interpolation); NaN for no samples."""
    return float(np.percentile(np.asarray(samples, dtype=float), q)) if len(samples) else float("nan")


def median(samples: Sequence[float]) -> float:
    return percentile(samples, 50)


@dataclass
class Timing:
    """Per-call wall and CPU seconds (CPU = this process, all threads)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.wall)

    @property
    def p50(self) -> float:
        return median(self.wall)

    @property
    def p99(self) -> float:
        return percentile(self.wall, 99)

    @property
    def cpu_p50(self) -> float:
        return median(self.cpu)

    @property
    def total(self) -> float:
        return float(sum(self.wall))


def time_calls(fn: Callable[[int], Any], n: int, *, budget_s: float | None = None, min_n: int = 5,
               warmup: int = 1) -> Timing:
    """Call ``fn(i)`` for i = 0..n-1 and time each call; stop early once ``budget_s`` is spent (after at least
    ``min_n`` calls), so a slow method at a large size cannot hold a run for minutes. ``i`` lets the caller
    vary the input (a different query each call) so caches do not flatter the figures."""
    for i in range(warmup):
        fn(i)
    t = Timing()
    started = time.perf_counter()
    for i in range(n):
        w, c = time.perf_counter(), time.process_time()
        fn(i)
        t.cpu.append(time.process_time() - c)
        t.wall.append(time.perf_counter() - w)
        if budget_s is not None and i + 1 >= min_n and time.perf_counter() - started > budget_s:
            break
    return t


def repeat(fn: Callable[[], Any], times: int = 3, *, warmup: int = 1, budget_s: float | None = None) -> Timing:
    """Time a whole operation ``times`` times (after ``warmup`` untimed runs); use the median."""
    return time_calls(lambda _: fn(), times, budget_s=budget_s, min_n=1, warmup=warmup)


@dataclass
class Stopwatch:
    wall: float = 0.0
    cpu: float = 0.0


@contextmanager
def stopwatch() -> Iterator[Stopwatch]:
    """``with stopwatch() as sw: ...`` then ``sw.wall`` / ``sw.cpu`` in seconds."""
    sw = Stopwatch()
    w, c = time.perf_counter(), time.process_time()
    try:
        yield sw
    finally:
        sw.wall, sw.cpu = time.perf_counter() - w, time.process_time() - c


def _numpy_openblas() -> Any:
    """numpy's own OpenBLAS (the wheel's ``scipy_openblas``), or None where numpy was built otherwise."""
    libs = sorted((Path(np.__file__).resolve().parent.parent / "numpy.libs").glob("libscipy_openblas*.so*"))
    if not libs:
        return None
    lib = ctypes.CDLL(str(libs[0]))
    for suffix in ("64_", "_64_", ""):
        get = getattr(lib, f"scipy_openblas_get_num_threads{suffix}", None)
        put = getattr(lib, f"scipy_openblas_set_num_threads{suffix}", None)
        if get is not None and put is not None:
            return get, put
    return None


@contextmanager
def blas_threads(n: int) -> Iterator[bool]:
    """Run numpy's BLAS on ``n`` threads inside the block (yields False, changing nothing, if it cannot).

    A matrix-vector product split over two threads needs two free cores at once; on a busy 2-core machine
    the second thread often waits a scheduler tick, so single queries are timed on one thread, like faiss's.
    """
    fns = _numpy_openblas()
    if fns is None:
        yield False
        return
    get, put = fns
    before = get()
    put(n)
    try:
        yield True
    finally:
        put(before)

