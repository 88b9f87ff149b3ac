"""The analysts' export: what leaves the study database, and only that.

``python -m study export [--study FILE | --db PATH] [--out DIR]`` writes to DIR (default: ``export/``
beside the database):

- ``long.csv`` and ``long.parquet``: one row per shown image (``schema.LONG_QUERY``) in the analysis'
  interchange format: participant, session, status, attention_passed, letter, arm, position, item_id,
  relevant, rating, rank;
- ``sessions.csv``: one row per session, withdrawn ones included (so the analysis can count them);
- ``feedback.csv``: the free-text feedback per grid (letter and arm) and overall (letter '');
- ``manifest.json``: schema version, time of export, counts.

The database is opened read-only. What could identify a person or let someone act as them is left out
or replaced: participant ids (e.g. Prolific IDs) and session ids (the resume links' secret) become
pseudonyms ``P0001``/``S00001`` numbered in order of first session; completion codes, URL parameters,
preference text and uploads are never exported. Feedback is free text written by participants and is
exported verbatim: read it before publishing. Every file is written to a temporary name and renamed, so
a reader (or a scheduled push, see ``study.push``) never sees half a file.
"""
from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from dressup.files import atomic_write
from study.schema import LONG_QUERY, SCHEMA_VERSION, connect

TMP_SUFFIX = ".tmp"  # how dressup.files.atomic_write's temporary names end (none is left behind)
FILES = ("long.csv", "long.parquet", "sessions.csv", "feedback.csv", "manifest.json")
LONG_COLUMNS = ["participant", "session", "status", "attention_passed", "letter", "arm", "position", "item_id",
                "relevant", "rating", "rank"]
SESSION_COLUMNS = ["session", "participant", "study", "status", "attention_passed", "order_index", "seed",
                   "created_at", "completed_at", "withdrawn_at"]


@dataclass
class ExportSummary:
    folder: Path
    files: list[Path]
    sessions: int
    rows: int  # rows of the long table


def export(db: str | Path, out: str | Path, *, raw_ids: bool = False) -> ExportSummary:
    """Write the export of ``db`` to the folder ``out`` (created if needed; its files are replaced).

    ``raw_ids`` keeps the real participant and session ids, for a researcher's own machine only."""
    if isinstance(db, str) and db.startswith("postgres"):  # a study database on a server (study.database)
        sessions, long, feedback = _read_server(db)
        out = Path(out)
    else:
        db, out = Path(db), Path(out)
        if not db.is_file():
            raise FileNotFoundError(f"no study database at {db}; run the study first or pass --db PATH")
        if db.resolve().is_relative_to(out.resolve()):
            raise ValueError(f"export folder {out} contains the database; choose a folder of its own, e.g. "
                             f"{db.parent / 'export'} (a pushed folder must never contain the database)")
        conn = connect(db, readonly=True)
        try:
            sessions, long, feedback = read_tables(conn)
        except (sqlite3.Error, pd.errors.DatabaseError) as e:
            raise ValueError(f"{db} is not a Dress-UP study database ({e})") from e
        finally:
            conn.close()

    session_name, participant_name = _pseudonyms(sessions, raw_ids)
    sessions["participant"] = sessions["session_id"].map(participant_name)
    sessions["session"] = sessions["session_id"].map(session_name)
    long["participant"] = long["session_id"].map(participant_name)
    long["session"] = long["session_id"].map(session_name)
    feedback["session"] = feedback["session_id"].map(session_name)
    for col in ("relevant", "rating", "rank", "attention_passed"):  # integers with gaps, not floats
        long[col] = long[col].astype("Int64")
    sessions["attention_passed"] = sessions["attention_passed"].astype("Int64")

    out.mkdir(parents=True, exist_ok=True)
    long = long[LONG_COLUMNS]
    written = [
        atomic_write(out / "long.csv", lambda p: csv_safe(long).to_csv(p, index=False)),
        atomic_write(out / "long.parquet", lambda p: long.to_parquet(p, index=False)),
        atomic_write(out / "sessions.csv", lambda p: csv_safe(sessions[SESSION_COLUMNS]).to_csv(p, index=False)),
        atomic_write(out / "feedback.csv",
                lambda p: csv_safe(feedback[["session", "letter", "arm", "text", "answered_at"]]).to_csv(p, index=False)),
    ]
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sessions": len(sessions),
        "sessions_by_status": {k: int(v) for k, v in sessions["status"].value_counts().sort_index().items()},
        "long_rows": len(long),
        "pseudonymised": not raw_ids,
        "files": [p.name for p in written],
    }
    written.append(atomic_write(out / "manifest.json", json.dumps(manifest, indent=2) + "\n"))
    return ExportSummary(out, written, len(sessions), len(long))


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as a formula (``=HYPERLINK(...)``, ``+cmd``, ``@SUM``) get a
    leading apostrophe, OWASP's CSV-injection rule. Only the CSV files: Parquet keeps the text as given, and
    numeric columns (a negative score) are never touched."""
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_string_dtype(out[col]) or out[col].dtype == object:
            out[col] = out[col].map(lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_STARTS) else v)
    return out


SESSIONS_QUERY = ("SELECT session_id, participant, study, status, attention_passed, order_index, seed, created_at,"
                  " completed_at, withdrawn_at FROM sessions ORDER BY created_at, session_id")
FEEDBACK_QUERY = ("SELECT f.session_id, f.letter, COALESCE(a.arm, '') AS arm, f.text, f.answered_at FROM feedback f"
                  " JOIN sessions s ON s.session_id = f.session_id"
                  " LEFT JOIN assignments a ON a.session_id = f.session_id AND a.letter = f.letter"
                  " ORDER BY s.created_at, s.session_id, f.letter")


def read_tables(conn: Any) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three tables of an export, read with one connection (SQLite's, or SQLAlchemy's for a server)."""
    return (pd.read_sql_query(SESSIONS_QUERY, conn), pd.read_sql_query(LONG_QUERY, conn),
            pd.read_sql_query(FEEDBACK_QUERY, conn))


def _read_server(url: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    from sqlalchemy import create_engine

    from study.database import database_url

    engine = create_engine(database_url(url))
    try:
        with engine.connect() as conn:
            return read_tables(conn)
    finally:
        engine.dispose()


def _pseudonyms(sessions: pd.DataFrame, raw_ids: bool) -> tuple[dict[str, str], dict[str, str]]:
    """Session id -> session name and session id -> participant name. Numbered in order of creation, so
    a name stays the same in every later export of the same growing database."""
    if raw_ids:
        ids = sessions["session_id"].tolist()
        return dict(zip(ids, ids)), dict(zip(ids, sessions["participant"]))
    session_name = {sid: f"S{i + 1:05d}" for i, sid in enumerate(sessions["session_id"])}
    first_seen = {p: f"P{i + 1:04d}" for i, p in enumerate(dict.fromkeys(sessions["participant"]))}
    participant_name = dict(zip(sessions["session_id"], sessions["participant"].map(first_seen)))
    return session_name, participant_name


def _resolve(study: str | None, db: str | None, out: str | None) -> tuple[Path, Path]:
    if study and db:
        raise ValueError("give either --study or --db, not both")
    if db:
        db_path = Path(db)
    else:
        from dressup.config import load_study  # only here: the export itself needs no part of the library

        db_path = load_study(study).db_path
    return db_path, Path(out) if out else db_path.parent / "export"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", help="study file (default: $DRESSUP_STUDY, else the demo study)")
    parser.add_argument("--db", help="the study database, instead of a study file")
    parser.add_argument("--out", help="export folder (default: export/ beside the database)")
    parser.add_argument("--raw-ids", action="store_true",
                        help="keep real participant and session ids (never for a folder that is pushed)")
    parser.add_argument("--json", action="store_true", help="print what was exported (or the error) as JSON")
    args = parser.parse_args(argv)
    try:
        db_path, out = _resolve(args.study, args.db, args.out)
        s = export(db_path, out, raw_ids=args.raw_ids)
    except (ValueError, FileNotFoundError) as e:
        if args.json:
            print(json.dumps({"error": str(e)}))
        else:
            print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"database": str(db_path), "folder": str(s.folder), "sessions": s.sessions,
                          "rows": s.rows, "files": [str(f) for f in s.files]}))
        return 0
    print(f"exported {s.sessions} sessions ({s.rows} shown images) from {db_path} to {s.folder}:"
          f" {', '.join(p.name for p in s.files)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
