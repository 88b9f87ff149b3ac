"""The study's analysis: per-arm figures with bootstrap CIs, significance tests, plots and a report.

Run ``python study/analyze.py FILE`` (or ``python -m study.analyze FILE``) on the study database
(.sqlite/.db), on its export (``long.csv``/``long.parquet`` from ``python -m study export``) or on the
interchange CSV (one row per shown image: ``participant, arm, position, relevant, rating, rank``; see
``INTERCHANGE_HELP``). It writes ``report.md``, CSV tables and PNG plots to ``results/analysis/``
(``--out``) and, with ``--json``, prints the per-arm figures as JSON.

This module deliberately needs only numpy, pandas, scipy and matplotlib (and ``study.schema`` for the
database's one query): an analyst runs it on a laptop without torch, the models or Gradio.

Definitions the numbers rely on (the report repeats them):
- the *unit* of analysis is a participant: a session of the database, or a ``participant`` of a CSV;
- AP@4 (paper) = mean of Precision@i for i = 1..4 over the grid's positions in display order;
- AP@4 (H&M Kaggle) = sum over relevant positions i of Precision@i / min(4, number relevant), 0 if none;
- MAP@4 = mean of AP@4 over participants; ranks are 1 = best, ties get average ranks;
- rating variance = sample variance across participants (ddof = 1) of the arm's ratings;
- CIs are percentile intervals of a participant-level bootstrap (participants resampled with
  replacement, all arms of a participant kept together, so paired structure is preserved).
"""
from __future__ import annotations

import argparse
import json
import math
import sqlite3
import sys
import time
import warnings
from dataclasses import dataclass, field
from itertools import combinations, permutations
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

if __package__ in (None, ""):  # run as `python study/analyze.py`: make `study` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from study.schema import GRID_SIZE, LETTERS, LONG_QUERY, connect  # noqa: E402

K = GRID_SIZE  # MAP@K with K = the four images of a grid
DB_SUFFIXES = (".sqlite", ".sqlite3", ".db")
INTERCHANGE_COLUMNS = ("participant", "arm", "position", "relevant", "rating", "rank")
INTERCHANGE_HELP = (
    "expected one row per shown image with columns participant, arm, position (1-4, display order in the"
    " grid), relevant (1/0), rating (1-10) and rank (1 = best); rating and rank repeat on the four rows of"
    " a grid, empty cells mean missing answers; optional columns: letter (A-D), status"
)
MEASURES = ("rating", "rank", "ap_paper")  # what the tests compare; rank: lower is better
MEASURE_LABELS = {"rating": "rating (1-10)", "rank": "rank (1 = best)", "ap_paper": "AP@4 (paper)"}
EXCLUSION_ORDER = ("withdrawn", "incomplete", "failed attention check", "repeat session of a participant",
                   "completed without shown grids")

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


class AnalysisInputError(ValueError):
    """A study file the analysis cannot read; the message names the problem and the fix."""


# --- loading ------------------------------------------------------------------------------------------
@dataclass
class StudyData:
    """What the analysis reads, whatever the file.

    ``long``: one row per shown image, columns unit, participant, arm, position, relevant, rating, rank,
    letter ("" when unknown). ``sessions``: one row per unit (every session of the file, including
    withdrawn ones that have no shown rows), columns unit, participant, status, attention_passed, in the
    order sessions were created (the first of a participant's sessions is the one that counts).
    """

    long: pd.DataFrame
    sessions: pd.DataFrame
    source: str


def load(path: str | Path, *, study: str | None = None) -> StudyData:
    """Read a study database, its export, or an interchange CSV (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise AnalysisInputError(f"{path} does not exist; pass a study database (.sqlite), an export or a CSV")
    suffix = path.suffix.lower()
    if suffix in DB_SUFFIXES:
        return _load_db(path, study)
    if suffix == ".csv":
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    elif suffix == ".parquet":
        table = pd.read_parquet(path)
    else:
        raise AnalysisInputError(
            f"{path}: unknown file type {suffix!r}; pass a .sqlite/.db database, a .csv or a .parquet file"
        )
    sessions_csv = path.with_name("sessions.csv")
    sessions = None
    if "session" in table.columns and sessions_csv.is_file():  # an export folder: withdrawn sessions live here
        sessions = pd.read_csv(sessions_csv, dtype=str, keep_default_na=False)
    return from_table(table, sessions=sessions, source=str(path))


def _load_db(path: Path, study: str | None) -> StudyData:
    try:
        conn = connect(path, readonly=True)
    except sqlite3.Error as e:
        raise AnalysisInputError(f"cannot open {path} as an SQLite database: {e}") from e
    try:
        long = pd.read_sql_query(LONG_QUERY, conn)
        sessions = pd.read_sql_query(
            "SELECT session_id, study, participant, status, attention_passed FROM sessions"
            " ORDER BY created_at, session_id", conn)
    except (sqlite3.Error, pd.errors.DatabaseError) as e:
        raise AnalysisInputError(f"{path} is not a Dress-UP study database ({e})") from e
    finally:
        conn.close()
    names = sorted(sessions["study"].unique())
    if study is not None:
        if study not in names:
            raise AnalysisInputError(f"{path} has no study {study!r}; it has {names}")
        sessions = sessions[sessions["study"] == study]
        long = long[long["session_id"].isin(set(sessions["session_id"]))]
    elif len(names) > 1:
        raise AnalysisInputError(f"{path} holds several studies {names}; choose one with --study-name")
    long = long.rename(columns={"session_id": "unit"})
    sessions = sessions.rename(columns={"session_id": "unit"})
    return StudyData(_clean_long(long, str(path)), _clean_sessions(sessions), str(path))


def from_table(table: pd.DataFrame, *, sessions: pd.DataFrame | None = None, source: str = "<table>") -> StudyData:
    """Build ``StudyData`` from the interchange format (or the export's long table).

    The unit is the export's ``session`` column when present, else ``participant``. ``status`` (default
    'completed') and ``attention_passed`` are taken per unit when present.
    """
    missing = [c for c in INTERCHANGE_COLUMNS if c not in table.columns]
    if missing:
        raise AnalysisInputError(f"{source}: missing column(s) {missing}; {INTERCHANGE_HELP}")
    long = table.copy()
    long["participant"] = long["participant"].astype(str).str.strip()
    long["unit"] = long["session"].astype(str) if "session" in long.columns else long["participant"]
    if "status" not in long.columns:
        long["status"] = "completed"
    long["status"] = long["status"].astype(str).str.strip().replace("", "completed")
    if "attention_passed" not in long.columns:
        long["attention_passed"] = np.nan
    if "letter" not in long.columns:
        long["letter"] = ""
    # a withdrawn or incomplete participant may be listed by a row without an arm: count it, analyse nothing
    stub = (long["arm"].fillna("").astype(str).str.strip() == "") & (long["status"] != "completed")
    stubs = long.loc[stub, ["unit", "participant", "status", "attention_passed"]].drop_duplicates("unit")
    long = _clean_long(long[~stub], source)
    per_unit = long.groupby("unit", sort=False).agg(
        participant=("participant", "first"), status=("status", "first"),
        attention_passed=("attention_passed", "first"), n_status=("status", "nunique"),
    ).reset_index()
    if (per_unit["n_status"] > 1).any():
        bad = per_unit.loc[per_unit["n_status"] > 1, "unit"].iloc[0]
        raise AnalysisInputError(f"{source}: participant {bad!r} has different status values on its rows; give one")
    units = per_unit.drop(columns="n_status")
    stubs = stubs[~stubs["unit"].isin(set(units["unit"]))]
    if len(stubs):
        units = pd.concat([units, stubs], ignore_index=True)
    if sessions is not None:
        s = sessions.rename(columns={"session": "unit"}).copy()
        if "attention_passed" not in s.columns:
            s["attention_passed"] = np.nan
        extra = s[~s["unit"].astype(str).isin(set(units["unit"]))]
        units = pd.concat([units, extra[["unit", "participant", "status", "attention_passed"]]], ignore_index=True)
    return StudyData(long, _clean_sessions(units), source)


def _numeric(long: pd.DataFrame, column: str, source: str, allowed: tuple[float, float]) -> pd.Series:
    raw = long[column]
    if raw.dtype == object or pd.api.types.is_string_dtype(raw):
        text = raw.astype(str).str.strip().str.lower()
        text = text.replace({"": None, "nan": None, "none": None, "true": "1", "false": "0", "yes": "1", "no": "0"})
        values = pd.to_numeric(text, errors="coerce")
        bad = text.notna() & values.isna()
    else:
        values = pd.to_numeric(raw, errors="coerce").astype(float)
        bad = pd.Series(False, index=raw.index)
    lo, hi = allowed
    bad |= values.notna() & ((values < lo) | (values > hi))
    if bad.any():
        i = bad.idxmax()
        raise AnalysisInputError(
            f"{source}: column {column!r} has {raw.loc[i]!r} (participant {long.loc[i, 'participant']!r},"
            f" arm {long.loc[i, 'arm']!r}); it must be a number from {lo:g} to {hi:g} or empty"
        )
    return values.astype(float)


def _clean_long(long: pd.DataFrame, source: str) -> pd.DataFrame:
    """Types, ranges and consistency checks every loader shares."""
    long = long.reset_index(drop=True)
    for col in ("unit", "participant", "arm"):
        long[col] = long[col].astype(str).str.strip()
    if (long["arm"] == "").any():
        raise AnalysisInputError(f"{source}: some rows have no arm; every shown image needs its arm")
    long["letter"] = long["letter"].fillna("").astype(str).str.strip().str.upper()
    bad_letters = set(long["letter"]) - set(LETTERS) - {""}
    if bad_letters:
        raise AnalysisInputError(f"{source}: letter must be one of {LETTERS}, found {sorted(bad_letters)}")
    long["position"] = _numeric(long, "position", source, (1, K))
    if long["position"].isna().any() or (long["position"] % 1 != 0).any():
        raise AnalysisInputError(f"{source}: every row needs a whole position from 1 to {K} (display order)")
    long["position"] = long["position"].astype(int)
    long["relevant"] = _numeric(long, "relevant", source, (0, 1))
    if ((long["relevant"] % 1) > 0).any():
        raise AnalysisInputError(f"{source}: relevant must be 1 (would wear), 0 (would not) or empty")
    long["rating"] = _numeric(long, "rating", source, (1, 10))
    long["rank"] = _numeric(long, "rank", source, (1, len(LETTERS)))
    if "attention_passed" in long.columns:
        long["attention_passed"] = pd.to_numeric(long["attention_passed"].replace("", None), errors="coerce")
    dup = long.duplicated(["unit", "arm", "position"])
    if dup.any():
        r = long[dup].iloc[0]
        raise AnalysisInputError(
            f"{source}: participant {r['participant']!r} has two rows for arm {r['arm']!r} position"
            f" {r['position']}; give one row per shown image"
        )
    for col in ("rating", "rank", "letter"):
        vals = long[col].replace("", None) if col == "letter" else long[col]
        n = vals.groupby([long["unit"], long["arm"]], sort=False).nunique()
        if (n > 1).any():
            unit, arm = n[n > 1].index[0]
            raise AnalysisInputError(
                f"{source}: the {col} differs between the rows of participant {unit!r}'s grid {arm!r};"
                f" {col} is given once per grid and repeats on its four rows"
            )
    keep = ["unit", "participant", "arm", "position", "relevant", "rating", "rank", "letter"]
    return long[keep + [c for c in ("status", "attention_passed") if c in long.columns]]


def _clean_sessions(sessions: pd.DataFrame) -> pd.DataFrame:
    s = sessions.copy()
    s["unit"] = s["unit"].astype(str)
    s["participant"] = s["participant"].astype(str).str.strip()
    s["status"] = s["status"].fillna("completed").astype(str).str.strip().replace("", "completed")
    s["attention_passed"] = pd.to_numeric(s["attention_passed"].replace("", None), errors="coerce")
    return s.drop_duplicates("unit").reset_index(drop=True)[["unit", "participant", "status", "attention_passed"]]


# --- who is analysed ----------------------------------------------------------------------------------
def participants_table(data: StudyData) -> pd.DataFrame:
    """One row per unit with ``included`` and the reason it is excluded (first that applies, in the order
    of ``EXCLUSION_ORDER``). Only a participant's first included session counts."""
    s = data.sessions.copy()
    reason = pd.Series("", index=s.index, dtype=object)
    reason[s["status"] == "withdrawn"] = "withdrawn"
    reason[(reason == "") & (s["status"] != "completed")] = "incomplete"
    reason[(reason == "") & (s["attention_passed"] == 0)] = "failed attention check"
    reason[(reason == "") & ~s["unit"].isin(set(data.long["unit"]))] = "completed without shown grids"
    ok = reason == ""
    repeat = ok & s["participant"].where(ok).duplicated(keep="first") & ok
    reason[repeat] = "repeat session of a participant"
    s["included"] = reason == ""
    s["reason"] = reason
    return s


# --- per-participant values ----------------------------------------------------------------------------
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

    # ranks: a participant's ranking counts only when every arm they saw is ranked; ties -> average ranks
    rank = np.full((n, k), np.nan)
    complete = (~np.isnan(rank_given) | ~shown).all(axis=1) & shown.any(axis=1)
    full = complete & shown.all(axis=1)
    if full.any():
        rank[full] = stats.rankdata(rank_given[full], axis=1, method="average")
    for i in np.flatnonzero(complete & ~full):  # a participant who saw a subset of the arms (rare)
        rank[i, shown[i]] = stats.rankdata(rank_given[i, shown[i]], method="average")

    missing = {
        "grids with an unanswered relevance mark": int((shown & ~grid_complete).sum()),
        "participants missing a rating": int((shown & np.isnan(rating)).any(axis=1).sum()),
        "participants with an incomplete ranking": int((~complete).sum()),
        "participants with tied ranks": int(((_tie_sizes(rank_given) > 1) & shown).any(axis=1)[complete].sum()),
    }
    return Matrices(units, arms, relevance, apm, apk, rating, rank, rank_given, shown, letter, missing)


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


def _tie_sizes(x: np.ndarray) -> np.ndarray:
    """For each value, how many values of its row equal it (1 = untied)."""
    return (x[:, :, None] == x[:, None, :]).sum(axis=2)


def _tie_term(x: np.ndarray) -> np.ndarray:
    """Per row: sum over tie groups of t^3 - t (the Friedman/Kendall tie correction). Each of a group's
    t members adds t^2 - 1, so summing per value gives the per-group sum."""
    t = _tie_sizes(np.asarray(x, dtype=float))
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
def _ranking_patterns(k: int) -> tuple[list[tuple[int, ...]], np.ndarray, np.ndarray]:
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
def resample_sums(x: np.ndarray, replicates: int, seed: int, chunk_elements: int = 4_000_000
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Participant-level bootstrap of column sums, vectorised.

    ``x`` is (n participants, c columns) with NaN for missing. Each replicate draws n participants with
    replacement; its draw counts w (a row of an integer matrix W) give sum(w x), sum(w x^2) and the
    number of non-missing draws per column as three matrix products, so every mean, variance and
    paired difference of a replicate comes from (S1, S2, N) without a Python loop over replicates.
    Deterministic for a given seed (chunks are a fixed size)."""
    x = np.asarray(x, dtype=float)
    n, c = x.shape
    rng = np.random.default_rng(seed)
    present = ~np.isnan(x)
    x0 = np.where(present, x, 0.0)
    cols = np.hstack([x0, x0 ** 2, present.astype(float)])
    out = np.empty((replicates, 3 * c))
    chunk = max(1, min(replicates, chunk_elements // max(n, 1)))
    for start in range(0, replicates, chunk):
        b = min(chunk, replicates - start)
        draws = rng.integers(0, n, size=(b, n))
        flat = (draws + (np.arange(b) * n)[:, None]).ravel()
        w = np.bincount(flat, minlength=b * n).reshape(b, n).astype(float)
        out[start:start + b] = w @ cols
    return out[:, :c], out[:, c:2 * c], out[:, 2 * c:]


def _percentile_ci(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = (1 - confidence) / 2
    if samples.shape[1] == 0:
        return np.empty(0), np.empty(0)
    with warnings.catch_warnings():  # an all-NaN column (no data for an arm) gives a NaN interval
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(samples, [alpha, 1 - alpha], axis=0)
    return lo, hi


# --- the analysis ----------------------------------------------------------------------------------------
@dataclass
class Analysis:
    """Everything the report, the CSV tables, the plots and ``--json`` are made from."""

    source: str
    arms: list[str]
    participants: pd.DataFrame  # per unit: participant, status, included, reason
    per_participant: pd.DataFrame  # included unit x arm: ap_paper, ap_kaggle, rating, rank, letter
    figures: pd.DataFrame  # per arm, point estimates with ci_low/ci_high columns
    friedman: pd.DataFrame
    pairwise: pd.DataFrame
    kendall: pd.DataFrame  # agreement of rankings (W with CI)
    plackett_luce: pd.DataFrame
    positions: pd.DataFrame  # per letter: rating, rank, MAP with CIs
    arm_letter_counts: pd.DataFrame
    rating_counts: pd.DataFrame  # arm x rating 1..10: number of participants
    rank_shares: pd.DataFrame  # arm x place 1..k: share of participants (ties split evenly)
    missing: dict[str, int]
    settings: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_included(self) -> int:
        return int(self.participants["included"].sum())

    def exclusions(self) -> dict[str, int]:
        counts = self.participants.loc[~self.participants["included"], "reason"].value_counts()
        return {r: int(counts.get(r, 0)) for r in EXCLUSION_ORDER if counts.get(r, 0)}


FIGURES = (  # (column, matrix attribute, statistic)
    ("map4_paper", "ap_paper", "mean"),
    ("map4_kaggle", "ap_kaggle", "mean"),
    ("relevant_share", "relevant_share", "mean"),
    ("avg_rank", "rank", "mean"),
    ("avg_rating", "rating", "mean"),
    ("rating_var", "rating", "var"),
)


def analyze(data: StudyData, *, replicates: int = 2000, seed: int = 0, confidence: float = 0.95,
            alpha: float = 0.05) -> Analysis:
    """Compute every figure, CI and test of the report from loaded study data."""
    if not 0 < confidence < 1:
        raise AnalysisInputError(f"confidence must be between 0 and 1, not {confidence}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    people = participants_table(data)
    included = people.loc[people["included"], "unit"].tolist()
    if not included:
        raise AnalysisInputError(
            f"{data.source}: no participant can be analysed ({_describe(people)}); only completed sessions count"
        )
    m = build_matrices(data, included)
    arms = m.arms
    values = _participant_values(m)
    figures = _point_figures(m, values)
    letters = [L for L in LETTERS if (m.letter == L).any()]
    by_letter = {key: _by_letter(values[key], m.letter, letters) for key in ("rating", "rank", "ap_paper")}
    timings["figures"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    friedmans = [friedman(values[measure], measure) for measure in MEASURES]
    if letters:
        friedmans += [friedman(by_letter[measure], measure, by="letter") for measure in ("rating", "rank")]
    pairs = [r for measure in MEASURES for r in pairwise(values[measure], arms, measure)]
    rankings = _Rankings(m.rank)
    timings["tests"] = time.perf_counter() - t0

    # one resampling of participants serves every figure, paired difference and statistic
    t0 = time.perf_counter()
    blocks = dict(values)
    blocks.update({f"diff_{measure}": _paired_differences(values[measure]) for measure in MEASURES})
    blocks.update({f"letter_{key}": v for key, v in by_letter.items()})
    blocks["w_rank"], blocks["w_ties"] = rankings.complete_ranks, rankings.tie_terms
    blocks["pl"] = rankings.onehot
    boot = _Resampled(blocks, replicates, seed)
    for name, attr, stat in FIGURES:
        lo, hi = _percentile_ci(boot.mean(attr) if stat == "mean" else boot.var(attr), confidence)
        figures[f"{name}_ci_low"], figures[f"{name}_ci_high"] = lo, hi
    for measure in MEASURES:
        lo, hi = _percentile_ci(boot.mean(f"diff_{measure}"), confidence)
        for j, r in enumerate(r for r in pairs if r.measure == measure):
            r.ci_low, r.ci_high = float(lo[j]), float(hi[j])
    kendall = rankings.kendall_table(boot, confidence)
    positions = _positions_table(by_letter, letters, boot, confidence)
    pl = rankings.plackett_luce_table(arms, boot, confidence)
    timings["bootstrap"] = time.perf_counter() - t0

    per_participant = pd.DataFrame({
        "unit": np.repeat(m.units, len(arms)), "arm": np.tile(arms, len(m.units)),
        "letter": m.letter.ravel(), "ap_paper": m.ap_paper.ravel(), "ap_kaggle": m.ap_kaggle.ravel(),
        "rating": m.rating.ravel(), "rank_given": m.rank_given.ravel(), "rank": m.rank.ravel(),
    })[m.shown.ravel()].reset_index(drop=True)
    counts = pd.crosstab(per_participant["arm"], per_participant["letter"]).reindex(
        index=arms, columns=letters, fill_value=0) if letters else pd.DataFrame(index=arms)
    rating_counts = pd.DataFrame(
        {r: (np.round(m.rating) == r).sum(axis=0) for r in range(1, 11)}, index=pd.Index(arms, name="arm"))
    return Analysis(
        source=data.source, arms=arms, participants=people, per_participant=per_participant,
        figures=figures, friedman=pd.DataFrame([r.__dict__ for r in friedmans]),
        pairwise=pd.DataFrame([r.__dict__ for r in pairs]), kendall=kendall, plackett_luce=pl,
        positions=positions, arm_letter_counts=counts, rating_counts=rating_counts,
        rank_shares=_rank_shares(m.rank, arms), missing=m.missing,
        settings={"replicates": replicates, "seed": seed, "confidence": confidence, "alpha": alpha,
                  "ranking_strict": rankings.n_strict},
        timings=timings,
    )


def _participant_values(m: Matrices) -> dict[str, np.ndarray]:
    """The participant x arm matrices every figure and test is computed from (NaN = missing)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        share = np.nanmean(m.relevance, axis=2)
    share[~m.shown | np.isnan(m.relevance).any(axis=2)] = np.nan
    return {"ap_paper": m.ap_paper, "ap_kaggle": m.ap_kaggle, "relevant_share": share, "rank": m.rank,
            "rating": m.rating}


def _point_figures(m: Matrices, values: dict[str, np.ndarray]) -> pd.DataFrame:
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


def _paired_differences(x: np.ndarray) -> np.ndarray:
    """Column a - b for every pair of arms (``combinations`` order), on the participants complete for
    the measure, the same participants the tests use."""
    complete = ~np.isnan(x).any(axis=1)
    pairs = list(combinations(range(x.shape[1]), 2))
    d = np.full((len(x), len(pairs)), np.nan)
    for j, (a, b) in enumerate(pairs):
        d[complete, j] = x[complete, a] - x[complete, b]
    return d


class _Resampled:
    """Bootstrap replicates of named participant-level blocks, all from one ``resample_sums`` call."""

    def __init__(self, blocks: dict[str, np.ndarray], replicates: int, seed: int) -> None:
        names = list(blocks)
        edges = np.cumsum([0] + [blocks[key].shape[1] for key in names])
        s1, s2, n = resample_sums(np.hstack([blocks[key] for key in names]), replicates, seed)
        self._parts = {key: (s1[:, a:b], s2[:, a:b], n[:, a:b]) for key, a, b in zip(names, edges[:-1], edges[1:])}

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


class _Rankings:
    """The complete rankings: Kendall's W of their agreement and a Plackett-Luce fit, with CIs."""

    def __init__(self, rank: np.ndarray) -> None:
        n, k = rank.shape
        self.rank, self.k = rank, k
        self.complete = ~np.isnan(rank).any(axis=1)
        self.complete_ranks = np.where(self.complete[:, None], rank, np.nan)
        self.tie_terms = np.where(self.complete, _tie_term(np.nan_to_num(rank)), np.nan)[:, None]
        strict = self.complete & (_tie_sizes(rank) == 1).all(axis=1)
        self.n_strict = int(strict.sum())
        self.patterns = _ranking_patterns(k) if 2 <= k <= 5 else ([], None, None)
        orders = self.patterns[0]
        self.onehot = np.zeros((n, len(orders)))
        if orders:  # which strict ordering (best first) each participant gave, as a one-hot row
            weights = k ** np.arange(k)[::-1]
            code_of = np.full(k ** k, -1)
            code_of[[int(np.dot(o, weights)) for o in orders]] = np.arange(len(orders))
            best_first = np.argsort(np.nan_to_num(rank), axis=1, kind="stable")
            self.onehot[np.flatnonzero(strict), code_of[(best_first[strict] * weights).sum(axis=1)]] = 1
        self.onehot[~strict] = np.nan

    def kendall_table(self, boot: _Resampled, confidence: float) -> pd.DataFrame:
        n = int(self.complete.sum())
        point = kendalls_w(self.rank[self.complete]) if n else math.nan
        with np.errstate(invalid="ignore", divide="ignore"):
            replicates = _kendalls_w_from_sums(boot.sums("w_rank"), boot.counts("w_ties")[:, 0],
                                               boot.sums("w_ties")[:, 0])
        lo, hi = _percentile_ci(replicates[:, None], confidence)
        return pd.DataFrame([{"measure": "rank", "n": n, "kendalls_w": point, "ci_low": float(lo[0]),
                              "ci_high": float(hi[0])}])

    def plackett_luce_table(self, arms: list[str], boot: _Resampled, confidence: float) -> pd.DataFrame:
        table = pd.DataFrame({"arm": arms})
        orders, alive, chosen = self.patterns
        if orders and self.n_strict:
            lo, hi = _percentile_ci(plackett_luce(boot.sums("pl"), alive, chosen), confidence)
            table["worth"] = plackett_luce(np.nansum(self.onehot, axis=0), alive, chosen)
            table["ci_low"], table["ci_high"], table["n"] = lo, hi, self.n_strict
        return table


def _positions_table(by_letter: dict[str, np.ndarray], letters: list[str], boot: _Resampled,
                     confidence: float) -> pd.DataFrame:
    positions = pd.DataFrame({"letter": letters})
    for key, x in by_letter.items():
        lo, hi = _percentile_ci(boot.mean(f"letter_{key}"), confidence)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            positions[key] = np.nanmean(x, axis=0)
        positions[f"{key}_ci_low"], positions[f"{key}_ci_high"] = lo, hi
        positions[f"n_{key}"] = (~np.isnan(x)).sum(axis=0)
    return positions


def _by_letter(values: np.ndarray, letter: np.ndarray, letters: list[str]) -> np.ndarray:
    """Re-index a participant x arm matrix by the letter each grid was shown under."""
    out = np.full((values.shape[0], len(letters)), np.nan)
    for j, L in enumerate(letters):
        rows, cols = np.nonzero(letter == L)
        out[rows, j] = values[rows, cols]
    return out


def _rank_shares(rank: np.ndarray, arms: list[str]) -> pd.DataFrame:
    """Share of participants placing each arm 1st..kth. A tie spreads evenly over the places it spans
    (two arms tied at 2.5 put half a participant on 2nd and half on 3rd)."""
    k = len(arms)
    r = rank[~np.isnan(rank).any(axis=1)]
    shares = np.zeros((k, k))
    t = _tie_sizes(r)
    first = np.rint(r - (t - 1) / 2).astype(int)  # the first place a tie group spans
    arm_of = np.broadcast_to(np.arange(k), r.shape)
    for offset in range(k):
        use = offset < t
        np.add.at(shares, (arm_of[use], first[use] + offset - 1), 1.0 / t[use])
    if len(r):
        shares /= len(r)
    return pd.DataFrame(shares, index=pd.Index(arms, name="arm"), columns=list(range(1, k + 1)))


def _describe(people: pd.DataFrame) -> str:
    counts = people["reason"].replace("", "included").value_counts()
    return ", ".join(f"{v} {k}" for k, v in counts.items()) or "no sessions"


# --- outputs -------------------------------------------------------------------------------------------
def to_json(a: Analysis) -> dict[str, Any]:
    """The per-arm figures (with CIs and counts) for scripts."""
    def num(x: Any) -> Any:
        x = float(x)
        return None if math.isnan(x) else round(x, 6)

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
                                                 "kendalls_w": num(r.kendalls_w), "n": int(r.n)}
                     for r in a.friedman.itertuples()},
        "bootstrap": {k: a.settings[k] for k in ("replicates", "seed", "confidence")},
        "definitions": {
            "map4_paper": "mean over participants of mean(Precision@i, i=1..4)",
            "map4_kaggle": "mean over participants of sum_{relevant i} Precision@i / min(4, #relevant), 0 if none",
            "avg_rank": "1 = best; ties get average ranks",
            "rating_var": "sample variance across participants, ddof=1",
        },
    }


def write_tables(a: Analysis, out: Path) -> list[Path]:
    """CSV tables for analysts (numbers at full precision)."""
    out.mkdir(parents=True, exist_ok=True)
    tables = {
        "arms.csv": a.figures, "tests_friedman.csv": a.friedman, "tests_pairwise.csv": a.pairwise,
        "kendalls_w.csv": a.kendall, "plackett_luce.csv": a.plackett_luce, "positions.csv": a.positions,
        "arm_letter_counts.csv": a.arm_letter_counts.reset_index(), "rating_counts.csv": a.rating_counts.reset_index(),
        "rank_shares.csv": a.rank_shares.reset_index(), "per_participant.csv": a.per_participant,
        "participants.csv": a.participants[["unit", "participant", "status", "included", "reason"]],
    }
    paths = []
    for name, df in tables.items():
        df.to_csv(out / name, index=False)
        paths.append(out / name)
    return paths


def _fmt(x: Any, digits: int = 3) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(x):
        return "–"
    return f"{x:.{digits}f}"


def _p(x: float) -> str:
    return "–" if math.isnan(x) else ("< 0.001" if x < 0.001 else f"{x:.3f}")


def _ci(row: Any, name: str, digits: int = 3) -> str:
    return f"{_fmt(row[name], digits)} [{_fmt(row[name + '_ci_low'], digits)}, {_fmt(row[name + '_ci_high'], digits)}]"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def report_markdown(a: Analysis, plots: list[Path]) -> str:
    """The human-readable report. Every number in it is also in a CSV table beside it."""
    conf = int(round(a.settings["confidence"] * 100))
    alpha = a.settings["alpha"]
    excl = a.exclusions()
    lines = [
        "# Dress-UP study: results", "",
        f"Source: `{a.source}`. {a.n_included} participants analysed; "
        + (", ".join(f"{v} excluded ({k})" for k, v in excl.items()) if excl else "none excluded") + ".",
        "",
        f"Figures are means over participants with {conf}% participant-level bootstrap CIs"
        f" ({a.settings['replicates']} replicates, seed {a.settings['seed']}, percentile intervals).", "",
        "## Per arm", "",
        _md_table(
            ["arm", "MAP@4 (paper)", "MAP@4 (H&M Kaggle AP@4)", "avg rank (1 best)", "avg rating (1-10)",
             "rating variance (ddof 1)", "wearable share", "n"],
            [[r.arm, _ci(r._asdict(), "map4_paper"), _ci(r._asdict(), "map4_kaggle"), _ci(r._asdict(), "avg_rank", 2),
              _ci(r._asdict(), "avg_rating", 2), _ci(r._asdict(), "rating_var", 2), _ci(r._asdict(), "relevant_share", 2),
              f"{r.n_map}/{r.n_rating}/{r.n_rank}"] for r in a.figures.itertuples()],
        ),
        "",
        "n = participants contributing to MAP / rating / rank.", "",
    ]
    names = {p.stem: p.name for p in plots}
    for stem, caption in (("map4", "MAP@4 per arm"), ("ratings", "Rating distributions"),
                          ("ranks", "Rank distributions")):
        if stem in names:
            lines += [f"![{caption}]({names[stem]})", ""]
    lines += ["## Tests across arms", ""]
    fr = a.friedman[a.friedman["by"] == "arm"]
    lines += [_md_table(
        ["measure", "n", "Friedman χ²", "df", "p", "Kendall's W", "note"],
        [[MEASURE_LABELS[r.measure], str(r.n), _fmt(r.chi2, 2), str(r.df), _p(r.p), _fmt(r.kendalls_w), r.note]
         for r in fr.itertuples()]), ""]
    kw = a.kendall.iloc[0]
    lines += [f"Agreement of rankings: Kendall's W = {_fmt(kw.kendalls_w)} [{_fmt(kw.ci_low)}, {_fmt(kw.ci_high)}]"
              f" over {kw.n} complete rankings (0 = no agreement, 1 = all participants rank the arms identically).", ""]
    lines += ["### Pairwise Wilcoxon signed-rank tests (Holm-corrected within each measure)", ""]
    rows = []
    for r in a.pairwise.itertuples():
        sig = "yes" if r.p_holm < alpha else "no"
        rows.append([MEASURE_LABELS[r.measure], f"{r.arm_a} − {r.arm_b}", str(r.n),
                     f"{_fmt(r.mean_diff, 2)} [{_fmt(r.ci_low, 2)}, {_fmt(r.ci_high, 2)}]",
                     _p(r.p), _p(r.p_holm), _fmt(r.rank_biserial, 2), r.better or "–", sig])
    lines += [_md_table(["measure", "pair (a − b)", "n", f"mean difference [{conf}% CI]", "p", "p (Holm)",
                         "rank-biserial r", "favours", f"significant at {alpha:g}"], rows), ""]
    if "worth" in a.plackett_luce:
        lines += ["### Plackett–Luce model of the rankings", "",
                  f"Worth = the model's probability that a participant ranks the arm first"
                  f" ({int(a.plackett_luce['n'].iloc[0])} strict rankings; tied rankings are left out; one"
                  f" pseudo-ranking spread over all orders keeps the estimate finite).", "",
                  _md_table(["arm", f"worth [{conf}% CI]"],
                            [[r.arm, f"{_fmt(r.worth)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]"]
                             for r in a.plackett_luce.itertuples()]), ""]
    lines += ["## Counterbalancing and position (letter A–D = the grid's place on the page)", ""]
    if len(a.positions):
        lines += ["Grids shown under each letter, per arm (a balanced Latin square gives equal counts):", "",
                  _md_table(["arm"] + list(a.arm_letter_counts.columns),
                            [[arm] + [str(v) for v in row] for arm, row in a.arm_letter_counts.iterrows()]), "",
                  _md_table(["letter", f"avg rating [{conf}% CI]", "avg rank", "MAP@4 (paper)"],
                            [[r.letter, _ci(r._asdict(), "rating", 2), _ci(r._asdict(), "rank", 2),
                              _ci(r._asdict(), "ap_paper")] for r in a.positions.itertuples()]), ""]
        for r in a.friedman[a.friedman["by"] == "letter"].itertuples():
            lines.append(f"- Friedman test of a position effect on {MEASURE_LABELS[r.measure]}: χ² = {_fmt(r.chi2, 2)},"
                         f" df = {r.df}, p = {_p(r.p)}, Kendall's W = {_fmt(r.kendalls_w)} (n = {r.n}).")
        lines.append("")
        if "positions" in names:
            lines += [f"![Position effects]({names['positions']})", ""]
    else:
        lines += ["The input has no letter column, so position effects cannot be checked.", ""]
    lines += ["## Missing answers", ""]
    lines += [f"- {k}: {v}" for k, v in a.missing.items()]
    lines += [
        "- A participant missing a value for any arm is left out of that measure's tests (Friedman and all"
        " pairwise tests use the same complete participants) but counts in the other arms' means.",
        "- A grid with an unanswered relevance mark has no AP; a ranking that misses an arm is left out of"
        " rank figures. Tied ranks are replaced by average ranks.", "",
        "## Methods and assumptions", "",
        "- **MAP@4 (paper)**: per participant and arm, AP@4 = (P@1 + P@2 + P@3 + P@4) / 4 with P@i the share of"
        " the first i images (display order) marked wearable; MAP@4 is its mean over participants.",
        "- **MAP@4 (H&M Kaggle AP@4)**: sum of P@i over wearable positions i, divided by min(4, number of"
        " wearable images), 0 when none; only shown images are judged, so the denominator counts wearable"
        " shown images.",
        "- **Rating variance**: sample variance across participants (ddof = 1) of the arm's ratings.",
        "- **Bootstrap**: participants are resampled with replacement keeping all their arms together;"
        " percentile intervals. Intervals for small n are too narrow (the bootstrap underestimates spread"
        " below ~20 participants).",
        "- **Friedman test**: participants are independent blocks; within a participant, the arms' values are"
        " ranked (ties averaged, tie-corrected χ² with k − 1 df, an asymptotic approximation that is rough below"
        " ~10 participants). Effect size: Kendall's W = χ² / (n (k − 1)).",
        "- **Wilcoxon signed-rank**: paired differences are independent across participants and symmetric about"
        " their median under H0; zero differences are dropped (Wilcoxon's method); exact p without ties,"
        " a full permutation test for ≤ 13 pairs with ties, else the normal approximation (scipy 'auto')."
        " Holm's step-down correction over the pairs of each measure controls the family-wise error rate."
        " Effect size: matched-pairs rank-biserial r = (W+ − W−) / (W+ + W−) for a − b.",
        "- **Ratings are ordinal**: the tests use only their order within a participant, never their spacing.",
        "- **Plackett–Luce**: each ranking is a sequence of choices of the best remaining arm with probability"
        " proportional to the arm's worth (MM algorithm, Hunter 2004).", "",
        "## For orientation only: the paper's Table 2 (a different study, 20 participants)", "",
        "These are the paper's numbers, not ours; arm names differ and nothing above is computed from them.", "",
        _md_table(list(PAPER_TABLE2.columns),
                  [[str(v) if v is not None and not (isinstance(v, float) and math.isnan(v)) else "–" for v in row]
                   for row in PAPER_TABLE2.itertuples(index=False)]), "",
    ]
    return "\n".join(lines)


# --- plots ---------------------------------------------------------------------------------------------
ARM_COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860")


def plot_all(a: Analysis, out: Path) -> list[Path]:
    """PNG plots: MAP@4 with CIs, rating and rank distributions, position effects (Agg backend)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    plt.rcParams.update({"font.size": 11, "axes.spines.top": False, "axes.spines.right": False})
    paths = [_plot_map(a, out, plt), _plot_ratings(a, out, plt), _plot_ranks(a, out, plt)]
    if len(a.positions):
        paths.append(_plot_positions(a, out, plt))
    plt.close("all")
    return paths


def _colour(a: Analysis, arm: str) -> str:
    return ARM_COLOURS[a.arms.index(arm) % len(ARM_COLOURS)]


def _plot_map(a: Analysis, out: Path, plt: Any) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
    f = a.figures
    x = np.arange(len(f))
    colours = [_colour(a, arm) for arm in f["arm"]]
    conf = int(round(a.settings["confidence"] * 100))
    for ax, (name, title, ylim) in zip(axes[:2], (("map4_paper", "MAP@4 (paper's definition)", (0, 1)),
                                                  ("avg_rating", "Average rating (1-10)", (1, 10)))):
        y = f[name].to_numpy(dtype=float)
        err = np.vstack([y - f[f"{name}_ci_low"], f[f"{name}_ci_high"] - y])
        ax.bar(x, y - ylim[0], bottom=ylim[0], color=colours, width=0.65)
        ax.errorbar(x, y, yerr=np.nan_to_num(err), fmt="none", ecolor="black", capsize=6, lw=1.5)
        for xi, yi in zip(x, y):
            ax.text(xi, ylim[0] + 0.03 * (ylim[1] - ylim[0]), _fmt(yi, 2), ha="center", va="bottom",
                    color="white", fontweight="bold")
        if name == "map4_paper":  # the Kaggle variant as a marker, for comparison
            ax.scatter(x + 0.22, f["map4_kaggle"], marker="D", color="black", zorder=3, s=30,
                       label="H&M Kaggle AP@4")
            ax.legend(loc="upper left", frameon=False, fontsize=9)
        ax.set_xticks(x, f["arm"], rotation=15)
        ax.set_ylim(*ylim)
        ax.set_title(title)
    ax = axes[2]  # ranks: points, best at the top
    y = f["avg_rank"].to_numpy(dtype=float)
    err = np.vstack([y - f["avg_rank_ci_low"], f["avg_rank_ci_high"] - y])
    for xi, yi, e_lo, e_hi, c in zip(x, y, *np.nan_to_num(err), colours):
        ax.errorbar([xi], [yi], yerr=[[e_lo], [e_hi]], fmt="o", color=c, ecolor="black", capsize=6, ms=11, lw=1.5)
        ax.text(xi + 0.15, yi, _fmt(yi, 2), va="center", fontweight="bold")
    ax.set_ylim(len(a.arms) + 0.2, 0.8)
    ax.set_yticks(range(1, len(a.arms) + 1), [_ordinal(i) for i in range(1, len(a.arms) + 1)])
    ax.set_xlim(-0.5, len(f) - 0.3)
    ax.set_xticks(x, f["arm"], rotation=15)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Average rank (top = best)")
    fig.suptitle(f"Per arm, with {conf}% bootstrap CIs (n = {a.n_included} participants)")
    fig.tight_layout()
    path = out / "map4.png"
    fig.savefig(path, dpi=120)
    return path


def _plot_ratings(a: Analysis, out: Path, plt: Any) -> Path:
    counts = a.rating_counts
    k = len(counts)
    fig, axes = plt.subplots(k, 1, figsize=(8, 1.6 * k + 0.9), sharex=True, squeeze=False)
    for ax, (arm, row) in zip(axes[:, 0], counts.iterrows()):
        total = max(int(row.sum()), 1)
        share = row.to_numpy() / total
        ax.bar(row.index, share, color=_colour(a, arm), width=0.8)
        fig_row = a.figures.set_index("arm").loc[arm]
        ax.axvline(fig_row["avg_rating"], color="black", lw=1.5)
        ax.axvspan(fig_row["avg_rating_ci_low"], fig_row["avg_rating_ci_high"], color="black", alpha=0.12, lw=0)
        ax.set_ylim(0, max(share.max() * 1.25, 0.05))
        ax.set_ylabel("share")
        ax.set_title(f"{arm}: mean {_fmt(fig_row['avg_rating'], 2)}, n = {total}", loc="left", fontsize=11,
                     fontweight="bold")
    axes[-1, 0].set_xticks(range(1, 11))
    axes[-1, 0].set_xlabel("rating (1 = worst, 10 = best); black line: mean, grey band: CI")
    fig.suptitle("How participants rated each arm")
    fig.tight_layout()
    path = out / "ratings.png"
    fig.savefig(path, dpi=120)
    return path


def _plot_ranks(a: Analysis, out: Path, plt: Any) -> Path:
    shares = a.rank_shares
    k = shares.shape[1]
    cmap = plt.get_cmap("RdYlGn_r")
    colours = [cmap(i / max(k - 1, 1)) for i in range(k)]
    fig, ax = plt.subplots(figsize=(9, 0.7 * len(shares) + 1.8))
    order = a.figures.set_index("arm")["avg_rank"].reindex(shares.index).sort_values(ascending=False).index
    left = np.zeros(len(order))
    for place in range(1, k + 1):
        vals = shares.loc[order, place].to_numpy()
        ax.barh(list(order), vals, left=left, color=colours[place - 1], label=_ordinal(place), edgecolor="white")
        for y, (l, v) in enumerate(zip(left, vals)):
            if v >= 0.06:
                ax.text(l + v / 2, y, f"{v:.0%}", ha="center", va="center", fontsize=9)
        left += vals
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of participants")
    ax.legend(ncol=k, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False, title="ranked")
    fig.suptitle("Where participants ranked each arm (ties split evenly)", y=0.98)
    fig.tight_layout()
    path = out / "ranks.png"
    fig.savefig(path, dpi=120)
    return path


def _ordinal(i: int) -> str:
    return {1: "1st (best)", 2: "2nd", 3: "3rd"}.get(i, f"{i}th")


def _plot_positions(a: Analysis, out: Path, plt: Any) -> Path:
    p = a.positions
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    x = np.arange(len(p))
    for ax, (name, title) in zip(axes[:2], (("rating", "Average rating by letter"), ("rank", "Average rank by letter"))):
        y = p[name].to_numpy(dtype=float)
        err = np.vstack([y - p[f"{name}_ci_low"], p[f"{name}_ci_high"] - y])
        ax.errorbar(x, y, yerr=np.nan_to_num(err), fmt="o-", color="#333333", capsize=6, lw=1.5, ms=7)
        ax.axhline(np.nanmean(y), color="grey", ls="--", lw=1)
        lo, hi = np.nanmin(p[f"{name}_ci_low"]), np.nanmax(p[f"{name}_ci_high"])
        half = max((hi - lo) / 2 * 1.1, 0.5 if name == "rating" else 0.25)  # don't blow up tiny differences
        if np.isfinite(lo) and np.isfinite(hi):
            ax.set_ylim((lo + hi) / 2 - half, (lo + hi) / 2 + half)
        ax.set_xticks(x, p["letter"])
        ax.set_xlabel("letter (grid's place on the page, A = first)")
        rows = a.friedman[(a.friedman["by"] == "letter") & (a.friedman["measure"] == name)]
        if len(rows):
            title += f"\n(Friedman p = {_p(float(rows['p'].iloc[0]))})"
        ax.set_title(title)
        if name == "rank":
            ax.invert_yaxis()
            ax.set_ylabel("1 = best")
    c = a.arm_letter_counts
    ax = axes[2]
    im = ax.imshow(c.to_numpy(), cmap="Blues", vmin=0, aspect="auto")
    for (i, j), v in np.ndenumerate(c.to_numpy()):
        ax.text(j, i, str(v), ha="center", va="center",
                color="white" if v > 0.6 * max(c.to_numpy().max(), 1) else "black")
    ax.set_xticks(range(c.shape[1]), c.columns)
    ax.set_yticks(range(c.shape[0]), c.index)
    ax.set_title("Grids per arm and letter (balance)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle("Position effects: did the order of the grids matter?")
    fig.tight_layout()
    path = out / "positions.png"
    fig.savefig(path, dpi=120)
    return path


# --- command line --------------------------------------------------------------------------------------
def run(path: str | Path, out: str | Path = "results/analysis", *, replicates: int = 2000, seed: int = 0,
        confidence: float = 0.95, alpha: float = 0.05, plots: bool = True, study: str | None = None) -> Analysis:
    """Load, analyse and write ``report.md``, the CSV tables and the plots to ``out``."""
    out = Path(out)
    data = load(path, study=study)
    a = analyze(data, replicates=replicates, seed=seed, confidence=confidence, alpha=alpha)
    write_tables(a, out)
    t0 = time.perf_counter()
    pngs = plot_all(a, out) if plots else []
    a.timings["plots"] = time.perf_counter() - t0
    (out / "report.md").write_text(report_markdown(a, pngs), encoding="utf-8")
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
