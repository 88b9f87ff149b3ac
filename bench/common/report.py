"""The benchmarks' report: the machine's description, Markdown tables of figures, and a dated section per
command in ``bench/RESULTS.md`` (rerunning a command replaces its section).

Sections say what the load average was while they ran, since the machine these run on is shared and often
busy; tables are ``dressup.tables.markdown_table``'s aligned form with the benchmarks' number format (``fmt``).
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dressup import tables

RESULTS = Path(__file__).resolve().parents[1] / "RESULTS.md"
RESULTS_HEADER = """# Benchmark results

Written by the scripts under `bench/` (`python -m bench` lists them; `python -m bench NAME --help` gives a
script's options). Each section is the latest run of the command in its title: rerunning that command replaces
the section. Wall times depend on what else the machine was doing (the load average is given); CPU times and
ratios measured inside one run are the figures to compare.
"""


# ---------------------------------------------------------------------------------------------- machine
def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return m.group(1).strip() if m else platform.processor() or "unknown"


def load_average() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def machine() -> dict[str, str]:
    """What a reader needs to compare figures across machines: cores, CPU, memory, versions."""
    try:
        mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{mem_kb / 1024 ** 2:.0f} GiB"
    except (OSError, AttributeError):
        mem = "unknown"
    info = {"nproc": str(os.cpu_count()), "cpu": cpu_model(), "memory": mem,
            "python": platform.python_version()}
    for mod in ("numpy", "faiss", "torch", "open_clip"):
        m = sys.modules.get(mod)
        if m is not None:
            info[mod] = getattr(m, "__version__", "?")
    if "torch" in sys.modules:
        info["torch threads"] = str(sys.modules["torch"].get_num_threads())
    if "faiss" in sys.modules:
        info["faiss threads"] = str(sys.modules["faiss"].omp_get_max_threads())
    return info


def machine_line() -> str:
    info = machine()
    head = f"nproc {info.pop('nproc')}, {info.pop('cpu')}, {info.pop('memory')} RAM"
    return head + "; " + ", ".join(f"{k} {v}" for k, v in info.items())


# ---------------------------------------------------------------------------------------------- tables
def fmt(x: Any, digits: int = 2) -> str:
    """Numbers for tables: NaN/None as an en dash, large values without needless decimals."""
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    x = float(x)
    if x != x:
        return "–"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 2) -> str:
    """A GitHub Markdown table; numbers are formatted with ``fmt`` and right-aligned."""
    return tables.markdown_table(headers, rows, digits=digits, fmt=fmt, align=True)


# ---------------------------------------------------------------------------------------------- results
def command_line(name: str, argv: Sequence[str] | None = None) -> str:
    """How to rerun this benchmark, as the user would type it."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python -m bench", name, *map(shlex.quote, args)])


@dataclass
class Run:
    """One benchmark run: when, where and how it started, for the header of its RESULTS.md section."""

    name: str
    command: str
    started: str
    load_start: str

    @classmethod
    def start(cls, name: str, argv: Sequence[str] | None = None) -> "Run":
        return cls(name, command_line(name, argv), _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
                   load_average())

    def header(self) -> str:
        return (f"## `{self.command}`\n\n"
                f"- date: {self.started}\n- machine: {machine_line()}\n"
                f"- load average (1/5/15 min) at start: {self.load_start}; at end: {load_average()}\n")


def record(run: Run, body: str, path: Path = RESULTS) -> Path:
    """Write ``body`` under ``run``'s header into ``path``, replacing the section of the same command."""
    text = path.read_text(encoding="utf-8") if path.is_file() else RESULTS_HEADER
    section = run.header() + "\n" + body.strip() + "\n"
    title = f"## `{run.command}`\n"
    parts = re.split(r"(?m)^(?=## )", text)
    replaced = False
    for i, part in enumerate(parts):
        if part.startswith(title):
            parts[i] = section + "\n"
            replaced = True
    if not replaced:
        parts.append(("\n" if not parts[-1].endswith("\n\n") else "") + section + "\n")
    path.write_text("".join(parts).rstrip() + "\n", encoding="utf-8")
    return path


def emit(run: Run, body: str, *, save: bool = True) -> None:
    """Print the tables and, unless ``save`` is false, record them in RESULTS.md."""
    print(run.header())
    print(body)
    if save:
        print(f"\nrecorded in {record(run, body)}")


