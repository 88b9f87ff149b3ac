"""Model selection: the paper's Table 1, PCA figures, In-shop top-k, and what participants' own words retrieve.

``python -m dressup evaluate`` runs everything below on a study's encoders and writes one folder
(``results/model-selection/`` by default) holding CSV files, Markdown tables, PNG figures and ``SUMMARY.md``,
a short text a researcher can paste into a paper.

**Table 1** (the paper's model-selection table), for each encoder on one catalogue split:

* *mean cosine*: the mean cosine similarity of each image with its own caption.
* *text surfacing accuracy*: the share of images whose nearest caption, among all captions of the split, is
  their own. Captions are compared as text, so the candidates are the split's **unique** captions: an image
  whose nearest caption is textually identical to its own (another garment's duplicate caption) is a hit.
  This is also what makes the metric cheap on a catalogue that repeats captions (the demo's does).
* *attribute surfacing accuracy*: the share of an image's attributes (``Item.attributes``) that its nearest
  caption carries, averaged over images that have attributes. A caption carries the attributes that every
  item with that caption has (for DeepFashion-style captions, made from attributes, that is all of them).
* *ties*: captions whose cosine is within ``TIE_TOL`` of the best are all "nearest"; an image's score is
  the mean over them, which is the expected score under a uniformly random tie-break. So an encoder that maps
  every caption to one point scores ``1 / #captions``, not whatever the first caption happens to earn.

The paper's own Table 1 figures (``PAPER_TABLE1``) are reference data: printed beside ours, never mixed into
our rows, and only when the catalogue is DeepFashion.

**PCA figures** (the paper's Figures 5-6): image and text embeddings of the first N items of the split, one
panel per encoder, each with its *mean embedding radius*: the mean Euclidean distance of the (L2-normalised)
embeddings from their centroid in the full space. Normalised embeddings all have norm 1, so their spread
around the centroid is what says whether an encoder separates garments (large) or collapses them (small).

**In-shop top-k** (k = 5, 10, 20, 30, 50): DeepFashion's In-shop protocol: each query image searches the
gallery; a hit at k when an image of the query's own garment is among the top k.

The participant-language benchmark, the colour-grounding ablation, the text + photo fusion measurement and the
real-photo grids run the study's arms through the same path as the app (``Preference`` ->
``RetrievalArm``); see ``dressup.queries`` for the query file and the scoring.
"""
from __future__ import annotations

import csv
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

TIE_TOL = 1e-6  # cosines this close to the best count as a tie (float32 matmul rounding is ~1e-7)
KS = (5, 10, 20, 30, 50)
CHUNK = 1024  # rows of the similarity matrix computed at once: memory stays flat whatever the split size

# The paper's Table 1 (DeepFashion test subset): cosine / text surfacing accuracy / attribute surfacing accuracy.
PAPER_TABLE1: tuple[tuple[str, float, float, float], ...] = (
    ("CLIP ViT-B/32", 0.276, 0.22, 0.589),
    ("FCLIP", 0.272, 0.074, 0.672),
    ("finetuned FCLIP", 0.288, 0.338, 0.819),
    ("STN-FCLIP", 0.284, 0.142, 0.707),
    ("Swin-FCLIP", 0.160, 0.058, 0.584),
    ("STN+Swin-FCLIP", 0.164, 0.047, 0.577),
)


class EvaluationError(ValueError):
    """An evaluation cannot run on what it was given; the message names the problem and the fix."""


# ============================================================================================== Table 1
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
    """(text surfacing accuracy, attribute surfacing accuracy) from embeddings (see the module docstring).

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


# ============================================================================================== In-shop top-k
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


# ============================================================================================== PCA
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


def pca_figure(panels: dict[str, np.ndarray], labels: Sequence[str], title: str) -> Any:
    """A matplotlib figure with one scatter panel per encoder (PCA of its embeddings, coloured by ``labels``).

    Each panel's title gives the encoder and its mean embedding radius; the axes the variance each component holds.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not panels:
        raise EvaluationError("no encoders to plot; pass at least one with --encoders")
    names = sorted(set(labels))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    colour_of = {n: cmap(i % cmap.N) for i, n in enumerate(names)}
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.0 * rows + 0.8), squeeze=False)
    for ax, (name, emb) in zip(axes.flat, panels.items()):
        coords, ratio = pca_2d(emb)
        ax.scatter(coords[:, 0], coords[:, 1], s=6, alpha=0.7, c=[colour_of[lab] for lab in labels], linewidths=0)
        ax.set_title(f"{name}\nmean radius {mean_radius(emb):.3f}", fontsize=10)
        ax.set_xlabel(f"PC1 ({ratio[0]:.0%})", fontsize=8)
        ax.set_ylabel(f"PC2 ({ratio[1]:.0%})", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        fig.delaxes(ax)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colour_of[n], label=n) for n in names]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(names), 6), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.1 if rows == 1 else 0.05, 1, 1))
    return fig


def plot_pca(panels: dict[str, np.ndarray], labels: Sequence[str], title: str, out: Path) -> Path:
    """``pca_figure`` saved as a PNG (matplotlib's Agg backend: no display needed)."""
    import matplotlib.pyplot as plt

    fig = pca_figure(panels, labels, title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# ============================================================================================== embedding a split
def encode_captions(encoder: Any, captions: Sequence[str], *, batch_size: int = 512, progress: bool = False
                    ) -> np.ndarray:
    """L2-normalised text embeddings [len(captions), D], in batches with a progress bar."""
    from tqdm.auto import tqdm

    out = np.zeros((len(captions), encoder.embed_dim), np.float32)
    for start in tqdm(range(0, len(captions), batch_size), desc=f"captions {encoder.name}", disable=not progress,
                      unit="batch"):
        out[start:start + batch_size] = encoder.encode_texts(list(captions[start:start + batch_size])).numpy()
    return out


@dataclass
class SplitEmbeddings:
    """One encoder's embeddings of a split: images [N, D], unique captions [U, D], and each image's caption row."""

    encoder: str
    image: np.ndarray
    captions: np.ndarray
    own: np.ndarray


def embed_split(encoder: Any, items: Sequence[Any], *, progress: bool = False,
                caption_cache: dict[str, np.ndarray] | None = None) -> SplitEmbeddings:
    """Image embeddings of ``items`` and text embeddings of their unique captions (each caption encoded once).

    ``caption_cache`` (keyed by ``text_tower_key``) lets encoders that share a text tower share the captions'
    embeddings too.
    """
    from dressup.index import embed_items

    unique, own = unique_captions([it.caption for it in items])
    image = embed_items(encoder, items, progress=progress)
    if caption_cache is None:
        captions = encode_captions(encoder, unique, progress=progress)
    else:
        key = f"{text_tower_key(encoder)}|{hash(tuple(unique))}"
        if key not in caption_cache:
            caption_cache[key] = encode_captions(encoder, unique, progress=progress)
        captions = caption_cache[key]
    return SplitEmbeddings(encoder.name, image, captions, own)


def table1(emb: SplitEmbeddings, items: Sequence[Any], split: str) -> Table1Row:
    """Table 1 row of one encoder from its split embeddings."""
    return table1_from_embeddings(emb.encoder, split, emb.image, emb.captions, emb.own,
                                  [frozenset(it.attributes) for it in items])


# ============================================================================================== report writing
def _fmt(x: Any, digits: int = 3) -> str:
    if isinstance(x, float):
        return "–" if math.isnan(x) else f"{x:.{digits}f}"
    return str(x)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table (floats rounded, NaN as an en dash)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c, digits) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(header: Sequence[str], rows: Sequence[Sequence[Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


TABLE1_HEADER = ("encoder", "mean cosine", "text surfacing acc.", "attribute surfacing acc.", "images",
                 "unique captions")


def table1_markdown(rows: Sequence[Table1Row]) -> str:
    return markdown_table(TABLE1_HEADER, [(r.encoder, r.mean_cosine, r.text_accuracy, r.attribute_accuracy,
                                           r.images, r.captions) for r in rows])


def paper_table1_markdown() -> str:
    return markdown_table(("encoder (paper)", "mean cosine", "text surfacing acc.", "attribute surfacing acc."),
                          PAPER_TABLE1)


# ============================================================================================== the study run
@dataclass
class Evaluation:
    """Everything one ``evaluate_study`` run measured; the same figures are in the files under ``out``."""

    out: Path
    split: str
    table1: list[Table1Row] = field(default_factory=list)
    radius: dict[str, tuple[float, float]] = field(default_factory=dict)  # encoder -> (images, captions)
    topk: dict[str, dict[int, float]] = field(default_factory=dict)
    benchmark: list[dict[str, Any]] = field(default_factory=list)
    by_tag: list[dict[str, Any]] = field(default_factory=list)
    fusion: list[dict[str, Any]] = field(default_factory=list)
    fusion_default: str = ""
    photos: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def _load_encoders(models: Any, names: Sequence[str], explicit: bool, result: Evaluation) -> dict[str, Any]:
    """Encoders by name. Named explicitly, a failure stops the run; by default, it is skipped and reported
    (a paper study lists Hub models that may not be downloaded yet)."""
    encoders = {}
    for name in names:
        try:
            encoders[name] = models.encoder(name)
        except Exception as e:  # noqa: BLE001 — re-raised when the researcher asked for this encoder
            if explicit:
                raise EvaluationError(f"encoder {name!r} could not be loaded: {e}") from e
            result.skipped[name] = str(e).splitlines()[0][:300]
            log.warning("skipping encoder %s: %s", name, e)
    if not encoders:
        raise EvaluationError(f"none of the encoders {list(names)} could be loaded ({result.skipped}); run "
                              "`python -m dressup doctor` to see what is missing")
    return encoders


def run_table1(encoders: dict[str, Any], items: Sequence[Any], split: str, out: Path, pca_n: int,
               result: Evaluation, *, deepfashion: bool, progress: bool) -> None:
    """Table 1 (CSV + Markdown) and the two PCA figures."""
    if not items:
        raise EvaluationError(f"split {split!r} has no items with images; pick another --split")
    pca_items = list(items[:pca_n])
    image_panels, text_panels = {}, {}
    caption_cache: dict[str, np.ndarray] = {}
    for name, enc in encoders.items():
        emb = embed_split(enc, items, progress=progress, caption_cache=caption_cache)
        result.table1.append(table1(emb, items, split))
        image_panels[name] = emb.image[:len(pca_items)]
        text_panels[name] = emb.captions[emb.own[:len(pca_items)]]
        result.radius[name] = (mean_radius(image_panels[name]), mean_radius(text_panels[name]))
    rows = [asdict(r) for r in result.table1]
    result.files.append(write_csv(list(rows[0]), [list(r.values()) for r in rows], out / "table1.csv"))
    md = [f"# Table 1 on split `{split}`", "", table1_markdown(result.table1), "",
          "Text surfacing accuracy counts a hit when the nearest of the split's unique captions is textually "
          "identical to the image's own; ties (within 1e-6) share the credit. Attribute surfacing accuracy is the "
          "mean share of an image's attributes carried by its nearest caption."]
    if deepfashion:
        result.files.append(write_csv(("encoder", "mean_cosine", "text_accuracy", "attribute_accuracy"),
                                      PAPER_TABLE1, out / "table1-paper.csv"))
        md += ["", "## The paper's Table 1 (DeepFashion test subset; reference figures, not measured here)", "",
               paper_table1_markdown()]
    (out / "table1.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    result.files.append(out / "table1.md")
    labels = [it.category for it in pca_items]
    result.files.append(plot_pca(image_panels, labels, f"PCA of image embeddings ({len(pca_items)} {split} items)",
                                 out / "pca-images.png"))
    result.files.append(plot_pca(text_panels, labels, f"PCA of caption embeddings ({len(pca_items)} {split} items)",
                                 out / "pca-texts.png"))


def run_topk(encoders: dict[str, Any], inshop_root: Path, out: Path, result: Evaluation, *, progress: bool) -> None:
    """In-shop top-k retrieval accuracy (CSV + Markdown), or a note saying why it could not run."""
    from dressup.catalog import CatalogError, load_inshop
    from dressup.index import embed_items

    try:
        bench = load_inshop(inshop_root)
    except CatalogError as e:
        result.notes.append(f"In-shop top-k not run: {e}")
        return
    if bench.missing_images or not bench.queries:
        result.notes.append(f"In-shop top-k not run: {bench.root} has {len(bench.queries)} queries and "
                            f"{bench.missing_images} missing images")
        return
    for name, enc in encoders.items():
        q = embed_items(enc, bench.queries, progress=progress)
        g = embed_items(enc, bench.gallery, progress=progress)
        result.topk[name] = topk_accuracy(q, [i.garment_id for i in bench.queries], g,
                                          [i.garment_id for i in bench.gallery])
    header = ["encoder"] + [f"top-{k}" for k in KS]
    rows = [[name] + [acc[k] for k in KS] for name, acc in result.topk.items()]
    result.files.append(write_csv(header, rows, out / "topk.csv"))
    garments = len({i.garment_id for i in bench.queries})
    (out / "topk.md").write_text(
        f"# In-shop top-k retrieval accuracy\n\n{len(bench.queries)} query images of {garments} garments searched "
        f"against {len(bench.gallery)} gallery images ({bench.root}); a hit when an image of the query's own "
        f"garment is in the top k.\n\n{markdown_table(header, rows)}\n", encoding="utf-8")
    result.files.append(out / "topk.md")


# ============================================================================================== query benchmarks
def catalogue_palette(catalog: Any) -> dict[str, tuple[int, int, int]]:
    """The palette colour grounding maps words onto: the catalogue's colours (all eleven if it has none)."""
    from dressup.colours import CATALOGUE_COLOURS

    names = set(catalog.attribute_values("colour")) or set(CATALOGUE_COLOURS)
    return {n: rgb for n, rgb in CATALOGUE_COLOURS.items() if n in names}


# State-dict entries that cannot change a text embedding: the image tower (open_clip ``visual``; transformers
# ``vision_model`` / ``visual_projection``) and the contrastive temperature.
_NOT_TEXT = ("visual.", "vision_model.", "visual_projection.", "logit_scale", "logit_bias")


def text_tower_key(encoder: Any) -> str:
    """A hash of everything that shapes an encoder's text embeddings: every weight outside the image tower, and
    the tokenizer's kind and context length. Encoders with equal keys embed every text identically (the demo's
    encoders share the locked MiniLM tower), so their caption embeddings are computed once.
    """
    import hashlib

    from dressup.encoders import state_fingerprint

    state = {k: v for k, v in encoder.module.state_dict().items() if not k.startswith(_NOT_TEXT)}
    tok = getattr(encoder, "tokenizer", None)
    extra = f"{type(encoder).__name__}|{type(tok).__name__}|{getattr(tok, 'context_length', '')}"
    return hashlib.sha256((state_fingerprint(state) + extra).encode()).hexdigest()


class RememberedTexts:
    """An encoder whose text embeddings are remembered: the evaluation asks for the same texts many times (each
    query under every fusion mode and grounding setting), and a text embedding depends on nothing else.

    Everything else is the encoder's own (``__getattr__``), so arms run exactly as in the app.
    """

    def __init__(self, encoder: Any, memo: dict[str, Any] | None = None) -> None:
        self.encoder = encoder
        self._memo: dict[str, Any] = {} if memo is None else memo  # shared by encoders with one text tower

    def __getattr__(self, name: str) -> Any:
        return getattr(self.encoder, name)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> Any:
        import torch

        if isinstance(texts, str):
            raise TypeError("encode_texts takes a list of strings; wrap a single text in a list")
        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if missing:
            self._memo.update(zip(missing, self.encoder.encode_texts(missing, batch_size)))
        if not texts:
            return torch.zeros(0, self.encoder.embed_dim)
        return torch.stack([self._memo[t] for t in texts])

    def remember(self, texts: Sequence[str]) -> None:
        """Encode many texts in batches now (much faster than one by one)."""
        self.encode_texts([t for t in texts if t])


def prefetch(arm: Any, queries: Sequence[Any]) -> None:
    """Encode the texts the arm will see for ``queries`` in one batch, if its encoder remembers texts."""
    if isinstance(arm.encoder, RememberedTexts):
        arm.encoder.remember([arm.prepare_text(q.text)[0] for q in queries])


@dataclass
class BenchRun:
    """One retrieval setting scored on the query sets: an encoder with a grounding setting (``GROUNDINGS``)."""

    label: str
    encoder: str
    grounding: str
    arm: Any


# The grounding ablation: nothing read; colour words only (in place); colours, garments and negation read into
# the catalogue's words (dressup.reading).
GROUNDINGS = ("off", "colour", "colour+garments")


def study_grounding(query: Any) -> str:
    """The study's own grounding setting, as one of ``GROUNDINGS``."""
    if query.colour_grounding and query.garment_grounding:
        return "colour+garments"
    return "colour" if query.colour_grounding else "off"


def make_runs(study: Any, models: Any, encoders: dict[str, Any], palette: dict[str, tuple[int, int, int]]
              ) -> list[BenchRun]:
    """Every evaluated encoder under every grounding setting (the ablation), through ``RetrievalArm``.

    "colour+garments" needs the study's ``[query.garments]`` anchors; without them that setting is skipped.
    """
    from dataclasses import replace

    from dressup.arms import RetrievalArm
    from dressup.garments import GarmentLexicon

    lexicon = (GarmentLexicon.load_or_build(study.query.garments, study.cache_dir) if study.query.garments
               else None)
    runs = []
    memos: dict[str, dict[str, Any]] = {}
    for name, enc in encoders.items():
        index = models.index(name)
        enc = RememberedTexts(enc, memos.setdefault(text_tower_key(enc), {}))
        for grounding in GROUNDINGS:
            if grounding == "colour+garments" and lexicon is None:
                continue
            spec = replace(study.query, colour_grounding=grounding != "off",
                           garment_grounding=grounding == "colour+garments")
            label = f"{name} (grounding {grounding})"
            runs.append(BenchRun(label, name, grounding, RetrievalArm(
                label, enc, index, spec, palette if grounding != "off" else None, study.ui.max_text_chars,
                lexicon if grounding == "colour+garments" else None)))
    return runs


def study_arm_runs(study: Any, runs: Sequence[BenchRun]) -> dict[str, BenchRun]:
    """The study's retrieval arms, each as the run with its encoder and the study's grounding setting.

    For text-only queries an arm is exactly that: fusion settings only matter when photos are given.
    """
    by_key = {(r.encoder, r.grounding): r for r in runs}
    own = study_grounding(study.query)
    return {a.name: by_key[(a.encoder, own)] for a in study.arms
            if a.kind == "retrieval" and (a.encoder, own) in by_key}


def run_benchmark(study: Any, runs: Sequence[BenchRun], query_sets: dict[str, list[Any]], out: Path,
                  result: Evaluation, *, progress: bool) -> None:
    """Score every run on every query set; write benchmark.md/.csv and the per-query CSV."""
    from dressup.queries import CORE, KINDS, run_queries, summarise, summarise_by_tag, write_results_csv

    per_query = []
    scored: dict[tuple[str, str], list[Any]] = {}
    for set_name, queries in query_sets.items():
        for run in runs:
            prefetch(run.arm, queries)
            res = run_queries(run.arm, queries, progress=progress, desc=f"{set_name}: {run.label}")
            scored[(set_name, run.label)] = res
            per_query += [(f"{set_name} | {run.label}", r) for r in res]
            result.benchmark.append({"set": set_name, "run": run.label, "encoder": run.encoder,
                                     "grounding": run.grounding, **summarise(res)})
            if set_name == "participant":
                for tag, s in summarise_by_tag(res).items():
                    result.by_tag.append({"run": run.label, "tag": tag, **s})
    result.files.append(write_results_csv(per_query, out / "benchmark-queries.csv"))
    header = ["set", "run", "encoder", "grounding", "queries", "all", CORE, *KINDS, "ceiling"]
    result.files.append(write_csv(header, [[b[h] for h in header] for b in result.benchmark], out / "benchmark.csv"))
    tag_header = ["run", "tag", "queries", "all", CORE, *KINDS]
    result.files.append(write_csv(tag_header, [[b[h] for h in tag_header] for b in result.by_tag],
                                  out / "benchmark-by-tag.csv"))

    def rows_for(set_name: str, labels: Sequence[str], names: Sequence[str]) -> list[list[Any]]:
        got = {b["run"]: b for b in result.benchmark if b["set"] == set_name}
        return [[n, got[l]["queries"], got[l]["all"], got[l][CORE], *(got[l][k] for k in KINDS), got[l]["ceiling"]]
                for n, l in zip(names, labels) if l in got]

    arms = study_arm_runs(study, runs)
    cols = ["", "queries", "all meant (of 4)", "colour + category (of 4)", *(f"{k} (of 4)" for k in KINDS),
            "ceiling"]
    md = ["# What participants' words retrieve", "",
          "Each query returns four items; a cell is the mean number of them carrying every meant attribute "
          "(`all meant`, pattern included where a query means one), the meant colour and category "
          "(`colour + category`), or the meant value of one kind. `ceiling` is the best the catalogue allows "
          "(4 unless fewer items carry the combination). Grounding: `off` = the text as written; `colour` = colour "
          "words mapped to the catalogue's colours in place; `colour+garments` = colours, garments (WordNet) and "
          "negations read into the catalogue's words (dressup.reading).", ""]
    for set_name, title in (("participant", "Participant-language queries"), ("caption-word", "Caption-word queries")):
        if set_name not in query_sets:
            continue
        md += [f"## {title} ({len(query_sets[set_name])} queries): the study's arms", "",
               markdown_table(["arm", *cols[1:]], rows_for(set_name, [r.label for r in arms.values()], list(arms))),
               "", f"## {title}: ablation (every encoder, each grounding setting)", "",
               markdown_table(["encoder", *cols[1:]], rows_for(set_name, [r.label for r in runs],
                                                                [r.label for r in runs])), ""]
    arm_labels = {r.label: n for n, r in arms.items()}
    tags = [b for b in result.by_tag if b["run"] in arm_labels]
    if tags:
        names = list(dict.fromkeys(b["tag"] for b in tags))
        table = []
        for tag in names:
            row = [tag, next(b["queries"] for b in tags if b["tag"] == tag)]
            row += [next((b["all"] for b in tags if b["tag"] == tag and b["run"] == label), float("nan"))
                    for label in arm_labels]
            table.append(row)
        md += ["## Participant-language queries by what makes them hard (all meant, of 4)", "",
               markdown_table(["tag", "queries", *arm_labels.values()], table), ""]
    (out / "benchmark.md").write_text("\n".join(md), encoding="utf-8")
    result.files.append(out / "benchmark.md")


FUSION_MODES: tuple[tuple[str, str, float, str], ...] = (
    # label, QuerySpec.fusion, text_weight, what the query gives ("text", "photos" or "both")
    ("text only", "mean", 1.0, "text"),
    ("photos only", "mean", 0.0, "photos"),
    ("mean, text_weight 0.25", "mean", 0.25, "both"),
    ("mean, text_weight 0.5", "mean", 0.5, "both"),
    ("mean, text_weight 0.75", "mean", 0.75, "both"),
    ("rrf", "rrf", 0.5, "both"),
)


def run_fusion(study: Any, arm_runs: dict[str, BenchRun], photo_items: Sequence[Any], out: Path, result: Evaluation,
               *, n: int = 30, progress: bool) -> None:
    """Text + photo fusion measured on agreeing and disagreeing photos; the recommended default is the fused
    mode with the most returned items carrying the text's meaning, averaged over arms and both query sets."""
    from dataclasses import replace

    from dressup.arms import RetrievalArm
    from dressup.queries import Query, fusion_queries, run_queries

    sets = {"agree": fusion_queries(photo_items, agree=True, n=n, seed=study.seed),
            "disagree": fusion_queries(photo_items, agree=False, n=n, seed=study.seed + 1)}
    for arm_name, run in arm_runs.items():
        base = run.arm
        for label, fusion, weight, gives in FUSION_MODES:
            spec = replace(base.query, fusion=fusion, text_weight=weight)
            arm = RetrievalArm(f"{arm_name} {label}", base.encoder, base.index, spec, base.palette, base.max_text_chars,
                               base.garments)
            for set_name, queries in sets.items():
                qs = [replace(q, images=[] if gives == "text" else q.images, text="" if gives == "photos" else q.text)
                      for q in queries]
                prefetch(arm, qs)
                res = run_queries(arm, qs, progress=progress, desc=f"fusion {set_name}: {arm_name} {label}")
                photo_colour = [sum(v["colour"] == q.photo_meant.get("colour") for v in r.returned_values)
                                for q, r in zip(queries, res)]
                result.fusion.append({
                    "arm": arm_name, "mode": label, "photos": set_name, "queries": len(res),
                    "all": float(np.mean([r.all_meant for r in res])),
                    "colour": float(np.mean([r.per_kind["colour"] for r in res])),
                    "category": float(np.mean([r.per_kind["category"] for r in res])),
                    "photo colour": float(np.mean(photo_colour)) if set_name == "disagree" else float("nan"),
                })
    fused = [m[0] for m in FUSION_MODES if m[3] == "both"]
    score = {m: float(np.mean([f["all"] for f in result.fusion if f["mode"] == m])) for m in fused}
    best = max(score.values())
    current = "rrf" if study.query.fusion == "rrf" else f"mean, text_weight {study.query.text_weight:g}"
    # A tie (within one item in a hundred) keeps the study's current setting: no change without evidence.
    result.fusion_default = current if score.get(current, -1) >= best - 0.01 else max(score, key=score.get)
    header = ["arm", "mode", "photos", "queries", "all", "colour", "category", "photo colour"]
    result.files.append(write_csv(header, [[f[h] for h in header] for f in result.fusion], out / "fusion.csv"))
    table = []
    for mode in [m[0] for m in FUSION_MODES]:
        cells = [mode]
        for set_name in ("agree", "disagree"):
            rows = [f for f in result.fusion if f["mode"] == mode and f["photos"] == set_name]
            cells += [float(np.mean([f["all"] for f in rows])), float(np.mean([f["colour"] for f in rows]))]
        cells.append(float(np.mean([f["photo colour"] for f in result.fusion
                                    if f["mode"] == mode and f["photos"] == "disagree"])))
        table.append(cells)
    per_arm = [[f["arm"], f["mode"], f["photos"], f["all"], f["colour"], f["category"], f["photo colour"]]
               for f in result.fusion]
    q = sets["agree"][0] if sets["agree"] else None
    example = f' (e.g. "{q.text}" with {len(q.images)} photos)' if q else ""
    (out / "fusion.md").write_text("\n".join([
        "# Text + photo fusion", "",
        f"{len(sets['agree'])} queries whose photos agree with the text{example} and {len(sets['disagree'])} whose "
        "photos show the same category in another colour. The text is what the query means; the photos' own "
        "catalogue items are excluded from the answers. Cells: mean number of the four returned items carrying the "
        "text's colour and category (`all`), its colour, and (disagreeing photos) the photos' colour; "
        f"mean over the study's arms ({', '.join(arm_runs)}).", "",
        markdown_table(["mode", "agree: all", "agree: colour", "disagree: all", "disagree: colour",
                        "disagree: photos' colour"], table), "",
        f"**Recommended default: {result.fusion_default}** (best mean of `all` over both sets among the fused "
        f"modes; the study's current setting is kept unless another mode beats it by more than 0.01).", "",
        "## Per arm", "",
        markdown_table(["arm", "mode", "photos", "all", "colour", "category", "photos' colour"], per_arm), ""]),
        encoding="utf-8")
    result.files.append(out / "fusion.md")


# ============================================================================================== real photos
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def default_photos_dir() -> Path:
    """The real product photos shipped with the repository (``assets/photos``, MIT, see its NOTICE.md)."""
    return Path(__file__).resolve().parents[1] / "assets" / "photos"


def run_photos(arms: dict[str, Any], photos_dir: Path, out: Path, result: Evaluation) -> None:
    """Each real photo as a participant's only upload, through the app's path (``load_image`` ->
    ``Preference`` -> ``arm.recommend``): what comes back per arm, and each grid as a PNG."""
    from PIL import Image, ImageDraw

    from dressup.grid import grid_image
    from dressup.images import load_image
    from dressup.queries import value_of
    from dressup.records import Preference

    photos = sorted(p for p in Path(photos_dir).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES) \
        if Path(photos_dir).is_dir() else []
    if not photos:
        result.notes.append(f"real photos not run: no JPEG/PNG/WEBP photos in {photos_dir} (pass --photos DIR)")
        return
    folder = out / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    cell = 220
    overview = Image.new("RGB", ((len(arms) + 1) * (cell + 8) + 8, len(photos) * (cell + 30) + 30), "white")
    draw = ImageDraw.Draw(overview)
    for c, name in enumerate(["photo", *arms]):
        draw.text((8 + c * (cell + 8), 8), name, fill="black", font_size=14)
    for r, photo in enumerate(photos):
        image = load_image(photo)
        y = 30 + r * (cell + 30)
        thumb = image.copy()
        thumb.thumbnail((cell, cell))
        overview.paste(thumb, (8 + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
        draw.text((8, y + cell + 4), photo.name, fill="black", font_size=12)
        for c, (name, arm) in enumerate(arms.items(), start=1):
            shown = arm.recommend(Preference(images=[image]), seed=0)
            grid = grid_image([s.image for s in shown])
            path = folder / f"{photo.stem}-{name}.png"
            grid.save(path)
            result.files.append(path)
            index = getattr(arm, "index", None)  # a generative arm's images are no catalogue items
            by_id = {it.item_id: it for it in index.items} if index is not None else {}
            got = [by_id.get(s.item_id) for s in shown]
            result.photos.append({"photo": photo.name, "arm": name,
                                  "categories": [it.category if it else "generated" for it in got],
                                  "colours": [(value_of(it, "colour") or "") if it else "?" for it in got],
                                  "patterns": [(value_of(it, "pattern") or "") if it else "?" for it in got],
                                  "grid": str(path.relative_to(out))})
            overview.paste(grid.resize((cell, cell), Image.Resampling.LANCZOS), (8 + c * (cell + 8), y))
            summary = ", ".join(f"{n}x {cat}" for cat, n in _counts(result.photos[-1]["categories"]))
            draw.text((8 + c * (cell + 8), y + cell + 4), summary[:40], fill="black", font_size=11)
    overview.save(folder / "overview.png")
    result.files.append(folder / "overview.png")
    rows = [[p["photo"], p["arm"], ", ".join(p["categories"]), ", ".join(p["colours"]), p["grid"]]
            for p in result.photos]
    header = ["photo", "arm", "categories returned", "colours returned", "grid"]
    result.files.append(write_csv(header, rows, out / "photos.csv"))
    (out / "photos.md").write_text(
        f"# Real photos as a participant's upload\n\nEach photo in {photos_dir} given alone (no text) to each arm "
        f"through `dressup.images.load_image` -> `Preference(images=[photo])` -> `arm.recommend`; grids in "
        f"`photos/`, all of them side by side in `photos/overview.png`.\n\n{markdown_table(header, rows)}\n",
        encoding="utf-8")
    result.files.append(out / "photos.md")


def generative_arms(study: Any, models: Any, result: Evaluation) -> dict[str, Any]:
    """The study's generative arms, built as the app builds them; one that cannot load is noted, not fatal."""
    from dressup.arms import ARM_KINDS

    arms = {}
    for spec in study.arms:
        if spec.kind == "generative":
            try:
                arms[spec.name] = ARM_KINDS[spec.kind](spec, models)
            except Exception as e:  # noqa: BLE001 — e.g. SD1.5 not downloaded: the retrieval arms still run
                result.notes.append(f"generative arm {spec.name} left out of the real-photo grids: {e}")
    return arms


def _counts(values: Sequence[str]) -> list[tuple[str, int]]:
    seen: dict[str, int] = {}
    for v in values:
        seen[v] = seen.get(v, 0) + 1
    return sorted(seen.items(), key=lambda kv: -kv[1])


# ============================================================================================== summary and entry
def summary_markdown(study: Any, result: Evaluation) -> str:
    """SUMMARY.md: the headline figures in a few tables and sentences a researcher can paste into a paper."""
    lines = [f"# Model selection: {study.name} ({study.profile} profile)", ""]
    if result.table1:
        t = result.table1
        best_text = max(t, key=lambda r: r.text_accuracy)
        best_attr = max(t, key=lambda r: r.attribute_accuracy)
        lines += [f"## Table 1 (split `{result.split}`, {t[0].images} images, {t[0].captions} unique captions)", "",
                  table1_markdown(t), "",
                  f"{best_text.encoder} surfaces the image's own caption most often (text surfacing accuracy "
                  f"{best_text.text_accuracy:.3f}); {best_attr.encoder} surfaces the most of an image's attributes "
                  f"({best_attr.attribute_accuracy:.3f}). Duplicate captions count as hits when textually identical; "
                  "ties share the credit."]
        if study.catalogue.kind == "deepfashion":
            lines += ["", "The paper's own figures (reference, DeepFashion test subset):", "", paper_table1_markdown()]
        lines += ["", "PCA (`pca-images.png`, `pca-texts.png`), mean embedding radius (distance from the centroid): "
                  + "; ".join(f"{n} images {a:.3f} / captions {b:.3f}" for n, (a, b) in result.radius.items()), ""]
    if result.topk:
        header = ["encoder"] + [f"top-{k}" for k in KS]
        lines += ["## In-shop top-k retrieval accuracy", "",
                  markdown_table(header, [[n] + [a[k] for k in KS] for n, a in result.topk.items()]), ""]
    if result.benchmark:
        from dressup.queries import CORE as _CORE

        lines += ["## Participants' own words (mean of 4 returned items carrying the meant colour and category; "
                  "all meant attributes, pattern included, in brackets)", ""]
        sets = list(dict.fromkeys(b["set"] for b in result.benchmark))
        runs = list(dict.fromkeys(b["run"] for b in result.benchmark))
        got = {(b["set"], b["run"]): b for b in result.benchmark}
        rows = [[run] + [f"{got[(s, run)][_CORE]:.3f} ({got[(s, run)]['all']:.3f})" if (s, run) in got else "nan"
                         for s in sets] for run in runs]
        lines += [markdown_table(["encoder"] + [f"{s} ({got[(s, runs[0])]['queries']} q.)" for s in sets], rows), ""]
        from dressup.queries import CORE

        by = {(b["encoder"], b["grounding"]): b[CORE] for b in result.benchmark if b["set"] == "participant"}
        encs = list(dict.fromkeys(e for e, _ in by))
        steps = [("colour", "off", "colour grounding"), ("colour+garments", "colour", "garment grounding")]
        for new, old, what in steps:
            pairs = [(e, by[(e, new)] - by[(e, old)]) for e in encs if (e, new) in by and (e, old) in by]
            if pairs:
                lines += [f"Adding {what} changes the participant-language colour + category score by "
                          + ", ".join(f"{e} {d:+.2f}" for e, d in pairs) + " items of 4.", ""]
    if result.fusion_default:
        lines += [f"## Text + photo fusion: recommended default **{result.fusion_default}** (see `fusion.md`)", ""]
    if result.photos:
        lines += ["## Real photos, each given alone (categories and colours returned)", ""]
        arms = list(dict.fromkeys(p["arm"] for p in result.photos))
        photos = list(dict.fromkeys(p["photo"] for p in result.photos))
        cell = {(p["photo"], p["arm"]): ", ".join(f"{n}x {c}" for c, n in _counts(p["categories"]))
                + " (" + ", ".join(f"{n}x {c}" for c, n in _counts(p["colours"])) + ")" for p in result.photos}
        lines += [markdown_table(["photo", *arms], [[ph] + [cell[(ph, a)] for a in arms] for ph in photos]), ""]
    if result.skipped or result.notes:
        lines += ["## Not evaluated", ""]
        lines += [f"- encoder {n}: {why}" for n, why in result.skipped.items()]
        lines += [f"- {note}" for note in result.notes]
        lines += [""]
    return "\n".join(lines)


PARTS = ("table1", "topk", "queries", "fusion", "photos")


def evaluate_study(study: Any, *, encoders: Sequence[str] | None = None, split: str = "test",
                   queries: str | Path | None = None, out: str | Path = "results/model-selection", pca_n: int = 500,
                   photos: str | Path | None = None, inshop: str | Path | None = None,
                   parts: Sequence[str] = PARTS, caption_queries: int = 50, fusion_queries: int = 30,
                   progress: bool = True) -> Evaluation:
    """Run the model-selection evaluation of a study (see the module docstring) and write it under ``out``."""
    from dressup.arms import StudyModels, resolve_device
    from dressup.queries import DEFAULT_QUERIES, QueryFileError, caption_word_queries, load_queries, vocabulary

    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise EvaluationError(f"unknown part(s) {unknown}; choose from {list(PARTS)}")
    if study.profile == "demo":
        from dressup.demo import ensure_demo_build

        ensure_demo_build(study, progress=progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = Evaluation(out=out, split=split)
    names = list(encoders) if encoders else list(study.encoders)
    for name in names:
        study.encoder(name)  # a name the study lacks is the researcher's mistake: StudyFileError names the fix
    models = StudyModels(study, resolve_device(study.device), progress)
    catalog = models.catalog
    loaded = _load_encoders(models, names, bool(encoders), result)

    if "table1" in parts:
        run_table1(loaded, catalog.split(split), split, out, pca_n, result,
                   deepfashion=study.catalogue.kind == "deepfashion", progress=progress)
    if "topk" in parts:
        run_topk(loaded, Path(inshop) if inshop else study.catalogue.root, out, result, progress=progress)

    runs: list[BenchRun] = []
    if {"queries", "fusion", "photos"} & set(parts):
        runs = make_runs(study, models, loaded, catalogue_palette(catalog))
    arm_runs = study_arm_runs(study, runs)
    if "queries" in parts:
        index_items = runs[0].arm.index.items
        vocab = vocabulary(index_items)
        if not vocab["colour"]:
            result.notes.append("participant-language queries not run: the catalogue has no colour attributes")
        else:
            try:
                participant = load_queries(Path(queries) if queries else DEFAULT_QUERIES, vocab)
            except QueryFileError as e:
                raise EvaluationError(str(e)) from e
            query_sets = {"participant": participant,
                          "caption-word": caption_word_queries(index_items, caption_queries, seed=study.seed)}
            run_benchmark(study, runs, query_sets, out, result, progress=progress)
    if "fusion" in parts:
        if arm_runs:
            run_fusion(study, arm_runs, catalog.split(split), out, result, n=fusion_queries, progress=progress)
        else:
            result.notes.append("fusion not run: no retrieval arm of the study uses an evaluated encoder")
    if "photos" in parts and arm_runs:
        run_photos({**{n: r.arm for n, r in arm_runs.items()}, **generative_arms(study, models, result)},
                   Path(photos) if photos else default_photos_dir(), out, result)
    (out / "SUMMARY.md").write_text(summary_markdown(study, result), encoding="utf-8")
    result.files.append(out / "SUMMARY.md")
    return result


def main(args: Any) -> int:
    """``python -m dressup evaluate``: run, write everything under ``--out``, print Table 1."""
    from dressup.config import load_study

    study = load_study(args.study)
    result = evaluate_study(study, encoders=args.encoders, split=args.split, queries=args.queries, out=args.out,
                            pca_n=args.pca_n, photos=getattr(args, "photos", None),
                            inshop=getattr(args, "inshop", None), parts=getattr(args, "parts", None) or PARTS)
    if result.table1:
        print(table1_markdown(result.table1))
    for name, why in result.skipped.items():
        print(f"skipped encoder {name}: {why}")
    for note in result.notes:
        print(note)
    print(f"model-selection report written to {result.out} (start with {result.out / 'SUMMARY.md'})")
    return 0
