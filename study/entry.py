"""How a participant arrives: the URL's parameters (Prolific's ids, a resume link) and the page's ``Visit``.

Everything here is client-controlled, so it is validated against strict patterns before use; invalid
values are never used, only their key names kept as a flag. The session id reaches a ``Visit`` only
through consent or the resume-link flow (``study.session.Sessions``), never as a plain input.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from study.errors import ParticipantError

URL_PARAMS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")
RESUME_PARAM = "session"
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


@dataclass
class Visit:
    """What ``gr.State`` holds for one page load: the validated URL entry and, after consent, the session.

    The session id enters a Visit only through consent or the resume-link flow, never as a plain input.
    """

    participant: str | None = None
    source: dict[str, Any] = field(default_factory=dict)
    session_id: str | None = None


def parse_entry(query: Mapping[str, str]) -> tuple[Visit, str | None]:
    """Validate the URL's parameters (client-controlled): Prolific's ids and an optional resume link.

    Returns the visit (nothing is recorded yet: consent comes first) and the session id to resume, if any.
    Invalid values are not used; their key names (never their values) are kept in ``source`` as a flag.
    """
    source: dict[str, Any] = {}
    invalid = []
    for key in URL_PARAMS:
        value = query.get(key)
        if value is None:
            continue
        if ID_RE.match(str(value)):
            source[key] = str(value)
        else:
            invalid.append(key)
    if invalid:
        source["invalid_params"] = invalid
    resume = query.get(RESUME_PARAM)
    resume = resume if resume and SESSION_RE.match(str(resume)) else None
    return Visit(participant=source.get("PROLIFIC_PID"), source=source), resume


def session_id_from_link(link: str) -> str:
    """The session id in a resume link (``...?session=ID``) or a bare id; raises ParticipantError if none."""
    link = (link or "").strip()
    m = re.search(r"[?&]session=([A-Za-z0-9_-]+)", link)
    candidate = m.group(1) if m else link
    if not SESSION_RE.match(candidate):
        raise ParticipantError("That does not look like a session link. Paste the whole link you saved.")
    return candidate
