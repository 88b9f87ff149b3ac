"""The grounding ablation and the query benchmarks: every encoder under every grounding setting, scored on
what participants' own words (and caption words) retrieve.

Each setting is a ``RetrievalArm`` built exactly as the app builds one, so a score here is what a participant
would have been shown. Writes ``benchmark.md``/``.csv``, ``benchmark-by-tag.csv`` and the per-query CSV; the
scoring itself (what "carrying the meant colour and category" means) is ``dressup.queries``'.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from dressup.catalog import Catalog
from dressup.colours import CATALOGUE_COLOURS
from dressup.config import QuerySpec, Study
from dressup.eval_embeddings import RememberedTexts, text_tower_key
from dressup.eval_report import Evaluation, write_csv
from dressup.garments import GarmentLexicon
from dressup.queries import CORE, KINDS, Query, QueryResult, run_queries, summarise, summarise_by_tag, write_results_csv
from dressup.tables import markdown_table

if TYPE_CHECKING:
    from dressup.arms import RetrievalArm, StudyModels
    from dressup.encoders import Encoder as ModelEncoder

# The grounding ablation: nothing read; colour words only (in place); colours, garments and negation read into
# the catalogue's words (dressup.reading).
GROUNDINGS = ("off", "colour", "colour+garments")


def catalogue_palette(catalog: Catalog) -> dict[str, tuple[int, int, int]]:
    """The palette colour grounding maps words onto: the catalogue's colours (all eleven if it has none)."""
    names = set(catalog.attribute_values("colour")) or set(CATALOGUE_COLOURS)
    return {n: rgb for n, rgb in CATALOGUE_COLOURS.items() if n in names}


def prefetch(arm: "RetrievalArm", queries: Sequence[Query]) -> None:
    """Encode the texts the arm will see for ``queries`` in one batch, if its encoder remembers texts."""
    if isinstance(arm.encoder, RememberedTexts):
        arm.encoder.remember([arm.prepare_text(q.text)[0] for q in queries])


@dataclass
class BenchRun:
    """One retrieval setting scored on the query sets: an encoder with a grounding setting (``GROUNDINGS``)."""

    label: str
    encoder: str
    grounding: str
    arm: "RetrievalArm"


def study_grounding(query: QuerySpec) -> str:
    """The study's own grounding setting, as one of ``GROUNDINGS``."""
    if query.colour_grounding and query.garment_grounding:
        return "colour+garments"
    return "colour" if query.colour_grounding else "off"


def make_runs(study: Study, models: "StudyModels", encoders: dict[str, "ModelEncoder"],
              palette: dict[str, tuple[int, int, int]]) -> list[BenchRun]:
    """Every evaluated encoder under every grounding setting (the ablation), through ``RetrievalArm``.

    "colour+garments" needs the study's ``[query.garments]`` anchors; without them that setting is skipped.
    """
    from dressup.arms import RetrievalArm  # torch and faiss: only when arms are built

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


def study_arm_runs(study: Study, runs: Sequence[BenchRun]) -> dict[str, BenchRun]:
    """The study's retrieval arms, each as the run with its encoder and the study's grounding setting.

    For text-only queries an arm is exactly that: fusion settings only matter when photos are given.
    """
    by_key = {(r.encoder, r.grounding): r for r in runs}
    own = study_grounding(study.query)
    return {a.name: by_key[(a.encoder, own)] for a in study.arms
            if a.kind == "retrieval" and (a.encoder, own) in by_key}


def _score_runs(runs: Sequence[BenchRun], query_sets: dict[str, list[Query]], out: Path, result: Evaluation,
                *, progress: bool) -> None:
    """Run every query set through every run; summaries into ``result``, the CSV files under ``out``."""
    per_query: list[tuple[str, QueryResult]] = []
    for set_name, queries in query_sets.items():
        for run in runs:
            prefetch(run.arm, queries)
            res = run_queries(run.arm, queries, progress=progress, desc=f"{set_name}: {run.label}")
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


BENCHMARK_INTRO = (
    "Each query returns four items; a cell is the mean number of them carrying every meant attribute "
    "(`all meant`, pattern included where a query means one), the meant colour and category "
    "(`colour + category`), or the meant value of one kind. `ceiling` is the best the catalogue allows "
    "(4 unless fewer items carry the combination). Grounding: `off` = the text as written; `colour` = colour "
    "words mapped to the catalogue's colours in place; `colour+garments` = colours, garments (WordNet) and "
    "negations read into the catalogue's words (dressup.reading).")


def _tag_table(result: Evaluation, arm_labels: dict[str, str]) -> list[str]:
    """The participant-language scores of the study's arms per tag (what makes a query hard)."""
    tags = [b for b in result.by_tag if b["run"] in arm_labels]
    if not tags:
        return []
    table = []
    for tag in dict.fromkeys(b["tag"] for b in tags):
        row = [tag, next(b["queries"] for b in tags if b["tag"] == tag)]
        row += [next((b["all"] for b in tags if b["tag"] == tag and b["run"] == label), float("nan"))
                for label in arm_labels]
        table.append(row)
    return ["## Participant-language queries by what makes them hard (all meant, of 4)", "",
            markdown_table(["tag", "queries", *arm_labels.values()], table), ""]


def benchmark_markdown(study: Study, runs: Sequence[BenchRun], query_sets: dict[str, list[Query]],
                       result: Evaluation) -> str:
    """benchmark.md: the study's arms, then the whole ablation, per query set; then the arms per tag."""

    def rows_for(set_name: str, labels: Sequence[str], names: Sequence[str]) -> list[list[Any]]:
        got = {b["run"]: b for b in result.benchmark if b["set"] == set_name}
        return [[n, got[l]["queries"], got[l]["all"], got[l][CORE], *(got[l][k] for k in KINDS), got[l]["ceiling"]]
                for n, l in zip(names, labels) if l in got]

    arms = study_arm_runs(study, runs)
    cols = ["", "queries", "all meant (of 4)", "colour + category (of 4)", *(f"{k} (of 4)" for k in KINDS),
            "ceiling"]
    md = ["# What participants' words retrieve", "", BENCHMARK_INTRO, ""]
    for set_name, title in (("participant", "Participant-language queries"), ("caption-word", "Caption-word queries")):
        if set_name not in query_sets:
            continue
        md += [f"## {title} ({len(query_sets[set_name])} queries): the study's arms", "",
               markdown_table(["arm", *cols[1:]], rows_for(set_name, [r.label for r in arms.values()], list(arms))),
               "", f"## {title}: ablation (every encoder, each grounding setting)", "",
               markdown_table(["encoder", *cols[1:]], rows_for(set_name, [r.label for r in runs],
                                                                [r.label for r in runs])), ""]
    md += _tag_table(result, {r.label: n for n, r in arms.items()})
    return "\n".join(md)


def run_benchmark(study: Study, runs: Sequence[BenchRun], query_sets: dict[str, list[Query]], out: Path,
                  result: Evaluation, *, progress: bool) -> None:
    """Score every run on every query set; write benchmark.md/.csv and the per-query CSV."""
    _score_runs(runs, query_sets, out, result, progress=progress)
    (out / "benchmark.md").write_text(benchmark_markdown(study, runs, query_sets, result), encoding="utf-8")
    result.files.append(out / "benchmark.md")
