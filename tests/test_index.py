"""The index: exact and HNSW search, filters inside the search, stale manifests rebuilt."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dressup.index import NotEnoughItems, VectorIndex, choose_kind, load_or_build, reciprocal_rank_fusion


def _vectors(n=500, d=32, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_search_finds_the_query_itself_first(kind):
    v = _vectors()
    index = VectorIndex(v, kind)
    rows, scores = index.search(v[17], 4)
    assert rows[0] == 17 and scores[0] == pytest.approx(1.0, abs=1e-5)
    assert list(scores) == sorted(scores, reverse=True)


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_a_filter_is_applied_inside_the_search_and_still_gives_k_items(kind):
    v = _vectors()
    index = VectorIndex(v, kind)
    allowed = np.zeros(len(v), dtype=bool)
    allowed[::50] = True  # 10 rows
    rows, _ = index.search(v[17], 4, allowed)
    assert len(rows) == 4 and all(allowed[r] for r in rows)
    exact = np.flatnonzero(allowed)[np.argsort(-(index.vectors[allowed] @ index.vectors[17]))[:4]]
    assert set(rows) == set(exact)


def test_too_few_allowed_items_is_an_error_not_a_short_list():
    index = VectorIndex(_vectors(), "exact")
    allowed = np.zeros(500, dtype=bool)
    allowed[:3] = True
    with pytest.raises(NotEnoughItems, match="only 3"):
        index.search(index.vectors[0], 4, allowed)


def test_auto_picks_exact_for_small_and_hnsw_for_large_catalogues():
    assert choose_kind("auto", 1000, 200_000) == "exact"
    assert choose_kind("auto", 800_000, 200_000) == "hnsw"
    with pytest.raises(ValueError):
        choose_kind("ivf?", 10, 10)


def test_reciprocal_rank_fusion_rewards_items_high_in_several_lists():
    assert reciprocal_rank_fusion([[1, 2, 3], [2, 1, 4], [2, 5, 6]])[:2] == [2, 1]


def test_a_stale_index_is_rebuilt(tmp_path):
    from dressup.catalog import load_catalog
    from dressup.democatalog import build_demo_catalogue
    from dressup.encoders import load_encoder

    build_demo_catalogue(tmp_path / "cat", size=40, progress=False)
    cat = load_catalog(tmp_path / "cat")
    enc = load_encoder("config:assets/models/dressup-demo-small.json")
    first = load_or_build(tmp_path / "idx", enc, cat.items, cat.hash(), progress=False)
    built_at = json.loads((tmp_path / "idx" / "manifest.json").read_text())["built_at"]
    again = load_or_build(tmp_path / "idx", enc, cat.items, cat.hash(), progress=False)
    assert again.manifest.built_at == built_at  # reused
    np.testing.assert_allclose(again.index.vectors, first.index.vectors)
    fewer = load_or_build(tmp_path / "idx", enc, cat.items[:30], cat.hash(), progress=False)
    assert len(fewer.index) == 30  # different items: rebuilt
    other = load_or_build(tmp_path / "idx", enc, cat.items[:30], "another-catalogue", progress=False)
    assert other.manifest.catalogue_hash == "another-catalogue"
