"""The one Markdown table formatter (reports, the evaluation's tables, the benchmarks' RESULTS.md)."""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence


def format_cell(x: Any, digits: int = 3) -> str:
    """A cell as text: floats rounded to ``digits``, NaN as an en dash, everything else ``str``."""
    if isinstance(x, float):
        return "–" if math.isnan(x) else f"{x:.{digits}f}"
    return str(x)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, digits: int = 3,
                   fmt: Callable[[Any, int], str] = format_cell, align: bool = False) -> str:
    """A GitHub-flavoured Markdown table. ``fmt`` turns a cell into text; ``align`` pads columns to one width
    and right-aligns the columns whose every cell is a number (for tables read as plain text too)."""
    cells = [[fmt(c, digits) for c in row] for row in rows]
    if not align:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])
    numeric = [bool(rows) and all(not isinstance(row[i], str) for row in rows) for i in range(len(header))]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.rjust(w) if num else v.ljust(w)
                                 for v, w, num in zip(values, widths, numeric)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric)) + "|"
    return "\n".join([line(header), rule] + [line(r) for r in cells])
