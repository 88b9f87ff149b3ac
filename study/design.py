"""Counterbalancing: which arm sits under which letter for each participant.

A Williams design (a balanced Latin square) puts every arm at every letter equally often and has every arm
follow every other arm equally often, so position and carry-over effects cancel out over a full cycle of
rows. Positions are handed out by an atomic counter in the database (``Store.next_counter``), as oTree and
DataPipe do, rather than by coin flips, so 24 participants with 4 arms are exactly balanced.

Which row a position gets must not be predictable by a participant: a participant who knew the rule could
recognise one arm (say the generative grid, by its look) and read all the others off the row. So the rows
are dealt from a **secret** kept in the study's database (drawn at first start, never written to a served or
published file): the square's rows are dealt in blocks, each block a fresh secret-keyed shuffle of all rows,
so every block of ``cycle_length`` participants still covers the whole square (balance is exact at each
block's end), and the secret also decides which arm is "arm 0". The study file's ``seed`` is public and
only makes models reproducible. The row index is recorded with each session; the analysis reads the
assignments table, never this rule.
"""
from __future__ import annotations

import hashlib
import hmac
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


def _rng(secret: bytes | str | int, purpose: str) -> random.Random:
    key = secret if isinstance(secret, bytes) else str(secret).encode()
    return random.Random(hmac.new(key, purpose.encode(), hashlib.sha256).digest())


def assignment(arms: list[str], order_index: int, secret: bytes | str | int) -> dict[str, str]:
    """Letter -> arm for the participant at position ``order_index``, dealt from ``secret``.

    Positions ``k * n .. k * n + n - 1`` (n = the square's rows) get the n rows in the order of block k's
    secret-keyed shuffle, so each block covers the square; the same secret always gives the same answer.
    """
    if len(arms) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} arms fit on the page, got {len(arms)}")
    shuffled = list(arms)
    _rng(secret, "arms").shuffle(shuffled)
    rows = williams_rows(len(arms))
    block, pos = divmod(int(order_index), len(rows))
    deal = _rng(secret, f"rows/{block}").sample(range(len(rows)), len(rows))
    row = rows[deal[pos]]
    return {LETTERS[p]: shuffled[cond] for p, cond in enumerate(row)}


def cycle_length(n_arms: int) -> int:
    """Participants per full cycle of the square (balance is exact at multiples of this)."""
    return len(williams_rows(n_arms))
