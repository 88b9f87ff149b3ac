"""The study's answers as the analysis reads them: loading the three input formats, cleaning, and who counts.

The analysis accepts the study database (.sqlite/.db), its export (``long.csv``/``long.parquet`` from
``python -m study export``, with ``sessions.csv`` beside it) and the interchange CSV (one row per shown image;
``INTERCHANGE_HELP``). Every format becomes one ``StudyData``: the same column names, types and ranges,
checked here once, so the statistics never see a malformed answer and an analyst gets an error message that
names the row, the column and the fix (``AnalysisInputError``). ``participants_table`` then decides which
sessions are analysed (the exclusion rules, in ``EXCLUSION_ORDER``).

Needs only numpy, pandas and ``study.schema`` (the database's one query), like the rest of the analysis.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from study.schema import GRID_SIZE, LETTERS, LONG_QUERY, connect

K = GRID_SIZE  # MAP@K with K = the four images of a grid
DB_SUFFIXES = (".sqlite", ".sqlite3", ".db")
INTERCHANGE_COLUMNS = ("participant", "arm", "position", "relevant", "rating", "rank")
INTERCHANGE_HELP = (
    "expected one row per shown image with columns participant, arm, position (1-4, display order in the"
    " grid), relevant (1/0), rating (1-10) and rank (1 = best); rating and rank repeat on the four rows of"
    " a grid, empty cells mean missing answers; optional columns: letter (A-D), status"
)

EXCLUSION_ORDER = ("withdrawn", "incomplete", "failed attention check", "repeat session of a participant",
                   "completed without shown grids")


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


def describe_people(people: pd.DataFrame) -> str:
    """'3 included, 1 withdrawn': the units per reason, for an error that nobody can be analysed."""
    counts = people["reason"].replace("", "included").value_counts()
    return ", ".join(f"{v} {k}" for k, v in counts.items()) or "no sessions"
