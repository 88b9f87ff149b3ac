"""Finding names of one or more words in free text, longest first: the one scan colours and garments share.

"navy blue" is one colour and "bermuda shorts" one garment, not two mentions each; the words of a name may be
joined only by the characters ``joiner`` allows (spaces, hyphens...), never by other punctuation.
"""
from __future__ import annotations

import re
from typing import Callable, Sequence, TypeVar

T = TypeVar("T", bound=tuple)
V = TypeVar("V")


def longest_matches(text: str, tokens: Sequence[T], max_words: int, joiner: re.Pattern[str],
                    lookup: Callable[[Sequence[T]], V | None]) -> list[tuple[int, int, V]]:
    """``(start, end, value)`` of each name found, scanning left to right and trying the longest window first.

    ``tokens`` are tuples starting with ``(start, end)`` in ``text``; ``lookup`` gets a window of them and
    returns the name's value, or None when the window names nothing.
    """
    out: list[tuple[int, int, V]] = []
    i = 0
    while i < len(tokens):
        for n in range(min(max_words, len(tokens) - i), 0, -1):
            window = tokens[i : i + n]
            if any(not joiner.fullmatch(text[a[1] : b[0]]) for a, b in zip(window, window[1:])):
                continue
            value = lookup(window)
            if value is not None:
                out.append((window[0][0], window[-1][1], value))
                i += n
                break
        else:
            i += 1
    return out
