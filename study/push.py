"""Optional push of the export (never the database) to a private Hugging Face dataset.

A Space's disk is not persistent, so a study running on Spaces can copy its export to a dataset repo
with huggingface_hub's ``CommitScheduler`` (a background thread that commits a local folder every N
minutes). ``ExportScheduler`` re-exports the database into that folder, under the scheduler's lock, right
before each commit, so each push is a fresh, consistent export and the app has nothing to call.

Pitfalls handled here (see shared/notes/stack-2026.md §4): ``repo_type`` defaults to "model", so
"dataset" is always passed; ``private=None`` makes a new repo public, so ``private=True`` is always
passed; the database's folder must not be the pushed folder (refused); temporary files are ignored.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from huggingface_hub import CommitScheduler, HfApi, get_token

from study.export import TMP_SUFFIX, export

log = logging.getLogger(__name__)
IGNORE = ["*" + TMP_SUFFIX, "*.sqlite", "*.sqlite-*", "*.db", "*.db-*"]  # belt and braces: never a database


class PushError(ValueError):
    """The [push] settings cannot work; the message names the setting and the fix."""


class ExportScheduler(CommitScheduler):
    """A ``CommitScheduler`` whose every commit first re-exports ``db_path`` into the pushed folder."""

    def __init__(self, *, db_path: str | Path, **kwargs: Any) -> None:
        self.db_path = Path(db_path)  # set before super().__init__: its thread pushes at once
        super().__init__(**kwargs)

    def push_to_hub(self) -> Any:
        with self.lock:
            export(self.db_path, self.folder_path)
        return super().push_to_hub()


def start_push(push: Any, db_path: str | Path, folder: str | Path, *, hf_api: HfApi | None = None
               ) -> ExportScheduler | None:
    """Start pushing exports as the study file's ``[push]`` section says (``dressup.config.PushSpec``:
    repo_id, every_minutes, token_env). Returns None, and does nothing, when ``repo_id`` is empty.

    The token is read from the environment variable ``push.token_env`` (a Space secret), else from the
    machine's saved Hugging Face login; ``hf_api`` replaces the Hub client (tests pass a fake)."""
    repo_id = (push.repo_id or "").strip()
    if not repo_id:
        return None
    db_path, folder = Path(db_path), Path(folder)
    if db_path.resolve().is_relative_to(folder.resolve()):
        raise PushError(f"[push] would upload {folder}, which contains the database {db_path}; export to a folder"
                        " of its own (e.g. results/export) — only the export may be pushed")
    if not push.every_minutes or push.every_minutes <= 0:
        raise PushError(f"[push] every_minutes must be a positive number of minutes, not {push.every_minutes!r}")
    token = os.environ.get(push.token_env) or None
    if token is None and hf_api is None and get_token() is None:
        raise PushError(f"[push] repo_id is {repo_id!r} but there is no Hugging Face token: set the environment"
                        f" variable {push.token_env} (a Space secret with write access), or leave repo_id empty")
    log.info("pushing exports of %s to the private dataset %s every %s minutes", db_path, repo_id, push.every_minutes)
    return ExportScheduler(
        db_path=db_path, repo_id=repo_id, repo_type="dataset", private=True, folder_path=folder,
        every=push.every_minutes, token=token, hf_api=hf_api, ignore_patterns=list(IGNORE),
    )
