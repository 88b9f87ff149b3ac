"""The style page is kept as it is given (study.drafts): fields and photos saved before Submit come back with
the session, Submit reuses the stored photos, and a withdrawal deletes drafts like everything else."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from study.session import ParticipantError, Sessions, Visit
from tests.app_fixtures import photos
from tests.test_session import _count, sessions  # noqa: F401 - the Sessions fixture on tiny arms


def test_fields_and_photos_given_before_submit_come_back_with_the_session(sessions):
    sid = sessions.consent(Visit()).session_id
    for field, value in (("text", "navy linen, nothing tight"), ("gender", "Womenswear"), ("avoid", "orange, lime")):
        sessions.save_draft(sid, field, value)
    assert sessions.save_draft_photos(sid, photos(1)) == 1  # one at a time, as a participant adds them
    assert sessions.save_draft_photos(sid, photos(3)) == 3
    _, p = sessions.resume(sid)
    assert (p.text, p.gender, p.avoid_colours, p.photos_saved) == ("navy linen, nothing tight", "womenswear",
                                                                    "orange, lime", 3)
    stored = [f.read_bytes() for f in p.photos]
    for f, original in zip(p.photos, photos(3)):  # the clean copies (EXIF dropped), not the originals
        assert f.is_file() and f.read_bytes() != Path(original).read_bytes()
        assert Image.open(f).getexif() == {}
    assert p.status == "consented" and not p.grids
    # a photo removed on the page is removed from the store, and its file with it
    assert sessions.save_draft_photos(sid, p.photos[:2]) == 2
    assert not p.photos[2].exists() and [f.read_bytes() for f in sessions.progress(sid).photos] == stored[:2]


def test_submit_takes_the_stored_photos_without_decoding_them_again(sessions, monkeypatch):
    sid = sessions.consent(Visit()).session_id
    sessions.save_draft_photos(sid, photos(2))
    kept = sessions.progress(sid).photos
    decoded = []
    original = Sessions._save_uploads
    monkeypatch.setattr(Sessions, "_save_uploads", lambda self, *a, **k: decoded.append(a) or original(self, *a, **k))
    p = sessions.submit_preference(sid, "black jeans", kept, "any", "")  # what a reloaded page sends back
    assert len(p.grids) == 4 and not decoded
    assert [u["sha256"] for u in sessions.store.preference(sid)["uploads"]] == \
        [hashlib.sha256(f.read_bytes()).hexdigest() for f in kept]
    sid2 = sessions.consent(Visit()).session_id
    sessions.save_draft_photos(sid2, photos(2))
    decoded.clear()
    assert len(sessions.submit_preference(sid2, "black jeans", None, "any", "").grids) == 4 and not decoded
    sid3 = sessions.consent(Visit()).session_id
    sessions.save_draft_photos(sid3, photos(1))
    with pytest.raises(ParticipantError, match="Please add 2 to 4 photos .*you added 1"):
        sessions.submit_preference(sid3, "black jeans", None, "any", "")


def test_drafts_are_checked_ignored_once_the_grids_exist_and_deleted_by_a_withdrawal(sessions):
    sid = sessions.consent(Visit()).session_id
    with pytest.raises(ParticipantError, match="under"):
        sessions.save_draft(sid, "text", "x" * (sessions.study.ui.max_text_chars + 1))
    with pytest.raises(ParticipantError, match="menswear, womenswear or any"):
        sessions.save_draft(sid, "gender", "everything")
    with pytest.raises(ParticipantError, match="no such field"):
        sessions.save_draft(sid, "status = 'completed' --", "x")
    with pytest.raises(ParticipantError, match="2 to 4 photos .*you added 5"):
        sessions.save_draft_photos(sid, photos(4) + photos(1))
    assert _count(sessions, "drafts") == 0 and _count(sessions, "uploads") == 0
    sessions.save_draft(sid, "text", "red dresses")
    sessions.submit_preference(sid, "red dresses", photos(2), "any", "")
    before = sessions.progress(sid)
    sessions.save_draft(sid, "text", "changed after the grids")  # a late event: ignored
    assert sessions.save_draft_photos(sid, photos(3)) == 3 and sessions.progress(sid) == before
    files = before.photos
    assert all(f.exists() for f in files)
    sessions.withdraw(sid)
    assert _count(sessions, "drafts") == 0 and _count(sessions, "uploads") == 0
    assert not any(f.exists() for f in files)
