"""Memory and CPU of processes, read from ``/proc``: this process's RSS and peak, PSS summed over a process
tree (``TreeMemorySampler`` samples it in a thread), and another process's CPU seconds and memory (the app's,
measured from outside).
"""
from __future__ import annotations

import gc
import os
import threading


def _status_mb(key: str, pid: int | str = "self") -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def rss_mb() -> float:
    """Resident memory of this process now (VmRSS), MiB."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """Peak resident memory of this process since start or the last ``reset_peak_rss`` (VmHWM), MiB."""
    return _status_mb("VmHWM")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5), so one process can measure several stages."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(x) for x in fh.read().split()]
    except OSError:
        pass
    return out


def process_tree(pid: int | None = None) -> list[int]:
    """This process and all its descendants (e.g. DataLoader workers)."""
    todo, seen = [pid or os.getpid()], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def _pss_mb(pid: int) -> float:
    """Proportional set size: shared pages (a forked worker's copy-on-write memory) counted once overall."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_pss_mb() -> float:
    """PSS summed over this process and its descendants, MiB."""
    return sum(_pss_mb(p) for p in process_tree())


class TreeMemorySampler:
    """Samples the memory of this process and its descendants in a thread (``with TreeMemorySampler() as m``).

    ``peak_rss_mb`` sums RSS over the tree (counts pages shared by forked workers once per process, so it
    overstates); ``peak_pss_mb`` sums PSS (shared pages split between sharers: what the tree really costs).
    """

    def __init__(self, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self.peak_rss_mb = 0.0
        self.peak_pss_mb = 0.0
        self.max_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        pids = process_tree()
        self.max_processes = max(self.max_processes, len(pids))
        self.peak_rss_mb = max(self.peak_rss_mb, sum(_status_mb("VmRSS", p) for p in pids if p))
        self.peak_pss_mb = max(self.peak_pss_mb, sum(_pss_mb(p) for p in pids))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> "TreeMemorySampler":
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) another process has used so far; NaN once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_memory_mb(pid: int) -> tuple[float, float]:
    """Another process's resident memory now (VmRSS) and at its peak so far (VmHWM), MiB."""
    return _status_mb("VmRSS", pid), _status_mb("VmHWM", pid)
