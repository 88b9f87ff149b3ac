"""What participants' own words retrieve: the query file, generated query sets, and scoring against meaning.

A participant does not write "red striped dress". They write "crimson and white stripy tshirt", "🖤👕",
"no stripes please, just a plain navy t-shirt" or "burgandy trowsers". The benchmark file
(``assets/queries.tsv``) holds such queries, each with the attributes it *means* — a colour, a category and
optionally a pattern, in the catalogue's own vocabulary — and tags saying what makes it hard (synonym, typo,
emoji, negation, ...). Scoring needs no human: an item carries a meant attribute when its catalogue annotation
says so (``carries``), so a query's score is how many of the four returned items carry every meant
attribute (0-4), and the same per attribute kind.

The query file is tab-separated UTF-8 with a header ``id  text  colour  category  pattern  tags``; lines
starting with ``#`` are comments; ``pattern`` may be empty (not scored); ``tags`` are comma-separated names
from ``TAGS``. ``load_queries`` checks every meant value against the catalogue's vocabulary, so a query can
never silently mean something the catalogue cannot contain.
"""
from __future__ import annotations

import csv
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from dressup.protocols import GRID
from dressup.records import Item, Preference

QUERY_COLUMNS = ("id", "text", "colour", "category", "pattern", "tags")
KINDS = ("colour", "category", "pattern")
CORE = "colour+category"  # the headline: items carrying the meant colour and category
# A meant kind -> the catalogue attribute type that holds it ("category" is Item.category itself).
ATTRIBUTE_TYPES: dict[str, str] = {"colour": "colour", "pattern": "texture"}
DEFAULT_QUERIES = Path(__file__).resolve().parent.parent / "assets" / "queries.tsv"

TAGS: dict[str, str] = {
    "colour-syn": "the meant colour is said with a word the catalogue never uses (crimson, navy, mustard)",
    "category-syn": "the meant category is said with a word the catalogue never uses (frock, slacks, jumper)",
    "pattern-syn": "the meant pattern is said with a word the catalogue never uses (plaid, spotty, stripy)",
    "sentence": "a whole sentence with filler words, context or brand names",
    "typo": "a misspelling of a meant word",
    "caps": "written in upper case",
    "emoji": "contains emoji",
    "emoji-only": "nothing but emoji",
    "negation": "names something not wanted (another colour, pattern or category)",
}


class QueryFileError(ValueError):
    """The query file is malformed; the message names the file, the line and the fix."""


@dataclass
class Query:
    """One query: text (and optionally photos), what it means, and what makes it hard.

    ``images`` are photos given with the text (the fusion benchmark); ``exclude`` are item ids that must not
    count as answers (the catalogue items those photos are), so an arm cannot score by returning the photo;
    ``photo_meant`` is what the photos show where it differs from what the text means.
    """

    qid: str
    text: str
    meant: dict[str, str]
    tags: tuple[str, ...] = ()
    images: list[Any] = field(default_factory=list, repr=False)
    exclude: tuple[str, ...] = ()
    photo_meant: dict[str, str] = field(default_factory=dict)  # what the photos show, when they disagree


def value_of(item: Item, kind: str) -> str | None:
    """The item's value of a meant kind ("colour", "category", "pattern"), or None."""
    if kind == "category":
        return item.category
    return item.attribute_of(ATTRIBUTE_TYPES[kind])


def carries(item: Item, kind: str, value: str) -> bool:
    """Whether the catalogue annotation gives the item this value (e.g. colour "red")."""
    if kind == "category":
        return item.category == value
    return value in item.attributes and item.attribute_types.get(value) == ATTRIBUTE_TYPES[kind]


def vocabulary(items: Sequence[Item]) -> dict[str, set[str]]:
    """Every value of each meant kind that occurs among ``items``."""
    vocab: dict[str, set[str]] = {k: set() for k in KINDS}
    for it in items:
        for kind in KINDS:
            v = value_of(it, kind)
            if v:
                vocab[kind].add(v)
    return vocab


def load_queries(path: str | Path = DEFAULT_QUERIES, vocab: dict[str, set[str]] | None = None) -> list[Query]:
    """Read a query file (see the module docstring); with ``vocab``, every meant value must be in it."""
    path = Path(path)
    if not path.is_file():
        raise QueryFileError(f"query file {path} does not exist; pass --queries FILE or use {DEFAULT_QUERIES}")
    lines = [(n, line) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines or tuple(c.strip() for c in lines[0][1].split("\t")) != QUERY_COLUMNS:
        raise QueryFileError(f"{path}: the first non-comment line must be the tab-separated header "
                             f"{' '.join(QUERY_COLUMNS)!r}")
    queries: list[Query] = []
    seen: set[str] = set()
    for number, line in lines[1:]:
        cells = line.split("\t")
        if len(cells) != len(QUERY_COLUMNS):
            raise QueryFileError(f"{path} line {number}: expected {len(QUERY_COLUMNS)} tab-separated columns "
                                 f"({', '.join(QUERY_COLUMNS)}), got {len(cells)}")
        qid, text, colour, category, pattern, tags = (c.strip() for c in cells)
        if qid in seen:
            raise QueryFileError(f"{path} line {number}: id {qid!r} is used twice; give each query its own id")
        seen.add(qid)
        meant = {k: v for k, v in (("colour", colour), ("category", category), ("pattern", pattern)) if v}
        if "colour" not in meant or "category" not in meant:
            raise QueryFileError(f"{path} line {number}: every query must mean a colour and a category")
        tag_list = tuple(t.strip() for t in tags.split(",") if t.strip())
        unknown = [t for t in tag_list if t not in TAGS]
        if unknown:
            raise QueryFileError(f"{path} line {number}: unknown tag(s) {unknown}; known tags: {sorted(TAGS)}")
        if vocab is not None:
            for kind, value in meant.items():
                if value not in vocab.get(kind, set()):
                    raise QueryFileError(f"{path} line {number}: {kind} {value!r} is not in the catalogue; "
                                         f"it has {sorted(vocab.get(kind, set()))}")
        queries.append(Query(qid, text, meant, tag_list))
    return queries


def caption_word_queries(items: Sequence[Item], n: int = 50, seed: int = 0) -> list[Query]:
    """``n`` colour + pattern + category queries in the catalogue's own words ("red striped dress").

    Only combinations that at least four of ``items`` carry are drawn, so every query can score 4 of 4.
    """
    counts = Counter((value_of(it, "colour"), value_of(it, "pattern"), it.category) for it in items)
    combos = sorted(c for c, count in counts.items() if all(c) and count >= GRID)
    if not combos:
        raise ValueError("no colour + pattern + category combination occurs four times in the catalogue; "
                         "caption-word queries need colour and texture attributes (the demo catalogue has them)")
    picked = random.Random(seed).sample(combos, min(n, len(combos)))
    return [Query(f"cw{i + 1:03d}", f"{colour} {pattern} {category}",
                  {"colour": colour, "pattern": pattern, "category": category})
            for i, (colour, pattern, category) in enumerate(picked)]


@dataclass
class QueryResult:
    """What one arm returned for one query, scored. ``ceiling``: the best score the catalogue allows."""

    qid: str
    text: str
    tags: tuple[str, ...]
    meant: dict[str, str]
    returned: list[str]
    all_meant: int
    per_kind: dict[str, int]
    ceiling: int
    returned_values: list[dict[str, str | None]] = field(default_factory=list)
    colour_category: int = 0  # returned items carrying the meant colour and the meant category (pattern aside)


def score(items: Sequence[Item], meant: dict[str, str]) -> tuple[int, dict[str, int]]:
    """(items carrying every meant attribute, {kind: items carrying that kind's meant value})."""
    per_kind = {kind: sum(carries(it, kind, value) for it in items) for kind, value in meant.items()}
    all_meant = sum(all(carries(it, kind, value) for kind, value in meant.items()) for it in items)
    return all_meant, per_kind


class _Ceiling:
    """How many catalogue items carry all of a query's meant attributes (vectorised over the index)."""

    def __init__(self, items: Sequence[Item]) -> None:
        self.values = {kind: np.array([value_of(it, kind) or "" for it in items], dtype=object) for kind in KINDS}
        self.n = len(items)

    def __call__(self, meant: dict[str, str], exclude_rows: Sequence[int] = ()) -> int:
        mask = np.ones(self.n, dtype=bool)
        for kind, value in meant.items():
            mask &= self.values[kind] == value
        mask[list(exclude_rows)] = False
        return int(min(GRID, mask.sum()))


def run_queries(arm: Any, queries: Sequence[Query], *, progress: bool = False, desc: str = "") -> list[QueryResult]:
    """Each query through ``arm.rank_rows`` (the app's path: text cleaning, colour grounding, fusion, faiss)."""
    items = arm.index.items
    row_of = {it.item_id: r for r, it in enumerate(items)}
    ceiling = _Ceiling(items)
    out: list[QueryResult] = []
    for q in tqdm(queries, desc=desc or f"queries {arm.name}", disable=not progress, unit="query"):
        excluded = {row_of[i] for i in q.exclude if i in row_of}
        rows, _ = arm.rank_rows(Preference(text=q.text, images=list(q.images)), GRID + len(excluded))
        rows = [int(r) for r in rows if int(r) not in excluded][:GRID]
        got = [items[r] for r in rows]
        all_meant, per_kind = score(got, q.meant)
        core, _ = score(got, {k: v for k, v in q.meant.items() if k in ("colour", "category")})
        out.append(QueryResult(q.qid, q.text, q.tags, dict(q.meant), [it.item_id for it in got], all_meant, per_kind,
                               ceiling(q.meant, sorted(excluded)),
                               [{k: value_of(it, k) for k in KINDS} for it in got], core))
    return out


def summarise(results: Sequence[QueryResult]) -> dict[str, float]:
    """Means over queries: ``all`` (items of 4 carrying every meant attribute), ``colour+category`` (items
    carrying the meant colour and category, pattern aside), each kind, and ``ceiling``.

    A kind no query means (e.g. pattern) is NaN, not 0.
    """
    if not results:
        return {"queries": 0, "all": float("nan"), CORE: float("nan"), **{k: float("nan") for k in KINDS},
                "ceiling": float("nan")}
    out: dict[str, float] = {"queries": len(results), "all": float(np.mean([r.all_meant for r in results])),
                             CORE: float(np.mean([r.colour_category for r in results]))}
    for kind in KINDS:
        vals = [r.per_kind[kind] for r in results if kind in r.per_kind]
        out[kind] = float(np.mean(vals)) if vals else float("nan")
    out["ceiling"] = float(np.mean([r.ceiling for r in results]))
    return out


def summarise_by_tag(results: Sequence[QueryResult]) -> dict[str, dict[str, float]]:
    """``summarise`` of the queries carrying each tag (tags in ``TAGS`` order; absent tags left out)."""
    return {tag: summarise([r for r in results if tag in r.tags]) for tag in TAGS
            if any(tag in r.tags for r in results)}


def write_results_csv(rows: Sequence[tuple[str, QueryResult]], path: Path) -> Path:
    """Per-query results (one row per label and query) for analysts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["run", "qid", "text", "tags", "meant", "all_meant", "colour_category", "colour", "category",
                    "pattern", "ceiling", "returned"])
        for label, r in rows:
            w.writerow([label, r.qid, r.text, ",".join(r.tags), ";".join(f"{k}={v}" for k, v in r.meant.items()),
                        r.all_meant, r.colour_category, r.per_kind.get("colour", ""), r.per_kind.get("category", ""),
                        r.per_kind.get("pattern", ""), r.ceiling, " ".join(r.returned)])
    return path


def fusion_queries(items: Sequence[Item], *, agree: bool, n: int = 30, photos: int = 2, seed: int = 0,
                   load: Any = None) -> list[Query]:
    """Text + photo queries built from catalogue items, for measuring how text and photos are fused.

    The text is "{colour} {category}" in the catalogue's words and is what the query means. With ``agree``
    the photos are ``photos`` other items of that colour and category; otherwise items of the same category in
    one *other* colour (the participant's words ask for red, their photos show blue ones), recorded in
    ``photo_meant``. The photo items are excluded from the answers. ``load`` turns an item into the image
    (default ``dressup.images.load_image`` of its path).
    """
    if load is None:
        from dressup.images import load_image

        def load(it: Item) -> Any:
            return load_image(it.image_path)

    rng = random.Random(seed)
    groups: dict[tuple[str, str], list[Item]] = {}
    for it in items:
        colour = value_of(it, "colour")
        if colour:
            groups.setdefault((colour, it.category), []).append(it)
    keys = sorted(k for k, v in groups.items() if len(v) >= photos)
    rng.shuffle(keys)
    out: list[Query] = []
    for colour, category in keys:
        if len(out) == n:
            break
        if agree:
            source, photo_colour = groups[(colour, category)], colour
        else:
            others = sorted(c for (c, cat), v in groups.items() if cat == category and c != colour and len(v) >= photos)
            if not others:
                continue
            photo_colour = rng.choice(others)
            source = groups[(photo_colour, category)]
        chosen = rng.sample(source, photos)
        out.append(Query(f"{'agree' if agree else 'disagree'}{len(out) + 1:03d}", f"{colour} {category}",
                         {"colour": colour, "category": category}, ("agree" if agree else "disagree",),
                         images=[load(it) for it in chosen], exclude=tuple(it.item_id for it in chosen),
                         photo_meant={} if agree else {"colour": photo_colour, "category": category}))
    return out
