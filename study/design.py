"""Counterbalancing: which arm sits under which letter for each participant.

A Williams design (a balanced Latin square) puts every arm at every letter equally often and has every arm
follow every other arm equally often, so position and carry-over effects cancel out over a full cycle of
rows. Rows are handed out by an atomic counter in the database (``Store.next_counter``), as oTree and
DataPipe do, rather than by coin flips, so 24 participants with 4 arms are exactly balanced.
The study seed shuffles which arm is "arm 0" of the square, so two studies with the same arms do not
share one fixed order; the seed and the row index are recorded with each session.
"""
from __future__ import annotations

import random

from study.schema import LETTERS


def williams_rows(n: int) -> list[list[int]]:
    """The rows of a Williams design for n conditions (n rows if n is even, 2n if odd)."""
    if n < 1:
        raise ValueError("need at least one arm")
    first, lo, hi = [0], 1, n - 1
    while len(first) < n:
        first.append(lo)
        lo += 1
        if len(first) < n:
            first.append(hi)
            hi -= 1
    rows = [[(c + i) % n for c in first] for i in range(n)]
    if n % 2:
        rows += [list(reversed(r)) for r in rows]
    return rows


def assignment(arms: list[str], order_index: int, seed: int) -> dict[str, str]:
    """Letter -> arm for the participant who drew row ``order_index`` of the (seed-shuffled) square."""
    if len(arms) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} arms fit on the page, got {len(arms)}")
    shuffled = list(arms)
    random.Random(seed).shuffle(shuffled)
    rows = williams_rows(len(arms))
    row = rows[order_index % len(rows)]
    return {LETTERS[pos]: shuffled[cond] for pos, cond in enumerate(row)}


def cycle_length(n_arms: int) -> int:
    """Participants per full cycle of the square (balance is exact at multiples of this)."""
    return len(williams_rows(n_arms))
