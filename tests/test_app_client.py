"""The launched app under load, through gradio_client: one Client (one browser tab) per participant."""
from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.app_fixtures import (
    LETTERS4,
    REPO,
    Answers,
    assert_answers_stored,
    client,
    give_preference,
    outputs,
    photos,
    run_participant,
    shared_app,
    tiny_study,
    value,
)


def test_twenty_participants_at_once_complete_and_lose_nothing():
    app = shared_app()
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda k: run_participant(app.url, k), range(100, 120)))
    sids = [sid for sid, _, _ in results]
    assert len(set(sids)) == 20
    with app.db() as conn:
        for sid, answers, done in results:
            row = conn.execute("SELECT status, completion_code FROM sessions WHERE session_id = ?", (sid,)).fetchone()
            assert row["status"] == "completed"
            assert row["completion_code"] in value(done["done"])
            assert_answers_stored(conn, sid, answers)
        orders = [r[0] for r in conn.execute(
            f"SELECT order_index FROM sessions WHERE session_id IN ({','.join('?' * len(sids))})", sids)]
        assert len(set(orders)) == 20  # each consent took its own Latin-square row


def test_answers_without_a_session_are_refused_and_touch_nothing():
    """Handlers are callable by anyone; the session comes from server-side state, never from the caller."""
    app = shared_app()
    c = client(app.url)
    with app.db() as conn:
        before = conn.execute("SELECT COUNT(*) FROM ratings").fetchone()[0]
    for call in (lambda: c.predict(5, api_name="/rate_A"),
                 lambda: c.predict("Yes", "Yes", "No", "No", api_name="/wear_B"),
                 lambda: c.predict("A", "B", "C", api_name="/rank"),
                 lambda: give_preference(c, "dresses")):
        with pytest.raises(Exception, match="start the study"):
            call()
    with app.db() as conn:
        assert conn.execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == before


def test_participant_errors_keep_what_was_typed_and_resume_link_restores_answers():
    app = shared_app()
    c = client(app.url)
    sid = value(outputs(c.predict(api_name="/consent"))["link"])
    with pytest.raises(Exception, match="2 to 4 photos"):
        give_preference(c, "wide-leg trousers", files=photos(1))
    first = give_preference(c, "wide-leg trousers")
    assert value(first["text"]) == "wide-leg trousers"
    a = Answers.make(7)
    c.predict(*a.wear["C"], api_name="/wear_C")
    c.predict(9, api_name="/rate_C")
    c.predict("love the colours", api_name="/feedback_C")
    c.predict("C", "A", None, api_name="/rank")  # incomplete ranking: nothing saved, choices narrowed
    later = client(app.url)  # another tab or device, with the link
    page = outputs(later.predict(f"{app.url}?PROLIFIC_PID=abc&session={sid}", api_name="/resume"))
    assert [page[f"wear_C{i}"] for i in range(1, 5)] == a.wear["C"]
    assert page["rating_C"] == 9 and page["feedback_C"] == "love the colours"
    assert [page[f"img_{x}{i}"]["url"].rsplit("/", 2)[1] for x in LETTERS4 for i in range(1, 5)] == \
        [first[f"img_{x}{i}"]["url"].rsplit("/", 2)[1] for x in LETTERS4 for i in range(1, 5)]
    with pytest.raises(Exception, match="session link"):
        client(app.url).predict("https://example.org/?session=nope", api_name="/resume")


def test_withdrawal_with_the_completion_code_deletes_the_data():
    app = shared_app()
    sid, _, done = run_participant(app.url, 999)
    code = value(done["done"]).split("**")[1]
    with app.db() as conn:
        files = [Path(r[0]) for r in conn.execute("SELECT path FROM uploads WHERE session_id = ?", (sid,))]
    assert len(files) == 2 and all(f.exists() for f in files)
    with pytest.raises(Exception, match="No session has that completion code"):
        client(app.url).predict("DU-FFFFFFFF", api_name="/withdraw")
    assert "deleted" in client(app.url).predict(code, api_name="/withdraw")
    with app.db() as conn:
        assert conn.execute("SELECT status FROM sessions WHERE session_id = ?", (sid,)).fetchone()[0] == "withdrawn"
        assert conn.execute("SELECT COUNT(*) FROM relevance WHERE session_id = ?", (sid,)).fetchone()[0] == 0
    assert not any(f.exists() for f in files)


def test_app_refuses_to_start_when_an_arm_cannot_load(tmp_path):
    study = tiny_study().path
    broken = tmp_path / "broken.toml"
    text = study.read_text().replace('[encoders.wombatone]\nspec = "config:', '[encoders.wombatone]\nspec = "config:missing-')
    broken.write_text(text.replace('root = "catalogue"', f'root = "{study.parent / "catalogue"}"'))
    r = subprocess.run([sys.executable, str(REPO / "app.py"), "--study", str(broken), "--port", "1"],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 2
    assert "cannot start the study" in r.stderr and "quokkaplain" in r.stderr and "doctor" in r.stderr


def test_early_start_on_the_words_then_submit_shows_four_grids():
    """The page starts generation when the description box is left or photos are added (/prepare); the
    Submit that follows shows all four grids as usual."""
    app = shared_app()
    c = client(app.url)
    sid = value(outputs(c.predict(api_name="/consent"))["link"])
    c.predict("navy wool coats", "any", "", api_name="/prepare")
    shown = give_preference(c, "navy wool coats")
    assert all(shown[f"img_{x}{i}"] for x in LETTERS4 for i in range(1, 5))
    with app.db() as conn:
        assert conn.execute("SELECT COUNT(*) FROM shown WHERE session_id = ?", (sid,)).fetchone()[0] == 16
        assert conn.execute("SELECT COUNT(*) FROM events WHERE session_id = ? AND kind = 'error'",
                            (sid,)).fetchone()[0] == 0
