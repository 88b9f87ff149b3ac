"""A participant in headless Chromium, on a desktop and a phone screen: the whole path, then the database.

Screenshots of every step go to results/screenshots/<viewport>-<step>.png (look at them after a change to
the layout).
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.app_fixtures import LETTERS4, PASSWORD, SCREENSHOTS, photos, shared_app

pytestmark = pytest.mark.browser
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-gpu"]
VIEWPORTS = {"desktop": (1280, 800), "phone": (390, 844)}
WEAR = {  # what this participant clicks, per letter: a different pattern for each grid
    "A": ["Yes", "No", "No", "Yes"], "B": ["No", "No", "No", "No"],
    "C": ["Yes", "Yes", "Yes", "No"], "D": ["No", "Yes", "No", "No"],
}
RATINGS = {"A": 8, "B": 2, "C": 10, "D": 5}
RANKING = ["C", "A", "D", "B"]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium (make setup-dev installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def _wait_db(app, sql: str, args: tuple, expected, timeout: float = 20):
    """Answers are sent as they are given; wait until the one just given is committed."""
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        with app.db() as conn:
            got = conn.execute(sql, args).fetchall()
        got = [tuple(r) for r in got]
        if got == expected:
            return
        time.sleep(0.1)
    assert got == expected


def _open_with_choices(page, selector: str, count: int, timeout: float = 20) -> None:
    """Open a dropdown once it offers ``count`` choices. Picking a place sends the other places their new
    choices; a dropdown opened while that answer is on its way lists the old ones (a CI run once caught it
    showing four with one twice), so it is closed and opened again, as a participant would."""
    from playwright.sync_api import expect

    deadline = time.monotonic() + timeout
    while True:
        page.locator(selector).click()
        try:
            expect(page.get_by_role("option")).to_have_count(count, timeout=3_000)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            page.keyboard.press("Escape")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_participant_path_in_a_browser(browser, viewport):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    w, h = VIEWPORTS[viewport]
    page = browser.new_page(viewport={"width": w, "height": h})
    try:
        _participant_path(page, viewport)
    except BaseException:
        page.screenshot(path=str(SCREENSHOTS / f"{viewport}-FAILED.png"), full_page=True)
        raise
    finally:
        page.close()


def _participant_path(page, viewport: str) -> None:
    from playwright.sync_api import expect

    app = shared_app()
    step = 0

    def shot(name: str) -> None:
        nonlocal step
        step += 1
        page.screenshot(path=str(SCREENSHOTS / f"{viewport}-{step:02d}-{name}.png"), full_page=True)

    pid = f"browser_{viewport}"
    page.goto(f"{app.url}?PROLIFIC_PID={pid}&STUDY_ID=S_ui&SESSION_ID=X1")
    agree = page.get_by_role("button", name="I agree, start")
    expect(agree).to_be_visible(timeout=30_000)
    shot("welcome")
    text_box = page.locator("#pref-text textarea")
    for _ in range(3):  # a click while the page is still starting up can be lost; a person clicks again
        agree.click()
        try:
            expect(text_box).to_be_visible(timeout=15_000)
            break
        except AssertionError:
            continue
    expect(text_box).to_be_visible()
    shot("preference")

    # An error keeps what was typed: one photo is too few.
    text = f"I like {viewport} outfits: navy striped shirts, nothing too tight"
    text_box.fill(text)
    page.locator("#pref-photos input[type=file]").set_input_files([str(photos(1)[0])])
    page.get_by_role("button", name="Show me recommendations").click()
    # the error, under the button it is about (its pop-up closed, so it covers nothing)
    expect(page.locator("#submit-status-line")).to_contain_text("you added 1", timeout=30_000)
    expect(page.get_by_test_id("toast-text")).to_have_count(0)
    expect(text_box).to_have_value(text)
    shot("too-few-photos")
    page.locator("#pref-photos input[type=file]").set_input_files([str(p) for p in photos(2)])
    page.get_by_role("button", name="Show me recommendations").click()
    expect(page.locator("#img-A1 img")).to_be_attached(timeout=60_000)
    for x in LETTERS4:  # all sixteen arrive together; the browser loads them lazily as they scroll into view
        for i in range(1, 5):
            img = page.locator(f"#img-{x}{i} img")
            expect(img).to_be_attached(timeout=5_000)
            img.scroll_into_view_if_needed()
            expect(img).to_be_visible()
            assert img.evaluate("e => e.complete && e.naturalWidth") == 256
    page.evaluate("window.scrollTo(0, 0)")
    assert "session=" in page.url
    sid = page.url.split("session=")[1].split("&")[0]
    shot("grids")

    def answer(x: str) -> None:
        for i, mark in enumerate(WEAR[x], 1):
            page.locator(f"#wear-{x}{i} input[value='{mark}']").check()
        page.locator(f"#rating-{x} input[value='{RATINGS[x]}']").check()
        page.locator(f"#feedback-{x} textarea").fill(f"{viewport} thoughts on {x}")

    answer("A")
    _wait_db(app, "SELECT position, relevant FROM relevance WHERE session_id = ? AND letter = 'A' ORDER BY position",
             (sid,), [(i, int(m == "Yes")) for i, m in enumerate(WEAR["A"], 1)])
    _wait_db(app, "SELECT text FROM feedback WHERE session_id = ? AND letter = 'A'", (sid,),
             [(f"{viewport} thoughts on A",)])

    # A reload resumes the session where it was, with the answers given.
    page.reload()
    expect(page.locator("#img-D4 img")).to_be_attached(timeout=30_000)
    expect(page.locator(f"#wear-A1 input[value='{WEAR['A'][0]}']")).to_be_checked()
    expect(page.locator(f"#rating-A input[value='{RATINGS['A']}']")).to_be_checked()
    expect(page.locator("#feedback-A textarea")).to_have_value(f"{viewport} thoughts on A")
    shot("resumed")

    for x in LETTERS4[1:]:
        answer(x)
    # The ranking is a permutation by construction: each place offers only the models not yet placed.
    for place, x in enumerate(RANKING[:3], 1):
        _open_with_choices(page, f"#rank-{place} input", 4 - (place - 1))
        page.get_by_role("option", name=f"Model {x}", exact=True).click()
    expect(page.locator("#rank-last")).to_contain_text(f"Model {RANKING[3]}")
    page.locator("#feedback-overall textarea").fill(f"overall {viewport}")
    shot("answered")
    page.get_by_role("button", name="Finish").click()
    expect(page.locator("#done")).to_contain_text("DU-", timeout=30_000)
    shot("done")
    done_text = page.locator("#done").inner_text()

    with app.db() as conn:
        s = conn.execute("SELECT * FROM sessions WHERE session_id = ?", (sid,)).fetchone()
        assert s["status"] == "completed" and s["participant"] == pid and s["completion_code"] in done_text
        assert '"STUDY_ID": "S_ui"' in s["source"]
        rows = conn.execute(
            "SELECT sh.letter, sh.position, sh.item_id, r.relevant FROM shown sh JOIN relevance r USING"
            " (session_id, letter, position) WHERE sh.session_id = ? ORDER BY sh.letter, sh.position",
            (sid,)).fetchall()
        assert [(r["letter"], r["position"], r["relevant"]) for r in rows] == [
            (x, i, int(m == "Yes")) for x in LETTERS4 for i, m in enumerate(WEAR[x], 1)]
        assert all(r["item_id"] for r in rows)
        assert dict(conn.execute("SELECT letter, rating FROM ratings WHERE session_id = ?", (sid,)).fetchall()) \
            == RATINGS
        assert dict(conn.execute("SELECT letter, rank FROM ranks WHERE session_id = ?", (sid,)).fetchall()) \
            == {x: i for i, x in enumerate(RANKING, 1)}
        assert dict(conn.execute("SELECT letter, text FROM feedback WHERE session_id = ?", (sid,)).fetchall()) \
            == {**{x: f"{viewport} thoughts on {x}" for x in LETTERS4}, "": f"overall {viewport}"}
        assert conn.execute("SELECT text FROM preferences WHERE session_id = ?", (sid,)).fetchone()[0] == text


def test_researcher_page_shows_live_counts_behind_the_password(browser):
    from playwright.sync_api import expect

    app = shared_app()
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{app.url}researcher")
    box = page.locator("#researcher-password input")
    expect(box).to_be_visible(timeout=30_000)
    box.fill("not the password")
    page.get_by_role("button", name="Show live counts").click()
    expect(page.get_by_text("Wrong password")).to_be_visible(timeout=30_000)
    box.fill(PASSWORD)
    page.get_by_role("button", name="Show live counts").click()
    expect(page.locator("#researcher-counts")).to_contain_text("completed_per_arm_letter", timeout=30_000)
    page.get_by_role("button", name="Export answers").click()
    expect(page.locator("#researcher-exports")).to_contain_text("sessions", timeout=30_000)
    page.screenshot(path=str(SCREENSHOTS / "desktop-researcher.png"), full_page=True)
    page.close()
