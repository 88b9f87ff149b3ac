"""Screenshots of the demo's four grids as a participant sees them, for the README (docs/demo-grids-*.png).

    python -m bench grid_screenshots [--text "a yellow dress for the summer"]

Starts ``python app.py`` on the built demo study (answers to a temporary folder), walks Chromium through consent
and the style page (the text and two of ``assets/photos``), presses Submit and saves the grids page at
1366x768, and each grid alone, under ``docs/`` (256 colours). Look at them: the letters are shuffled per participant, so
which model drew which grid is not on the picture (``--reveal`` prints it, from the study database).
"""
from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from bench.common import REPO, demo_study_copy, photos, start_app  # noqa: E402

DOCS = REPO / "docs"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench grid_screenshots", description=__doc__.split("\n\n")[0])
    p.add_argument("--text", default="a yellow dress for the summer, nothing too tight")
    p.add_argument("--reveal", action="store_true", help="print which arm each letter was (from the database)")
    args = p.parse_args(argv)
    from playwright.sync_api import expect, sync_playwright

    DOCS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dressup-shots-") as tmp:
        folder = Path(tmp)
        app = start_app(demo_study_copy(folder), folder / "app", timeout_s=1800)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1366, "height": 768})
                page.goto(f"{app.url}?PROLIFIC_PID=readme_shots&STUDY_ID=S_readme&SESSION_ID=R1")
                page.get_by_role("button", name="I agree, start").click()
                page.locator("#pref-text textarea").fill(args.text)
                page.locator("#pref-photos input[type=file]").set_input_files([str(x) for x in photos(2)])
                page.get_by_role("button", name="Show me recommendations").click()
                expect(page.locator("#img-D4 img")).to_be_attached(timeout=120_000)
                for x in "ABCD":
                    for i in range(1, 5):
                        img = page.locator(f"#img-{x}{i} img")
                        img.scroll_into_view_if_needed()
                        expect(img).to_be_visible()
                        page.wait_for_function("e => e.complete && e.naturalWidth > 0", arg=img.element_handle())
                page.evaluate("window.scrollTo(0, 0)")
                page.screenshot(path=str(DOCS / "demo-grids-page.png"), full_page=True)
                for x in "ABCD":
                    page.locator(f"#grid-{x}").screenshot(path=str(DOCS / f"demo-grid-{x}.png"))
                browser.close()
            if args.reveal:
                db = folder / "results" / "study.sqlite"
                with sqlite3.connect(db) as conn:
                    for row in conn.execute("SELECT letter, arm FROM assignments ORDER BY letter"):
                        print(*row)
        finally:
            app.stop()
    for shot in [DOCS / "demo-grids-page.png", *(DOCS / f"demo-grid-{x}.png" for x in "ABCD")]:
        # 256 colours keep the pictures small enough to commit (a third of their size)
        Image.open(shot).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                                 dither=Image.Dither.NONE).save(shot, optimize=True)
    print(f"saved {DOCS}/demo-grids-page.png and demo-grid-A..D.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
