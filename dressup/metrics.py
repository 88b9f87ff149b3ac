"""The model-selection metrics as pure numpy: Table 1's surfacing accuracies, In-shop top-k, PCA and spread.

Every function takes embeddings that are already computed (L2-normalised rows), so the metrics are tested on
hand-made matrices and never load a model; ``dressup.evaluate`` computes the embeddings and writes the reports.
What each metric means, ties included, is in ``dressup.evaluate``'s docstring. numpy only: no torch here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

TIE_TOL = 1e-6  # cosines this close to the best count as a tie (float32 matmul rounding is ~1e-7)
KS = (5, 10, 20, 30, 50)
CHUNK = 1024  # rows of the similarity matrix computed at once: memory stays flat whatever the split size


class EvaluationError(ValueError):
    """An evaluation cannot run on what it was given; the message names the problem and the fix."""


@dataclass
class Table1Row:
    """One encoder's Table 1 figures on one split (``captions`` counts unique captions)."""

    encoder: str
    split: str
    images: int
    captions: int
    mean_cosine: float
    text_accuracy: float
    attribute_accuracy: float


def unique_captions(captions: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The distinct captions in order of first appearance, and each input's row among them."""
    order: dict[str, int] = {}
    own = np.fromiter((order.setdefault(c, len(order)) for c in captions), dtype=np.int64, count=len(captions))
    return list(order), own


def caption_attributes(item_attributes: Sequence[frozenset[str]], own: np.ndarray, n_captions: int
                       ) -> list[frozenset[str]]:
    """What each unique caption carries: the attributes shared by every item that has that caption."""
    out: list[frozenset[str] | None] = [None] * n_captions
    for attrs, c in zip(item_attributes, own):
        out[c] = attrs if out[c] is None else out[c] & attrs
    return [a if a is not None else frozenset() for a in out]


def nearest_caption_ties(sims: np.ndarray, tol: float = TIE_TOL) -> np.ndarray:
    """Bool [images, captions]: the captions tied for nearest (within ``tol`` of each row's best)."""
    return sims >= sims.max(axis=1, keepdims=True) - tol


def surfacing_accuracy(image_emb: np.ndarray, caption_emb: np.ndarray, own: np.ndarray,
                       item_attributes: Sequence[frozenset[str]], caption_attrs: Sequence[frozenset[str]] | None = None,
                       *, tol: float = TIE_TOL) -> tuple[float, float]:
    """(text surfacing accuracy, attribute surfacing accuracy) from embeddings (see ``dressup.evaluate``).

    ``image_emb`` [N, D] and ``caption_emb`` [U, D] (the split's unique captions) are L2-normalised;
    ``own[i]`` is image i's caption row; ``item_attributes[i]`` its attributes. Ties share the credit.
    """
    image_emb, caption_emb = np.asarray(image_emb, np.float32), np.asarray(caption_emb, np.float32)
    n = len(image_emb)
    if n == 0 or len(caption_emb) == 0:
        raise EvaluationError("no images or captions to evaluate; the split is empty — pick another --split")
    if caption_attrs is None:
        caption_attrs = caption_attributes(item_attributes, own, len(caption_emb))
    vocab = sorted(set().union(*item_attributes, *caption_attrs))
    col = {a: j for j, a in enumerate(vocab)}
    carried = np.zeros((len(caption_emb), max(1, len(vocab))), np.float32)  # caption x attribute
    for c, attrs in enumerate(caption_attrs):
        carried[c, [col[a] for a in attrs]] = 1.0
    text_hits = np.zeros(n)
    attr_share = np.full(n, np.nan)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        tied = nearest_caption_ties(image_emb[start:stop] @ caption_emb.T, tol).astype(np.float32)
        n_tied = tied.sum(axis=1)
        text_hits[start:stop] = tied[np.arange(stop - start), own[start:stop]] / n_tied
        mean_carried = (tied @ carried) / n_tied[:, None]  # per attribute: share of tied captions carrying it
        for i in range(start, stop):
            attrs = item_attributes[i]
            if attrs:
                attr_share[i] = mean_carried[i - start, [col[a] for a in attrs]].mean()
    has_attrs = ~np.isnan(attr_share)
    attribute_accuracy = float(attr_share[has_attrs].mean()) if has_attrs.any() else float("nan")
    return float(text_hits.mean()), attribute_accuracy


def mean_pair_cosine(image_emb: np.ndarray, caption_emb: np.ndarray, own: np.ndarray) -> float:
    """Mean cosine of each image with its own caption (rows L2-normalised)."""
    return float(np.einsum("nd,nd->n", np.asarray(image_emb, np.float32),
                           np.asarray(caption_emb, np.float32)[own]).mean())


def table1_from_embeddings(encoder: str, split: str, image_emb: np.ndarray, caption_emb: np.ndarray,
                           own: np.ndarray, item_attributes: Sequence[frozenset[str]]) -> Table1Row:
    """One Table 1 row from precomputed embeddings (unique captions in ``caption_emb``)."""
    text_acc, attr_acc = surfacing_accuracy(image_emb, caption_emb, own, item_attributes)
    return Table1Row(encoder, split, len(image_emb), len(caption_emb), mean_pair_cosine(image_emb, caption_emb, own),
                     text_acc, attr_acc)


def topk_accuracy(query_emb: np.ndarray, query_garments: Sequence[str], gallery_emb: np.ndarray,
                  gallery_garments: Sequence[str], ks: Sequence[int] = KS) -> dict[int, float]:
    """Share of queries with an image of their own garment among the top k gallery images, for each k.

    Queries whose garment has no gallery image cannot hit and are left out (DeepFashion's protocol has none).
    ``k`` larger than the gallery is capped at the gallery size. Equal scores keep gallery order.
    """
    gallery_garments = np.asarray(gallery_garments, dtype=object)
    query_garments = np.asarray(query_garments, dtype=object)
    keep = np.isin(query_garments, gallery_garments)
    if not keep.any():
        raise EvaluationError("no query garment has a gallery image; is this an In-shop query/gallery partition?")
    q = np.asarray(query_emb, np.float32)[keep]
    qg = query_garments[keep]
    g = np.asarray(gallery_emb, np.float32)
    depth = min(max(ks), len(g))
    first_hit = np.full(len(q), np.iinfo(np.int64).max)  # 0-based rank of the first own-garment image
    for start in range(0, len(q), CHUNK):
        sims = q[start:start + CHUNK] @ g.T
        top = np.argsort(-sims, axis=1, kind="stable")[:, :depth]
        hits = gallery_garments[top] == qg[start:start + CHUNK, None]
        found = hits.any(axis=1)
        first_hit[start:start + CHUNK][found] = hits.argmax(axis=1)[found]
    return {int(k): float((first_hit < min(k, len(g))).mean()) for k in ks}


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first two principal components of rows of ``x`` and their share of the variance."""
    x = np.asarray(x, np.float64)
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    var = s**2
    ratio = var[:2] / var.sum() if var.sum() > 0 else np.zeros(2)
    coords = centred @ vt[:2].T
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
        ratio = np.pad(ratio, (0, 2 - len(ratio)))
    return coords, ratio


def mean_radius(x: np.ndarray) -> float:
    """Mean Euclidean distance of the rows of ``x`` from their centroid (the spread PCA panels print)."""
    x = np.asarray(x, np.float64)
    return float(np.linalg.norm(x - x.mean(axis=0), axis=1).mean())
