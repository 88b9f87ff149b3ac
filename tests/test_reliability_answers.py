"""Bad text and bad answers through gradio_client: refused or handled idempotently, never half-stored.

Every handler is callable over HTTP by anyone (shared/notes/stack-2026.md §1), so the page's own limits
(a Radio of 1-10, a Textbox's max_length, dropdowns that narrow) prove nothing; these tests send what a
hand-written client could send and read the database to see what was kept.
"""
from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from gradio_client import handle_file

from study.session import Sessions
from study.store import AnswerRefused, Store
from study.ui import OOPS, output_names
from tests.app_fixtures import (
    LETTERS4,
    SECRET_WORDS,
    Answers,
    answer_grids,
    app_answers,
    assert_answers_stored,
    client,
    db_rows,
    finish,
    give_preference,
    outputs,
    photos,
    run_participant,
    shared_app,
    tiny_study,
    value,
)

# Markup a browser would run or render if any of it reached the page as HTML or Markdown rather than text.
HOSTILE_TEXT = ('<script>alert("x")</script><img src=x onerror="alert(1)"> **bold** [click](javascript:alert(2)) '
                "</textarea><iframe src=//evil.example> &amp; &lt; ' \" `rm -rf` \u202eevil\u202c 👗 \u0000 end")


def _session_rows(app, sid: str) -> dict[str, set[tuple]]:
    """Every stored row of one session (answers, preference, shown, status)."""
    return {t: {r for r in rows if r[0] == sid} for t, rows in db_rows(app.study.db_path).items()}


def _refused(call) -> str:
    with pytest.raises(Exception) as e:
        call()
    message = str(e.value)
    assert OOPS not in message, message  # a participant error, not a crash reported as "our side"
    assert not [w for w in SECRET_WORDS if w.lower() in message.lower()], message
    return message


def _consented(app) -> tuple[Any, str]:
    c = client(app.url)
    return c, value(outputs(c.predict(api_name="/consent"))["link"])


def test_100_kB_of_text_is_refused_everywhere_and_nothing_is_stored() -> None:
    app = shared_app()
    c, sid = _consented(app)
    huge = "a very long description of my style " * 2800  # ~100 kB
    assert len(huge.encode()) >= 100_000
    assert "please shorten it to 2000" in _refused(lambda: give_preference(c, huge))
    assert "at most 20 colours" in _refused(lambda: c.predict(
        "shirts", [], None, "any", huge, api_name="/submit_preference"))
    give_preference(c, "relaxed linen shirts")
    for api in ("/feedback_A", "/feedback_D", "/feedback_overall"):
        assert "under 2000 characters" in _refused(lambda: c.predict(huge, api_name=api))
    a = Answers.make(31)
    answer_grids(c, a)
    assert "under 2000 characters" in _refused(
        lambda: c.predict(huge, "", "", "", *a.ranking[:3], "", api_name="/finish"))
    with app.db() as conn:
        longest = conn.execute("SELECT MAX(LENGTH(text)) FROM feedback WHERE session_id = ?", (sid,)).fetchone()[0]
        status = conn.execute("SELECT status FROM sessions WHERE session_id = ?", (sid,)).fetchone()[0]
        pref = conn.execute("SELECT text FROM preferences WHERE session_id = ?", (sid,)).fetchone()[0]
    assert longest < 2000 and status == "shown" and pref == "relaxed linen shirts"
    assert app_answers(app)


def _output_types(app) -> list[str]:
    """The component type behind each API output of the navigation endpoints, in ``output_names`` order."""
    with urllib.request.urlopen(app.url + "config", timeout=30) as r:
        config = json.loads(r.read())
    types = {comp["id"]: comp["type"] for comp in config["components"]}
    dep = next(d for d in config["dependencies"] if d.get("api_name") == "resume")
    # the API leaves out State and layout blocks, exactly as gradio_client does
    return [types[i] for i in dep["outputs"] if types[i] not in ("state", "column", "row", "group")]


def test_markup_in_text_and_feedback_is_stored_verbatim_and_only_ever_shown_as_text() -> None:
    app = shared_app()
    c, sid = _consented(app)
    give_preference(c, HOSTILE_TEXT)
    a = Answers.make(32)
    a.text = HOSTILE_TEXT
    a.feedback = {x: f"{x}: {HOSTILE_TEXT}" for x in LETTERS4}
    a.overall = "overall " + HOSTILE_TEXT
    answer_grids(c, a)
    done = finish(c, a)
    with app.db() as conn:
        assert_answers_stored(conn, sid, a)  # byte for byte, including the NUL and the RTL override
        pref = conn.execute("SELECT text FROM preferences WHERE session_id = ?", (sid,)).fetchone()[0]
    assert pref == HOSTILE_TEXT

    page = outputs(client(app.url).predict(f"{app.url}?session={sid}", api_name="/resume"))
    names = output_names(LETTERS4)
    types = dict(zip(names, _output_types(app)))
    assert len(types) == len(names)
    carrying = {n for n, v in page.items() if "<script>" in json.dumps(value(v), ensure_ascii=False)}
    assert carrying == {"text", "overall", *(f"feedback_{x}" for x in LETTERS4)}
    assert {types[n] for n in carrying} == {"textbox"}  # a textarea's value: never parsed as HTML or Markdown
    for n, v in [*page.items(), *done.items()]:  # whatever is rendered as Markdown carries none of it
        if types[n] in ("markdown", "html"):
            shown = json.dumps(value(v), ensure_ascii=False)
            assert "<script" not in shown and "onerror" not in shown and "javascript:" not in shown, n
    assert value(page["text"]) == HOSTILE_TEXT and value(page["feedback_B"]) == a.feedback["B"]


def test_out_of_range_and_malformed_answers_are_refused_and_store_nothing() -> None:
    app = shared_app()
    c, sid = _consented(app)
    give_preference(c, "black jeans")
    before = _session_rows(app, sid)
    for rating in (0, 11, -1, 5.5, "7", "abc", True, 10 ** 20):
        _refused(lambda: c.predict(rating, api_name="/rate_B"))
    for marks in (("Maybe", "Yes", "No", "No"), (1, 0, 1, 0), ("Yes; DROP TABLE relevance", "No", "No", "No")):
        _refused(lambda: c.predict(*marks, api_name="/wear_C"))
    for order in (("A", "A", "B"), ("A", "B", "B"), ("A", "E", "B"), ("A", "B", "A; --")):
        _refused(lambda: c.predict("", "", "", "", *order, "", api_name="/finish"))
    for order in (("A", "E", "B"), ("A", "B", "A; --")):  # no such choice: refused by the dropdown itself
        _refused(lambda: c.predict(*order, api_name="/rank"))
    assert _session_rows(app, sid) == before  # not one row written or changed
    # The page's /rank narrows a repeated letter away (a participant moving a model up a place sends the old
    # place too) and keeps the places left, so a reload shows them; never two places for one model.
    for order, kept in ((("A", "A", "B"), {"A": 1, "B": 3}), (("A", "B", "B"), {"A": 1, "B": 2})):
        c.predict(*order, api_name="/rank")
        with app.db() as conn:
            assert dict(conn.execute("SELECT letter, rank FROM ranks WHERE session_id = ?", (sid,))) == kept
    with app.db() as conn:
        assert conn.execute("SELECT status FROM sessions WHERE session_id = ?", (sid,)).fetchone()[0] == "shown"
    assert app_answers(app)


def test_a_letter_that_does_not_exist_has_no_endpoint_and_is_refused_below_it(tmp_path) -> None:
    """Over HTTP a letter is only ever named by an endpoint (there is no /rate_E) or by a ranking; the session
    and the store refuse it anyway, for a caller that reaches them some other way (a 2-arm study here)."""
    app = shared_app()
    c, _ = _consented(app)
    for api in ("/rate_E", "/wear_E", "/feedback_E"):
        with pytest.raises(Exception, match="Cannot find"):
            c.predict(5, api_name=api)
    _refused(lambda: c.predict("A", "B", "E", api_name="/rank"))

    study = tiny_study().load(results_dir=tmp_path)
    two = [arm.name for arm in study.arms[:2]]
    store = Store(study.db_path, study.name)
    sessions = Sessions(study, {arm.name: object() for arm in study.arms}, store)  # no model is used below
    sid = store.create_session("p", order_index=0, seed=1, assignments={"A": two[0], "B": two[1]})
    for call in (lambda: sessions.answer_rating(sid, "C", 5), lambda: sessions.answer_rating(sid, "Z", 5),
                 lambda: store.answer_rating(sid, "C", 5), lambda: sessions.answer_wear(sid, "E", ["Yes"] * 4),
                 lambda: store.answer_feedback(sid, "D", "hi"), lambda: sessions.answer_ranking(sid, ["A", "B", "C"]),
                 lambda: store.answer_ranking(sid, {"A": 1, "B": 2, "C": 3})):
        with pytest.raises(AnswerRefused):
            call()
    assert store.answers(sid) == {"relevance": {}, "ratings": {}, "ranks": {}, "feedback": {}}


def test_answers_after_completion_are_refused_and_change_nothing() -> None:
    app = shared_app()
    c = client(app.url)
    sid = value(outputs(c.predict(api_name="/consent"))["link"])
    a = Answers.make(33)
    give_preference(c, a.text)
    answer_grids(c, a)
    code = value(finish(c, a)["done"])
    before = _session_rows(app, sid)
    late = client(app.url)  # a stale second tab opened from the link
    outputs(late.predict(f"{app.url}?session={sid}", api_name="/resume"))
    for tab in (c, late):
        for call in (lambda: tab.predict(1, api_name="/rate_A"),
                     lambda: tab.predict("No", "No", "No", "No", api_name="/wear_D"),
                     lambda: tab.predict("changed my mind", api_name="/feedback_B"),
                     lambda: tab.predict("changed overall", api_name="/feedback_overall"),
                     lambda: give_preference(tab, "something else entirely")):
            assert "already complete" in _refused(call)
        try:  # another order the page's dropdowns still offer; Gradio may refuse it first, else the session does
            tab.predict(a.ranking[0], a.ranking[1], a.ranking[3], api_name="/rank")
            raise AssertionError("a changed ranking after completion was accepted")
        except Exception as e:  # noqa: BLE001 — gradio_client's AppError
            assert "already complete" in str(e) or "not in the list of choices" in str(e), str(e)
        assert value(finish(tab, a)["done"]) == code  # finishing again gives the same code
        tab.predict(a.feedback["A"], api_name="/feedback_A")  # re-sending an unchanged answer is harmless
    assert _session_rows(app, sid) == before
    with app.db() as conn:
        assert_answers_stored(conn, sid, a)


def test_double_submits_are_idempotent() -> None:
    """Double clicks on 'I agree', 'Show me' and 'Finish', sent at the same time from one tab."""
    app = shared_app()
    c = client(app.url)
    first = value(outputs(c.predict(api_name="/consent"))["link"])
    assert value(outputs(c.predict(api_name="/consent"))["link"]) == first  # no second session
    files = [handle_file(str(p)) for p in photos(2)]
    jobs = [c.submit("pastel summer dresses", files, None, "any", "", api_name="/submit_preference") for _ in range(3)]
    pages = [outputs(j.result(timeout=300)) for j in jobs]
    urls = [[p[f"img_{x}{i}"]["url"].rsplit("/", 2)[1] for x in LETTERS4 for i in range(1, 5)] for p in pages]
    assert urls[0] == urls[1] == urls[2]  # the same sixteen pictures, recorded once
    a = Answers.make(34)
    a.text = "pastel summer dresses"
    answer_grids(c, a)
    jobs = [c.submit(*[a.feedback[x] for x in LETTERS4], *a.ranking[:3], a.overall, api_name="/finish")
            for _ in range(3)]
    codes = {value(outputs(j.result(timeout=120))["done"]) for j in jobs}
    assert len(codes) == 1 and "DU-" in codes.pop()
    with app.db() as conn:
        assert conn.execute("SELECT COUNT(*) FROM shown WHERE session_id = ?", (first,)).fetchone()[0] == 16
        assert conn.execute("SELECT COUNT(*) FROM preferences WHERE session_id = ?", (first,)).fetchone()[0] == 1
        assert_answers_stored(conn, first, a)


def test_two_tabs_of_one_session_share_one_record() -> None:
    """Two clients (tabs, or a phone and a laptop) on one session: one set of grids, the last answer wins,
    one completion code."""
    app = shared_app()
    tab1 = client(app.url)
    sid = value(outputs(tab1.predict(api_name="/consent"))["link"])
    tab2 = client(app.url)
    outputs(tab2.predict(f"{app.url}?session={sid}", api_name="/resume"))
    with ThreadPoolExecutor(2) as pool:
        pages = list(pool.map(lambda tc: give_preference(*tc), [(tab1, "wool coats"), (tab2, "rain jackets")]))
    grids = [[p[f"img_{x}{i}"]["url"].rsplit("/", 2)[1] for x in LETTERS4 for i in range(1, 5)] for p in pages]
    assert grids[0] == grids[1]
    a, b = Answers.make(35), Answers.make(36)
    answer_grids(tab2, b)
    answer_grids(tab1, a)  # tab1 answers last: its answers are what the database keeps
    # each tab finishes with what its own page shows; the second Finish meets a completed session
    done = [finish(tab1, a), finish(tab2, b)]
    assert value(done[0]["done"]) == value(done[1]["done"])
    with app.db() as conn:
        a.text = conn.execute("SELECT text FROM preferences WHERE session_id = ?", (sid,)).fetchone()[0]
        assert a.text in ("wool coats", "rain jackets")  # the first submit's; the second was shown the same grids
        assert_answers_stored(conn, sid, a)
        assert conn.execute("SELECT COUNT(*) FROM sessions WHERE session_id = ?", (sid,)).fetchone()[0] == 1
    assert "already complete" in _refused(lambda: tab2.predict(3, api_name="/rate_C"))


def test_a_refused_call_never_disturbs_a_concurrent_participant() -> None:
    """Garbage from one client while another completes a whole session: the good session is stored intact."""
    app = shared_app()
    bad, _ = _consented(app)
    give_preference(bad, "hats")

    def garbage() -> int:
        n = 0
        for i in range(30):
            try:
                bad.predict(["x" * 5000, 99, "A"][i % 3], api_name=["/feedback_A", "/rate_A", "/rank"][i % 3])
            except Exception:  # noqa: BLE001 — refusals are the point
                n += 1
        return n

    with ThreadPoolExecutor(2) as pool:
        refusals = pool.submit(garbage)
        good = pool.submit(run_participant, app.url, 37)
        sid, answers, _ = good.result()
        assert refusals.result() >= 20
    with app.db() as conn:
        assert_answers_stored(conn, sid, answers)
