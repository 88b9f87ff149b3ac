"""Fitting a participant's words into a text encoder's token budget without losing the instructions.

Stable Diffusion 1.5 reads at most 77 CLIP tokens (``tokenizer.model_max_length``, start and end included) and
silently drops the rest. The product-shot template puts the participant's words first and the instructions
after them ("... a single garment on a plain white background, no person, no model, no face"), so a long
description (past about 250 characters) used to push the instructions out, and the paper's participants met
the faces the instructions exist to prevent. Here the words are trimmed, by the tokenizer that will read them,
to what fits beside the template; the template itself is never cut. The same rule keeps the negative
prompt's fixed part whole when a participant lists many colours to avoid.

Words are trimmed at word boundaries (the longest prefix of whole words that fits, found by bisection on the
tokenizer's own count), and a single overlong "word" (no spaces) is trimmed by characters, so the words that
reach the encoder are always a prefix of what the participant wrote.

``PromptFitter`` counts with its own copy of the pipeline's tokenizer, under its own lock: transformers 5's
tokenizers are Rust-backed and keep truncation/padding settings on the object between calls, so counting on
a participant's thread with the very tokenizer the pipeline is using on the worker thread changed how the
pipeline's prompt was padded (measured: a whole grid drawn differently, once in 400 requests).
"""
from __future__ import annotations

import copy
import threading
from typing import Any, Callable


def token_count(tokenizer: Any, text: str) -> int:
    """Tokens ``tokenizer`` makes of ``text``, start/end tokens included, before any truncation."""
    return len(tokenizer(text, truncation=False, add_special_tokens=True, verbose=False)["input_ids"])


def _longest_prefix(n: int, fits: Callable[[int], bool]) -> int:
    """The largest k in 0..n with ``fits(k)``, for a ``fits`` that is true up to some k and false after."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def fit_words(template: str, words: str, tokenizer: Any, max_tokens: int | None = None) -> str:
    """``template.format(text=...)`` with the longest prefix of ``words`` that keeps the whole within
    ``max_tokens`` (default: the tokenizer's ``model_max_length``).

    Raises ``ValueError`` when the template alone does not fit: that is a study-file mistake, not a
    participant's, and must be fixed before anyone is shown a grid.
    """
    limit = int(max_tokens or tokenizer.model_max_length)
    if token_count(tokenizer, template.format(text="")) > limit:
        raise ValueError(f"the prompt template alone takes more than the text encoder's {limit} tokens; "
                         f"shorten prompt_template")
    full = template.format(text=words)
    if token_count(tokenizer, full) <= limit:
        return full
    parts = words.split()
    k = _longest_prefix(len(parts), lambda k: token_count(tokenizer, template.format(text=" ".join(parts[:k]))) <= limit)
    kept = " ".join(parts[:k])
    if k < len(parts):  # the next word is too long for the room left: keep as many of its characters as fit
        nxt = parts[k]
        room = _longest_prefix(len(nxt), lambda c: token_count(
            tokenizer, template.format(text=" ".join([*parts[:k], nxt[:c]]))) <= limit)
        if room:
            kept = " ".join([*parts[:k], nxt[:room]])
    return template.format(text=kept)


def fit_list(fixed: str, extra: list[str], tokenizer: Any, max_tokens: int | None = None) -> str:
    """``fixed`` followed by as many of ``extra`` (comma-separated, in order) as fit in ``max_tokens``."""
    limit = int(max_tokens or tokenizer.model_max_length)

    def joined(k: int) -> str:
        return ", ".join([p for p in [fixed, *extra[:k]] if p])

    return joined(_longest_prefix(len(extra), lambda k: token_count(tokenizer, joined(k)) <= limit))


class PromptFitter:
    """``fit_words`` and ``fit_list`` with a private, locked copy of ``tokenizer`` (see the module docstring)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = copy.deepcopy(tokenizer)
        self._lock = threading.Lock()

    def words(self, template: str, words: str) -> str:
        with self._lock:
            return fit_words(template, words, self._tokenizer)

    def items(self, fixed: str, extra: list[str]) -> str:
        with self._lock:
            return fit_list(fixed, extra, self._tokenizer)
