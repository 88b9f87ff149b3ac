"""Load, CI-sized: a concurrent wave, then a sequential one, against the launched tiny study and the paper twin
(tests/paper_twin.py); nothing lost, memory bounded.

``bench/load.py`` is the full version (50 participants paced over up to 10 minutes, the real demo study,
an RSS timeline, recorded in bench/RESULTS.md). Here a wave of eight runs at once (concurrency; it also
warms the app up and sets the allocator's high-water mark, which RSS never gives back), then eight more run
one after another and the RSS they add is what a session retains. What may grow per session is the data the
session really holds in the server: Gradio's per-browser-session page state (a copy of the page's component
config, about 0.3-0.6 MB, kept up to ``state_session_capacity`` sessions); what must not grow is anything
proportional to the images served (16 PNG cells of 256x256 RGB are 3 MB decoded per session).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.app_fixtures import (
    app_answers,
    assert_answers_stored,
    integrity_check,
    run_participant,
    value,
)

WAVE = 8
MAX_MB_PER_SESSION = 2.0  # measured 0.3-0.9 MB (Gradio page state); one session's images alone are 3 MB


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def test_concurrent_participants_lose_nothing_and_memory_stays_bounded(served) -> None:
    app = served.app()
    errors: list[str] = []

    def participant(k: int):
        try:
            return run_participant(app.url, k)
        except Exception as e:  # noqa: BLE001 — counted, and the test fails on any
            errors.append(f"participant {k}: {type(e).__name__}: {e}")
            return None

    with ThreadPoolExecutor(WAVE) as pool:  # all at once: the concurrency, and the allocator's high-water mark
        results = list(pool.map(participant, range(6000, 6000 + WAVE)))
    rss = [_rss_mb(app.proc.pid)]
    for k in range(6000 + WAVE, 6000 + 2 * WAVE):  # one after another: what each further session retains
        results.append(participant(k))
    rss.append(_rss_mb(app.proc.pid))
    assert errors == []
    assert app_answers(app)
    with app.db() as conn:
        for sid, answers, done in results:
            row = conn.execute("SELECT status, completion_code FROM sessions WHERE session_id = ?", (sid,)).fetchone()
            assert row["status"] == "completed" and row["completion_code"] in value(done["done"])
            assert_answers_stored(conn, sid, answers)  # every answer of every participant: none lost
    assert integrity_check(app.study.db_path) == "ok"
    per_session = (rss[1] - rss[0]) / WAVE
    print(f"app RSS {rss[0]:.0f} -> {rss[1]:.0f} MB: {per_session:.2f} MB per further session")
    assert per_session < MAX_MB_PER_SESSION, f"RSS grew {per_session:.2f} MB per session after warm-up ({rss})"
