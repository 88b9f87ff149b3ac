"""What one evaluation run measured (``Evaluation``) and how it is written: CSV files, Table 1 and SUMMARY.md.

Every part of the evaluation (``dressup.evaluate``, ``dressup.ablations``, ``dressup.eval_fusion``,
``dressup.eval_photos``) appends its figures and files to one ``Evaluation``; ``summary_markdown`` turns it
into the short text a researcher pastes into a paper. Tables go through the library's one Markdown formatter
(``dressup.tables``).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from dressup.config import Study
from dressup.metrics import KS, Table1Row
from dressup.queries import CORE
from dressup.tables import markdown_table

# The paper's Table 1 (DeepFashion test subset): cosine / text surfacing accuracy / attribute surfacing accuracy.
PAPER_TABLE1: tuple[tuple[str, float, float, float], ...] = (
    ("CLIP ViT-B/32", 0.276, 0.22, 0.589),
    ("FCLIP", 0.272, 0.074, 0.672),
    ("finetuned FCLIP", 0.288, 0.338, 0.819),
    ("STN-FCLIP", 0.284, 0.142, 0.707),
    ("Swin-FCLIP", 0.160, 0.058, 0.584),
    ("STN+Swin-FCLIP", 0.164, 0.047, 0.577),
)

TABLE1_HEADER = ("encoder", "mean cosine", "text surfacing acc.", "attribute surfacing acc.", "images",
                 "unique captions")


@dataclass
class Evaluation:
    """Everything one ``evaluate_study`` run measured; the same figures are in the files under ``out``."""

    out: Path
    split: str
    table1: list[Table1Row] = field(default_factory=list)
    radius: dict[str, tuple[float, float]] = field(default_factory=dict)  # encoder -> (images, captions)
    topk: dict[str, dict[int, float]] = field(default_factory=dict)
    benchmark: list[dict[str, Any]] = field(default_factory=list)  # one row per (query set, run): a CSV row
    by_tag: list[dict[str, Any]] = field(default_factory=list)
    fusion: list[dict[str, Any]] = field(default_factory=list)
    fusion_default: str = ""
    photos: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def write_csv(header: Sequence[str], rows: Sequence[Sequence[Any]], path: Path) -> Path:
    """A CSV file with one header row; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def table1_markdown(rows: Sequence[Table1Row]) -> str:
    """Our Table 1 as Markdown."""
    return markdown_table(TABLE1_HEADER, [(r.encoder, r.mean_cosine, r.text_accuracy, r.attribute_accuracy,
                                           r.images, r.captions) for r in rows])


def paper_table1_markdown() -> str:
    """The paper's own Table 1 as Markdown (reference figures, never mixed into ours)."""
    return markdown_table(("encoder (paper)", "mean cosine", "text surfacing acc.", "attribute surfacing acc."),
                          PAPER_TABLE1)


def counts(values: Sequence[str]) -> list[tuple[str, int]]:
    """(value, how many times) most frequent first; equal counts in order of first appearance."""
    seen: dict[str, int] = {}
    for v in values:
        seen[v] = seen.get(v, 0) + 1
    return sorted(seen.items(), key=lambda kv: -kv[1])


def _table1_section(study: Study, result: Evaluation) -> list[str]:
    t = result.table1
    best_text = max(t, key=lambda r: r.text_accuracy)
    best_attr = max(t, key=lambda r: r.attribute_accuracy)
    lines = [f"## Table 1 (split `{result.split}`, {t[0].images} images, {t[0].captions} unique captions)", "",
             table1_markdown(t), "",
             f"{best_text.encoder} surfaces the image's own caption most often (text surfacing accuracy "
             f"{best_text.text_accuracy:.3f}); {best_attr.encoder} surfaces the most of an image's attributes "
             f"({best_attr.attribute_accuracy:.3f}). Duplicate captions count as hits when textually identical; "
             "ties share the credit."]
    if study.catalogue.kind == "deepfashion":
        lines += ["", "The paper's own figures (reference, DeepFashion test subset):", "", paper_table1_markdown()]
    lines += ["", "PCA (`pca-images.png`, `pca-texts.png`), mean embedding radius (distance from the centroid): "
              + "; ".join(f"{n} images {a:.3f} / captions {b:.3f}" for n, (a, b) in result.radius.items()), ""]
    return lines


def _benchmark_section(result: Evaluation) -> list[str]:
    lines = ["## Participants' own words (mean of 4 returned items carrying the meant colour and category; "
             "all meant attributes, pattern included, in brackets)", ""]
    sets = list(dict.fromkeys(b["set"] for b in result.benchmark))
    runs = list(dict.fromkeys(b["run"] for b in result.benchmark))
    got = {(b["set"], b["run"]): b for b in result.benchmark}
    rows = [[run] + [f"{got[(s, run)][CORE]:.3f} ({got[(s, run)]['all']:.3f})" if (s, run) in got else "nan"
                     for s in sets] for run in runs]
    lines += [markdown_table(["encoder"] + [f"{s} ({got[(s, runs[0])]['queries']} q.)" for s in sets], rows), ""]
    by = {(b["encoder"], b["grounding"]): b[CORE] for b in result.benchmark if b["set"] == "participant"}
    encs = list(dict.fromkeys(e for e, _ in by))
    steps = [("colour", "off", "colour grounding"), ("colour+garments", "colour", "garment grounding")]
    for new, old, what in steps:
        pairs = [(e, by[(e, new)] - by[(e, old)]) for e in encs if (e, new) in by and (e, old) in by]
        if pairs:
            lines += [f"Adding {what} changes the participant-language colour + category score by "
                      + ", ".join(f"{e} {d:+.2f}" for e, d in pairs) + " items of 4.", ""]
    return lines


def _photos_section(result: Evaluation) -> list[str]:
    lines = ["## Real photos, each given alone (categories and colours returned)", ""]
    arms = list(dict.fromkeys(p["arm"] for p in result.photos))
    photos = list(dict.fromkeys(p["photo"] for p in result.photos))
    cell = {(p["photo"], p["arm"]): ", ".join(f"{n}x {c}" for c, n in counts(p["categories"]))
            + " (" + ", ".join(f"{n}x {c}" for c, n in counts(p["colours"])) + ")" for p in result.photos}
    return lines + [markdown_table(["photo", *arms], [[ph] + [cell[(ph, a)] for a in arms] for ph in photos]), ""]


def summary_markdown(study: Study, result: Evaluation) -> str:
    """SUMMARY.md: the headline figures in a few tables and sentences a researcher can paste into a paper."""
    lines = [f"# Model selection: {study.name} ({study.profile} profile)", ""]
    if result.table1:
        lines += _table1_section(study, result)
    if result.topk:
        header = ["encoder"] + [f"top-{k}" for k in KS]
        lines += ["## In-shop top-k retrieval accuracy", "",
                  markdown_table(header, [[n] + [a[k] for k in KS] for n, a in result.topk.items()]), ""]
    if result.benchmark:
        lines += _benchmark_section(result)
    if result.fusion_default:
        lines += [f"## Text + photo fusion: recommended default **{result.fusion_default}** (see `fusion.md`)", ""]
    if result.photos:
        lines += _photos_section(result)
    if result.skipped or result.notes:
        lines += ["## Not evaluated", ""]
        lines += [f"- encoder {n}: {why}" for n, why in result.skipped.items()]
        lines += [f"- {note}" for note in result.notes]
        lines += [""]
    return "\n".join(lines)
