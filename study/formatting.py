"""How the report and the plots write a number: one place, so a figure reads the same in both.

Numbers are rounded (3 decimals unless told), missing ones (NaN) are an en dash, a p below 0.001 is
'< 0.001'; a figure with its interval is 'x [low, high]'. The rounding matches the project's table cells
(``dressup.tables.format_cell``), which the analysis cannot import: it runs without the library
(tests/test_analyze.py checks that ``dressup`` is never imported).
"""
from __future__ import annotations

import math
from typing import Any


def number(x: Any, digits: int = 3) -> str:
    """A value as a rounded number ('0.417', '–' for NaN); text that is not a number stays as it is."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(x):
        return "–"
    return f"{x:.{digits}f}"


def p_value(x: float) -> str:
    """A p-value: '< 0.001', '0.042', or '–' when there is none."""
    return "–" if math.isnan(x) else ("< 0.001" if x < 0.001 else f"{x:.3f}")


def with_ci(row: Any, name: str, digits: int = 3) -> str:
    """'x [low, high]' from a row's ``name``, ``name_ci_low`` and ``name_ci_high``."""
    return (f"{number(row[name], digits)} [{number(row[name + '_ci_low'], digits)},"
            f" {number(row[name + '_ci_high'], digits)}]")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table of text cells: the same text as ``dressup.tables.markdown_table``
    gives for text cells (unaligned), kept here because the analysis runs without the library."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
