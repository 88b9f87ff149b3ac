"""The researcher's view of a running study, without Gradio: the password check, live counts and exports.

This is the only place outside the store that names arms to anyone, so everything here first checks the
password from the study's env var (constant-time); with the env var unset the page does not exist at all.
The Gradio route that shows it is ``study.researcher_page``.
"""
from __future__ import annotations

import hmac
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from dressup.config import Study
from study.errors import ParticipantError
from study.store import Store


class RunningStudy(Protocol):
    """What the researcher functions read of ``study.session.Sessions``: the study and its store."""

    study: Study
    store: Store


def researcher_password(study: Study) -> str | None:
    """The researcher page's password, or None (page off) when the study's env var is unset or empty."""
    return os.environ.get(study.ui.researcher_password_env) or None


def check_researcher(study: Study, given: str | None) -> None:
    """Refuse unless the page is on and the password matches (constant-time comparison)."""
    expected = researcher_password(study)
    if expected is None:
        raise ParticipantError("The researcher page is off.")
    if not hmac.compare_digest((given or "").encode(), expected.encode()):
        raise ParticipantError("Wrong password.")


def researcher_summary(sessions: RunningStudy, password: str | None) -> dict[str, Any]:
    """Live counts per arm and letter and sessions by status (researcher-only: names arms)."""
    check_researcher(sessions.study, password)
    counts = sessions.store.counts()
    return {"study": sessions.study.name, "participants_wanted": sessions.study.participants_wanted,
            "sessions_completed": counts["by_status"].get("completed", 0), **counts}


def researcher_export(sessions: RunningStudy, password: str | None, out_dir: Path) -> list[Path]:
    """Write the analysts' export (``study.export``: pseudonymised CSV/Parquet) into ``out_dir`` for download.
    ``out_dir`` must lie outside the results folder, which is never served."""
    check_researcher(sessions.study, password)
    # imported here, not at the top: study.export loads pandas, which the participant page never needs
    from study.export import export

    return export(sessions.store.url if sessions.store.shared else sessions.study.db_path, out_dir).files


def dumps_summary(summary: Mapping[str, Any]) -> str:
    return json.dumps(summary, indent=2, sort_keys=True)
