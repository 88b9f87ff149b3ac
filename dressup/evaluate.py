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

Where each part lives: the metrics (numpy only) in ``dressup.metrics``; the PCA figures in
``dressup.eval_plots``; embedding a split and sharing text embeddings in ``dressup.eval_embeddings``; the
``Evaluation`` record, CSV and SUMMARY.md in ``dressup.eval_report``; the grounding ablation and query
benchmarks in ``dressup.ablations``; fusion in ``dressup.eval_fusion``; the real photos in
``dressup.eval_photos``. This module runs them (``evaluate_study``, ``main``) and re-exports their public names.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from dressup.ablations import (
    GROUNDINGS,
    BenchRun,
    benchmark_markdown,
    catalogue_palette,
    make_runs,
    prefetch,
    run_benchmark,
    study_arm_runs,
    study_grounding,
)
from dressup.catalog import CatalogError, load_inshop
from dressup.config import Study, load_study
from dressup.demo import ensure_demo_build
from dressup.device import resolve_device
from dressup.eval_embeddings import (
    RememberedTexts,
    SplitEmbeddings,
    embed_split,
    encode_captions,
    table1,
    text_tower_key,
)
from dressup.eval_fusion import FUSION_MODES, recommended_fusion, run_fusion
from dressup.eval_photos import PHOTO_SUFFIXES, default_photos_dir, generative_arms, run_photos
from dressup.eval_plots import pca_figure, plot_pca
from dressup.eval_report import (
    PAPER_TABLE1,
    TABLE1_HEADER,
    Evaluation,
    paper_table1_markdown,
    summary_markdown,
    table1_markdown,
    write_csv,
)
from dressup.metrics import (
    CHUNK,
    KS,
    TIE_TOL,
    EvaluationError,
    Table1Row,
    caption_attributes,
    mean_pair_cosine,
    mean_radius,
    nearest_caption_ties,
    pca_2d,
    surfacing_accuracy,
    table1_from_embeddings,
    topk_accuracy,
    unique_captions,
)
from dressup.queries import DEFAULT_QUERIES, QueryFileError, caption_word_queries, load_queries, vocabulary
from dressup.records import Item
from dressup.tables import format_cell, markdown_table

if TYPE_CHECKING:
    from dressup.arms import StudyModels
    from dressup.encoders import Encoder as ModelEncoder

__all__ = [
    "CHUNK", "FUSION_MODES", "GROUNDINGS", "KS", "PAPER_TABLE1", "PARTS", "PHOTO_SUFFIXES", "TABLE1_HEADER",
    "TIE_TOL", "BenchRun", "Evaluation", "EvaluationError", "RememberedTexts", "SplitEmbeddings", "Table1Row",
    "benchmark_markdown", "caption_attributes", "catalogue_palette", "default_photos_dir", "embed_split",
    "encode_captions", "evaluate_study", "format_cell", "generative_arms", "main", "make_runs", "markdown_table",
    "mean_pair_cosine", "mean_radius", "nearest_caption_ties", "paper_table1_markdown", "pca_2d", "pca_figure",
    "plot_pca", "prefetch", "recommended_fusion", "run_benchmark", "run_fusion", "run_photos", "run_table1",
    "run_topk", "study_arm_runs", "study_grounding", "summary_markdown", "surfacing_accuracy", "table1",
    "table1_from_embeddings", "table1_markdown", "text_tower_key", "topk_accuracy", "unique_captions", "write_csv",
]

log = logging.getLogger(__name__)

PARTS = ("table1", "topk", "queries", "fusion", "photos")


def _load_encoders(models: "StudyModels", names: Sequence[str], explicit: bool, result: Evaluation
                   ) -> dict[str, "ModelEncoder"]:
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


def _table1_files(split: str, out: Path, result: Evaluation, *, deepfashion: bool) -> None:
    """table1.csv and table1.md (and the paper's figures beside ours on DeepFashion)."""
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


def run_table1(encoders: dict[str, "ModelEncoder"], items: Sequence[Item], split: str, out: Path, pca_n: int,
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
    _table1_files(split, out, result, deepfashion=deepfashion)
    labels = [it.category for it in pca_items]
    result.files.append(plot_pca(image_panels, labels, f"PCA of image embeddings ({len(pca_items)} {split} items)",
                                 out / "pca-images.png"))
    result.files.append(plot_pca(text_panels, labels, f"PCA of caption embeddings ({len(pca_items)} {split} items)",
                                 out / "pca-texts.png"))


def run_topk(encoders: dict[str, "ModelEncoder"], inshop_root: Path, out: Path, result: Evaluation, *,
             progress: bool) -> None:
    """In-shop top-k retrieval accuracy (CSV + Markdown), or a note saying why it could not run."""
    from dressup.index import embed_items  # faiss and torch: only when something is embedded

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


def _run_query_benchmark(study: Study, runs: list[BenchRun], queries: str | Path | None, caption_queries: int,
                         out: Path, result: Evaluation, *, progress: bool) -> None:
    """The participant-language and caption-word benchmarks, or a note when the catalogue has no colours."""
    index_items = runs[0].arm.index.items
    vocab = vocabulary(index_items)
    if not vocab["colour"]:
        result.notes.append("participant-language queries not run: the catalogue has no colour attributes")
        return
    try:
        participant = load_queries(Path(queries) if queries else DEFAULT_QUERIES, vocab)
    except QueryFileError as e:
        raise EvaluationError(str(e)) from e
    query_sets = {"participant": participant,
                  "caption-word": caption_word_queries(index_items, caption_queries, seed=study.seed)}
    run_benchmark(study, runs, query_sets, out, result, progress=progress)


def evaluate_study(study: Study, *, encoders: Sequence[str] | None = None, split: str = "test",
                   queries: str | Path | None = None, out: str | Path = "results/model-selection", pca_n: int = 500,
                   photos: str | Path | None = None, inshop: str | Path | None = None,
                   parts: Sequence[str] = PARTS, caption_queries: int = 50, fusion_queries: int = 30,
                   progress: bool = True) -> Evaluation:
    """Run the model-selection evaluation of a study (see the module docstring) and write it under ``out``."""
    from dressup.arms import StudyModels  # torch and faiss: only when a study is evaluated

    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise EvaluationError(f"unknown part(s) {unknown}; choose from {list(PARTS)}")
    if study.profile == "demo":
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
        _run_query_benchmark(study, runs, queries, caption_queries, out, result, progress=progress)
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


def main(args: argparse.Namespace) -> int:
    """``python -m dressup evaluate``: run, write everything under ``--out``, print Table 1."""
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
