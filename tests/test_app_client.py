"""The launched app under load, through gradio_client: one Client (one browser tab) per participant."""
from __future__ import annotations

import random
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
from PIL import Image

from dressup.generators import load_generator
from dressup.grid import fit_cell
from dressup.records import Preference
from study.session import CELL_PIXELS, Sessions
from tests.app_fixtures import (
    LETTERS4,
    REPO,
    Answers,
    answer_grids,
    assert_answers_stored,
    client,
    finish,
    give_preference,
    outputs,
    photos,
    run_participant,
    shared_app,
    tiny_study,
    value,
)
from tests.paper_twin import TWIN_ARMS, paper_twin


def early_starting_participant(url: str, k: int) -> tuple[str, Answers, dict]:
    """``run_participant`` whose page also starts generation early (/prepare, as leaving the description box or
    adding photos does) one to three times at random moments before Submit: first on part of the words, last on
    all of them, so another participant's early start or Submit may be running at any of those moments."""
    rng = random.Random(k)
    c = client(url)
    a = Answers.make(k)
    sid = value(outputs(c.predict(api_name="/consent"))["link"])
    starts = rng.randint(1, 3)
    for i in range(starts):
        time.sleep(rng.uniform(0, 1.5))
        words = a.text if i == starts - 1 else a.text[: rng.randint(10, len(a.text))]
        c.predict(words, "any", "", api_name="/prepare")
    time.sleep(rng.uniform(0, 1.5))
    give_preference(c, a.text)
    answer_grids(c, a)
    return sid, a, finish(c, a)


def log_tail(app, start: int, chars: int = 6000) -> str:
    """What the app logged since ``start``, without progress bars: the tracebacks a failure message needs."""
    lines = [line for line in app.log()[start:].splitlines() if line.strip() and "it/s]" not in line
             and "s/it]" not in line]
    return "\n".join(lines)[-chars:]


def test_twenty_participants_at_once_complete_and_lose_nothing(served, monkeypatch):
    app = served.app()
    log_start = len(app.log())
    participant = early_starting_participant if served.kind == "twin" else run_participant
    with ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(participant, app.url, k) for k in range(100, 120)]
    failed = [f"{type(f.exception()).__name__}: {f.exception()}" for f in futures if f.exception()]
    assert failed == [], "\n".join(failed) + "\n--- app log ---\n" + log_tail(app, log_start)
    results = [f.result() for f in futures]
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
        errors = conn.execute(f"SELECT session_id, detail FROM events WHERE kind = 'error' AND session_id IN "
                              f"({','.join('?' * len(sids))})", sids).fetchall()
        assert [tuple(e) for e in errors] == []
    failed_early = [line for line in app.log()[log_start:].splitlines() if "early start of arm" in line]
    assert failed_early == [], log_tail(app, log_start)  # a failed early start is only logged: a lost saving
    if served.kind == "twin":
        assert_generated_for_their_own_words(app, results, monkeypatch)


def assert_generated_for_their_own_words(app, results, monkeypatch, regenerate: int = 3) -> None:
    """Every answer was given against the right items: each session's generated grid was drawn from that
    participant's own words (the prompt recorded with each shown cell), and, for ``regenerate`` sessions, drawing
    the same prompt and seed again alone, in this process, from the twin's Hugging Face cache, gives the same
    item ids and the same pixels. Images of several participants are drawn in one pipeline batch, so a mix-up
    there would show as another participant's words or another seed's pixels.

    Pixels are compared after the cell's letterboxing (``fit_cell``, as stored) with a tolerance of 3/255 per
    channel: drawn in a batch with other prompts, float rounding differs (measured: at most 1/255 here), while
    another participant's cells differ by about 40/255 on average (checked below, so the comparison has teeth)."""
    generative = TWIN_ARMS["generative"]
    with app.db() as conn:
        grids = {}
        for sid, answers, _ in results:
            rows = conn.execute(
                "SELECT s.position, s.item_id, s.image_sha256, s.caption FROM shown s JOIN assignments a"
                " USING (session_id, letter) WHERE s.session_id = ? AND a.arm = ? ORDER BY s.position",
                (sid, generative)).fetchall()
            assert len(rows) == 4 and all(r["caption"] and answers.text in r["caption"] for r in rows), \
                (sid, answers.text, [r["caption"] for r in rows])
            assert all(r["item_id"].startswith("gen:") for r in rows)
            grids[sid] = (answers, rows)
    twin = paper_twin()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(twin.hf_home / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "Stable Diffusion on the CPU is slow": known here
        gen = load_generator(twin.generator_settings, device="cpu", base_dir=twin.path.parent)
    stimuli = app.study.results_dir / "stimuli"

    def cells(rows) -> list[np.ndarray]:
        return [np.asarray(Image.open(stimuli / f"{r['image_sha256']}.png").convert("RGB"), dtype=np.int16)
                for r in rows]

    sids = list(grids)
    worst, nearest_other = 0, 255.0
    for i, sid in enumerate(sids[:regenerate]):
        answers, rows = grids[sid]
        again = gen.generate(Preference(text=answers.text), Sessions._seed(sid))
        assert [s.item_id for s in again] == [r["item_id"] for r in rows], sid
        mine = [np.asarray(fit_cell(s.image, CELL_PIXELS), dtype=np.int16) for s in again]
        diffs = [int(np.abs(m - c).max()) for m, c in zip(mine, cells(rows))]
        assert max(diffs) <= 3, (sid, diffs)
        worst = max(worst, *diffs)
        # the check has teeth: another participant's cells are far from these on average
        other = [float(np.abs(m - o).mean()) for m, o in zip(mine, cells(grids[sids[-1 - i]][1]))]
        assert min(other) > 5, other
        nearest_other = min(nearest_other, *other)
    print(f"regenerated {regenerate} generated grids alone: item ids equal, largest pixel difference {worst}/255; "
          f"another participant's cells differ by {nearest_other:.0f}/255 on average or more")


def test_answers_without_a_session_are_refused_and_touch_nothing():
    """Handlers are callable by anyone; the session comes from server-side state, never from the caller."""
    app = shared_app()
    c = client(app.url)
    with app.db() as conn:
        before = conn.execute("SELECT COUNT(*) FROM ratings").fetchone()[0]
    for call in (lambda: c.predict(5, api_name="/rate_A"),
                 lambda: c.predict("Yes", "Yes", "No", "No", api_name="/wear_B"),
                 lambda: c.predict("A", "B", "C", api_name="/rank"),
                 lambda: give_preference(c, "dresses")):  # photos are refused at upload already (403)
        with pytest.raises(Exception, match="start the study|403 Forbidden"):
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
    c.predict("C", None, "A", api_name="/rank")  # incomplete ranking: Best and Third kept, Second still open
    later = client(app.url)  # another tab or device, with the link
    page = outputs(later.predict(f"{app.url}?PROLIFIC_PID=abc&session={sid}", api_name="/resume"))
    assert [page[f"wear_C{i}"] for i in range(1, 5)] == a.wear["C"]
    assert page["rating_C"] == 9 and page["feedback_C"] == "love the colours"
    assert [value(page[f"rank_{i}"]) for i in (1, 2, 3)] == ["C", None, "A"]  # the partial ranking, by place
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


def test_finish_with_answers_missing_names_every_one_down_to_the_picture():
    """Finish before answering: the refusal lists each model's unmarked pictures, ratings and the ranking (it used
    to ask for the ranking alone), and after a few answers only what is still missing."""
    app = shared_app()
    c = client(app.url)
    a = Answers.make(31)
    outputs(c.predict(api_name="/consent"))
    give_preference(c, a.text)
    blank = ["" for _ in LETTERS4]
    with pytest.raises(Exception) as e:
        c.predict(*blank, None, None, None, "", api_name="/finish")
    said = str(e.value)
    for x in LETTERS4:
        assert f"Model {x}'s pictures 1, 2, 3 and 4" in said and f"a rating for Model {x}" in said, said
    assert "a ranking of the models" in said
    c.predict("Yes", None, "No", None, api_name="/wear_A")  # pictures 1 and 3 of Model A marked
    with pytest.raises(Exception) as e:
        c.predict(*blank, None, None, None, "", api_name="/finish")
    assert "Model A's pictures 2 and 4" in str(e.value) and "a rating for Model A" in str(e.value)
    answer_grids(c, a)
    assert "**DU-" in value(finish(c, a)["done"])
