"""The text + photo fusion measurement: which way of combining a participant's words and photos to default to.

Queries whose photos agree with the text, and queries whose photos show the same category in another colour,
run through each study arm under every fusion mode (``FUSION_MODES``); the recommended default is the fused
mode whose answers most often carry what the text means. Writes ``fusion.csv`` and ``fusion.md``.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dressup.ablations import BenchRun, prefetch
from dressup.config import Study
from dressup.eval_report import Evaluation, write_csv
from dressup.queries import Query, fusion_queries, run_queries
from dressup.records import Item
from dressup.tables import markdown_table

FUSION_MODES: tuple[tuple[str, str, float, str], ...] = (
    # label, QuerySpec.fusion, text_weight, what the query gives ("text", "photos" or "both")
    ("text only", "mean", 1.0, "text"),
    ("photos only", "mean", 0.0, "photos"),
    ("mean, text_weight 0.25", "mean", 0.25, "both"),
    ("mean, text_weight 0.5", "mean", 0.5, "both"),
    ("mean, text_weight 0.75", "mean", 0.75, "both"),
    ("rrf", "rrf", 0.5, "both"),
)


def _measure(arm_runs: dict[str, BenchRun], sets: dict[str, list[Query]], result: Evaluation, *,
             progress: bool) -> None:
    """One row of ``result.fusion`` per (arm, mode, query set): mean items carrying the text's meaning."""
    from dressup.arms import RetrievalArm  # torch and faiss: only when arms are built

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


def recommended_fusion(study: Study, fusion: Sequence[dict[str, Any]]) -> str:
    """The fused mode with the best mean of ``all`` over arms and both query sets; a tie (within one item in a
    hundred) keeps the study's current setting: no change without evidence."""
    fused = [m[0] for m in FUSION_MODES if m[3] == "both"]
    score = {m: float(np.mean([f["all"] for f in fusion if f["mode"] == m])) for m in fused}
    best = max(score.values())
    current = "rrf" if study.query.fusion == "rrf" else f"mean, text_weight {study.query.text_weight:g}"
    return current if score.get(current, -1) >= best - 0.01 else max(score, key=score.get)


def fusion_markdown(arm_runs: dict[str, BenchRun], sets: dict[str, list[Query]], result: Evaluation) -> str:
    """fusion.md: every mode's means over the study's arms, the recommendation, then each arm's figures."""
    table = []
    for mode in [m[0] for m in FUSION_MODES]:
        cells: list[Any] = [mode]
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
    return "\n".join([
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
        markdown_table(["arm", "mode", "photos", "all", "colour", "category", "photos' colour"], per_arm), ""])


def run_fusion(study: Study, arm_runs: dict[str, BenchRun], photo_items: Sequence[Item], out: Path,
               result: Evaluation, *, n: int = 30, progress: bool) -> None:
    """Text + photo fusion measured on agreeing and disagreeing photos; the recommended default is the fused
    mode with the most returned items carrying the text's meaning, averaged over arms and both query sets."""
    sets = {"agree": fusion_queries(photo_items, agree=True, n=n, seed=study.seed),
            "disagree": fusion_queries(photo_items, agree=False, n=n, seed=study.seed + 1)}
    _measure(arm_runs, sets, result, progress=progress)
    result.fusion_default = recommended_fusion(study, result.fusion)
    header = ["arm", "mode", "photos", "queries", "all", "colour", "category", "photo colour"]
    result.files.append(write_csv(header, [[f[h] for h in header] for f in result.fusion], out / "fusion.csv"))
    (out / "fusion.md").write_text(fusion_markdown(arm_runs, sets, result), encoding="utf-8")
    result.files.append(out / "fusion.md")
