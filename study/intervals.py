"""Participant-level bootstrap intervals: BCa by ``scipy.stats.bootstrap``, every figure from one resampling.

Why BCa: the percentile interval is first-order accurate only; at the study's own size (the paper had 20
participants) it under-covered, most for skewed statistics (rating variance: 75-80% at n = 10). The
bias-corrected and accelerated interval (Efron 1987; Efron & Tibshirani 1993, ch. 14) corrects for the
median bias and the skewness of the bootstrap distribution; ``python -m bench coverage`` measures what it
achieves here (bench/RESULTS.md).

How: scipy resamples participant *indices* (all arms of a participant stay together) and hands them to
a vectorised statistic; ``draw_counts`` turns each resample into how often each participant was drawn,
so a statistic is a function of those counts, and sums over resampled participants are one matrix
product ``counts @ values`` instead of a Python loop. The jackknife that BCa needs for its acceleration
goes through the same statistic (leave-one-out index sets).

What the caller can rely on: with fewer than two participants there is no interval (NaN); where BCa is
undefined for a statistic (every resample gives the same value, or some resamples leave the statistic
undefined, e.g. no rating left for an arm) that statistic gets the percentile interval of the same
resamples, and ``methods`` says so; the same seed gives the same intervals.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import stats

BATCH_ELEMENTS = 2_000_000  # resamples x participants per call of the statistic (memory ~ 16 B each)


def draw_counts(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each of n participants appears in each resample: (..., m) indices -> (..., n) floats."""
    idx = np.asarray(idx)
    lead = idx.shape[:-1]
    rows = int(np.prod(lead)) if lead else 1
    flat = (idx.reshape(rows, -1) + (np.arange(rows) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(*lead, n).astype(float)


@dataclass
class Intervals:
    low: np.ndarray  # (m,)
    high: np.ndarray
    methods: np.ndarray  # (m,) "BCa", "percentile", "constant" (no spread) or "none"
    replicates: np.ndarray  # (m, B): the bootstrap distribution, for checks


def bootstrap_intervals(statistic: Callable[[np.ndarray], np.ndarray], n: int, *, replicates: int = 2000,
                        seed: int = 0, confidence: float = 0.95, method: str = "BCa") -> Intervals:
    """Intervals for the m statistics that ``statistic`` computes from draw counts.

    ``statistic(w)`` takes w of shape (..., n) (how often each participant is drawn; all ones is the
    original sample) and returns (..., m). ``method`` is "BCa" or "percentile" (for comparison)."""
    m = np.shape(statistic(np.ones(n)))[-1]
    if n < 2:
        nan = np.full(m, np.nan)
        return Intervals(nan, nan.copy(), np.full(m, "none", dtype=object), np.empty((m, 0)))

    def on_indices(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.moveaxis(statistic(draw_counts(idx, n)), -1, 0)

    batch = max(1, min(replicates, BATCH_ELEMENTS // n))
    with warnings.catch_warnings():  # degenerate or undefined resamples: handled below
        warnings.simplefilter("ignore")
        res = stats.bootstrap((np.arange(n),), on_indices, vectorized=True, n_resamples=replicates,
                              method=method, confidence_level=confidence, rng=seed, batch=batch)
        dist = np.asarray(res.bootstrap_distribution, dtype=float).reshape(m, -1)
        low = np.asarray(res.confidence_interval.low, dtype=float).reshape(m)
        high = np.asarray(res.confidence_interval.high, dtype=float).reshape(m)
        tail = (1 - confidence) / 2
        p_low, p_high = np.nanquantile(dist, [tail, 1 - tail], axis=1) if dist.shape[1] else (low, high)
    methods = np.full(m, method, dtype=object)
    fallback = np.isnan(low) | np.isnan(high) | np.isnan(dist).any(axis=1)
    low, high = np.where(fallback, p_low, low), np.where(fallback, p_high, high)
    methods[fallback] = "percentile"
    methods[np.nanmax(dist, axis=1, initial=-np.inf) == np.nanmin(dist, axis=1, initial=np.inf)] = "constant"
    methods[np.isnan(low)] = "none"
    return Intervals(low, high, methods, dist)


def method_summary(methods: np.ndarray) -> str:
    """'BCa', or 'BCa; percentile for 3 figures ...', for the report."""
    methods = [str(x) for x in methods]
    if not methods or set(methods) == {"none"}:
        return "none (fewer than two participants)"
    notes = {"percentile": "percentile for {} (some resamples leave them undefined, so BCa is too)",
             "constant": "{} without spread (every resample gives the same value)",
             "none": "{} without an interval (no data)"}
    extra = [text.format(f"{methods.count(kind)} figure" + ("s" * (methods.count(kind) > 1)))
             for kind, text in notes.items() if methods.count(kind)]
    return "; ".join(["BCa"] + extra)
