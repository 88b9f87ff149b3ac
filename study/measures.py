"""Per-participant values and per-arm figures: what the statistics are computed from.

``build_matrices`` pivots the included participants' answers into participant x arm arrays (NaN = missing),
applying the rules the report states (``study.findings.RULES``): a grid with an unanswered relevance mark has
no AP, a ranking counts only when it ranks every arm, ties get average ranks. The AP@4 definitions (the
paper's and the H&M Kaggle challenge's), the per-arm point figures (``FIGURES``), the paired differences the
pairwise tests and their intervals use, and the re-indexing by letter for position effects live here too,
so that the analysis, the simulations and the coverage benchmark compute them one way.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from itertools import combinations
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from study.answers import K, StudyData
from study.stats import tie_sizes


def ap_paper(rel: np.ndarray) -> np.ndarray:
    """AP@k as the paper defines it: the mean of Precision@i, i = 1..k, over the last axis (display order).
    NaN where any position of the grid is unanswered."""
    rel = np.asarray(rel, dtype=float)
    k = rel.shape[-1]
    precision = np.cumsum(rel, axis=-1) / np.arange(1, k + 1)
    return precision.mean(axis=-1)


def ap_kaggle(rel: np.ndarray) -> np.ndarray:
    """AP@k of the H&M Kaggle challenge: sum over relevant positions of Precision@i / min(k, #relevant),
    0 when none is relevant. Only the shown images are judged, so #relevant counts relevant shown images."""
    rel = np.asarray(rel, dtype=float)
    k = rel.shape[-1]
    precision = np.cumsum(rel, axis=-1) / np.arange(1, k + 1)
    n_rel = rel.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (precision * rel).sum(axis=-1) / np.minimum(k, n_rel)
    return np.where(n_rel == 0, 0.0, ap)


@dataclass
class Matrices:
    """Per-participant values of the included units, arms in ``arms`` order; NaN = missing."""

    units: list[str]
    arms: list[str]
    relevance: np.ndarray  # (n, arms, K)
    ap_paper: np.ndarray  # (n, arms)
    ap_kaggle: np.ndarray
    rating: np.ndarray
    rank: np.ndarray  # average ranks within a participant's complete ranking (1 = best)
    rank_given: np.ndarray  # as answered (before tie averaging)
    shown: np.ndarray  # (n, arms) bool
    letter: np.ndarray  # (n, arms) letter string or ""
    missing: dict[str, int]


def build_matrices(data: StudyData, included: Sequence[str]) -> Matrices:
    """Pivot the long table of the included units into participant x arm arrays."""
    long = data.long[data.long["unit"].isin(set(included))]
    arms = sorted(long["arm"].unique())
    seen = set(long["unit"])
    units = [u for u in included if u in seen]
    n, k = len(units), len(arms)
    ui = pd.Categorical(long["unit"], categories=units).codes
    ai = pd.Categorical(long["arm"], categories=arms).codes
    pi = long["position"].to_numpy() - 1
    relevance = np.full((n, k, K), np.nan)
    relevance[ui, ai, pi] = long["relevant"].to_numpy(dtype=float)
    shown = np.zeros((n, k), dtype=bool)
    shown[ui, ai] = True
    rating = np.full((n, k), np.nan)
    rank_given = np.full((n, k), np.nan)
    letter = np.full((n, k), "", dtype=object)
    for col, target in (("rating", rating), ("rank", rank_given)):
        has = long[col].notna().to_numpy()
        target[ui[has], ai[has]] = long[col].to_numpy(dtype=float)[has]
    has = (long["letter"] != "").to_numpy()
    letter[ui[has], ai[has]] = long["letter"].to_numpy(dtype=object)[has]
    # a grid with every position shown but some unanswered has NaN AP (dropped from MAP), not 0
    grid_complete = shown & ~np.isnan(relevance).any(axis=2)
    apm = np.where(grid_complete, ap_paper(np.nan_to_num(relevance)), np.nan)
    apk = np.where(grid_complete, ap_kaggle(np.nan_to_num(relevance)), np.nan)

    # ranks: a ranking counts only when it ranks every arm of the study (RANKING_RULE); ties -> average ranks
    rank = np.full((n, k), np.nan)
    full = (~np.isnan(rank_given) & shown).all(axis=1)
    if full.any():
        rank[full] = stats.rankdata(rank_given[full], axis=1, method="average")
    saw_some = shown.any(axis=1) & ~shown.all(axis=1)
    missing = {
        "grids with an unanswered relevance mark": int((shown & ~grid_complete).sum()),
        "participants missing a rating": int((shown & np.isnan(rating)).any(axis=1).sum()),
        "participants with an incomplete ranking": int((shown & np.isnan(rank_given)).any(axis=1).sum()),
        "participants shown only some arms (ranking left out)": int((saw_some & ~(shown & np.isnan(rank_given)).any(
            axis=1)).sum()),
        "participants with tied ranks": int((tie_sizes(rank_given) > 1).any(axis=1)[full].sum()),
    }
    return Matrices(units, arms, relevance, apm, apk, rating, rank, rank_given, shown, letter, missing)



FIGURES = (  # (column, matrix attribute, statistic)
    ("map4_paper", "ap_paper", "mean"),
    ("map4_kaggle", "ap_kaggle", "mean"),
    ("relevant_share", "relevant_share", "mean"),
    ("avg_rank", "rank", "mean"),
    ("avg_rating", "rating", "mean"),
    ("rating_var", "rating", "var"),
)


def participant_values(m: Matrices) -> dict[str, np.ndarray]:
    """The participant x arm matrices every figure and test is computed from (NaN = missing)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        share = np.nanmean(m.relevance, axis=2)
    share[~m.shown | np.isnan(m.relevance).any(axis=2)] = np.nan
    return {"ap_paper": m.ap_paper, "ap_kaggle": m.ap_kaggle, "relevant_share": share, "rank": m.rank,
            "rating": m.rating}


def point_figures(m: Matrices, values: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per arm, the point estimate of every figure in ``FIGURES`` and how many participants each rests on."""
    figures = pd.DataFrame({"arm": m.arms})
    with warnings.catch_warnings():  # an arm nobody answered gives NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        for name, attr, stat in FIGURES:
            v = values[attr]
            figures[name] = np.nanmean(v, axis=0) if stat == "mean" else np.nanvar(v, axis=0, ddof=1)
    figures["n_map"] = (~np.isnan(m.ap_paper)).sum(axis=0)
    figures["n_rating"] = (~np.isnan(m.rating)).sum(axis=0)
    figures["n_rank"] = (~np.isnan(m.rank)).sum(axis=0)
    return figures


def paired_differences(x: np.ndarray) -> np.ndarray:
    """Column a - b for every pair of arms (``combinations`` order), on the participants complete for
    the measure, the same participants the tests use."""
    complete = ~np.isnan(x).any(axis=1)
    pairs = list(combinations(range(x.shape[1]), 2))
    d = np.full((len(x), len(pairs)), np.nan)
    for j, (a, b) in enumerate(pairs):
        d[complete, j] = x[complete, a] - x[complete, b]
    return d


def positions_table(letter_values: dict[str, np.ndarray], letters: list[str], ci: dict[str, tuple]
                    ) -> pd.DataFrame:
    """Per letter (the grid's place on the page): mean rating, rank and AP with their intervals and n."""
    positions = pd.DataFrame({"letter": letters})
    for key, x in letter_values.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            positions[key] = np.nanmean(x, axis=0)
        positions[f"{key}_ci_low"], positions[f"{key}_ci_high"] = ci[f"letter_{key}"]
        positions[f"n_{key}"] = (~np.isnan(x)).sum(axis=0)
    return positions


def by_letter(values: np.ndarray, letter: np.ndarray, letters: list[str]) -> np.ndarray:
    """Re-index a participant x arm matrix by the letter each grid was shown under."""
    out = np.full((values.shape[0], len(letters)), np.nan)
    for j, L in enumerate(letters):
        rows, cols = np.nonzero(letter == L)
        out[rows, j] = values[rows, cols]
    return out


def rank_shares(rank: np.ndarray, arms: list[str]) -> pd.DataFrame:
    """Share of participants placing each arm 1st..kth. A tie spreads evenly over the places it spans
    (two arms tied at 2.5 put half a participant on 2nd and half on 3rd)."""
    k = len(arms)
    r = rank[~np.isnan(rank).any(axis=1)]
    shares = np.zeros((k, k))
    t = tie_sizes(r)
    first = np.rint(r - (t - 1) / 2).astype(int)  # the first place a tie group spans
    arm_of = np.broadcast_to(np.arange(k), r.shape)
    for offset in range(k):
        use = offset < t
        np.add.at(shares, (arm_of[use], first[use] + offset - 1), 1.0 / t[use])
    if len(r):
        shares /= len(r)
    return pd.DataFrame(shares, index=pd.Index(arms, name="arm"), columns=list(range(1, k + 1)))
