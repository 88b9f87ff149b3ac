"""The study's analysis: per-arm figures with bootstrap CIs, significance tests, plots and a report.

Run ``python study/analyze.py FILE`` (or ``python -m study.analyze FILE``) on the study database
(.sqlite/.db), on its export (``long.csv``/``long.parquet`` from ``python -m study export``) or on the
interchange CSV (one row per shown image: ``participant, arm, position, relevant, rating, rank``; see
``INTERCHANGE_HELP``). It writes ``report.md``, CSV tables and PNG plots to ``results/analysis/``
(``--out``) and, with ``--json``, prints the per-arm figures as JSON.

This module holds the orchestration (``analyze``: answers -> figures, tests, intervals, models) and the
command line; the parts live beside it and are re-exported here, so ``from study.analyze import ...`` keeps
working: ``study.answers`` (loading the three formats, cleaning, who is analysed), ``study.measures``
(per-participant values, AP@4, per-arm figures), ``study.stats`` (tests, Kendall's W, Plackett–Luce, the
bootstrap's sums), ``study.intervals`` (BCa intervals), ``study.mixed`` (the mixed model), ``study.findings``
(the ``Analysis`` record and the rules the report states) and ``study.report`` (report.md, CSV, JSON, plots).

The analysis deliberately needs only numpy, pandas, scipy, matplotlib and statsmodels (the mixed model,
``study.mixed``; skipped with a note when missing) and ``study.schema`` for the database's one query: an
analyst runs it on a laptop without torch, the models or Gradio.

Definitions the numbers rely on (the report repeats them):
- the *unit* of analysis is a participant: a session of the database, or a ``participant`` of a CSV;
- AP@4 (paper) = mean of Precision@i for i = 1..4 over the grid's positions in display order;
- AP@4 (H&M Kaggle) = sum over relevant positions i of Precision@i / min(4, number relevant), 0 if none;
- MAP@4 = mean of AP@4 over participants; ranks are 1 = best, ties get average ranks;
- rating variance = sample variance across participants (ddof = 1) of the arm's ratings;
- CIs are BCa intervals of a participant-level bootstrap (participants resampled with replacement,
  all arms of a participant kept together, so paired structure is preserved; ``study.intervals``);
- a ranking counts only when it ranks every arm of the study (``RULES`` lists every rule the report states).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

if __package__ in (None, ""):  # run as `python study/analyze.py`: make `study` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from study.answers import (  # noqa: E402
    DB_SUFFIXES, EXCLUSION_ORDER, INTERCHANGE_COLUMNS, INTERCHANGE_HELP, K, AnalysisInputError, StudyData,
    describe_people, from_table, load, participants_table,
)
from study.findings import (  # noqa: E402
    BOOTSTRAP_TEXT, MEASURE_LABELS, MEASURES, MODEL_MEASURES, RULES, Analysis,
)
from study.intervals import Intervals, bootstrap_intervals, method_summary  # noqa: E402
from study.measures import (  # noqa: E402
    FIGURES, Matrices, ap_kaggle, ap_paper, build_matrices, by_letter, paired_differences, participant_values,
    point_figures, positions_table, rank_shares,
)
from study.mixed import MixedFit, fit_mixed, mixed_table  # noqa: E402
from study.report import (  # noqa: E402
    COVERAGE_NOTE, PAPER_TABLE2, plot_all, report_markdown, to_json, write_report, write_tables,
)
from study.schema import LETTERS  # noqa: E402
from study.stats import (  # noqa: E402
    PERMUTATION_MAX_N, PL_PSEUDO_RANKINGS, Blocks, FriedmanResult, PairwiseResult, Rankings, friedman, holm,
    kendalls_w, pairwise, plackett_luce, ranking_patterns, wilcoxon_pair,
)

# The names this module's importers (tests, bench, study.simulate) use, whichever module now holds them;
# the underscored ones are their names from before the split.
_Blocks = Blocks
_paired_differences = paired_differences
_ranking_patterns = ranking_patterns
__all__ = [
    "DB_SUFFIXES", "EXCLUSION_ORDER", "INTERCHANGE_COLUMNS", "INTERCHANGE_HELP", "K", "AnalysisInputError",
    "StudyData", "from_table", "load", "participants_table",
    "BOOTSTRAP_TEXT", "MEASURE_LABELS", "MEASURES", "MODEL_MEASURES", "RULES", "Analysis",
    "FIGURES", "Matrices", "ap_kaggle", "ap_paper", "build_matrices",
    "MixedFit", "fit_mixed", "mixed_table",
    "COVERAGE_NOTE", "PAPER_TABLE2", "plot_all", "report_markdown", "to_json", "write_report", "write_tables",
    "PERMUTATION_MAX_N", "PL_PSEUDO_RANKINGS", "FriedmanResult", "PairwiseResult", "friedman", "holm",
    "kendalls_w", "pairwise", "plackett_luce", "wilcoxon_pair",
    "_Blocks", "_paired_differences", "_ranking_patterns",
    "analyze", "run", "main",
]

LETTER_MEASURES = ("rating", "rank", "ap_paper")  # re-indexed by letter for the position effects


# --- the analysis ----------------------------------------------------------------------------------------
def analyze(data: StudyData, *, replicates: int = 2000, seed: int = 0, confidence: float = 0.95,
            alpha: float = 0.05) -> Analysis:
    """Compute every figure, CI and test of the report from loaded study data."""
    if not 0 < confidence < 1:
        raise AnalysisInputError(f"confidence must be between 0 and 1, not {confidence}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    people = participants_table(data)
    m = build_matrices(data, _included_units(people, data.source))
    values = participant_values(m)
    figures = point_figures(m, values)
    letters = [L for L in LETTERS if (m.letter == L).any()]
    letter_values = {key: by_letter(values[key], m.letter, letters) for key in LETTER_MEASURES}
    timings["figures"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    friedmans, pairs = _tests(values, letter_values if letters else {}, m.arms)
    rankings = Rankings(m.rank)
    timings["tests"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    point, intervals, ci = _bootstrap(values, letter_values, rankings, len(m.units), replicates=replicates,
                                      seed=seed, confidence=confidence)
    _attach_intervals(figures, pairs, ci)
    kendall = rankings.kendall_table(*ci["kendall"])
    positions = positions_table(letter_values, letters, ci)
    pl = rankings.plackett_luce_table(m.arms, point["pl"], *ci["pl"])
    timings["bootstrap"] = time.perf_counter() - t0

    per_participant = _per_participant(m)
    t0 = time.perf_counter()
    models = [fit_mixed(per_participant, measure, m.arms, confidence) for measure in MODEL_MEASURES]
    timings["model"] = time.perf_counter() - t0
    return Analysis(
        source=data.source, arms=m.arms, participants=people, per_participant=per_participant,
        figures=figures, friedman=pd.DataFrame([r.__dict__ for r in friedmans]),
        pairwise=pd.DataFrame([r.__dict__ for r in pairs]), kendall=kendall, plackett_luce=pl,
        positions=positions, arm_letter_counts=_arm_letter_counts(per_participant, m.arms, letters),
        rating_counts=_rating_counts(m), rank_shares=rank_shares(m.rank, m.arms), missing=m.missing,
        settings={"replicates": replicates, "seed": seed, "confidence": confidence, "alpha": alpha,
                  "ranking_strict": rankings.n_strict, "interval_method": method_summary(intervals.methods)},
        timings=timings, models=models,
    )


def _included_units(people: pd.DataFrame, source: str) -> list[str]:
    """The units analysed; an error naming why nobody was included when there are none."""
    included = people.loc[people["included"], "unit"].tolist()
    if not included:
        raise AnalysisInputError(
            f"{source}: no participant can be analysed ({describe_people(people)}); only completed sessions count"
        )
    return included


def _tests(values: dict[str, np.ndarray], letter_values: dict[str, np.ndarray], arms: list[str]
           ) -> tuple[list[FriedmanResult], list[PairwiseResult]]:
    """Friedman's test per measure across arms (and across letters, when ``letter_values`` are given) and the
    Holm-corrected pairwise Wilcoxon tests per measure."""
    friedmans = [friedman(values[measure], measure) for measure in MEASURES]
    if letter_values:
        friedmans += [friedman(letter_values[measure], measure, by="letter") for measure in ("rating", "rank")]
    pairs = [r for measure in MEASURES for r in pairwise(values[measure], arms, measure)]
    return friedmans, pairs


def _bootstrap(values: dict[str, np.ndarray], letter_values: dict[str, np.ndarray], rankings: Rankings, n: int,
               *, replicates: int, seed: int, confidence: float
               ) -> tuple[dict[str, np.ndarray], Intervals, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """One resampling of participants serves every figure, paired difference and statistic (BCa, scipy).
    Returns the point values, the intervals, and per statistic its (low, high) bounds."""
    blocks = dict(values)
    blocks.update({f"diff_{measure}": paired_differences(values[measure]) for measure in MEASURES})
    blocks.update({f"letter_{key}": v for key, v in letter_values.items()})
    blocks["w_rank"], blocks["w_ties"] = rankings.complete_ranks, rankings.tie_terms
    blocks["pl"] = rankings.onehot
    stacked = Blocks(blocks)

    def parts(w: np.ndarray) -> dict[str, np.ndarray]:
        boot = stacked.resampled(w)
        out = {name: boot.mean(attr) if stat == "mean" else boot.var(attr) for name, attr, stat in FIGURES}
        out.update({f"diff_{measure}": boot.mean(f"diff_{measure}") for measure in MEASURES})
        out.update({f"letter_{key}": boot.mean(f"letter_{key}") for key in letter_values})
        out.update(kendall=rankings.kendall(boot), pl=rankings.worths(boot))
        return out

    point = parts(np.ones(n))
    edges = np.cumsum([0] + [v.shape[-1] for v in point.values()])
    intervals = bootstrap_intervals(lambda w: np.concatenate(list(parts(w).values()), axis=-1), n,
                                    replicates=replicates, seed=seed, confidence=confidence)
    ci = {key: (intervals.low[a:b], intervals.high[a:b]) for key, a, b in zip(point, edges[:-1], edges[1:])}
    return point, intervals, ci


def _attach_intervals(figures: pd.DataFrame, pairs: list[PairwiseResult],
                      ci: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Write the bounds into the per-arm figures (``*_ci_low``/``*_ci_high``) and the pairwise results."""
    for name, _, _ in FIGURES:
        figures[f"{name}_ci_low"], figures[f"{name}_ci_high"] = ci[name]
    for measure in MEASURES:
        lo, hi = ci[f"diff_{measure}"]
        for j, r in enumerate(r for r in pairs if r.measure == measure):
            r.ci_low, r.ci_high = float(lo[j]), float(hi[j])


def _per_participant(m: Matrices) -> pd.DataFrame:
    """One row per shown grid of an included participant: its letter, AP, rating and ranks."""
    arms = m.arms
    return pd.DataFrame({
        "unit": np.repeat(m.units, len(arms)), "arm": np.tile(arms, len(m.units)),
        "letter": m.letter.ravel(), "ap_paper": m.ap_paper.ravel(), "ap_kaggle": m.ap_kaggle.ravel(),
        "rating": m.rating.ravel(), "rank_given": m.rank_given.ravel(), "rank": m.rank.ravel(),
    })[m.shown.ravel()].reset_index(drop=True)


def _arm_letter_counts(per_participant: pd.DataFrame, arms: list[str], letters: list[str]) -> pd.DataFrame:
    """Grids shown per arm and letter (the counterbalancing check); no columns without letters."""
    if not letters:
        return pd.DataFrame(index=arms)
    return pd.crosstab(per_participant["arm"], per_participant["letter"]).reindex(
        index=arms, columns=letters, fill_value=0)


def _rating_counts(m: Matrices) -> pd.DataFrame:
    """Participants per arm and rating 1..10."""
    return pd.DataFrame(
        {r: (np.round(m.rating) == r).sum(axis=0) for r in range(1, 11)}, index=pd.Index(m.arms, name="arm"))


# --- command line --------------------------------------------------------------------------------------
def run(path: str | Path, out: str | Path = "results/analysis", *, replicates: int = 2000, seed: int = 0,
        confidence: float = 0.95, alpha: float = 0.05, plots: bool = True, study: str | None = None) -> Analysis:
    """Load, analyse and write ``report.md``, the CSV tables and the plots to ``out``."""
    data = load(path, study=study)
    a = analyze(data, replicates=replicates, seed=seed, confidence=confidence, alpha=alpha)
    write_report(a, Path(out), plots=plots)
    return a


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python study/analyze.py", description="Analyse a Dress-UP study: figures, tests, plots.",
        epilog="FILE: the study database (.sqlite/.db), its export (long.csv/long.parquet) or an interchange"
               " CSV; " + INTERCHANGE_HELP)
    parser.add_argument("file", help="study database, export or interchange CSV")
    parser.add_argument("--out", default="results/analysis", help="output folder (default results/analysis)")
    parser.add_argument("--json", action="store_true", help="print the per-arm figures as JSON on stdout")
    parser.add_argument("--replicates", type=int, default=2000, help="bootstrap replicates (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level for the report")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--study-name", default=None, help="which study, when a database holds several")
    args = parser.parse_args(argv)
    try:
        a = run(args.file, args.out, replicates=args.replicates, seed=args.seed, confidence=args.confidence,
                alpha=args.alpha, plots=not args.no_plots, study=args.study_name)
    except AnalysisInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(to_json(a), indent=2))
    else:
        print(f"{a.n_included} participants analysed; report: {Path(args.out) / 'report.md'}")
        cols = ["arm", "map4_paper", "map4_kaggle", "avg_rank", "avg_rating", "rating_var"]
        print(a.figures[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
