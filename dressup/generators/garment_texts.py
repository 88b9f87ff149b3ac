"""How garments are put into words: the phrases generators are trained on and the prompts they are judged by.

A participant asks for "a red dress" or "red trousers"; the demo's generators are trained on such phrases built
from a catalogue item's attributes (``short_text``, ``pattern_text``), and their colour fidelity is measured by
asking for every colour x category in that same form (``colour_prompts``, read by ``dressup.judge`` and the
benchmarks). One module, so training and measurement phrase a garment the same way.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def garment_phrase(colour: str, category: str) -> str:
    """How a participant asks for a colour and a category: "a red dress", "an orange tee", "red trousers"."""
    noun = category.replace("_", " ").lower()
    if noun.endswith("s") and not noun.endswith("ss"):
        return f"{colour} {noun}"
    return f"{'an' if colour[:1] in 'aeiou' else 'a'} {colour} {noun}"


def colour_prompts(colours: Sequence[str], categories: Sequence[str], n: int = 50, seed: int = 0,
                   exclude: Sequence[str] = ("white",)) -> list[tuple[str, str]]:
    """``n`` (colour, ``garment_phrase``) prompts, every colour x category pair once (shuffled by ``seed``)
    before any repeats. White is excluded by default: on a white backdrop it cannot be measured."""
    cols = [c for c in colours if c not in set(exclude)]
    pairs = [(c, k) for c in cols for k in categories]
    if not pairs:
        raise ValueError("colour_prompts needs at least one colour (besides the excluded) and one category")
    rng = np.random.default_rng(seed)
    out: list[tuple[str, str]] = []
    while len(out) < n:
        out += [pairs[i] for i in rng.permutation(len(pairs))]
    return [(c, garment_phrase(c, k)) for c, k in out[:n]]


def _noun(item) -> str:
    return item.category.replace("_", " ").lower()


def short_text(item) -> str:
    """What a participant would type for an item: "red dress" (colour + category), or the category alone."""
    colour = item.attribute_of("colour")
    return f"{colour} {_noun(item)}" if colour else _noun(item)


def pattern_text(item) -> str:
    """A little more: "red striped dress" (colour + pattern + category), parts the item lacks left out."""
    words = [item.attribute_of("colour"), item.attribute_of("texture"), _noun(item)]
    return " ".join(w.replace("_", " ") for w in words if w)

