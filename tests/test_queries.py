"""The participant-language query file, scoring against meant attributes, and arms that never crash on them."""
from __future__ import annotations

import copy
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest

from dressup.queries import (
    DEFAULT_QUERIES,
    GRID,
    TAGS,
    Query,
    QueryFileError,
    caption_word_queries,
    carries,
    fusion_queries,
    load_queries,
    run_queries,
    score,
    summarise,
    summarise_by_tag,
    vocabulary,
)
from dressup.records import Item

ROOT = Path(__file__).resolve().parent.parent
HELD_OUT = ROOT / "assets" / "queries-heldout.tsv"


def _item(i: int, category: str, colour: str, pattern: str) -> Item:
    attrs = (colour, pattern, "cotton")
    types = {colour: "colour", pattern: "texture", "cotton": "fabric"}
    return Item(f"img/{i:04d}.jpg", Path(f"/nowhere/{i}.jpg"), category, 1, attrs, types, "test",
                f"{category} with {colour} colour, {pattern} pattern")


def _demo_vocabulary() -> dict[str, set[str]]:
    """The demo catalogue's vocabulary, from the module that draws it (no build needed)."""
    from dressup.catalog import category_name
    from dressup.colours import CATALOGUE_COLOURS
    from dressup.democatalog import CATEGORIES, PATTERNS

    return {"colour": set(CATALOGUE_COLOURS), "category": {category_name(c.name) for c in CATEGORIES},
            "pattern": set(PATTERNS)}


def _words(text: str) -> str:
    return " " + re.sub(r"[^a-z]+", " ", text.lower()) + " "


# ---------------------------------------------------------------------------------------------- the query file
def test_query_file_has_150_hard_queries_in_the_demo_vocabulary():
    queries = load_queries(DEFAULT_QUERIES, _demo_vocabulary())
    assert len(queries) >= 150
    tags = Counter(t for q in queries for t in q.tags)
    assert tags["colour-syn"] >= 60 and tags["category-syn"] >= 60 and tags["pattern-syn"] >= 20
    assert min(tags[t] for t in ("sentence", "typo", "caps", "emoji", "negation")) >= 8
    assert tags["emoji-only"] >= 3
    vocab = _demo_vocabulary()
    assert {q.meant["colour"] for q in queries} == vocab["colour"]
    assert {q.meant["category"] for q in queries} == vocab["category"]
    assert {q.meant["pattern"] for q in queries if "pattern" in q.meant} == vocab["pattern"]


def test_synonym_tags_are_true_and_every_unsaid_meaning_is_tagged():
    """A "-syn" query never contains the catalogue's word for what it means; a query that does not say the word
    says why (a synonym, a typo or an emoji)."""
    for q in load_queries():
        words = _words(q.text)
        for kind, value in q.meant.items():
            said = f" {value} " in words
            if f"{kind}-syn" in q.tags:
                assert not said, (q.qid, q.text, kind)
            elif not said:
                assert {"typo", "emoji"} & set(q.tags), (q.qid, q.text, kind)


def test_emoji_only_queries_hold_no_letters():
    only = [q for q in load_queries() if "emoji-only" in q.tags]
    assert only and all(not re.search(r"[A-Za-z]", q.text) for q in only)


@pytest.mark.parametrize("row, message", [
    ("q1\tred frock\tcrimson\tdress\t\t", r"line 3: colour 'crimson' is not in the catalogue"),
    ("q1\tred frock\tred\tdress\t\tslang", r"line 3: unknown tag"),
    ("q1\tred frock\tred\tdress", r"line 3: expected 6 tab-separated columns"),
    ("q1\tred frock\t\tdress\t\t", r"line 3: every query must mean a colour and a category"),
])
def test_a_bad_query_line_is_named_with_the_fix(tmp_path, row, message):
    path = tmp_path / "q.tsv"
    path.write_text("# comment\nid\ttext\tcolour\tcategory\tpattern\ttags\n" + row + "\n", encoding="utf-8")
    with pytest.raises(QueryFileError, match=message):
        load_queries(path, _demo_vocabulary())


def test_duplicate_ids_and_missing_header_are_refused(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text("id\ttext\tcolour\tcategory\tpattern\ttags\nq1\ta\tred\tdress\t\t\nq1\tb\tred\tdress\t\t\n")
    with pytest.raises(QueryFileError, match="line 3: id 'q1' is used twice"):
        load_queries(path)
    path.write_text("q1\ta\tred\tdress\t\t\n")
    with pytest.raises(QueryFileError, match="header"):
        load_queries(path)
    with pytest.raises(QueryFileError, match="does not exist"):
        load_queries(tmp_path / "missing.tsv")


# ---------------------------------------------------------------------------------------------- scoring
def test_score_counts_items_carrying_every_meant_attribute_and_each_kind():
    got = [_item(0, "dress", "red", "striped"), _item(1, "dress", "blue", "striped"),
           _item(2, "skirt", "red", "striped"), _item(3, "dress", "red", "solid")]
    all_meant, per_kind = score(got, {"colour": "red", "category": "dress", "pattern": "striped"})
    assert all_meant == 1
    assert per_kind == {"colour": 3, "category": 3, "pattern": 3}
    # A colour name that is also typed as something else is not that colour.
    odd = Item("x", Path("/x"), "dress", 3, ("red",), {"red": "fabric"}, "test", "")
    assert not carries(odd, "colour", "red")


def test_caption_word_queries_use_catalogue_words_and_can_score_four():
    items = [_item(i, cat, col, pat) for i, (cat, col, pat) in enumerate(
        [("dress", "red", "striped")] * 4 + [("skirt", "blue", "dotted")] * 5 + [("tee", "green", "floral")] * 3)]
    queries = caption_word_queries(items, n=50, seed=0)
    assert sorted(q.text for q in queries) == ["blue dotted skirt", "red striped dress"]  # the tee occurs 3 times
    assert caption_word_queries(items, n=1, seed=3)[0].text == caption_word_queries(items, n=1, seed=3)[0].text
    assert vocabulary(items)["pattern"] == {"striped", "dotted", "floral"}


def test_fusion_queries_disagree_only_in_colour_and_never_count_their_own_photos():
    items = [_item(i, cat, col, "solid") for i, (cat, col) in enumerate(
        [("dress", "red")] * 3 + [("dress", "blue")] * 3 + [("skirt", "green")] * 2)]
    agree = fusion_queries(items, agree=True, n=10, load=lambda it: it.item_id)
    disagree = fusion_queries(items, agree=False, n=10, load=lambda it: it.item_id)
    assert {q.text for q in agree} == {"red dress", "blue dress", "green skirt"}
    assert {q.text for q in disagree} == {"red dress", "blue dress"}  # green skirts have no other colour
    for q in agree + disagree:
        assert len(q.images) == 2 and list(q.exclude) == q.images
    for q in disagree:
        assert q.photo_meant["colour"] != q.meant["colour"] and q.photo_meant["category"] == q.meant["category"]


@dataclass
class _Index:
    items: list[Item]


@dataclass
class _RankedArm:
    """A stand-in with the retrieval arm's ranking protocol: returns rows in a fixed order."""

    name: str
    index: _Index
    order: list[int]
    asked: list[int] = field(default_factory=list)

    def rank_rows(self, pref, k):
        self.asked.append(k)
        return np.array(self.order[:k]), np.zeros(k)


def test_run_queries_skips_the_photos_own_items_and_reports_the_ceiling():
    items = [_item(0, "dress", "red", "solid"), _item(1, "dress", "red", "solid"), _item(2, "skirt", "red", "solid"),
             _item(3, "dress", "red", "solid"), _item(4, "dress", "blue", "solid"), _item(5, "dress", "red", "solid")]
    arm = _RankedArm("fixed", _Index(items), [0, 1, 2, 3, 4, 5])
    q = Query("f1", "red dress", {"colour": "red", "category": "dress"}, images=["photo"], exclude=(items[0].item_id,))
    (res,) = run_queries(arm, [q])
    assert arm.asked == [GRID + 1]
    assert res.returned == [items[i].item_id for i in (1, 2, 3, 4)]
    assert (res.all_meant, res.per_kind) == (2, {"colour": 3, "category": 3})
    assert res.ceiling == 3  # items 1, 3, 5: the excluded photo item does not count
    summary = summarise([res])
    assert summary["all"] == 2 and np.isnan(summary["pattern"])
    assert summarise_by_tag([res]) == {}
    assert set(TAGS) >= {"colour-syn", "negation"}


# ---------------------------------------------------------------------------------------------- the demo's arms
# ``demo_arms`` is the session's one load of the demo build's arms (tests/conftest.py), shared with every other
# test that needs them.
PHOTOS = Path(__file__).resolve().parents[1] / "assets" / "photos"


def _photos(n: int):
    from dressup.images import load_image

    paths = sorted(PHOTOS.glob("*.jpg"))[:n]
    if len(paths) < n:
        pytest.skip(f"needs {n} real photos in {PHOTOS}")
    return [load_image(p) for p in paths]


@pytest.mark.demo
def test_no_query_crashes_or_returns_fewer_than_four_items(demo_arms):
    from dressup.records import Preference

    photos = _photos(2)
    hard = [
        Preference(text="", images=photos),  # empty text with photos
        Preference(text="   \n\t ", images=photos[:1]),  # whitespace only with a photo
        Preference(images=photos),  # photos only
        Preference(text="👗❤️✨🔥"),  # emoji only
        Preference(text="🖤", images=photos),
        Preference(text="red dress " * 1000),  # 10 000 characters
        Preference(text="x" * 10_000),
        Preference(text="qwzx flibbertigibbet snorkelwacky"),  # unknown words
        Preference(text="Ω≈ç√∫˜µ≤≥÷ 中文 العربية"),
    ]
    assert len(hard[5].text) == 10_000
    # Every arm, the generative one included: its reading, drawing of 12 candidates and ranking as the study has
    # them, at 2 denoising steps instead of 25 (the text reaches the model the same way at any step count, and
    # 9 grids at 25 steps took two minutes of the suite).
    arms = dict(demo_arms)
    drawer = copy.copy(arms["generative"].generator)
    drawer.steps = 2
    arms["generative"] = replace(arms["generative"], generator=drawer)
    for name, arm in arms.items():
        for pref in hard:
            shown = arm.recommend(pref, seed=0)
            assert len(shown) == 4, (name, pref.text[:30])
            assert len({s.item_id for s in shown}) == 4, (name, pref.text[:30])


@pytest.mark.demo
def test_finetuned_reads_participants_words_and_catalogue_words_better_than_the_baseline(demo_arms):
    """Issue 10's bar: on the participant-language file the finetuned arm returns at least 2.5 of 4 items with the
    meant colour and category (measured 2.75 when written; baseline 0.34), and more than the baseline does."""
    from dressup.evaluate import RememberedTexts, prefetch
    from dressup.queries import CORE

    # The arms as the app has them, with text embeddings computed in one batch (the same numbers, faster).
    fine_arm, base_arm = (replace(demo_arms[n], encoder=RememberedTexts(demo_arms[n].encoder))
                          for n in ("finetuned", "baseline"))
    queries = load_queries(DEFAULT_QUERIES, vocabulary(fine_arm.index.items))
    scores = {}
    for name, arm in (("finetuned", fine_arm), ("baseline", base_arm)):
        prefetch(arm, queries)
        results = run_queries(arm, queries)
        assert len(results) == len(queries) and all(len(r.returned) == GRID for r in results)
        scores[name] = summarise(results)
    print({n: (round(s[CORE], 3), round(s["all"], 3)) for n, s in scores.items()})
    assert scores["finetuned"][CORE] >= 2.5
    assert scores["finetuned"][CORE] > scores["baseline"][CORE] + 1.0
    words = caption_word_queries(fine_arm.index.items, n=50, seed=0)
    prefetch(fine_arm, words)
    prefetch(base_arm, words)
    fine = summarise(run_queries(fine_arm, words))
    base = summarise(run_queries(base_arm, words))
    assert fine["all"] > base["all"]


@pytest.mark.demo
def test_finetuned_reads_held_out_words_no_reading_was_tuned_on(demo_arms):
    """Issue 20: on assets/queries-heldout.tsv (80 sentences written before any tuning against them, other garment
    words and sentence shapes) the finetuned arm returns at least 2.5 of 4 items with the meant colour and
    category; the tuned file's figure is printed beside it."""
    from dressup.evaluate import RememberedTexts, prefetch
    from dressup.queries import CORE

    arm = replace(demo_arms["finetuned"], encoder=RememberedTexts(demo_arms["finetuned"].encoder))
    vocab = vocabulary(arm.index.items)
    figures = {}
    for name, path in (("held-out", HELD_OUT), ("tuned", DEFAULT_QUERIES)):
        queries = load_queries(path, vocab)
        prefetch(arm, queries)
        figures[name] = summarise(run_queries(arm, queries))[CORE]
    print(f"finetuned, meant colour and category of 4: held-out {figures['held-out']:.2f}, "
          f"tuned {figures['tuned']:.2f}")
    assert figures["held-out"] >= 2.5
