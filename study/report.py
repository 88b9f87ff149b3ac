"""The analysis' outputs: the Markdown report, the CSV tables, ``--json`` and the plots, from an ``Analysis``.

``write_report`` is what ``python -m study.analyze`` writes to its output folder: the CSV tables (every number at
full precision), the PNG plots (``study.plots``) and ``report.md``, whose every number is also in a CSV beside
it. ``report_markdown`` builds the report section by section; each section's helper here states what it shows.
Numbers and tables are written by ``study.formatting``, which the plots share. Like the whole analysis this
module runs without the library (``dressup``), so it keeps its own plain file writes.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from study.findings import BOOTSTRAP_TEXT, MEASURE_LABELS, RULES, Analysis
from study.formatting import markdown_table, number, p_value, with_ci
from study.measures import FIGURES
from study.mixed import mixed_table
from study.plots import plot_all

# The paper's Table 2 (20 participants), for orientation only: a different study, never mixed with ours.
PAPER_TABLE2 = pd.DataFrame(
    {
        "arm": ["baseline", "finetuned FCLIP", "STN FCLIP", "Stable Diffusion"],
        "MAP@4": [0.417, 0.559, 0.204, 0.558],
        "average rank": [2.63, 1.89, 3.47, 2.0],
        "average rating": [5.53, 6.32, 3.42, 6.58],
        "rating variance": [None, 0.55, None, 1.22],
    }
)

COVERAGE_NOTE = (  # bench/RESULTS.md, "Analysis": 200 simulated studies of 20 participants, BCa
    "at 20 participants MAP@4 95.0% (Kaggle 95.1%), wearable share 93.8%, average rank 93.8%, differences of"
    " ranks 93.2%; short of 93%: average rating 92.8% (0.3 points) and differences of AP 92.8% (0.2; both"
    " within the ±1.5-point simulation error), differences of ratings 91.5% (1.5 short) and rating variance"
    " 90.1% (2.9 short:"
    " read its interval as too narrow). Kendall's W, Plackett–Luce worths and per-letter figures were not measured.")


# --- files ---------------------------------------------------------------------------------------------
def write_report(a: Analysis, out: Path, *, plots: bool = True) -> list[Path]:
    """Write the CSV tables, the plots (unless ``plots`` is false; their time goes to ``a.timings["plots"]``)
    and ``report.md`` to ``out``; returns the plots' paths."""
    write_tables(a, out)
    t0 = time.perf_counter()
    pngs = plot_all(a, out) if plots else []
    a.timings["plots"] = time.perf_counter() - t0
    (out / "report.md").write_text(report_markdown(a, pngs), encoding="utf-8")
    return pngs


def write_tables(a: Analysis, out: Path) -> list[Path]:
    """CSV tables for analysts (numbers at full precision)."""
    out.mkdir(parents=True, exist_ok=True)
    tables = {
        "arms.csv": a.figures, "tests_friedman.csv": a.friedman, "tests_pairwise.csv": a.pairwise,
        "kendalls_w.csv": a.kendall, "plackett_luce.csv": a.plackett_luce, "positions.csv": a.positions,
        "arm_letter_counts.csv": a.arm_letter_counts.reset_index(), "rating_counts.csv": a.rating_counts.reset_index(),
        "rank_shares.csv": a.rank_shares.reset_index(), "per_participant.csv": a.per_participant,
        "mixed_models.csv": mixed_table(a.models),
        "participants.csv": a.participants[["unit", "participant", "status", "included", "reason"]],
    }
    paths = []
    for name, df in tables.items():
        df.to_csv(out / name, index=False)
        paths.append(out / name)
    return paths


def to_json(a: Analysis) -> dict[str, Any]:
    """Every figure of the report for scripts: numbers to 6 significant digits (a p of 1.36e-7 stays
    1.36e-07, not 0.0); missing values are null."""
    def num(x: Any) -> Any:
        x = float(x)
        return None if math.isnan(x) else float(f"{x:.6g}")

    def rows(df: pd.DataFrame) -> list[dict[str, Any]]:
        return [{k: (num(v) if isinstance(v, (float, np.floating)) else v.item() if isinstance(v, np.generic) else v)
                 for k, v in r.items()} for r in df.to_dict("records")]

    arms = {}
    for _, row in a.figures.iterrows():
        d: dict[str, Any] = {}
        for name, _, _ in FIGURES:
            d[name] = num(row[name])
            d[f"{name}_ci"] = [num(row[f"{name}_ci_low"]), num(row[f"{name}_ci_high"])]
        d.update(n_map=int(row["n_map"]), n_rating=int(row["n_rating"]), n_rank=int(row["n_rank"]))
        arms[row["arm"]] = d
    return {
        "source": a.source,
        "participants": {"included": a.n_included, "excluded": a.exclusions()},
        "arms": arms,
        "friedman": {f"{r.measure}_by_{r.by}": {"chi2": num(r.chi2), "df": int(r.df), "p": num(r.p),
                                                 "kendalls_w": num(r.kendalls_w), "n": int(r.n), "note": r.note}
                     for r in a.friedman.itertuples()},
        "pairwise": rows(a.pairwise), "kendalls_w": rows(a.kendall)[0], "plackett_luce": rows(a.plackett_luce),
        "positions": rows(a.positions), "missing": a.missing,
        "arm_letter_counts": {arm: {k: int(v) for k, v in row.items()} for arm, row in a.arm_letter_counts.iterrows()},
        "mixed_models": {f.measure: {"n_participants": f.n_participants, "n_observations": f.n_observations,
                                     "terms": rows(f.terms), "participant_var": num(f.participant_var),
                                     "residual_var": num(f.residual_var), "icc": num(f.icc), "note": f.note}
                         for f in a.models},
        "bootstrap": {k: a.settings[k] for k in ("replicates", "seed", "confidence", "interval_method")},
        "definitions": {
            "map4_paper": "mean over participants of mean(Precision@i, i=1..4)",
            "map4_kaggle": "mean over participants of sum_{relevant i} Precision@i / min(4, #relevant), 0 if none",
            "avg_rank": "1 = best; ties get average ranks; " + RULES["ranking"],
            "rating_var": "sample variance across participants, ddof=1",
            "intervals": BOOTSTRAP_TEXT,
        },
    }


# --- report.md -----------------------------------------------------------------------------------------
def report_markdown(a: Analysis, plots: list[Path]) -> str:
    """The human-readable report. Every number in it is also in a CSV table beside it."""
    conf = int(round(a.settings["confidence"] * 100))
    names = {p.stem: p.name for p in plots}
    lines = _summary_lines(a, conf) + _figure_lines(names) + _test_lines(a, conf) + _model_lines(a, conf)
    lines += _plackett_luce_lines(a, conf) + _position_lines(a, conf, names) + _missing_lines(a)
    lines += _methods_lines() + _paper_lines()
    return "\n".join(lines)


def _summary_lines(a: Analysis, conf: int) -> list[str]:
    """Title, who was analysed, how the intervals were made, and the per-arm figures."""
    excl = a.exclusions()
    return [
        "# Dress-UP study: results", "",
        f"Source: `{a.source}`. {a.n_included} participants analysed; "
        + (", ".join(f"{v} excluded ({k})" for k, v in excl.items()) if excl else "none excluded") + ".",
        "",
        f"Figures are means over participants with {conf}% participant-level bootstrap CIs"
        f" ({a.settings['replicates']} replicates, seed {a.settings['seed']}; interval method:"
        f" {a.settings['interval_method']}).", "",
        "## Per arm", "",
        markdown_table(
            ["arm", "MAP@4 (paper)", "MAP@4 (H&M Kaggle AP@4)", "avg rank (1 best)", "avg rating (1-10)",
             "rating variance (ddof 1)", "wearable share", "n"],
            [[r.arm, with_ci(r._asdict(), "map4_paper"), with_ci(r._asdict(), "map4_kaggle"),
              with_ci(r._asdict(), "avg_rank", 2), with_ci(r._asdict(), "avg_rating", 2),
              with_ci(r._asdict(), "rating_var", 2), with_ci(r._asdict(), "relevant_share", 2),
              f"{r.n_map}/{r.n_rating}/{r.n_rank}"] for r in a.figures.itertuples()],
        ),
        "",
        "n = participants contributing to MAP / rating / rank. How often these intervals cover the truth,"
        " measured on simulated studies (`python -m bench coverage`): " + COVERAGE_NOTE, "",
    ]


def _figure_lines(names: dict[str, str]) -> list[str]:
    """The per-arm plots that were drawn (``names``: file stem -> file name)."""
    lines: list[str] = []
    for stem, caption in (("map4", "MAP@4 per arm"), ("ratings", "Rating distributions"),
                          ("ranks", "Rank distributions")):
        if stem in names:
            lines += [f"![{caption}]({names[stem]})", ""]
    return lines


def _test_lines(a: Analysis, conf: int) -> list[str]:
    """Friedman tests across arms, Kendall's W of the rankings, and the pairwise Wilcoxon tests."""
    alpha = a.settings["alpha"]
    lines = ["## Tests across arms", ""]
    fr = a.friedman[a.friedman["by"] == "arm"]
    lines += [markdown_table(
        ["measure", "n", "Friedman χ²", "df", "p", "Kendall's W", "note"],
        [[MEASURE_LABELS[r.measure], str(r.n), number(r.chi2, 2), str(r.df), p_value(r.p), number(r.kendalls_w),
          r.note] for r in fr.itertuples()]), ""]
    kw = a.kendall.iloc[0]
    lines += [f"Agreement of rankings: Kendall's W = {number(kw.kendalls_w)} [{number(kw.ci_low)},"
              f" {number(kw.ci_high)}] over {kw.n} complete rankings (0 = no agreement, 1 = all participants rank"
              " the arms identically).", ""]
    lines += ["### Pairwise Wilcoxon signed-rank tests (Holm-corrected within each measure)", ""]
    rows = []
    for r in a.pairwise.itertuples():
        sig = "yes" if r.p_holm < alpha else "no"
        rows.append([MEASURE_LABELS[r.measure], f"{r.arm_a} − {r.arm_b}", str(r.n),
                     f"{number(r.mean_diff, 2)} [{number(r.ci_low, 2)}, {number(r.ci_high, 2)}]",
                     p_value(r.p), p_value(r.p_holm), number(r.rank_biserial, 2), r.better if sig == "yes" else "–",
                     sig])
    lines += [markdown_table(["measure", "pair (a − b)", "n", f"mean difference [{conf}% CI]", "p", "p (Holm)",
                              "rank-biserial r", "favours", f"significant at {alpha:g}"], rows), "",
              f"'Favours' names an arm only where p (Holm) < {alpha:g}; otherwise the data do not say.", ""]
    return lines


def _model_lines(a: Analysis, conf: int) -> list[str]:
    """The mixed models, with their assumptions, beside the nonparametric tests."""
    lines = ["### Mixed model: all answers at once", "",
             "Per measure, a linear mixed model (statsmodels MixedLM, REML): arm and letter as fixed effects,"
             " a random intercept per participant. Unlike the tests above it keeps a participant who missed"
             " one answer and adjusts arm effects for position. Assumes an interval scale, normal residuals and"
             " participant effects with one variance for all arms, independent participants; AP@4 and ratings"
             " are bounded, so these hold only approximately.", ""]
    for f in a.models:
        label = MEASURE_LABELS.get(f.measure, f.measure)
        if f.terms.empty:
            lines += [f"- {label}: not fitted: {f.note}.", ""]
            continue
        lines += [f"**{label}** ({f.n_participants} participants, {f.n_observations} answers; participant"
                  f" variance {number(f.participant_var)}, residual variance {number(f.residual_var)}, intraclass"
                  f" correlation {number(f.icc, 2)}{'; ' + f.note if f.note else ''}):", "",
                  markdown_table(["term", f"estimate [{conf}% CI]", "p"],
                                 [[r.term, f"{number(r.estimate)} [{number(r.ci_low)}, {number(r.ci_high)}]",
                                   p_value(r.p)] for r in f.terms.itertuples() if r.term != "intercept"]), ""]
    return lines


def _plackett_luce_lines(a: Analysis, conf: int) -> list[str]:
    """The Plackett–Luce worths, when there were strict rankings to fit them to."""
    if "worth" not in a.plackett_luce:
        return []
    return ["### Plackett–Luce model of the rankings", "",
            f"Worth = the model's probability that a participant ranks the arm first"
            f" ({int(a.plackett_luce['n'].iloc[0])} strict rankings; tied rankings are left out; one"
            f" pseudo-ranking spread over all orders keeps the estimate finite).", "",
            markdown_table(["arm", f"worth [{conf}% CI]"],
                           [[r.arm, f"{number(r.worth)} [{number(r.ci_low)}, {number(r.ci_high)}]"]
                            for r in a.plackett_luce.itertuples()]), ""]


def _position_lines(a: Analysis, conf: int, names: dict[str, str]) -> list[str]:
    """Counterbalancing (grids per arm and letter) and position effects, or why they cannot be checked."""
    lines = ["## Counterbalancing and position (letter A–D = the grid's place on the page)", ""]
    if not len(a.positions):
        return lines + ["The input has no letter column, so position effects cannot be checked.", ""]
    lines += ["Grids shown under each letter, per arm (a balanced Latin square gives equal counts):", "",
              markdown_table(["arm"] + list(a.arm_letter_counts.columns),
                             [[arm] + [str(v) for v in row] for arm, row in a.arm_letter_counts.iterrows()]), "",
              markdown_table(["letter", f"avg rating [{conf}% CI]", "avg rank", "MAP@4 (paper)"],
                             [[r.letter, with_ci(r._asdict(), "rating", 2), with_ci(r._asdict(), "rank", 2),
                               with_ci(r._asdict(), "ap_paper")] for r in a.positions.itertuples()]), ""]
    for r in a.friedman[a.friedman["by"] == "letter"].itertuples():
        lines.append(f"- Friedman test of a position effect on {MEASURE_LABELS[r.measure]}: χ² = {number(r.chi2, 2)},"
                     f" df = {r.df}, p = {p_value(r.p)}, Kendall's W = {number(r.kendalls_w)} (n = {r.n}).")
    lines.append("")
    if "positions" in names:
        lines += [f"![Position effects]({names['positions']})", ""]
    return lines


def _missing_lines(a: Analysis) -> list[str]:
    """How many answers were missing, and the rules that say what a missing answer leaves out."""
    lines = ["## Missing answers", ""]
    lines += [f"- {k}: {v}" for k, v in a.missing.items()]
    return lines + [f"- Rule: {RULES[key]}." for key in ("ranking", "missing", "relevance", "ties")] + [""]


def _methods_lines() -> list[str]:
    """Definitions of the figures and the assumptions of each test."""
    return [
        "## Methods and assumptions", "",
        "- **MAP@4 (paper)**: per participant and arm, AP@4 = (P@1 + P@2 + P@3 + P@4) / 4 with P@i the share of"
        " the first i images (display order) marked wearable; MAP@4 is its mean over participants.",
        "- **MAP@4 (H&M Kaggle AP@4)**: sum of P@i over wearable positions i, divided by min(4, number of"
        " wearable images), 0 when none; only shown images are judged, so the denominator counts wearable"
        " shown images.",
        "- **Rating variance**: sample variance across participants (ddof = 1) of the arm's ratings.",
        f"- **Bootstrap**: {BOOTSTRAP_TEXT}. BCa corrects the percentile interval's bias and skew; where"
        " BCa is undefined (no spread, or resamples that leave a figure undefined) the percentile interval is"
        " used and the line at the top says for how many figures. Measured coverage of the 95% intervals"
        " (`python -m bench coverage`, bench/RESULTS.md): " + COVERAGE_NOTE,
        "- **Friedman test**: participants are independent blocks; within a participant, the arms' values are"
        " ranked (ties averaged, tie-corrected χ² with k − 1 df, an asymptotic approximation that is rough below"
        " ~10 participants). Effect size: Kendall's W = χ² / (n (k − 1)).",
        "- **Wilcoxon signed-rank**: paired differences are independent across participants and symmetric about"
        " their median under H0; zero differences are dropped (Wilcoxon's method); exact p without ties,"
        " a full permutation test for ≤ 13 pairs with ties, else the normal approximation (scipy 'auto')."
        " Holm's step-down correction over the pairs of each measure controls the family-wise error rate."
        " Effect size: matched-pairs rank-biserial r = (W+ − W−) / (W+ + W−) for a − b.",
        "- **Which figures assume an interval scale**: Friedman's test and Kendall's W use only the order of"
        " a participant's values. The Wilcoxon signed-rank test ranks the *sizes* of the paired differences,"
        " so it assumes a difference of 2 rating points means more than 1 (an interval scale), as do means,"
        " mean differences, variances and the mixed model. Ratings are ordinal answers, so read those as"
        " approximations.",
        "- **Plackett–Luce**: each ranking is a sequence of choices of the best remaining arm with probability"
        " proportional to the arm's worth (MM algorithm, Hunter 2004).", "",
    ]


def _paper_lines() -> list[str]:
    """The paper's Table 2, for orientation only (a different study)."""
    return [
        "## For orientation only: the paper's Table 2 (a different study, 20 participants)", "",
        "These are the paper's numbers, not ours; arm names differ and nothing above is computed from them.", "",
        markdown_table(list(PAPER_TABLE2.columns),
                       [[str(v) if v is not None and not (isinstance(v, float) and math.isnan(v)) else "–"
                         for v in row] for row in PAPER_TABLE2.itertuples(index=False)]), "",
    ]
