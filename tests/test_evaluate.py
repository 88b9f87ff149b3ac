"""Model-selection metrics: hand-computed answers on tiny embedding matrices, and the demo build's Table 1."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from dressup.evaluate import (
    KS,
    EvaluationError,
    caption_attributes,
    mean_pair_cosine,
    mean_radius,
    pca_figure,
    plot_pca,
    surfacing_accuracy,
    table1_from_embeddings,
    topk_accuracy,
    unique_captions,
)

ROOT = Path(__file__).resolve().parent.parent


def _unit(rows):
    x = np.asarray(rows, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# Four images; items 0 and 2 share the caption "red solid" (a duplicate). Captions "blue striped" and
# "red striped" have identical embeddings, so any image nearer to them than to "red solid" sees a tie.
CAPTIONS = ["red solid", "blue striped", "red solid", "red striped"]
ATTRS = [frozenset({"red", "solid"}), frozenset({"blue", "striped"}), frozenset({"red", "solid"}),
         frozenset({"red", "striped"})]
CAPTION_EMB = _unit([[1, 0, 0], [0, 1, 0], [0, 1, 0]])  # unique captions in order of first appearance
IMAGE_EMB = _unit([
    [1, 0, 0],  # nearest: "red solid" (its own)                      -> text 1,   attributes 2/2
    [0, 1, 0],  # tie "blue striped" (own) / "red striped"            -> text 1/2, blue 1/2 + striped 1 -> 3/4
    [0.6, 0.8, 0],  # tie "blue striped" / "red striped", own is "red solid" -> text 0, red 1/2 + solid 0 -> 1/4
    [0, 0, 1],  # all three tied (cosine 0), own "red striped"        -> text 1/3, red 2/3 + striped 2/3 -> 2/3
])


def test_unique_captions_keep_first_appearance_and_map_duplicates():
    unique, own = unique_captions(CAPTIONS)
    assert unique == ["red solid", "blue striped", "red striped"]
    assert own.tolist() == [0, 1, 0, 2]


def test_surfacing_accuracies_match_hand_computed_answers_with_ties_and_duplicates():
    _, own = unique_captions(CAPTIONS)
    text_acc, attr_acc = surfacing_accuracy(IMAGE_EMB, CAPTION_EMB, own, ATTRS)
    assert text_acc == pytest.approx((1 + 1 / 2 + 0 + 1 / 3) / 4)
    assert attr_acc == pytest.approx((1 + 3 / 4 + 1 / 4 + 2 / 3) / 4)
    assert mean_pair_cosine(IMAGE_EMB, CAPTION_EMB, own) == pytest.approx((1 + 1 + 0.6 + 0) / 4, abs=1e-6)


def test_tie_break_does_not_depend_on_caption_order():
    _, own = unique_captions(CAPTIONS)
    perm = np.array([2, 0, 1])  # caption c moves to row where(perm == c)
    inverse = np.argsort(perm)
    got = surfacing_accuracy(IMAGE_EMB, CAPTION_EMB[perm], inverse[own], ATTRS)
    assert got == pytest.approx(surfacing_accuracy(IMAGE_EMB, CAPTION_EMB, own, ATTRS))


def test_collapsed_text_tower_scores_one_over_the_number_of_captions():
    captions = ["a", "b", "c", "d", "a"]
    unique, own = unique_captions(captions)
    constant = np.tile(_unit([[1, 1, 0]]), (len(unique), 1))
    images = _unit(np.eye(3)[[0, 1, 2, 0, 1]] + 0.1)
    text_acc, _ = surfacing_accuracy(images, constant, own, [frozenset({"x"})] * 5)
    assert text_acc == pytest.approx(1 / len(unique))


def test_a_duplicate_caption_counts_as_a_hit_for_every_image_that_has_it():
    # Two garments with the same caption and the same picture: both surface "their" caption.
    unique, own = unique_captions(["red dress", "red dress", "blue skirt"])
    row = table1_from_embeddings("enc", "test", _unit([[1, 0], [1, 0], [0, 1]]), _unit([[1, 0], [0, 1]]), own,
                                 [frozenset({"red"}), frozenset({"red"}), frozenset({"blue"})])
    assert (row.text_accuracy, row.attribute_accuracy, row.captions, row.images) == (1.0, 1.0, 2, 3)


def test_a_caption_carries_only_the_attributes_all_its_items_share():
    _, own = unique_captions(["x", "x", "y"])
    carried = caption_attributes([frozenset({"a", "b"}), frozenset({"a", "c"}), frozenset()], own, 2)
    assert carried == [frozenset({"a"}), frozenset()]


def test_images_without_attributes_are_left_out_of_attribute_accuracy():
    _, own = unique_captions(["x", "y"])
    _, attr_acc = surfacing_accuracy(_unit([[1, 0], [1, 0]]), _unit([[1, 0], [0, 1]]), own,
                                     [frozenset({"a"}), frozenset()])
    assert attr_acc == 1.0


def test_surfacing_on_an_empty_split_names_the_fix():
    with pytest.raises(EvaluationError, match="--split"):
        surfacing_accuracy(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, int), [])


# ---------------------------------------------------------------------------------------------- top-k
def test_topk_is_one_for_an_encoder_that_embeds_each_garment_at_its_own_point():
    garments = [f"g{i}" for i in range(60)]
    basis = np.eye(64, dtype=np.float32)
    gallery = np.concatenate([basis[:60], basis[:60]])  # two gallery images per garment
    acc = topk_accuracy(basis[:60], garments, gallery, garments + garments)
    assert acc == {k: 1.0 for k in KS}


def test_topk_matches_hand_computed_ranks_and_is_monotone_in_k():
    # Query q sees its garment's first gallery image at rank r (0-based) below r distractors.
    gallery_ids, gallery = [], []
    queries, query_ids = [], []
    dim = 200
    ranks = {"a": 0, "b": 7, "c": 25, "d": 45, "e": 80}
    for j, (g, r) in enumerate(ranks.items()):
        q = np.zeros(dim, np.float32)
        q[j] = 1.0
        queries.append(q)
        query_ids.append(g)
        for d in range(r):  # distractors closer to q than its own image
            v = np.zeros(dim, np.float32)
            v[j], v[10 + len(gallery) % 150] = 0.99, 0.14
            gallery.append(v)
            gallery_ids.append(f"other-{g}-{d}")
        own = np.zeros(dim, np.float32)
        own[j], own[199] = 0.5, 0.866
        gallery.append(own)
        gallery_ids.append(g)
    acc = topk_accuracy(np.array(queries), query_ids, np.array(gallery), gallery_ids)
    assert acc == {5: 1 / 5, 10: 2 / 5, 20: 2 / 5, 30: 3 / 5, 50: 4 / 5}
    rng = np.random.default_rng(0)
    random_acc = topk_accuracy(rng.normal(size=(40, 8)), [f"g{i % 10}" for i in range(40)],
                               rng.normal(size=(100, 8)), [f"g{i % 10}" for i in range(100)])
    values = [random_acc[k] for k in KS]
    assert values == sorted(values) and values[-1] == 1.0  # 50 of 100 gallery images cover every garment


def test_topk_without_any_gallery_match_names_the_problem():
    with pytest.raises(EvaluationError, match="gallery"):
        topk_accuracy(np.eye(2), ["a", "b"], np.eye(2), ["c", "d"])


# ---------------------------------------------------------------------------------------------- PCA
def test_pca_figure_has_one_panel_per_encoder_with_its_radius(tmp_path):
    rng = np.random.default_rng(1)
    panels = {"baseline": _unit(rng.normal(size=(30, 8))), "finetuned": _unit(rng.normal(size=(30, 8))),
              "stn": _unit(rng.normal(size=(30, 8)) * [5, 1, 1, 1, 1, 1, 1, 1])}
    labels = ["dress", "skirt", "tee"] * 10
    fig = pca_figure(panels, labels, "test")
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titled) == 3
    assert all(f"{mean_radius(panels[name]):.3f}" in t for name, t in zip(panels, titled))
    out = plot_pca(panels, labels, "test", tmp_path / "pca.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mean_radius_is_the_mean_distance_from_the_centroid():
    assert mean_radius(np.array([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(1.0)
    assert mean_radius(np.ones((5, 3))) == 0.0


# ---------------------------------------------------------------------------------------------- shared text towers
TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}


def test_encoders_sharing_a_text_tower_share_caption_embeddings(tmp_path):
    import copy
    import json

    import torch

    from dressup.config import EncoderSpec
    from dressup.encoders import load_encoder
    from dressup.evaluate import RememberedTexts, text_tower_key

    cfg = tmp_path / "tiny-eval-clip.json"
    cfg.write_text(json.dumps(TINY_CLIP))
    a = load_encoder(EncoderSpec(name="a", spec=f"config:{cfg}"))
    b = copy.deepcopy(a)
    with torch.no_grad():  # b: another image tower and temperature, the same text tower
        for p in b.module.visual.parameters():
            p.add_(0.5)
        b.module.logit_scale.add_(1.0)
    assert text_tower_key(a) == text_tower_key(b)
    assert torch.equal(a.encode_texts(["red dress"]), b.encode_texts(["red dress"]))
    with torch.no_grad():
        b.module.text_projection.add_(0.01)
    assert text_tower_key(a) != text_tower_key(b)

    remembered = RememberedTexts(a)
    remembered.remember(["red dress", "blue skirt", ""])
    assert set(remembered._memo) == {"red dress", "blue skirt"}
    both = remembered.encode_texts(["blue skirt", "red dress", "green tee"])
    assert torch.allclose(both, a.encode_texts(["blue skirt", "red dress", "green tee"]), atol=1e-6)
    assert remembered.embed_dim == a.embed_dim  # everything else is the encoder's own


# ---------------------------------------------------------------------------------------------- demo build
@pytest.fixture(scope="session")
def demo_study():
    from dressup.config import load_study
    from dressup.demo import ensure_demo_build

    study = load_study(ROOT / "assets" / "demo.toml")
    ensure_demo_build(study, progress=False)
    return study


@pytest.fixture(scope="module")
def demo_evaluation(demo_study, tmp_path_factory):
    """``python -m dressup evaluate`` on the demo build, Table 1 and top-k only (the fast parts), run once."""
    import contextlib
    import io
    from argparse import Namespace

    from dressup.evaluate import main

    out = tmp_path_factory.mktemp("model-selection")
    # The namespace dressup.cli parses for `python -m dressup evaluate`.
    args = Namespace(study=str(demo_study.path), encoders=["baseline", "finetuned", "stn"], split="test",
                     queries=None, out=str(out), pca_n=120, parts=["table1", "topk"])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(args)
    return code, printed.getvalue(), out


@pytest.mark.demo
def test_finetuned_beats_baseline_on_text_and_attribute_surfacing(demo_evaluation):
    _, printed, out = demo_evaluation
    print(printed)
    with open(out / "table1.csv", newline="") as f:
        rows = {r["encoder"]: r for r in csv.DictReader(f)}
    for metric in ("text_accuracy", "attribute_accuracy"):
        assert float(rows["finetuned"][metric]) > float(rows["baseline"][metric]), metric


@pytest.mark.demo
def test_evaluate_command_prints_table1_and_writes_pca_and_topk(demo_evaluation):
    code, printed, out = demo_evaluation
    assert code == 0
    assert "text surfacing acc." in printed and "finetuned" in printed
    with open(out / "table1.csv", newline="") as f:
        assert [r["encoder"] for r in csv.DictReader(f)] == ["baseline", "finetuned", "stn"]
    for png in ("pca-images.png", "pca-texts.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    with open(out / "topk.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    for row in rows:
        values = [float(row[f"top-{k}"]) for k in KS]
        assert values == sorted(values)
    assert "Table 1" in (out / "SUMMARY.md").read_text()
