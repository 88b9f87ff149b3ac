"""Session logic without Gradio: every rule a participant meets, checked as plain calls on real arms."""
from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from dressup.records import Preference
from study.session import (
    CELL_PIXELS,
    ParticipantError,
    Sessions,
    Visit,
    check_researcher,
    parse_entry,
    researcher_export,
    researcher_summary,
    session_id_from_link,
)
from study.store import AnswerRefused, Store
from tests.app_fixtures import ARM_NAMES, PASSWORD, PASSWORD_ENV, photos, tiny_arms, tiny_study

LETTERS = ["A", "B", "C", "D"]


@pytest.fixture()
def sessions(tmp_path):
    study = tiny_study().load(results_dir=tmp_path / "results")
    s = Sessions(study, tiny_arms(), Store(study.db_path, study.name))
    yield s
    s.close()
    s.store.close()


def _count(s: Sessions, table: str) -> int:
    return s.store._query(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]


def _started(s: Sessions, text: str = "red striped dresses") -> str:
    sid = s.consent(Visit()).session_id
    s.submit_preference(sid, text, photos(2))
    return sid


def _answer_everything(s: Sessions, sid: str) -> None:
    for i, x in enumerate(LETTERS):
        s.answer_wear(sid, x, ["Yes", "No", "No", "Yes"])
        s.answer_rating(sid, x, i + 5)
    assert s.answer_ranking(sid, ["C", "A", "D"])


def test_url_parameters_are_validated_and_nothing_is_recorded_before_consent(sessions):
    visit, resume = parse_entry({"PROLIFIC_PID": "5f1a2b3c4d", "STUDY_ID": "S_1", "SESSION_ID": "bad id!<script>",
                                 "session": "x"})
    assert visit.participant == "5f1a2b3c4d" and visit.session_id is None
    assert visit.source == {"PROLIFIC_PID": "5f1a2b3c4d", "STUDY_ID": "S_1", "invalid_params": ["SESSION_ID"]}
    assert resume is None  # too short to be a session id
    assert parse_entry({"PROLIFIC_PID": "x" * 65})[0].participant is None
    assert _count(sessions, "sessions") == 0 and _count(sessions, "counters") == 0


def test_consent_takes_a_square_row_and_keeps_the_prolific_id(sessions):
    v = sessions.consent(Visit(participant="PID_7", source={"PROLIFIC_PID": "PID_7"}))
    row = sessions.store.session(v.session_id)
    assert (row.participant, row.order_index, row.status) == ("PID_7", 0, "consented")
    assert sorted(row.assignments.values()) == sorted(ARM_NAMES)
    assert sessions.consent(v).session_id == v.session_id  # a double click opens no second session
    anon = sessions.store.session(sessions.consent(Visit()).session_id)
    assert anon.participant.startswith("anon-") and anon.order_index == 1


def test_resume_link_accepts_a_whole_link_or_the_id():
    sid = "AbCdEfGhIjKlMnOpQrStUv"
    assert session_id_from_link(f"https://x.hf.space/?PROLIFIC_PID=1&session={sid}") == sid
    assert session_id_from_link(sid) == sid
    with pytest.raises(ParticipantError, match="session link"):
        session_id_from_link("https://x.hf.space/?session=short")


@pytest.mark.parametrize("case, message", [
    ("no_text", "describe your style"),
    ("one_photo", "2 to 4 photos"),
    ("five_photos", "2 to 4 photos"),
    ("not_an_image", "Photo 2"),
    ("too_big", "Photo 1"),
    ("bad_gender", "menswear, womenswear or any"),
])
def test_preference_errors_name_the_problem_and_record_nothing(sessions, tmp_path, case, message):
    sid = sessions.consent(Visit()).session_id
    text, files, gender = "navy linen shirts", [str(p) for p in photos(2)], "any"
    if case == "no_text":
        text = "   "
    elif case == "one_photo":
        files = files[:1]
    elif case == "five_photos":
        files = files * 2 + files[:1]
    elif case == "not_an_image":
        fake = tmp_path / "holiday.jpg"
        fake.write_text("this is a text file, not a photo")
        files = [files[0], str(fake)]
    elif case == "too_big":  # the study allows 2 MB per photo
        big = tmp_path / "big.png"
        Image.effect_noise((1100, 1100), 100).convert("RGB").save(big)
        assert big.stat().st_size > 2 * 1024 * 1024
        files = [str(big), files[1]]
    elif case == "bad_gender":
        gender = "robots"
    with pytest.raises(ParticipantError, match=message):
        sessions.submit_preference(sid, text, files, gender)
    assert sessions.store.session(sid).status == "consented"
    assert sessions.store.preference(sid) is None and not sessions.store.shown(sid)
    assert not (sessions.uploads_dir.exists() and any(sessions.uploads_dir.iterdir()))


def test_grids_are_four_cells_encoded_identically_and_stored_by_hash(sessions):
    sid = sessions.consent(Visit()).session_id
    p = sessions.submit_preference(sid, "red striped dresses", photos(2), "womenswear", "green, crimson")
    assert p.status == "shown" and sorted(p.grids) == LETTERS
    shown = sessions.store.shown(sid)
    for letter, cells in p.grids.items():
        assert len(cells) == 4
        for cell, row in zip(cells, shown[letter]):
            assert cell == sessions.stimuli_dir / f"{row.image_sha256}.png"  # the file the page serves as it is
            data = cell.read_bytes()
            assert hashlib.sha256(data).hexdigest() == row.image_sha256
            im = Image.open(io.BytesIO(data))
            assert im.size == (CELL_PIXELS, CELL_PIXELS) and im.mode == "RGB" and im.text == {} and im.info == {}
    gen_ids = [r.item_id for rows in shown.values() for r in rows if r.item_id.startswith("gen:")]
    assert len(gen_ids) == 4  # one grid is the generative arm's
    pref = sessions.store.preference(sid)
    assert pref["gender"] == "womenswear" and pref["avoid_colours"] == ["green", "crimson"]
    uploads = pref["uploads"]
    assert len(uploads) == 2
    for u in uploads:
        path = Path(u["path"])
        assert path.parent == sessions.uploads_dir and path.suffix == ".jpg"
        assert "exif" not in Image.open(path).info


def test_generation_starts_on_the_words_and_submit_takes_it_up(sessions, monkeypatch):
    """Issue 7: the generative arm draws as soon as the text is given (while photos upload); Submit then shows
    exactly what an unprepared Submit would have, without drawing again."""
    name, arm = next((n, a) for n, a in sessions.arms.items() if hasattr(a, "generator"))
    calls = []
    real_draw = arm.generator.draw
    monkeypatch.setattr(arm.generator, "draw", lambda *args: calls.append(args[1]) or real_draw(*args))
    sessions.prepare(None, "red striped dresses")  # before consent: nothing to start, nothing refused
    sid = sessions.consent(Visit()).session_id
    sessions.prepare(sid, "", "any")  # no words yet
    assert calls == []
    sessions.prepare(sid, "red striped dresses", "womenswear", "green")
    p = sessions.submit_preference(sid, "red striped dresses", photos(2), "womenswear", "green")
    assert p.status == "shown" and len(calls) == 1
    letter = next(x for x, a in sessions.store.session(sid).assignments.items() if a == name)
    again = arm.recommend(Preference(text="red striped dresses", gender="womenswear", avoid_colours=["green"]),
                          calls[0])
    assert [r.item_id for r in sessions.store.shown(sid)[letter]] == [s.item_id for s in again]
    assert len(calls) == 2
    assert sessions.store.preference(sid)["text"] == "red striped dresses"


def test_resubmitting_or_double_submitting_keeps_the_first_grids(sessions):
    sid = sessions.consent(Visit()).session_id
    with ThreadPoolExecutor(2) as pool:  # a double click: two requests at once
        list(pool.map(lambda t: sessions.submit_preference(sid, t, photos(2)), ["floral skirts", "black coats"]))
    first = sessions.store.shown(sid)
    again = sessions.submit_preference(sid, "something else entirely", photos(2))
    assert sessions.store.shown(sid) == first
    assert [c.read_bytes() for c in again.grids["A"]] == [
        (sessions.stimuli_dir / f"{r.image_sha256}.png").read_bytes() for r in first["A"]]


def test_answers_are_saved_as_given_and_come_back_on_resume(sessions):
    sid = _started(sessions)
    sessions.answer_wear(sid, "B", [None, "Yes", None, "No"])
    sessions.answer_rating(sid, "B", "7")
    sessions.answer_feedback(sid, "B", "too formal for me")
    assert sessions.answer_ranking(sid, ["D", None, "A"]) is False  # incomplete: the places given are kept
    assert sessions.resume(sid)[1].ranking == ["D", None, "A"]  # a reload shows Best and Third, Second empty
    assert "a ranking of the models" in sessions.store.missing_answers(sid)
    assert sessions.answer_ranking(sid, ["D", "B", "A"]) is True
    visit, p = sessions.resume(sid)
    assert visit.session_id == sid
    assert p.wear == {"B": {2: True, 4: False}} and p.ratings == {"B": 7}
    assert p.feedback == {"B": "too formal for me"} and p.ranking == ["D", "B", "A", "C"]
    assert [c.read_bytes() for c in p.grids["C"]] == [c.read_bytes() for c in sessions.progress(sid).grids["C"]]


@pytest.mark.parametrize("call, error", [
    (lambda s, sid: s.answer_wear(sid, "E", ["Yes"] * 4), AnswerRefused),
    (lambda s, sid: s.answer_wear(sid, "A", ["Maybe", None, None, None]), AnswerRefused),
    (lambda s, sid: s.answer_wear(sid, "A", ["Yes"] * 5), AnswerRefused),
    (lambda s, sid: s.answer_rating(sid, "A", 11), AnswerRefused),
    (lambda s, sid: s.answer_rating(sid, "A", "7.5"), AnswerRefused),
    (lambda s, sid: s.answer_rating(sid, "A", True), AnswerRefused),
    (lambda s, sid: s.answer_ranking(sid, ["A", "A", "B"]), AnswerRefused),
    (lambda s, sid: s.answer_ranking(sid, ["A", "B", "Z"]), AnswerRefused),
    (lambda s, sid: s.answer_feedback(sid, "A", "x" * 5000), ParticipantError),
    (lambda s, sid: s.answer_rating(None, "A", 5), ParticipantError),
    (lambda s, sid: s.answer_rating("NoSuchSessionIdHere123", "A", 5), ParticipantError),
])
def test_server_refuses_what_the_page_would_not_allow(sessions, call, error):
    sid = _started(sessions)
    with pytest.raises(error):
        call(sessions, sid)
    assert _count(sessions, "ratings") == 0 and _count(sessions, "ranks") == 0


def test_finish_lists_what_is_missing_then_gives_a_code(sessions):
    sid = _started(sessions)
    with pytest.raises(AnswerRefused, match="rating for Model A"):
        sessions.finish(sid)
    _answer_everything(sessions, sid)
    p = sessions.finish(sid, {"A": "nice", "": "thanks"})
    assert p.status == "completed" and p.completion_code.startswith("DU-")
    assert p.completion_url.endswith("cc=" + p.completion_code)
    assert sessions.finish(sid).completion_code == p.completion_code
    assert p.feedback == {"A": "nice", "": "thanks"}
    with pytest.raises(AnswerRefused, match="already complete"):
        sessions.answer_rating(sid, "A", 2)
    sessions.answer_feedback(sid, "A", "nice")  # a late duplicate of a saved text is not an error


def test_withdrawal_by_code_deletes_answers_and_photo_files(sessions):
    sid = _started(sessions)
    _answer_everything(sessions, sid)
    code = sessions.finish(sid).completion_code
    files = [Path(u["path"]) for u in sessions.store.preference(sid)["uploads"]]
    assert all(f.exists() for f in files)
    with pytest.raises(ParticipantError, match="No session has that completion code"):
        sessions.withdraw_by_code("DU-00000000")
    sessions.withdraw_by_code(code.lower())
    assert sessions.store.session(sid).status == "withdrawn"
    assert not any(f.exists() for f in files)
    for table in ("relevance", "ratings", "ranks", "feedback", "shown", "uploads", "preferences"):
        assert _count(sessions, table) == 0, table
    with pytest.raises(ParticipantError, match="withdrawn"):
        sessions.resume(sid)


def test_researcher_page_needs_its_env_var_and_the_password(sessions, monkeypatch, tmp_path):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(ParticipantError, match="off"):
        check_researcher(sessions.study, PASSWORD)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    with pytest.raises(ParticipantError, match="Wrong password"):
        researcher_summary(sessions, "guess")
    sid = _started(sessions)
    _answer_everything(sessions, sid)
    sessions.finish(sid)
    summary = researcher_summary(sessions, PASSWORD)
    assert summary["sessions_completed"] == 1
    assert sum(sum(v.values()) for v in summary["completed_per_arm_letter"].values()) == 4
    files = researcher_export(sessions, PASSWORD, tmp_path / "export")
    long = (tmp_path / "export" / "long.csv").read_text()
    assert {f.name for f in files} >= {"long.csv", "sessions.csv"} and long.count("\n") == 1 + 16
    with pytest.raises(ParticipantError, match="Wrong password"):
        researcher_export(sessions, "", tmp_path / "export2")


def test_a_failed_attempt_keeps_the_photos_for_the_next_one(sessions):
    """When no garment can satisfy the constraints, nothing is shown; the saved photos are reused when the
    participant tries again without re-uploading, and replaced (files deleted) when they upload others."""
    sid = sessions.consent(Visit()).session_id
    every_colour = "red, orange, yellow, green, blue, purple, pink, brown, black, white, grey"
    with pytest.raises(ParticipantError, match="Too few garments match"):
        sessions.submit_preference(sid, "a shirt", photos(2), "any", every_colour)
    assert not sessions.store.shown(sid)
    first = [Path(u["path"]) for u in sessions.store.preference(sid)["uploads"]]
    p = sessions.progress(sid)
    assert (p.status, p.text, p.photos_saved) == ("preference", "a shirt", 2)
    with pytest.raises(ParticipantError, match="Too few garments match"):
        sessions.submit_preference(sid, "a shirt", photos(3)[1:], "any", every_colour)
    second = [Path(u["path"]) for u in sessions.store.preference(sid)["uploads"]]
    assert set(first) != set(second) and all(f.exists() for f in second)
    assert not any(f.exists() for f in set(first) - set(second))
    p = sessions.submit_preference(sid, "a shirt", [], "any", "")
    assert p.status == "shown" and len(p.grids) == 4
    assert [Path(u["path"]) for u in sessions.store.preference(sid)["uploads"]] == second


def test_early_starts_never_queue_up_behind_each_other(sessions, monkeypatch):
    """Calling /prepare in a loop (a script, a flaky blur event) keeps at most one early start per session and
    never more than the arms' workers: Submits are never stuck behind a queue of drawings."""
    import threading

    name, arm = next((n, a) for n, a in sessions.arms.items() if hasattr(a, "generator"))
    release, calls = threading.Event(), []
    real_draw = arm.generator.draw

    def slow_draw(*args):
        calls.append(args[0].text)
        release.wait(30)
        return real_draw(*args)

    monkeypatch.setattr(arm.generator, "draw", slow_draw)
    sids = [sessions.consent(Visit()).session_id for _ in range(8)]
    for i in range(20):
        for sid in sids:
            sessions.prepare(sid, f"outfit number {i}")
    running = sum(not f.done() for started in sessions._preparing.values() for f in started.values())
    assert running <= len(sessions.arm_names)
    release.set()
    p = sessions.submit_preference(sids[0], "a yellow raincoat", photos(2))
    assert p.status == "shown"
    assert len(calls) <= len(sessions.arm_names) + 1  # the early starts that ran, plus Submit's own drawing
