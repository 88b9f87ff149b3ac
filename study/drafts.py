"""The style page while it is being filled in: what a participant typed, chose and uploaded before Submit.

The page says answers are saved as they are given, and the style page is where most is typed: a reload, a
dropped connection or the session link opened on another device must find the description, the Menswear /
Womenswear choice, the colours to avoid and the photos again. Each is saved the moment it is given, for a
consented session that has no grids yet: the fields in ``drafts`` (as typed; nothing is validated beyond
length, Submit still validates everything), the photos at once as the study's clean copies in ``uploads``
(EXIF dropped, exactly as Submit stores them), so Submit reuses them instead of decoding them again.

Drafts are personal data like the preference: a withdrawal deletes them (``Store.withdraw``), and no export
or push reads them; the submitted preference is the record.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from study.store import AnswerRefused, Store, now

EDITABLE = ("consented", "preference")  # before the grids: afterwards the preference is final


@dataclass
class Draft:
    """The style page as last given (``uploads``: the stored photos, in the order given)."""

    text: str = ""
    gender: str = "any"
    avoid: str = ""
    typed: bool = False  # the fields were given (not only photos)
    uploads: list[dict[str, Any]] = field(default_factory=list)


def load(store: Store, session_id: str) -> Draft | None:
    """The saved draft, or None when nothing was given before Submit."""
    rows = store._query("SELECT text, gender, avoid FROM drafts WHERE session_id = ?", (session_id,))
    uploads = store.uploads(session_id)
    if not rows and not uploads:
        return None
    if not rows:
        return Draft(uploads=uploads)
    return Draft(text=rows[0]["text"], gender=rows[0]["gender"], avoid=rows[0]["avoid"], typed=True, uploads=uploads)


def editable(store: Store, session_id: str) -> bool:
    """A draft is kept for a consented session without grids; anything later is ignored, not refused (a late
    event from a page that has already moved on)."""
    row = store.session(session_id)
    return row is not None and row.status in EDITABLE and not store.shown(session_id)


FIELDS = ("text", "gender", "avoid")


def save_field(store: Store, session_id: str, name: str, value: str) -> None:
    """One field of the style page as it is now (validated by the caller; the last call wins). One field per
    call: a page re-rendering its saved values sends each field as it is set, never a mix of old and new."""
    assert name in FIELDS, name  # a column name, never from the client
    with store._tx() as c:
        store._open_session(c, session_id)
        c.execute(f"INSERT INTO drafts(session_id, {name}, updated_at) VALUES (?, ?, ?)"
                  f" ON CONFLICT(session_id) DO UPDATE SET {name} = excluded.{name}, updated_at = excluded.updated_at",
                  (session_id, value, now()))


def save_uploads(store: Store, session_id: str, uploads: Sequence[tuple[str, str, int, int]]) -> None:
    """Replace the session's stored photos (sha256, path, width, height) before its grids exist."""
    with store._tx() as c:
        store._open_session(c, session_id)
        if c.execute("SELECT 1 FROM shown WHERE session_id = ? LIMIT 1", (session_id,)).fetchone():
            raise AnswerRefused("Your recommendations are already shown; the photos can no longer be changed.")
        store._put_uploads(c, session_id, list(uploads))
        store._touch(c, session_id)


def content_sha(photo: str | Path | bytes) -> str | None:
    """sha256 of a photo's bytes (how stored photos are named), or None if it cannot be read."""
    try:
        return hashlib.sha256(photo if isinstance(photo, bytes) else Path(photo).read_bytes()).hexdigest()
    except OSError:
        return None


def same_photos(photos: Sequence[str | Path | bytes], stored: Sequence[dict[str, Any]]) -> bool:
    """Whether ``photos`` are byte for byte the stored clean copies, in order."""
    return bool(photos) and [content_sha(p) for p in photos] == [u["sha256"] for u in stored]
