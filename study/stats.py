"""The analysis' statistics: significance tests, Kendall's W, Plackett–Luce worths and the bootstrap's sums.

Each function here takes participant x arm matrices (NaN = missing) and knows nothing of files or reports:
Holm's correction, Kendall's W with its tie correction, Friedman's test, the Wilcoxon signed-rank test with
scipy's 'auto' choices (and a fast exact permutation path), Hunter's MM fit of the Plackett–Luce model, and
the stacked blocks (``Blocks``/``Resampled``) that let one participant-level resampling (``study.intervals``)
give every figure's bootstrap distribution from matrix products. ``Rankings`` bundles what the complete
rankings contribute: Kendall's W and the Plackett–Luce worths, with their intervals.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations, permutations
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats


# --- tests ---------------------------------------------------------------------------------------------
def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (controls the family-wise error rate; no independence needed)."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adjusted
    return out


def kendalls_w(matrix: np.ndarray) -> float:
    """Kendall's W (with tie correction) for an n x k matrix: rows are raters, values are ranked within
    a row (higher value = higher rank). 0 = no agreement, 1 = every row orders the arms identically."""
    x = np.asarray(matrix, dtype=float)
    n, k = x.shape
    if n == 0 or k < 2:
        return float("nan")
    r = stats.rankdata(x, axis=1, method="average")
    return _kendalls_w_from_sums(r.sum(axis=0), n, _tie_term(x).sum())


def tie_sizes(x: np.ndarray) -> np.ndarray:
    """For each value, how many values of its row equal it (1 = untied)."""
    return (x[:, :, None] == x[:, None, :]).sum(axis=2)


def _tie_term(x: np.ndarray) -> np.ndarray:
    """Per row: sum over tie groups of t^3 - t (the Friedman/Kendall tie correction). Each of a group's
    t members adds t^2 - 1, so summing per value gives the per-group sum."""
    t = tie_sizes(np.asarray(x, dtype=float))
    return (t ** 2 - 1).sum(axis=1).astype(float)


def _kendalls_w_from_sums(rank_sums: np.ndarray, n: float | np.ndarray, tie_sum: float | np.ndarray) -> Any:
    k = np.shape(rank_sums)[-1]
    numerator = 12 * (rank_sums ** 2).sum(axis=-1) - 3 * n ** 2 * k * (k + 1) ** 2
    denominator = n ** 2 * k * (k ** 2 - 1) - n * tie_sum
    with np.errstate(invalid="ignore", divide="ignore"):
        return numerator / denominator


@dataclass
class FriedmanResult:
    measure: str
    by: str  # "arm" or "letter"
    n: int
    k: int
    chi2: float
    df: int
    p: float
    kendalls_w: float
    note: str = ""


def friedman(matrix: np.ndarray, measure: str = "", by: str = "arm") -> FriedmanResult:
    """Friedman's test on the complete rows of an n x k matrix (scipy, tie-corrected chi-square), with
    Kendall's W = chi2 / (n (k - 1)) as its effect size."""
    x = np.asarray(matrix, dtype=float)
    x = x[~np.isnan(x).any(axis=1)]
    n, k = x.shape
    if k < 3 or n < 2:
        return FriedmanResult(measure, by, n, k, math.nan, k - 1, math.nan, math.nan,
                              "needs 3 or more arms and 2 or more complete participants")
    w = kendalls_w(x)
    if not np.isfinite(w):  # every row entirely tied: nothing to test
        return FriedmanResult(measure, by, n, k, 0.0, k - 1, 1.0, 0.0, "every participant tied all arms")
    res = stats.friedmanchisquare(*x.T)
    return FriedmanResult(measure, by, n, k, float(res.statistic), k - 1, float(res.pvalue), float(w))


@dataclass
class PairwiseResult:
    measure: str
    arm_a: str
    arm_b: str
    n: int  # participants with both values
    n_nonzero: int  # differences that are not zero (Wilcoxon drops zeros)
    mean_diff: float  # mean of a - b
    ci_low: float
    ci_high: float
    w_plus: float  # sum of ranks of positive differences
    w_minus: float
    p: float
    p_holm: float
    rank_biserial: float  # (W+ - W-) / (W+ + W-), in [-1, 1]
    better: str  # the arm the data favour ('' when the difference is 0)


PERMUTATION_MAX_N = 13  # scipy's 'auto' switches to a full sign-flip permutation test up to here


def wilcoxon_pair(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, int]:
    """Wilcoxon signed-rank test of x - y, the choices of ``scipy.stats.wilcoxon(method="auto")``: zeros
    dropped (Wilcoxon's method); exact p without ties or zeros (n <= 50); with ties or zeros and n <= 13,
    the full sign-flip permutation distribution (enumerated here: scipy's ``permutation_test`` gives the
    same p but takes ~0.5 s a call, too slow for power simulations); else the normal approximation.
    Returns (W+, W-, two-sided p, number of non-zero differences)."""
    d = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    d = d[~np.isnan(d)]
    nz = d[d != 0]
    if len(nz) == 0:
        return 0.0, 0.0, 1.0, 0
    r = stats.rankdata(np.abs(nz))
    w_plus, w_minus = float(r[nz > 0].sum()), float(r[nz < 0].sum())
    ties_or_zeros = len(nz) < len(d) or len(np.unique(r)) < len(r)
    if ties_or_zeros and len(d) <= PERMUTATION_MAX_N:
        signs = (np.arange(2 ** len(r))[:, None] >> np.arange(len(r))) & 1  # every sign flip
        dist = signs @ r
        tol = 1e-9 * max(w_plus, 1.0)
        p = min(1.0, 2 * min(np.mean(dist <= w_plus + tol), np.mean(dist >= w_plus - tol)))
    else:
        p = float(stats.wilcoxon(d, zero_method="wilcox", method="auto").pvalue)
    return w_plus, w_minus, float(p), len(nz)


def pairwise(matrix: np.ndarray, arms: Sequence[str], measure: str) -> list[PairwiseResult]:
    """Wilcoxon signed-rank tests for every pair of arms on the complete rows, Holm-corrected together."""
    x = np.asarray(matrix, dtype=float)
    x = x[~np.isnan(x).any(axis=1)]
    lower_is_better = measure == "rank"
    out = []
    for a, b in combinations(range(len(arms)), 2):
        w_plus, w_minus, p, nz = wilcoxon_pair(x[:, a], x[:, b])
        diff = float(np.mean(x[:, a] - x[:, b])) if len(x) else math.nan
        rbc = (w_plus - w_minus) / (w_plus + w_minus) if nz else 0.0
        better = "" if not diff or math.isnan(diff) else arms[a] if (diff < 0) == lower_is_better else arms[b]
        out.append(PairwiseResult(measure, arms[a], arms[b], len(x), nz, diff, math.nan, math.nan,
                                  w_plus, w_minus, p, math.nan, rbc, better))
    for r, adj in zip(out, holm([r.p for r in out])):
        r.p_holm = float(adj)
    return out


# --- Plackett-Luce --------------------------------------------------------------------------------------
def ranking_patterns(k: int) -> tuple[list[tuple[int, ...]], np.ndarray, np.ndarray]:
    """All strict orderings of k arms (best first) and, per ordering and stage, the set still to be
    placed (``alive``) and the arm chosen (``chosen``), both (P, k - 1, k)."""
    orders = list(permutations(range(k)))
    alive = np.zeros((len(orders), k - 1, k))
    chosen = np.zeros((len(orders), k - 1, k))
    for p, order in enumerate(orders):
        for s in range(k - 1):
            alive[p, s, list(order[s:])] = 1
            chosen[p, s, order[s]] = 1
    return orders, alive, chosen


PL_PSEUDO_RANKINGS = 1.0  # one ranking spread evenly over all orders: worths exist even if an arm is always last


def plackett_luce(counts: np.ndarray, alive: np.ndarray, chosen: np.ndarray, iterations: int = 1000) -> np.ndarray:
    """Plackett-Luce worths by Hunter's (2004) MM algorithm from counts of each strict ordering.

    ``counts`` is (P,) or (B, P): a leading batch axis fits every bootstrap replicate at once. Worths are
    normalised to sum to 1, so a worth is the model's probability that the arm is ranked first.
    ``PL_PSEUDO_RANKINGS`` are added, spread evenly over all orders, so the estimate exists (without it an
    arm that is never preferred has no finite maximum-likelihood worth) and is pulled slightly towards
    equal worths; its weight vanishes as rankings accumulate."""
    batched = np.ndim(counts) > 1
    counts = np.atleast_2d(np.asarray(counts, dtype=float)) + PL_PSEUDO_RANKINGS / alive.shape[0]
    n_patterns, stages, k = alive.shape
    alive2 = alive.reshape(n_patterns * stages, k)
    wins = counts @ chosen.sum(axis=1)
    weight = np.repeat(counts, stages, axis=1)  # (B, P*S): how often each (ordering, stage) occurs
    gamma = np.full((len(counts), k), 1.0 / k)
    for _ in range(iterations):
        stage_total = gamma @ alive2.T
        with np.errstate(divide="ignore", invalid="ignore"):
            denom = np.where(stage_total > 0, weight / stage_total, 0.0) @ alive2
            new = np.where(denom > 0, wins / denom, 0.0)
            new /= new.sum(axis=1, keepdims=True)
        done = np.nanmax(np.abs(new - gamma)) < 1e-9
        gamma = new
        if done:
            break
    return gamma if batched else gamma[0]


# --- bootstrap -----------------------------------------------------------------------------------------
class Blocks:
    """Named participant-level blocks (n x columns, NaN = missing) stacked once, so that every figure of a
    bootstrap resample comes from three matrix products with its draw counts (``study.intervals``)."""

    def __init__(self, blocks: dict[str, np.ndarray]) -> None:
        names = list(blocks)
        edges = np.cumsum([0] + [blocks[key].shape[1] for key in names])
        x = np.hstack([blocks[key] for key in names])
        present = ~np.isnan(x)
        x0 = np.where(present, x, 0.0)
        self.c = x.shape[1]
        self.cols = np.hstack([x0, x0 ** 2, present.astype(float)])
        self.slices = {key: slice(a, b) for key, a, b in zip(names, edges[:-1], edges[1:])}

    def resampled(self, w: np.ndarray) -> Resampled:
        """Sums for draw counts w (..., n): sum(w x), sum(w x^2) and non-missing draws per column."""
        s = w @ self.cols
        return Resampled(s[..., :self.c], s[..., self.c:2 * self.c], s[..., 2 * self.c:], self.slices)


class Resampled:
    """One resample's (or a batch of resamples') sums of the named blocks; the leading axes are the batch."""

    def __init__(self, s1: np.ndarray, s2: np.ndarray, n: np.ndarray, slices: dict[str, slice]) -> None:
        self._parts = {key: (s1[..., sl], s2[..., sl], n[..., sl]) for key, sl in slices.items()}

    def sums(self, key: str) -> np.ndarray:
        return self._parts[key][0]

    def counts(self, key: str) -> np.ndarray:
        return self._parts[key][2]

    def mean(self, key: str) -> np.ndarray:
        s1, _, n = self._parts[key]
        with np.errstate(invalid="ignore", divide="ignore"):
            return s1 / n

    def var(self, key: str) -> np.ndarray:
        """Sample variance (ddof 1) of each replicate."""
        s1, s2, n = self._parts[key]
        with np.errstate(invalid="ignore", divide="ignore"):
            return (s2 - s1 ** 2 / n) / (n - 1)


class Rankings:
    """The complete rankings: Kendall's W of their agreement and a Plackett-Luce fit, with CIs."""

    def __init__(self, rank: np.ndarray) -> None:
        n, k = rank.shape
        self.rank, self.k = rank, k
        self.complete = ~np.isnan(rank).any(axis=1)
        self.complete_ranks = np.where(self.complete[:, None], rank, np.nan)
        self.tie_terms = np.where(self.complete, _tie_term(np.nan_to_num(rank)), np.nan)[:, None]
        strict = self.complete & (tie_sizes(rank) == 1).all(axis=1)
        self.n_strict = int(strict.sum())
        self.patterns = ranking_patterns(k) if 2 <= k <= 5 else ([], None, None)
        orders = self.patterns[0]
        self.onehot = np.zeros((n, len(orders)))
        if orders:  # which strict ordering (best first) each participant gave, as a one-hot row
            weights = k ** np.arange(k)[::-1]
            code_of = np.full(k ** k, -1)
            code_of[[int(np.dot(o, weights)) for o in orders]] = np.arange(len(orders))
            best_first = np.argsort(np.nan_to_num(rank), axis=1, kind="stable")
            self.onehot[np.flatnonzero(strict), code_of[(best_first[strict] * weights).sum(axis=1)]] = 1
        self.onehot[~strict] = np.nan

    def kendall(self, boot: Resampled) -> np.ndarray:
        """Kendall's W of a resample's complete rankings, (..., 1)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return _kendalls_w_from_sums(boot.sums("w_rank"), boot.counts("w_ties")[..., 0],
                                         boot.sums("w_ties")[..., 0])[..., None]

    def worths(self, boot: Resampled) -> np.ndarray:
        """Plackett-Luce worths of a resample's strict rankings, (..., k), or (..., 0) when there are none."""
        orders, alive, chosen = self.patterns
        counts = boot.sums("pl")
        if not (orders and self.n_strict):
            return counts[..., :0]
        return plackett_luce(counts, alive, chosen)

    def kendall_table(self, lo: np.ndarray, hi: np.ndarray) -> pd.DataFrame:
        n = int(self.complete.sum())
        point = kendalls_w(self.rank[self.complete]) if n else math.nan
        return pd.DataFrame([{"measure": "rank", "n": n, "kendalls_w": point, "ci_low": float(lo[0]),
                              "ci_high": float(hi[0])}])

    def plackett_luce_table(self, arms: list[str], worths: np.ndarray, lo: np.ndarray, hi: np.ndarray
                            ) -> pd.DataFrame:
        table = pd.DataFrame({"arm": arms})
        if len(worths):
            table["worth"], table["ci_low"], table["ci_high"], table["n"] = worths, lo, hi, self.n_strict
        return table
