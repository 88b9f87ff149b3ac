"""The study's analysis: per-arm figures with bootstrap CIs, significance tests, plots and a report.

Run ``python study/analyze.py FILE`` (or ``python -m study.analyze FILE``) on the study database
(.sqlite/.db), on its export (``long.csv``/``long.parquet`` from ``python -m study export``) or on the
interchange CSV (one row per shown image: ``participant, arm, position, relevant, rating, rank``; see
``INTERCHANGE_HELP``). It writes ``report.md``, CSV tables and PNG plots to ``results/analysis/``
(``--out``) and, with ``--json``, prints the per-arm figures as JSON.

This module deliberately needs only numpy, pandas, scipy, matplotlib and statsmodels (the mixed model,
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

from study.intervals import bootstrap_intervals, method_summary  # noqa: E402
from study.mixed import MixedFit, fit_mixed, mixed_table  # noqa: E402
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
MODEL_MEASURES = ("ap_paper", "rating")  # fitted by the mixed model (study.mixed) beside the tests
# The rules the report states, word for word; the code follows each (tests/test_analysis_rules.py).
RULES = {
    "ranking": "a ranking counts only when it ranks every arm of the study: a participant who left an arm"
               " unranked, or was shown only some arms, is left out of every rank figure and test (average rank,"
               " rank shares, Kendall's W, Plackett–Luce), while their ratings and AP still count",
    "missing": "a participant missing a rating or an AP for an arm is left out of that measure's tests (Friedman"
               " and all pairwise tests use the same complete participants) but counts in the other arms' means",
    "relevance": "a grid with an unanswered relevance mark has no AP",
    "ties": "tied ranks are replaced by average ranks",
    "favours": "'favours' names an arm only where the Holm-corrected p is below the significance level",
}
BOOTSTRAP_TEXT = ("participants resampled with replacement, all arms of a participant kept together;"
                  " bias-corrected and accelerated (BCa) intervals by scipy.stats.bootstrap")
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
    try:
        if suffix == ".csv":
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
        elif suffix == ".parquet":
            table = pd.read_parquet(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, OSError, ValueError) as e:
        raise AnalysisInputError(f"{path} cannot be read as a table ({str(e).splitlines()[0] if str(e) else 'empty'});"
                                 f" it needs a header row and one row per shown image: {INTERCHANGE_HELP}") from e
    if suffix not in (".csv", ".parquet"):
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
    long["_row"] = np.arange(len(long)) + 2  # the spreadsheet's row: the header is row 1
    long["participant"] = long["participant"].astype(str).str.strip()
    long["unit"] = long["session"].astype(str) if "session" in long.columns else long["participant"]
    if "status" not in long.columns:
        long["status"] = "completed"
    long["status"] = long["status"].astype(str).str.strip().str.lower().replace("", "completed")
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


def _numeric(long: pd.DataFrame, column: str, source: str, allowed: tuple[float, float], meaning: str = ""
             ) -> pd.Series:
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
    bad |= values.notna() & ((values < lo) | (values > hi) | (values % 1 != 0))
    if bad.any():
        i = bad.idxmax()
        raise AnalysisInputError(f"{source}: {_where(long, i)}, column {column!r} has {raw.loc[i]!r}; it must be"
                                 f" a whole number from {lo:g} to {hi:g}{meaning}; fix the cell or leave it empty")
    return values.astype(float)


def _where(long: pd.DataFrame, i: Any) -> str:
    """'row 7 (participant 'P1', arm 'x')' for a CSV; without the row for a database."""
    who = f"participant {long.loc[i, 'participant']!r}, arm {long.loc[i, 'arm']!r}"
    return f"row {long.loc[i, '_row']} ({who})" if "_row" in long.columns else who


def _clean_long(long: pd.DataFrame, source: str) -> pd.DataFrame:
    """Types, ranges and consistency checks every loader shares."""
    long = long.reset_index(drop=True)
    for col in ("unit", "participant", "arm"):
        long[col] = long[col].astype(str).str.strip()
    if (long["arm"] == "").any():
        raise AnalysisInputError(f"{source}: {_where(long, (long['arm'] == '').idxmax())}, column 'arm' is empty;"
                                 " every shown image needs its arm (a participant without grids needs a status)")
    long["letter"] = long["letter"].fillna("").astype(str).str.strip().str.upper()
    bad_letter = ~long["letter"].isin(set(LETTERS) | {""})
    if bad_letter.any():
        i = bad_letter.idxmax()
        raise AnalysisInputError(f"{source}: {_where(long, i)}, column 'letter' has {long.loc[i, 'letter']!r};"
                                 f" a letter is one of {', '.join(LETTERS)} (the grid's place on the page) or empty")
    long["position"] = _numeric(long, "position", source, (1, K), " (the image's place in the grid)")
    if long["position"].isna().any():
        raise AnalysisInputError(f"{source}: {_where(long, long['position'].isna().idxmax())}, column 'position' is"
                                 f" empty; every row needs a whole position from 1 to {K} (display order)")
    long["position"] = long["position"].astype(int)
    long["relevant"] = _numeric(long, "relevant", source, (0, 1), " (1 = would wear, 0 = would not)")
    long["rating"] = _numeric(long, "rating", source, (1, 10))
    k = long["arm"].nunique()  # ranks run 1..k: a two-arm study has ranks 1 and 2 only
    long["rank"] = _numeric(long, "rank", source, (1, k), f" (1 = best; this study has {k} arms)")
    if "attention_passed" in long.columns:
        long["attention_passed"] = pd.to_numeric(long["attention_passed"].replace("", None), errors="coerce")
    dup = long.duplicated(["unit", "arm", "position"])
    if dup.any():
        i = dup.idxmax()
        raise AnalysisInputError(
            f"{source}: {_where(long, i)}, column 'position': a second row for position {long.loc[i, 'position']}"
            " of this grid; give one row per shown image (delete the repeated row)")
    for col in ("rating", "rank", "letter"):
        vals = long[col].replace("", None) if col == "letter" else long[col]
        n = vals.groupby([long["unit"], long["arm"]], sort=False).transform("nunique")
        if (n > 1).any():
            i = (n > 1).idxmax()
            raise AnalysisInputError(
                f"{source}: {_where(long, i)}, column {col!r}: the {col} differs between the rows of this grid;"
                f" {col} is given once per grid, so repeat the same value on its four rows")
    shared = long[long["letter"] != ""].drop_duplicates(["unit", "arm"])
    clash = shared.duplicated(["unit", "letter"])
    if clash.any():
        i = clash.idxmax()
        first = shared[(shared["unit"] == shared.loc[i, "unit"]) & (shared["letter"] == shared.loc[i, "letter"])]
        raise AnalysisInputError(
            f"{source}: {_where(long, i)}, column 'letter': {long.loc[i, 'letter']!r} already holds arm"
            f" {first['arm'].iloc[0]!r} for this participant; each letter is one grid on the page, so give each"
            " of a participant's arms its own letter")
    keep = ["unit", "participant", "arm", "position", "relevant", "rating", "rank", "letter"]
    return long[keep + [c for c in ("status", "attention_passed", "_row") if c in long.columns]]


def _clean_sessions(sessions: pd.DataFrame) -> pd.DataFrame:
    s = sessions.copy()
    s["unit"] = s["unit"].astype(str)
    s["participant"] = s["participant"].astype(str).str.strip()
    s["status"] = s["status"].fillna("completed").astype(str).str.strip().str.lower().replace("", "completed")
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
        "participants with tied ranks": int((_tie_sizes(rank_given) > 1).any(axis=1)[full].sum()),
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
class _Blocks:
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

    def resampled(self, w: np.ndarray) -> _Resampled:
        """Sums for draw counts w (..., n): sum(w x), sum(w x^2) and non-missing draws per column."""
        s = w @ self.cols
        return _Resampled(s[..., :self.c], s[..., self.c:2 * self.c], s[..., 2 * self.c:], self.slices)


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
    models: list[MixedFit] = field(default_factory=list)  # the mixed models (study.mixed), per measure

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

    # one resampling of participants serves every figure, paired difference and statistic (BCa, scipy)
    t0 = time.perf_counter()
    blocks = dict(values)
    blocks.update({f"diff_{measure}": _paired_differences(values[measure]) for measure in MEASURES})
    blocks.update({f"letter_{key}": v for key, v in by_letter.items()})
    blocks["w_rank"], blocks["w_ties"] = rankings.complete_ranks, rankings.tie_terms
    blocks["pl"] = rankings.onehot
    stacked = _Blocks(blocks)

    def parts(w: np.ndarray) -> dict[str, np.ndarray]:
        boot = stacked.resampled(w)
        out = {name: boot.mean(attr) if stat == "mean" else boot.var(attr) for name, attr, stat in FIGURES}
        out.update({f"diff_{measure}": boot.mean(f"diff_{measure}") for measure in MEASURES})
        out.update({f"letter_{key}": boot.mean(f"letter_{key}") for key in by_letter})
        out.update(kendall=rankings.kendall(boot), pl=rankings.worths(boot))
        return out

    point = parts(np.ones(len(m.units)))
    edges = np.cumsum([0] + [v.shape[-1] for v in point.values()])
    intervals = bootstrap_intervals(lambda w: np.concatenate(list(parts(w).values()), axis=-1), len(m.units),
                                    replicates=replicates, seed=seed, confidence=confidence)
    ci = {key: (intervals.low[a:b], intervals.high[a:b]) for key, a, b in zip(point, edges[:-1], edges[1:])}
    for name, _, _ in FIGURES:
        figures[f"{name}_ci_low"], figures[f"{name}_ci_high"] = ci[name]
    for measure in MEASURES:
        lo, hi = ci[f"diff_{measure}"]
        for j, r in enumerate(r for r in pairs if r.measure == measure):
            r.ci_low, r.ci_high = float(lo[j]), float(hi[j])
    kendall = rankings.kendall_table(*ci["kendall"])
    positions = _positions_table(by_letter, letters, ci)
    pl = rankings.plackett_luce_table(arms, point["pl"], *ci["pl"])
    timings["bootstrap"] = time.perf_counter() - t0

    per_participant = pd.DataFrame({
        "unit": np.repeat(m.units, len(arms)), "arm": np.tile(arms, len(m.units)),
        "letter": m.letter.ravel(), "ap_paper": m.ap_paper.ravel(), "ap_kaggle": m.ap_kaggle.ravel(),
        "rating": m.rating.ravel(), "rank_given": m.rank_given.ravel(), "rank": m.rank.ravel(),
    })[m.shown.ravel()].reset_index(drop=True)
    t0 = time.perf_counter()
    models = [fit_mixed(per_participant, measure, arms, confidence) for measure in MODEL_MEASURES]
    timings["model"] = time.perf_counter() - t0
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
                  "ranking_strict": rankings.n_strict, "interval_method": method_summary(intervals.methods)},
        timings=timings, models=models,
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

    def kendall(self, boot: _Resampled) -> np.ndarray:
        """Kendall's W of a resample's complete rankings, (..., 1)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return _kendalls_w_from_sums(boot.sums("w_rank"), boot.counts("w_ties")[..., 0],
                                         boot.sums("w_ties")[..., 0])[..., None]

    def worths(self, boot: _Resampled) -> np.ndarray:
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


def _positions_table(by_letter: dict[str, np.ndarray], letters: list[str], ci: dict[str, tuple]) -> pd.DataFrame:
    positions = pd.DataFrame({"letter": letters})
    for key, x in by_letter.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            positions[key] = np.nanmean(x, axis=0)
        positions[f"{key}_ci_low"], positions[f"{key}_ci_high"] = ci[f"letter_{key}"]
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


COVERAGE_NOTE = (  # bench/RESULTS.md, "Analysis": 200 simulated studies of 20 participants, BCa
    "at 20 participants MAP@4 95.0% (Kaggle 95.1%), wearable share 93.8%, average rank 93.8%, differences of"
    " ranks 93.2%; short of 93%: average rating 92.8% (0.3 points) and differences of AP 92.8% (0.2; both"
    " within the ±1.5-point simulation error), differences of ratings 91.5% (1.5 short) and rating variance 90.1% (2.9 short:"
    " read its interval as too narrow). Kendall's W, Plackett–Luce worths and per-letter figures were not measured.")


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
                  f" variance {_fmt(f.participant_var)}, residual variance {_fmt(f.residual_var)}, intraclass"
                  f" correlation {_fmt(f.icc, 2)}{'; ' + f.note if f.note else ''}):", "",
                  _md_table(["term", f"estimate [{conf}% CI]", "p"],
                            [[r.term, f"{_fmt(r.estimate)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]", _p(r.p)]
                             for r in f.terms.itertuples() if r.term != "intercept"]), ""]
    return lines


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
        f" ({a.settings['replicates']} replicates, seed {a.settings['seed']}; interval method:"
        f" {a.settings['interval_method']}).", "",
        "## Per arm", "",
        _md_table(
            ["arm", "MAP@4 (paper)", "MAP@4 (H&M Kaggle AP@4)", "avg rank (1 best)", "avg rating (1-10)",
             "rating variance (ddof 1)", "wearable share", "n"],
            [[r.arm, _ci(r._asdict(), "map4_paper"), _ci(r._asdict(), "map4_kaggle"), _ci(r._asdict(), "avg_rank", 2),
              _ci(r._asdict(), "avg_rating", 2), _ci(r._asdict(), "rating_var", 2), _ci(r._asdict(), "relevant_share", 2),
              f"{r.n_map}/{r.n_rating}/{r.n_rank}"] for r in a.figures.itertuples()],
        ),
        "",
        "n = participants contributing to MAP / rating / rank. How often these intervals cover the truth,"
        " measured on simulated studies (`python -m bench coverage`): " + COVERAGE_NOTE, "",
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
                     _p(r.p), _p(r.p_holm), _fmt(r.rank_biserial, 2), r.better if sig == "yes" else "–", sig])
    lines += [_md_table(["measure", "pair (a − b)", "n", f"mean difference [{conf}% CI]", "p", "p (Holm)",
                         "rank-biserial r", "favours", f"significant at {alpha:g}"], rows), "",
              f"'Favours' names an arm only where p (Holm) < {alpha:g}; otherwise the data do not say.", ""]
    lines += _model_lines(a, conf)
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
    lines += [f"- Rule: {RULES[key]}." for key in ("ranking", "missing", "relevance", "ties")] + ["",
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
        "## For orientation only: the paper's Table 2 (a different study, 20 participants)", "",
        "These are the paper's numbers, not ours; arm names differ and nothing above is computed from them.", "",
        _md_table(list(PAPER_TABLE2.columns),
                  [[str(v) if v is not None and not (isinstance(v, float) and math.isnan(v)) else "–" for v in row]
                   for row in PAPER_TABLE2.itertuples(index=False)]), "",
    ]
    return "\n".join(lines)


# --- plots ---------------------------------------------------------------------------------------------
def plot_all(a: Analysis, out: Path) -> list[Path]:
    """PNG plots (``study.plots``): MAP@4 with CIs, rating and rank distributions, position effects."""
    from study.plots import plot_all as draw
    return draw(a, out)


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
