"""The study database's schema: the one agreement between the app (writer) and the analysis (reader).

SQLite in WAL mode or PostgreSQL (``study.database``), one transaction per answer; the SQL here is the
subset both engines speak. Natural keys (session, letter, position) make a
resubmitted answer an idempotent upsert instead of a duplicate row. Letters A-D are the display order
of the grids (A first, top); ``position`` 1-4 is the order of the images inside a grid (row-major).
Withdrawn sessions keep their ``sessions`` row (status 'withdrawn') so analysis can count exclusions,
but every answer, preference and upload of theirs is deleted.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_VERSION = 1
LETTERS = ("A", "B", "C", "D")
GRID_SIZE = 4
# Session life cycle, in order. Analysis includes only 'completed' sessions.
STATUSES = ("consented", "preference", "shown", "completed", "withdrawn")

DDL = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    session_id      TEXT PRIMARY KEY,           -- secrets.token_urlsafe: never sequential
    study           TEXT NOT NULL,
    participant     TEXT NOT NULL,              -- PROLIFIC_PID or an issued anonymous id
    source          TEXT NOT NULL DEFAULT '{}', -- JSON of validated URL parameters (STUDY_ID, SESSION_ID)
    order_index     INTEGER NOT NULL,           -- which row of the balanced Latin square
    seed            INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('consented','preference','shown','completed','withdrawn')),
    completion_code TEXT UNIQUE,
    attention_passed INTEGER,                   -- NULL when no attention check is configured
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    completed_at    TEXT,
    withdrawn_at    TEXT
);
CREATE INDEX IF NOT EXISTS sessions_participant ON sessions(participant);
CREATE TABLE IF NOT EXISTS assignments (
    session_id TEXT NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
    letter     TEXT NOT NULL CHECK (letter IN ('A','B','C','D')),
    arm        TEXT NOT NULL,
    PRIMARY KEY (session_id, letter),
    UNIQUE (session_id, arm)
);
CREATE TABLE IF NOT EXISTS preferences (
    session_id    TEXT PRIMARY KEY REFERENCES sessions(session_id) ON DELETE CASCADE,
    text          TEXT NOT NULL,
    gender        TEXT,
    avoid_colours TEXT NOT NULL DEFAULT '[]',   -- JSON list
    created_at    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS drafts (                  -- the style page before Submit, so a reload keeps it
    session_id TEXT PRIMARY KEY REFERENCES sessions(session_id) ON DELETE CASCADE,
    text       TEXT NOT NULL DEFAULT '',
    gender     TEXT NOT NULL DEFAULT 'any',
    avoid      TEXT NOT NULL DEFAULT '',         -- as typed
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    session_id TEXT NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
    idx        INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    path       TEXT NOT NULL,                   -- under results/uploads, never served to participants
    width      INTEGER NOT NULL,
    height     INTEGER NOT NULL,
    PRIMARY KEY (session_id, idx)
);
CREATE TABLE IF NOT EXISTS shown (
    session_id   TEXT NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
    letter       TEXT NOT NULL CHECK (letter IN ('A','B','C','D')),
    position     INTEGER NOT NULL CHECK (position BETWEEN 1 AND 4),
    item_id      TEXT NOT NULL,                 -- catalogue item id, or generated-image id
    image_sha256 TEXT NOT NULL,                 -- of the exact bytes served
    caption      TEXT NOT NULL DEFAULT '',
    score        REAL,
    PRIMARY KEY (session_id, letter, position)
);
CREATE TABLE IF NOT EXISTS relevance (
    session_id  TEXT NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
    letter      TEXT NOT NULL CHECK (letter IN ('A','B','C','D')),
    position    INTEGER NOT NULL CHECK (position BETWEEN 1 AND 4),
    relevant    INTEGER NOT NULL CHECK (relevant IN (0, 1)),
    answered_at TEXT NOT NULL,
    PRIMARY KEY (session_id, letter, position)
);
CREATE TABLE IF NOT EXISTS ratings (
    session_id  TEXT NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
    letter      TEXT NOT NULL CHECK (letter IN ('A','B','C','D')),
    rating      INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 10),
    answered_at TEXT NOT NULL,
    PRIMARY KEY (session_id, letter)
);
CREATE TABLE IF NOT EXISTS ranks (
    session_id  TEXT NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
    letter      TEXT NOT NULL CHECK (letter IN ('A','B','C','D')),
    rank        INTEGER NOT NULL CHECK (rank BETWEEN 1 AND 4),   -- 1 = best
    answered_at TEXT NOT NULL,
    PRIMARY KEY (session_id, letter),
    UNIQUE (session_id, rank)
);
CREATE TABLE IF NOT EXISTS feedback (
    session_id  TEXT NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
    letter      TEXT NOT NULL CHECK (letter IN ('A','B','C','D','')),  -- '' = overall feedback
    text        TEXT NOT NULL,
    answered_at TEXT NOT NULL,
    PRIMARY KEY (session_id, letter)
);
CREATE TABLE IF NOT EXISTS blobs (
    sha256 TEXT PRIMARY KEY,                    -- stimuli and uploads by content, for every host of a study
    data   BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT,
    kind       TEXT NOT NULL,                   -- e.g. 'flag', 'refused', 'error', 'resume'
    detail     TEXT NOT NULL DEFAULT '{}',      -- JSON
    at         TEXT NOT NULL
);
"""


def connect(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the study database with the settings every reader and writer must share.

    WAL lets the analysis read while the app writes; ``synchronous=FULL`` makes every committed answer
    survive a power cut or SIGKILL; foreign keys make a withdrawal cascade.
    """
    path = Path(path)
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.row_factory = sqlite3.Row
    if not readonly:
        conn.executescript(DDL)
        conn.execute(
            "INSERT INTO meta(key, value) VALUES ('schema_version', ?) ON CONFLICT DO NOTHING", (str(SCHEMA_VERSION),)
        )
    return conn


# The analysis reads answers through this one query: one row per shown image of a completed or
# incomplete session, with the grid's rating and rank repeated on its four rows (the interchange format).
LONG_QUERY = """
SELECT s.participant, s.session_id, s.status, s.attention_passed, a.letter, a.arm, sh.position,
       sh.item_id, rel.relevant, r.rating, k.rank
FROM sessions s
JOIN assignments a ON a.session_id = s.session_id
JOIN shown sh ON sh.session_id = a.session_id AND sh.letter = a.letter
LEFT JOIN relevance rel ON rel.session_id = sh.session_id AND rel.letter = sh.letter AND rel.position = sh.position
LEFT JOIN ratings r ON r.session_id = a.session_id AND r.letter = a.letter
LEFT JOIN ranks k ON k.session_id = a.session_id AND k.letter = a.letter
ORDER BY s.created_at, s.session_id, a.letter, sh.position
"""
