"""``python app.py`` with every Submit slowed by ``$DRESSUP_TEST_SUBMIT_DELAY`` seconds (or what a test writes to
``$DRESSUP_TEST_SUBMIT_DELAY_FILE``), so a browser test can
watch the page while the grids are prepared (tests/test_page_browser.py). Nothing outside tests/ reads it."""
from __future__ import annotations

import os
import runpy
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from study import session  # noqa: E402

_submit = session.Sessions.submit_preference


def _delay() -> float:
    """Seconds to wait: from the file ``$DRESSUP_TEST_SUBMIT_DELAY_FILE`` when a test wrote one (read at every
    Submit, so a test can change it while the app runs), else ``$DRESSUP_TEST_SUBMIT_DELAY``."""
    path = os.environ.get("DRESSUP_TEST_SUBMIT_DELAY_FILE")
    try:
        return float(Path(path).read_text()) if path else float(os.environ.get("DRESSUP_TEST_SUBMIT_DELAY") or 0)
    except (OSError, ValueError):
        return float(os.environ.get("DRESSUP_TEST_SUBMIT_DELAY") or 0)


def _slow_submit(self, *args, **kwargs):
    time.sleep(_delay())
    return _submit(self, *args, **kwargs)


session.Sessions.submit_preference = _slow_submit
APP = REPO / "app.py"
sys.argv[0] = str(APP)
runpy.run_path(str(APP), run_name="__main__")
