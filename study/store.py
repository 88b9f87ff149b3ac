"""The study's durable record: every answer is its own transaction, committed the moment it is given.

``Store`` is the only writer of the database (see ``study.schema``). Its methods are idempotent where a
participant can repeat themselves (double clicks, two tabs, a reload): answers are upserts on natural
keys, completion returns the same code twice, shown items are written once. What a participant may not
do (answer after completion or withdrawal, answer a letter that does not exist) raises ``AnswerRefused``,
whose message is safe to show them.

The connection and transaction plumbing (and the blobs, secrets and counters shared by every host) is
``study.store_db.Database``, which ``Store`` extends.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from study.errors import AnswerRefused
from study.schema import GRID_SIZE, LETTERS
from study.store_db import Conn, Database, Row

__all__ = ["AnswerRefused", "SessionRow", "ShownRow", "Store", "now"]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class SessionRow:
    session_id: str
    study: str
    participant: str
    source: dict[str, Any]
    order_index: int
    seed: int
    status: str
    completion_code: str | None
    assignments: dict[str, str]  # letter -> arm (researcher-only; never sent to a participant)


@dataclass(frozen=True)
class ShownRow:
    letter: str
    position: int
    item_id: str
    image_sha256: str
    caption: str
    score: float | None



def new_session_id() -> str:
    """An unguessable session id (128 random bits, URL-safe) that never starts with "-": a CSV export must
    prefix text starting with "-" against spreadsheet formulas, and a researcher's raw export must keep the
    ids exactly as the database has them, to join the two."""
    while True:
        session_id = secrets.token_urlsafe(16)
        if not session_id.startswith("-"):
            return session_id

class Store(Database):
    """One study's record in one database (SQLite file or PostgreSQL URL, ``study.database``). Thread-safe:
    every call takes a pooled connection of its own, and Gradio runs handlers on worker threads."""

    def __init__(self, path: str | Path, study: str) -> None:
        super().__init__(path)
        self.study = study

    # --- sessions -------------------------------------------------------------------------------
    def create_session(
        self,
        participant: str,
        *,
        order_index: int,
        seed: int,
        assignments: dict[str, str],
        source: dict[str, Any] | None = None,
    ) -> str:
        """Record consent: a new session with its arm-to-letter assignment. Returns an unguessable id."""
        if sorted(assignments) != sorted(LETTERS[: len(assignments)]):
            raise ValueError(f"assignments must use letters {LETTERS[:len(assignments)]}, got {sorted(assignments)}")
        session_id = new_session_id()
        t = now()
        with self._tx() as c:
            c.execute(
                "INSERT INTO sessions(session_id, study, participant, source, order_index, seed, status,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'consented', ?, ?)",
                (session_id, self.study, participant, json.dumps(source or {}), order_index, seed, t, t),
            )
            c.executemany(
                "INSERT INTO assignments(session_id, letter, arm) VALUES (?, ?, ?)",
                [(session_id, letter, arm) for letter, arm in sorted(assignments.items())],
            )
        return session_id

    def session(self, session_id: str) -> SessionRow | None:
        rows = self._query("SELECT * FROM sessions WHERE session_id = ?", (session_id,))
        if not rows:
            return None
        r = rows[0]
        assign = {a["letter"]: a["arm"] for a in self._query(
            "SELECT letter, arm FROM assignments WHERE session_id = ? ORDER BY letter", (session_id,))}
        return SessionRow(
            session_id=r["session_id"], study=r["study"], participant=r["participant"],
            source=json.loads(r["source"]), order_index=r["order_index"], seed=r["seed"], status=r["status"],
            completion_code=r["completion_code"], assignments=assign,
        )

    def session_by_code(self, code: str) -> SessionRow | None:
        rows = self._query("SELECT session_id FROM sessions WHERE completion_code = ?", (code.strip(),))
        return self.session(rows[0]["session_id"]) if rows else None

    def _open_session(self, c: Conn, session_id: str) -> Row:
        row = c.execute("SELECT status FROM sessions WHERE session_id = ?" + self._for_update, (session_id,)).fetchone()
        if row is None:
            raise AnswerRefused("This session does not exist. Please start again from your study link.")
        if row["status"] == "completed":
            raise AnswerRefused("This session is already complete; answers can no longer be changed.")
        if row["status"] == "withdrawn":
            raise AnswerRefused("This session was withdrawn; its data has been deleted.")
        return row

    def _touch(self, c: Conn, session_id: str, status: str | None = None) -> None:
        if status:
            c.execute("UPDATE sessions SET status = ?, updated_at = ? WHERE session_id = ?", (status, now(), session_id))
        else:
            c.execute("UPDATE sessions SET updated_at = ? WHERE session_id = ?", (now(), session_id))

    # --- preference and what was shown ------------------------------------------------------------
    def save_preference(
        self, session_id: str, text: str, gender: str | None, avoid_colours: list[str],
        uploads: list[tuple[str, str, int, int]],
    ) -> None:
        """Store the preference and its uploads (sha256, path, width, height) in one transaction."""
        with self._tx() as c:
            self._open_session(c, session_id)
            c.execute(
                "INSERT INTO preferences(session_id, text, gender, avoid_colours, created_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(session_id) DO UPDATE SET text = excluded.text, gender = excluded.gender,"
                " avoid_colours = excluded.avoid_colours",
                (session_id, text, gender, json.dumps(avoid_colours), now()),
            )
            self._put_uploads(c, session_id, uploads)
            self._touch(c, session_id, "preference")

    @staticmethod
    def _put_uploads(c: Conn, session_id: str, uploads: list[tuple[str, str, int, int]]) -> None:
        """Replace the session's uploads (sha256, path, width, height), in the order given."""
        c.execute("DELETE FROM uploads WHERE session_id = ?", (session_id,))
        c.executemany("INSERT INTO uploads(session_id, idx, sha256, path, width, height) VALUES (?, ?, ?, ?, ?, ?)",
                      [(session_id, i, sha, path, w, h) for i, (sha, path, w, h) in enumerate(uploads)])

    def uploads(self, session_id: str) -> list[dict[str, Any]]:
        """The session's stored photos (a draft's or the submitted preference's), in the order given."""
        return [dict(u) for u in self._query(
            "SELECT idx, sha256, path, width, height FROM uploads WHERE session_id = ? ORDER BY idx", (session_id,))]

    def preference(self, session_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM preferences WHERE session_id = ?", (session_id,))
        if not rows:
            return None
        r = rows[0]
        return {"text": r["text"], "gender": r["gender"], "avoid_colours": json.loads(r["avoid_colours"]),
                "uploads": self.uploads(session_id)}

    def save_shown(self, session_id: str, grids: dict[str, list[ShownRow]]) -> bool:
        """Record the four grids once. Returns False (and changes nothing) if they were already recorded,
        so a participant who resumes sees exactly what they saw before."""
        with self._tx() as c:
            self._open_session(c, session_id)
            if c.execute("SELECT 1 FROM shown WHERE session_id = ? LIMIT 1", (session_id,)).fetchone():
                return False
            for letter, rows in grids.items():
                if len(rows) != GRID_SIZE:
                    raise ValueError(f"grid {letter} has {len(rows)} items, not {GRID_SIZE}")
                c.executemany(
                    "INSERT INTO shown(session_id, letter, position, item_id, image_sha256, caption, score)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(session_id, letter, r.position, r.item_id, r.image_sha256, r.caption, r.score) for r in rows],
                )
            self._touch(c, session_id, "shown")
        return True

    def shown(self, session_id: str) -> dict[str, list[ShownRow]]:
        out: dict[str, list[ShownRow]] = {}
        for r in self._query(
            "SELECT letter, position, item_id, image_sha256, caption, score FROM shown WHERE session_id = ?"
            " ORDER BY letter, position", (session_id,)):
            out.setdefault(r["letter"], []).append(ShownRow(**dict(r)))
        return out

    # --- answers ------------------------------------------------------------------------------------
    def _check_letter(self, c: Conn, session_id: str, letter: str) -> None:
        """An answer about grid ``letter`` needs that grid to have been shown to this session."""
        if not c.execute("SELECT 1 FROM assignments WHERE session_id = ? AND letter = ?", (session_id, letter)).fetchone():
            raise AnswerRefused(f"There is no grid {str(letter)[:8]!r} in this study.")
        if not c.execute("SELECT 1 FROM shown WHERE session_id = ? AND letter = ? LIMIT 1", (session_id, letter)).fetchone():
            raise AnswerRefused("Please get your recommendations first; there is nothing to answer about yet.")

    def answer_relevance(self, session_id: str, letter: str, position: int, relevant: bool) -> None:
        if position not in range(1, GRID_SIZE + 1):
            raise AnswerRefused(f"There is no picture {position!r} in a grid (1-{GRID_SIZE}).")
        with self._tx() as c:
            self._open_session(c, session_id)
            self._check_letter(c, session_id, letter)
            c.execute(
                "INSERT INTO relevance(session_id, letter, position, relevant, answered_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(session_id, letter, position) DO UPDATE SET relevant = excluded.relevant,"
                " answered_at = excluded.answered_at",
                (session_id, letter, position, int(bool(relevant)), now()),
            )
            self._touch(c, session_id)

    def answer_relevance_grid(self, session_id: str, letter: str, relevant_positions: list[int]) -> None:
        """All four marks of one grid at once (unmarked positions are 'would not wear')."""
        bad = [p for p in relevant_positions if p not in range(1, GRID_SIZE + 1)]
        if bad:
            raise AnswerRefused(f"There is no picture {bad[0]!r} in a grid (1-{GRID_SIZE}).")
        with self._tx() as c:
            self._open_session(c, session_id)
            self._check_letter(c, session_id, letter)
            t = now()
            c.executemany(
                "INSERT INTO relevance(session_id, letter, position, relevant, answered_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(session_id, letter, position) DO UPDATE SET relevant = excluded.relevant,"
                " answered_at = excluded.answered_at",
                [(session_id, letter, p, int(p in relevant_positions), t) for p in range(1, GRID_SIZE + 1)],
            )
            self._touch(c, session_id)

    def answer_rating(self, session_id: str, letter: str, rating: int) -> None:
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 10:
            raise AnswerRefused(f"A rating must be a whole number from 1 to 10, not {rating!r}.")
        with self._tx() as c:
            self._open_session(c, session_id)
            self._check_letter(c, session_id, letter)
            c.execute(
                "INSERT INTO ratings(session_id, letter, rating, answered_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(session_id, letter) DO UPDATE SET rating = excluded.rating, answered_at = excluded.answered_at",
                (session_id, letter, rating, now()),
            )
            self._touch(c, session_id)

    def answer_ranking(self, session_id: str, ranking: dict[str, int], *, partial: bool = False) -> None:
        """Replace the whole ranking at once (a permutation of 1..n over the session's letters). ``partial``: the
        places given so far (distinct letters in distinct places of 1..n), kept so a reload shows them; completion
        still needs every place."""
        with self._tx() as c:
            self._open_session(c, session_id)
            letters = [r["letter"] for r in c.execute(
                "SELECT letter FROM assignments WHERE session_id = ? ORDER BY letter", (session_id,))]
            if not c.execute("SELECT 1 FROM shown WHERE session_id = ? LIMIT 1", (session_id,)).fetchone():
                raise AnswerRefused("Please get your recommendations first; there is nothing to rank yet.")
            places = list(range(1, len(letters) + 1))
            if partial and set(ranking) <= set(letters) and len(set(ranking.values())) == len(ranking) \
                    and set(ranking.values()) <= set(places):
                pass
            elif sorted(ranking) != letters or sorted(ranking.values()) != places:
                raise AnswerRefused(
                    f"The ranking must give each of {', '.join(letters)} a different place from 1 to {len(letters)}."
                )
            c.execute("DELETE FROM ranks WHERE session_id = ?", (session_id,))
            t = now()
            c.executemany(
                "INSERT INTO ranks(session_id, letter, rank, answered_at) VALUES (?, ?, ?, ?)",
                [(session_id, letter, int(rank), t) for letter, rank in sorted(ranking.items())],
            )
            self._touch(c, session_id)

    def answer_feedback(self, session_id: str, letter: str, text: str) -> None:
        """Free text, stored verbatim. ``letter`` '' is the overall feedback."""
        with self._tx() as c:
            self._open_session(c, session_id)
            if letter:
                self._check_letter(c, session_id, letter)
            c.execute(
                "INSERT INTO feedback(session_id, letter, text, answered_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(session_id, letter) DO UPDATE SET text = excluded.text, answered_at = excluded.answered_at",
                (session_id, letter, text, now()),
            )
            self._touch(c, session_id)

    def set_attention(self, session_id: str, passed: bool) -> None:
        with self._tx() as c:
            self._open_session(c, session_id)
            c.execute("UPDATE sessions SET attention_passed = ?, updated_at = ? WHERE session_id = ?",
                      (int(passed), now(), session_id))

    def answers(self, session_id: str) -> dict[str, Any]:
        """Everything answered so far, for resuming a session."""
        rel: dict[str, dict[int, bool]] = {}
        for r in self._query("SELECT letter, position, relevant FROM relevance WHERE session_id = ?", (session_id,)):
            rel.setdefault(r["letter"], {})[r["position"]] = bool(r["relevant"])
        return {
            "relevance": rel,
            "ratings": {r["letter"]: r["rating"] for r in self._query(
                "SELECT letter, rating FROM ratings WHERE session_id = ?", (session_id,))},
            "ranks": {r["letter"]: r["rank"] for r in self._query(
                "SELECT letter, rank FROM ranks WHERE session_id = ?", (session_id,))},
            "feedback": {r["letter"]: r["text"] for r in self._query(
                "SELECT letter, text FROM feedback WHERE session_id = ?", (session_id,))},
        }

    def missing_answers(self, session_id: str) -> list[str]:
        """What still has to be answered before completion, in words a participant understands."""
        shown = self.shown(session_id)
        a = self.answers(session_id)
        missing = []
        for letter in sorted(shown):
            unmarked = [p for p in range(1, GRID_SIZE + 1) if p not in a["relevance"].get(letter, {})]
            if unmarked:  # named picture by picture, as the page numbers them ("3. Wear it?")
                pictures = ", ".join(map(str, unmarked[:-1])) + (" and " if len(unmarked) > 1 else "") + str(unmarked[-1])
                missing.append(f"whether you would wear Model {letter}'s picture{'s' if len(unmarked) > 1 else ''} "
                               f"{pictures}")
            if letter not in a["ratings"]:
                missing.append(f"a rating for Model {letter}")
        if shown and len(a["ranks"]) != len(shown):
            missing.append("a ranking of the models")
        return missing

    def complete(self, session_id: str) -> str:
        """Finish the session and return its completion code; calling it again returns the same code."""
        with self._tx() as c:
            row = c.execute("SELECT status, completion_code FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
            if row is None:
                raise AnswerRefused("This session does not exist. Please start again from your study link.")
            if row["status"] == "completed":
                return row["completion_code"]
            if row["status"] == "withdrawn":
                raise AnswerRefused("This session was withdrawn; its data has been deleted.")
        missing = self.missing_answers(session_id)
        if missing:
            raise AnswerRefused("Please still give " + "; ".join(missing) + ".")
        code = "DU-" + secrets.token_hex(4).upper()
        with self._tx() as c:
            row = c.execute("SELECT status, completion_code FROM sessions WHERE session_id = ?" + self._for_update,
                            (session_id,)).fetchone()
            if row["status"] == "completed":  # a concurrent double submit won the race
                return row["completion_code"]
            if row["status"] == "withdrawn":  # withdrawn from another tab in the meantime
                raise AnswerRefused("This session was withdrawn; its data has been deleted.")
            t = now()
            c.execute(
                "UPDATE sessions SET status = 'completed', completion_code = ?, completed_at = ?, updated_at = ?"
                " WHERE session_id = ?", (code, t, t, session_id),
            )
        return code

    def withdraw(self, session_id: str) -> list[str]:
        """Delete every answer, preference and upload record of a session; keep a 'withdrawn' stub row
        so the analysis can report the exclusion. Returns the upload file paths for the caller to delete."""
        with self._tx() as c:
            if not c.execute("SELECT 1 FROM sessions WHERE session_id = ?" + self._for_update, (session_id,)).fetchone():
                raise AnswerRefused("There is no session with that code.")
            paths = [r["path"] for r in c.execute("SELECT path FROM uploads WHERE session_id = ?", (session_id,))]
            for path in paths:  # the photos' shared copies (named per session, so no one else's)
                c.execute("DELETE FROM blobs WHERE sha256 = ?", (Path(path).stem,))
            for table in ("relevance", "ratings", "ranks", "feedback", "shown", "uploads", "preferences", "drafts"):
                c.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))
            t = now()
            c.execute(
                "UPDATE sessions SET status = 'withdrawn', withdrawn_at = ?, updated_at = ? WHERE session_id = ?",
                (t, t, session_id),
            )
        return paths

    def log_event(self, session_id: str | None, kind: str, detail: dict[str, Any] | None = None) -> None:
        """Flags and refusals are stored, never silently dropped (see shared/notes/study-anchors.md)."""
        with self._tx() as c:
            c.execute("INSERT INTO events(session_id, kind, detail, at) VALUES (?, ?, ?, ?)",
                      (session_id, kind, json.dumps(detail or {}, default=str), now()))

    # --- researcher view ----------------------------------------------------------------------------
    def counts(self) -> dict[str, Any]:
        """Live counts for the researcher page: sessions by status, completed sessions per arm and letter."""
        by_status = {r["status"]: r["n"] for r in self._query(
            "SELECT status, COUNT(*) AS n FROM sessions WHERE study = ? GROUP BY status", (self.study,))}
        per_arm = {}
        for r in self._query(
            "SELECT a.arm, a.letter, COUNT(*) AS n FROM assignments a JOIN sessions s USING(session_id)"
            " WHERE s.study = ? AND s.status = 'completed' GROUP BY a.arm, a.letter", (self.study,)):
            per_arm.setdefault(r["arm"], {})[r["letter"]] = r["n"]
        return {"by_status": by_status, "completed_per_arm_letter": per_arm}
