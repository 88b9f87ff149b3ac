"""The participant's page for everyone (issue 19), in headless Chromium at 1366x768 and 390x844: deletions ask
once more, grid pictures and their questions have names (and only blinded ones), a status line speaks while
the grids are prepared, and axe-core finds no serious or critical violation on the welcome and grids pages.

One app for the whole module, its Submit slowed by 2 s (tests/slow_app.py) so the page can be watched while it
works. Screenshots of every state go to /tmp/page-shots/<viewport>-<state>.png.
"""
from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path

import pytest

from tests.app_fixtures import LETTERS4, REPO, SECRET_WORDS, photos, start_app, tiny_study
from tests.test_app_browser import _wait_db, browser  # noqa: F401 - the shared Chromium fixture

pytestmark = pytest.mark.browser
VIEWPORTS = {"desktop": (1366, 768), "phone": (390, 844)}
SHOTS = Path("/tmp/page-shots")
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
SUBMIT_DELAY = 2.0
DELAY_FILE = Path(tempfile.mkdtemp(prefix="dressup-page-")) / "submit-delay"
_app = None


def page_app():
    global _app
    if _app is None or _app.proc.poll() is not None:
        DELAY_FILE.parent.mkdir(parents=True, exist_ok=True)
        DELAY_FILE.write_text(str(SUBMIT_DELAY))
        _app = start_app(tiny_study().with_results("page"), env={"DRESSUP_TEST_SUBMIT_DELAY": str(SUBMIT_DELAY),
                                                                   "DRESSUP_TEST_SUBMIT_DELAY_FILE": str(DELAY_FILE)},
                         script=REPO / "tests" / "slow_app.py")
    return _app


def new_page(browser, viewport: str):
    w, h = VIEWPORTS[viewport]
    pg = browser.new_page(viewport={"width": w, "height": h})
    pg.viewport_name = viewport
    return pg


@pytest.fixture(params=list(VIEWPORTS))
def page(request, browser):
    pg = new_page(browser, request.param)
    yield pg
    pg.close()


@pytest.fixture(scope="module", params=list(VIEWPORTS))
def on_grids(request, browser):
    """A participant whose sixteen pictures are shown, per screen size: (page, session id). The tests using it
    run in file order for each size; the withdrawal test, last, deletes the session."""
    pg = new_page(browser, request.param)
    sid = to_grids(pg, page_app(), f"grids_{request.param}", watch_status=True)
    yield pg, sid
    pg.close()


def shot(page, state: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{page.viewport_name}-{state}.png"), full_page=True)


def status(app, sid: str) -> str:
    with app.db() as conn:
        return conn.execute("SELECT status FROM sessions WHERE session_id = ?", (sid,)).fetchone()[0]


def welcome(page, app, pid: str):
    from playwright.sync_api import expect

    page.goto(f"{app.url}?PROLIFIC_PID={pid}&STUDY_ID=S_page&SESSION_ID=P1")
    agree = page.get_by_role("button", name="I agree, start")
    expect(agree).to_be_visible(timeout=30_000)
    return agree


def to_grids(page, app, pid: str, *, watch_status: bool = False) -> str:
    """Consent, describe, add two photos, Submit; the session id once all sixteen pictures are there."""
    from playwright.sync_api import expect

    agree = welcome(page, app, pid)
    text_box = page.locator("#pref-text textarea")
    for _ in range(3):  # a click while the page is still starting up can be lost; a person clicks again
        agree.click()
        try:
            expect(text_box).to_be_visible(timeout=15_000)
            break
        except AssertionError:
            continue
    text_box.fill("navy striped shirts, nothing too tight")
    page.locator("#pref-photos input[type=file]").set_input_files([str(p) for p in photos(2)])
    expect(page.locator("#pref-photos").get_by_role("button", name="Remove this file")).to_have_count(2,
                                                                                           timeout=15_000)
    line = page.locator("#submit-status-line")
    if watch_status:
        shot(page, "style")
        if AXE.exists():
            page.axe_style = _axe(page)
    page.get_by_role("button", name="Show me recommendations").click()
    seen: dict = {}
    if watch_status:  # Submit takes SUBMIT_DELAY s or more here: what the page shows within 1 s of the press
        start = time.monotonic()
        try:
            expect(line).to_be_visible(timeout=1_000)
            seen = {"after_s": round(time.monotonic() - start, 2), "text": line.inner_text(),
                    "aria-live": line.get_attribute("aria-live"), "role": line.get_attribute("role")}
        except AssertionError:
            seen = {"after_s": None}
        shot(page, "submitting")
    expect(page.locator("#img-D4 img")).to_be_attached(timeout=60_000)
    if watch_status:
        seen["hidden_with_grids"] = not line.count() or line.is_hidden()
    page.seen_while_submitting = seen
    return page.url.split("session=")[1].split("&")[0]


def test_a_spoken_status_line_shows_while_the_grids_are_prepared(on_grids):
    page, _ = on_grids
    seen = page.seen_while_submitting
    assert seen["after_s"] is not None, "no status line within 1 s of pressing Submit"
    assert "Preparing your recommendations" in seen["text"]
    assert seen["aria-live"] == "polite" and seen["role"] == "status"
    assert seen["hidden_with_grids"]  # and gone once the grids are there
    print(f"status line {page.viewport_name}: {seen}")


def test_a_refused_submit_says_why_under_the_button_and_stops_saying_it_works(browser):
    from playwright.sync_api import expect

    app = page_app()
    page = new_page(browser, "phone")
    try:
        welcome(page, app, "refused_phone").click()
        expect(page.locator("#pref-text textarea")).to_be_visible(timeout=15_000)
        page.get_by_role("button", name="Show me recommendations").click()
        line = page.locator("#submit-status-line")
        expect(line).to_have_text("Please describe your style in a few words before continuing.", timeout=15_000)
        page.locator("#pref-text textarea").fill("wide trousers")
        page.get_by_role("button", name="Show me recommendations").click()
        expect(line).to_contain_text("Please add 2 to 4 photos", timeout=15_000)
        shot(page, "refused")
    finally:
        page.close()


def test_the_status_line_gives_the_queue_position_when_others_are_ahead(browser):
    """Sixteen Submits through the API fill the server's Submit slots (8 at once, each slowed 2 s); a participant
    pressing Submit in the browser then waits in Gradio's queue, and the status line says so."""
    from concurrent.futures import ThreadPoolExecutor

    from playwright.sync_api import expect

    from tests.app_fixtures import client, give_preference, outputs, value

    app = page_app()
    page = new_page(browser, "desktop")
    try:
        agree = welcome(page, app, "queue_desktop")
        agree.click()
        expect(page.locator("#pref-text textarea")).to_be_visible(timeout=15_000)
        page.locator("#pref-text textarea").fill("grey wool coats")
        page.locator("#pref-photos input[type=file]").set_input_files([str(p) for p in photos(2)])
        expect(page.locator("#pref-note")).to_contain_text("2 photos are saved", timeout=15_000)
        others = [client(app.url) for _ in range(16)]
        for c in others:
            value(outputs(c.predict(api_name="/consent"))["link"])
        DELAY_FILE.write_text("5")  # the sixteen hold the 8 slots for 5 s, twice
        with ThreadPoolExecutor(len(others)) as pool:
            ahead = [pool.submit(give_preference, c, "black jeans") for c in others]
            time.sleep(2.5)
            page.get_by_role("button", name="Show me recommendations").click()
            seen = set()
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline and not any("in the queue" in t for t in seen):
                seen.add(page.evaluate("() => (document.getElementById('submit-status-line') || {}).textContent || ''"))
                time.sleep(0.05)
            shot(page, "queued")
            queue_dom = page.evaluate("""() => [...document.querySelectorAll('#page-preference *')].filter(e => e.children.length === 0
                && /queue/i.test(e.textContent)).map(e => e.className + ' | ' + e.textContent.trim()
                + ' | ' + (e.closest('[id]') || {}).id).slice(0, 5)""")
            DELAY_FILE.write_text(str(SUBMIT_DELAY))
            for f in ahead:
                f.result()
        expect(page.locator("#img-D4 img")).to_be_attached(timeout=60_000)
        print(f"status line while queued: {sorted(seen)}; queue text on the page: {queue_dom}")
        assert any(re.search(r"You are number \d+ in the queue\.", t) for t in seen), seen
    finally:
        page.close()


def test_grid_pictures_and_questions_have_blinded_names(on_grids):
    page, sid = on_grids
    app = page_app()
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "grids")
    names = page.evaluate("""() => [...document.querySelectorAll("#page-grids img, #page-grids fieldset")].map(e =>
        [e.tagName, e.closest("[id]").id, e.getAttribute("alt"), e.getAttribute("aria-label")])""")
    alts = {i: a for tag, i, a, _ in names if tag == "IMG"}
    groups = {i: n for tag, i, _, n in names if tag == "FIELDSET" and i.startswith("wear-")}
    cells = [f"{x}{i}" for x in LETTERS4 for i in range(1, 5)]
    assert alts == {f"img-{c}": f"Model {c[0]}, picture {c[1]}" for c in cells}
    assert groups == {f"wear-{c}": f"Model {c[0]}, picture {c[1]}: would you wear it?" for c in cells}
    # what a screen reader announces, from Chromium's accessibility tree
    from playwright.sync_api import expect

    expect(page.get_by_role("img", name="Model B, picture 3", exact=True)).to_have_count(1)
    expect(page.get_by_role("group", name="Model B, picture 3: would you wear it?")).to_have_count(1)
    expect(page.get_by_role("button", name="Model C, picture 2", exact=True)).to_have_count(1)
    boxes = {c: page.locator(f"#img-{c}").bounding_box() for c in ("A1", "A2", "A3", "B1")}
    assert min(b["width"] for b in boxes.values()) >= 140, boxes  # at least 140 px, also at 390 px wide
    assert abs(boxes["A1"]["y"] - boxes["A2"]["y"]) < 2 and boxes["A3"]["y"] > boxes["A1"]["y"] + 100  # 2x2
    every_name = json.dumps(names).lower()
    assert not [w for w in SECRET_WORDS if w.lower() in every_name]
    assert status(app, sid) == "shown"


def _axe(page) -> list[dict]:
    page.add_script_tag(path=str(AXE))
    return page.evaluate("""async () => (await axe.run()).violations.map(v =>
        ({id: v.id, impact: v.impact, nodes: v.nodes.length, where: v.nodes.slice(0, 3).map(n => n.target.join(" ")),
          data: v.nodes.slice(0, 2).map(n => JSON.stringify((n.any[0] || {}).data || null))}))""")


def _print_axe(viewport: str, where: str, violations: list[dict]) -> None:
    print(f"axe {viewport} {where}: " + (", ".join(f"{v['id']} ({v['impact']}, {v['nodes']}: {v['where'][:1]} "
                                                    f"{v['data'][:1]})" for v in violations) or "none"))


def _serious(violations: list[dict]) -> list[dict]:
    return [v for v in violations if v["impact"] in ("serious", "critical")]


def test_axe_finds_no_serious_or_critical_violation(browser, on_grids):
    """Welcome, the withdrawal's confirmation, style, grids and done, at each size; rule ids and counts printed."""
    from playwright.sync_api import expect

    if not AXE.exists():
        pytest.skip(f"needs {AXE.relative_to(REPO)}: run `npm ci` (make setup-dev does)")
    page, _ = on_grids
    app = page_app()
    found = {"style": page.axe_style, "grids": _axe(page)}
    other = new_page(browser, page.viewport_name)
    try:
        welcome(other, app, f"axe_{page.viewport_name}")
        shot(other, "welcome")
        found["welcome"] = _axe(other)
        other.locator("#withdraw-welcome").get_by_text("Withdraw: delete your data").click()
        other.locator("#withdraw-code-1").get_by_role("textbox").fill("DU-00000000")
        other.locator("#withdraw-1").click()
        expect(other.locator("#withdraw-1-confirm")).to_be_visible()
        found["withdraw-confirm"] = _axe(other)
        sid, _ = _finish(app, f"axe_done_{page.viewport_name}")
        other.goto(f"{app.url}?session={sid}")
        expect(other.locator("#done")).to_contain_text("DU-", timeout=30_000)
        shot(other, "done")
        found["done"] = _axe(other)
    finally:
        other.close()
    for where, violations in found.items():
        _print_axe(page.viewport_name, where, violations)
    assert {where: _serious(vs) for where, vs in found.items()} == {where: [] for where in found}


def test_keyboard_finish_and_sections(on_grids):
    """One Tab stop per question (arrow keys inside), a section bar that says where one is, a skip from each
    grid to the next, and Finish naming what is still unanswered next to it with the focus moved there."""
    from playwright.sync_api import expect

    page, sid = on_grids
    app = page_app()
    focused = ("() => { const e = document.activeElement; if (e.tagName === 'A') return e.textContent;"
               " const f = e.closest('[id]'); return f ? f.id : ''; }")
    page.locator("#wear-A1 input").first.focus()
    stops = []
    for _ in range(7):
        page.keyboard.press("Tab")
        stops.append(page.evaluate(focused))
    # wear A1 -> A2, A3, A4, the rating, the comment, then the skip link and Model B's first question
    assert stops == ["wear-A2", "wear-A3", "wear-A4", "rating-A", "feedback-A", "Skip to Model C", "wear-B1"], stops
    page.keyboard.press("Shift+Tab")
    assert page.evaluate(focused) == "Skip to Model C"
    page.keyboard.press("Enter")  # the skip link on top of Model B: past its questions to Model C
    assert page.evaluate(focused) == "wear-C1"
    page.keyboard.press("ArrowRight")  # in a radio group the arrows choose, and the choice is saved
    _wait_db(app, "SELECT relevant FROM relevance WHERE session_id = ? AND letter = 'C' AND position = 1",
             (sid,), [(0,)])
    page.get_by_role("button", name="Finish").click()
    missing = page.locator("#finish-missing")
    expect(missing).to_contain_text("Model A: picture 1, picture 2, picture 3, picture 4, rating", timeout=20_000)
    expect(missing).to_contain_text("Model C: picture 2, picture 3, picture 4, rating")
    expect(missing).to_contain_text("Ranking: Best, Second, Third")
    assert missing.get_attribute("role") == "alert"
    assert page.evaluate(focused) == "wear-A1"  # the focus is on the first of them
    page.keyboard.press("ArrowRight")
    expect(missing).not_to_contain_text("Model A: picture 1,")
    nav = page.locator("#grid-nav")
    page.locator("#rating-C").scroll_into_view_if_needed()
    expect(page.locator("#grid-nav-where")).to_have_text(re.compile(r"Model [B-D] of 4"))
    assert nav.bounding_box()["y"] <= 1  # it stays on screen while scrolling
    shot(page, "finish-missing")
    page.evaluate("window.scrollTo(0, 0)")  # the link's Copy button is not covered by its label (phone too)
    page.locator("#session-link").get_by_role("button", name="Copy").click(trial=True, timeout=5_000)
    nav.get_by_role("link", name="Ranking").click()
    expect(page.locator("#grid-nav-where")).to_have_text("Ranking")
    assert status(app, sid) == "shown"


def test_withdraw_now_asks_once_more_before_deleting(on_grids):
    from playwright.sync_api import expect

    page, sid = on_grids
    app = page_app()
    page.get_by_text("Stop and delete my answers").click()
    first = page.get_by_role("button", name="Withdraw now and delete everything I gave")
    first.click()
    confirm = page.locator("#withdraw-now-confirm")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text("this cannot be undone")
    expect(page.locator("#withdraw-now-confirm-cancel")).to_be_focused()
    first.scroll_into_view_if_needed()
    shot(page, "withdraw-confirm")
    first.click()  # a second tap on the same spot still deletes nothing
    time.sleep(1.5)
    assert status(app, sid) == "shown"
    page.get_by_role("button", name="Cancel, keep my data").click()
    expect(confirm).to_be_hidden()
    time.sleep(0.5)
    assert status(app, sid) == "shown"
    first.click()
    page.get_by_role("button", name="Yes, delete everything").click()
    expect(page.get_by_role("button", name="I agree, start")).to_be_visible(timeout=30_000)
    deadline = time.monotonic() + 10
    while status(app, sid) != "withdrawn" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status(app, sid) == "withdrawn"


def _finish(app, pid: str) -> tuple[str, str]:
    """A completed participant through the API (fast): session id and completion code."""
    from tests.app_fixtures import run_participant

    sid, _, out = run_participant(app.url, int(time.time() * 1000) % 100000)
    code = re.search(r"DU-[0-9A-F]{8}", str(out["done"])).group(0)
    return sid, code


def test_withdrawal_by_code_asks_once_more_and_clears_the_stale_error(page):
    from playwright.sync_api import expect

    app = page_app()
    sid, code = _finish(app, page.viewport_name)
    welcome(page, app, f"code_{page.viewport_name}")
    page.locator("#withdraw-welcome").get_by_text("Withdraw: delete your data").click()
    box = page.locator("#withdraw-code-1").get_by_role("textbox")
    first = page.locator("#withdraw-1")
    yes = page.locator("#withdraw-1-confirm-yes")
    box.fill("DU-FFFFFFFF")
    first.click()
    expect(page.locator("#withdraw-1-confirm")).to_contain_text("this cannot be undone")
    yes.click()
    stale = page.get_by_text("No session has that completion code")
    expect(stale.first).to_be_visible(timeout=20_000)
    expect(page.locator("#withdraw-1-confirm")).to_be_hidden()
    box.fill(code)
    first.click()
    shot(page, "withdraw-code-confirm")
    time.sleep(1)
    assert status(app, sid) == "completed"  # one tap deletes nothing
    yes.click()
    expect(page.locator("#withdraw-welcome")).to_contain_text("Your data has been deleted", timeout=20_000)
    expect(stale).to_have_count(0)  # the earlier error is gone, not left beside the success
    assert status(app, sid) == "withdrawn"
    shot(page, "withdraw-code-done")
    if AXE.exists():
        done = _axe(page)
        _print_axe(page.viewport_name, "withdrawn-by-code", done)
        assert _serious(done) == []




def test_a_reload_after_each_kind_of_input_finds_it_again(browser):
    """Text, Menswear/Womenswear, colours to avoid, photos; then marks, ratings, comments and a partial ranking:
    each is given, the page reloaded (the address bar carries the session), and it is there again."""
    from playwright.sync_api import expect

    app = page_app()
    page = new_page(browser, "desktop")
    try:
        agree = welcome(page, app, "reload_desktop")
        agree.click()
        text_box = page.locator("#pref-text textarea")
        expect(text_box).to_be_visible(timeout=15_000)
        expect(page).to_have_url(re.compile(r"session="), timeout=15_000)
        sid = page.url.split("session=")[1].split("&")[0]
        draft = "SELECT text, gender, avoid FROM drafts WHERE session_id = ?"

        def reload(ready: str = "#pref-text textarea") -> None:
            page.reload()
            expect(page.locator(ready)).to_be_visible(timeout=30_000)

        text_box.fill("olive cargo trousers, loose knits")
        _wait_db(app, draft, (sid,), [("olive cargo trousers, loose knits", "any", "")])
        reload()
        expect(text_box).to_have_value("olive cargo trousers, loose knits")
        page.locator("#pref-gender").get_by_label("Womenswear").check()
        _wait_db(app, draft, (sid,), [("olive cargo trousers, loose knits", "womenswear", "")])
        reload()
        expect(page.locator("#pref-gender").get_by_label("Womenswear")).to_be_checked()
        page.locator("#pref-avoid textarea, #pref-avoid input").first.fill("neon green, orange")
        _wait_db(app, draft, (sid,), [("olive cargo trousers, loose knits", "womenswear", "neon green, orange")])
        reload()
        expect(page.locator("#pref-avoid textarea, #pref-avoid input").first).to_have_value("neon green, orange")
        page.locator("#pref-photos input[type=file]").set_input_files([str(p) for p in photos(3)])
        _wait_db(app, "SELECT COUNT(*) FROM uploads WHERE session_id = ?", (sid,), [(3,)])
        reload()
        removes = page.locator("#pref-photos").get_by_role("button", name="Remove this file")
        expect(removes).to_have_count(3, timeout=15_000)
        expect(page.locator("#pref-note")).to_contain_text("3 photos are saved")
        shot(page, "style-restored")
        removes.first.click()  # a photo taken away is gone after a reload too
        _wait_db(app, "SELECT COUNT(*) FROM uploads WHERE session_id = ?", (sid,), [(2,)])
        reload()
        expect(removes).to_have_count(2, timeout=15_000)
        page.get_by_role("button", name="Show me recommendations").click()  # the restored photos, not re-sent
        expect(page.locator("#img-D4 img")).to_be_attached(timeout=60_000)
        with app.db() as conn:
            assert tuple(conn.execute("SELECT text, gender, avoid_colours FROM preferences WHERE session_id = ?",
                                      (sid,)).fetchone()) == ("olive cargo trousers, loose knits", "womenswear",
                                                       '["neon green", "orange"]')
            assert conn.execute("SELECT COUNT(*) FROM uploads WHERE session_id = ?", (sid,)).fetchone()[0] == 2

        grid = "#img-D4 img"
        page.locator("#wear-B3 input[value='Yes']").check()
        _wait_db(app, "SELECT relevant FROM relevance WHERE session_id = ? AND letter = 'B' AND position = 3",
                 (sid,), [(1,)])
        reload(grid)
        expect(page.locator("#wear-B3 input[value='Yes']")).to_be_checked()
        page.locator("#rating-C input[value='7']").check()
        _wait_db(app, "SELECT rating FROM ratings WHERE session_id = ? AND letter = 'C'", (sid,), [(7,)])
        reload(grid)
        expect(page.locator("#rating-C input[value='7']")).to_be_checked()
        page.locator("#feedback-A textarea").fill("too formal for me")
        _wait_db(app, "SELECT text FROM feedback WHERE session_id = ? AND letter = 'A'", (sid,),
                 [("too formal for me",)])
        reload(grid)
        expect(page.locator("#feedback-A textarea")).to_have_value("too formal for me")
        for place, x in ((1, "C"), (3, "A")):  # Best and Third chosen, Second left open
            page.locator(f"#rank-{place} input").click()
            page.get_by_role("option", name=f"Model {x}", exact=True).click()
            expect(page.get_by_role("option")).to_have_count(0)  # the list closed before the next opens
        _wait_db(app, "SELECT letter, rank FROM ranks WHERE session_id = ? ORDER BY rank", (sid,),
                 [("C", 1), ("A", 3)])
        reload(grid)
        expect(page.locator("#rank-1 input")).to_have_value("Model C")
        expect(page.locator("#rank-2 input")).to_have_value("")
        expect(page.locator("#rank-3 input")).to_have_value("Model A")
        shot(page, "grids-restored")
        assert status(app, sid) == "shown"
    finally:
        page.close()
