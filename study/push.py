"""The push: completed participants' answers, appended to a private Hugging Face dataset repo.

A Space's disk does not survive a restart, so a study on Spaces copies its answers out as they come. The push
is append-only, like the Hub's own "space to dataset saver" pattern: each completed participant becomes files
of their own (``data/long/<S>.csv``, ``data/sessions/<S>.csv``, ``data/feedback/<S>.csv``) written once and
never rewritten, so no later push (a restarted app on an empty disk, a second host, an older database) can
replace what is there with an emptier export. The one exception is a withdrawal: the participant's files are
deleted in the next push and the branch's history is squashed (``HfApi.super_squash_history``), so their rows
leave the repo's history too. A participant's files are named by a pseudonym keyed with a secret kept in the
study database (``Store.secret``): stable over restarts and hosts, unlinkable to the resume link or the
participant's own id without the database. The dataset card's ``configs`` let ``datasets.load_dataset(repo,
"long")`` read every participant's file as one table.

The push runs on a daemon thread every ``[push] every_minutes`` and once more when the app stops; a push
that fails (the Hub away, a revoked token) is logged and retried at the next tick, and never reaches a
participant. Only ``huggingface_hub.HfApi`` speaks to the Hub (endpoint from ``HF_ENDPOINT``, as everywhere).
"""
from __future__ import annotations

import hashlib
import hmac
import io
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token

from study.export import LONG_COLUMNS, SESSION_COLUMNS, csv_safe, read_tables
from study.store import Store

log = logging.getLogger(__name__)
TABLES = ("long", "sessions", "feedback")
FEEDBACK_COLUMNS = ["session", "participant", "letter", "arm", "text", "answered_at"]
CARD = """---
configs:
- config_name: long
  data_files: "data/long/*.csv"
  default: true
- config_name: sessions
  data_files: "data/sessions/*.csv"
- config_name: feedback
  data_files: "data/feedback/*.csv"
---
# Dress-UP study answers

Pushed by the study app: one file per completed participant and table, written once. `long` has one row per
shown image (participant, session, letter, arm, position, item, relevant, rating, rank); `sessions` one row per
participant; `feedback` their free text (written by participants: read it before publishing anything).
Participants and sessions are pseudonyms. A participant who withdraws is deleted, history included.
"""


class PushError(ValueError):
    """The [push] settings cannot work; the message names the setting and the fix."""


@dataclass
class PushReport:
    added: list[str] = field(default_factory=list)  # participants (session pseudonyms) pushed now
    deleted: list[str] = field(default_factory=list)  # withdrawn participants removed now
    squashed: bool = False


class ParticipantPush:
    """Pushes every completed, not yet pushed participant of ``store`` to the dataset ``repo_id``."""

    def __init__(self, store: Store, repo_id: str, api: HfApi, every_minutes: float = 10.0) -> None:
        self.store, self.repo_id, self.api, self.every_s = store, repo_id, api, every_minutes * 60
        self._key = store.secret("push-pseudonyms").encode()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one push at a time (the ticker and the final push)
        self._thread: threading.Thread | None = None

    def name(self, kind: str, value: str) -> str:
        """``S…``/``P…`` pseudonym: an HMAC of the id under the study's secret (16 hex digits)."""
        return kind + hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:16]

    def push(self) -> PushReport:
        """One push: add the completed participants the repo lacks, delete the withdrawn ones it holds."""
        with self._lock:
            self.api.create_repo(self.repo_id, repo_type="dataset", private=True, exist_ok=True)
            remote = set(self.api.list_repo_files(self.repo_id, repo_type="dataset"))
            with self.store.reading() as conn:
                sessions, long, feedback = read_tables(conn)
            sessions["session"] = sessions["session_id"].map(lambda s: self.name("S", s))
            sessions["participant"] = sessions["participant"].map(lambda p: self.name("P", p))
            report, ops = PushReport(), []
            for row in sessions.itertuples():
                files = [f"data/{table}/{row.session}.csv" for table in TABLES]
                if row.status == "withdrawn":
                    gone = [f for f in files if f in remote]
                    ops += [CommitOperationDelete(f) for f in gone]
                    report.deleted += [row.session] if gone else []
                elif row.status == "completed" and f"data/long/{row.session}.csv" not in remote:
                    ops += self._files(row, sessions, long, feedback)
                    report.added.append(row.session)
            if "README.md" not in remote:
                ops.append(CommitOperationAdd("README.md", CARD.encode()))
            if not ops:
                return report
            self.api.create_commit(self.repo_id, ops, repo_type="dataset", commit_message=(
                f"{len(report.added)} participant(s) added, {len(report.deleted)} withdrawn"))
            if report.deleted:  # the withdrawn rows must leave the history, not only the tree
                self.api.super_squash_history(self.repo_id, repo_type="dataset",
                                              commit_message="answers (history squashed after a withdrawal)")
                report.squashed = True
            log.info("pushed to %s: %d participant(s) added, %d withdrawn", self.repo_id, len(report.added),
                     len(report.deleted))
            return report

    def _files(self, row: Any, sessions: pd.DataFrame, long: pd.DataFrame, feedback: pd.DataFrame
               ) -> list[CommitOperationAdd]:
        sid, names = row.session_id, {"session": row.session, "participant": row.participant}
        mine = long[long["session_id"] == sid].assign(**names)[LONG_COLUMNS]
        for col in ("relevant", "rating", "rank", "attention_passed"):
            mine[col] = mine[col].astype("Int64")
        me = sessions[sessions["session_id"] == sid][SESSION_COLUMNS].astype({"attention_passed": "Int64"})
        said = feedback[feedback["session_id"] == sid].assign(**names)[FEEDBACK_COLUMNS]
        tables = {"long": mine, "sessions": me, "feedback": said}
        return [CommitOperationAdd(f"data/{t}/{row.session}.csv", _csv(frame)) for t, frame in tables.items()]

    # --- schedule ----------------------------------------------------------------------------------
    def start(self) -> "ParticipantPush":
        self._thread = threading.Thread(target=self._run, name="dressup-push", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            self._push_logged()
            if self._stop.wait(self.every_s):
                return

    def _push_logged(self) -> PushReport | None:
        try:
            return self.push()
        except Exception as e:  # noqa: BLE001 - the Hub or the database away: retried at the next tick
            log.warning("push to %s failed (retried in %.0f s): %s", self.repo_id, self.every_s,
                        str(e).splitlines()[0][:300] if str(e) else type(e).__name__)
            return None

    def stop(self, final_push: bool = True) -> None:
        """Stop the ticker; push once more so answers given since the last tick leave with the app."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        if final_push:
            self._push_logged()


def _csv(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    csv_safe(frame).to_csv(buffer, index=False)
    return buffer.getvalue().encode()


def start_push(push: Any, store: Store, *, api: HfApi | None = None) -> ParticipantPush | None:
    """Start pushing as the study file's ``[push]`` says (``dressup.config.PushSpec``: repo_id, every_minutes,
    token_env). None, and nothing touched, when ``repo_id`` is empty. The token comes from the environment
    variable ``push.token_env`` (a Space secret), else the machine's saved login."""
    repo_id = (push.repo_id or "").strip()
    if not repo_id:
        return None
    if not push.every_minutes or push.every_minutes <= 0:
        raise PushError(f"[push] every_minutes must be a positive number of minutes, not {push.every_minutes!r}")
    token = os.environ.get(push.token_env) or None
    if token is None and api is None and get_token() is None:
        raise PushError(f"[push] repo_id is {repo_id!r} but there is no Hugging Face token: set the environment"
                        f" variable {push.token_env} (a Space secret with write access), or leave repo_id empty")
    log.info("pushing completed participants to the private dataset %s every %s minutes", repo_id,
             push.every_minutes)
    return ParticipantPush(store, repo_id, api or HfApi(token=token), push.every_minutes).start()

