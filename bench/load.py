"""Load: N simulated participants (default 50) arriving over M minutes against the launched study app; counts
errors and lost answers (targets: zero) and follows the app's memory (RSS) session by session.

    python -m bench load                              # 50 participants over 10 minutes, the demo study
    python -m bench load --minutes 5 --participants 50
    python -m bench load --tiny --minutes 2           # the tests' tiny study (no demo build needed)

Each participant is one gradio_client ``Client`` (one browser tab) that consents, waits, gives a preference
with two real photos, then answers every grid (wear marks, rating, comment), ranks and finishes, with a
random pause of up to ``--think`` seconds between actions; arrivals are spread evenly over the first 80 %
of the run so the last ones finish inside it. Afterwards every answer of every completed session is looked
up in the database (``tests.app_fixtures.assert_answers_stored``). The demo study runs on a copy of
assets/demo.toml whose results go to a temporary folder (the built cache/demo models are reused).
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, Run, emit, markdown_table, percentile  # noqa: E402
from tests.app_fixtures import (  # noqa: E402
    LETTERS4,
    Answers,
    client,
    finish,
    give_preference,
    integrity_check,
    outputs,
    start_app,
    tiny_study,
    value,
)


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def demo_study_copy(folder: Path) -> Path:
    """assets/demo.toml with its results in ``folder``/results, every other path unchanged.

    The copy sits in ``folder``/assets beside links to the real assets/models and cache, so its relative paths
    name the same files and its demo build key is the original's: the built cache/demo is reused. Refuses
    (SystemExit) when that build is missing or stale, because starting the app would then rebuild it (about
    15 minutes, replacing the cache's models) in the middle of a benchmark."""
    from dressup.config import load_study
    from dressup.demo import build_key, is_built

    (folder / "assets").mkdir(parents=True, exist_ok=True)
    (folder / "assets" / "models").symlink_to(REPO / "assets" / "models")
    (folder / "cache").symlink_to(REPO / "cache")
    text = (REPO / "assets" / "demo.toml").read_text()
    text = text.replace('results_dir = "../results/demo"', f'results_dir = "{folder / "results"}"')
    out = folder / "assets" / "demo.toml"
    out.write_text(text)
    original, copy = load_study(REPO / "assets" / "demo.toml"), load_study(out)
    if build_key(copy) != build_key(original) or not is_built(original):
        raise SystemExit("the demo build in cache/demo is missing or stale for assets/demo.toml; run "
                         "`python -m dressup demo build` first, or pass --tiny for the tests' tiny study")
    return out


class Participant:
    """One simulated participant; ``calls`` holds (endpoint, seconds) of every call, ``error`` the first failure."""

    def __init__(self, url: str, k: int, think_s: float) -> None:
        self.url, self.k, self.think_s = url, k, think_s
        self.rng = random.Random(k)
        self.calls: list[tuple[str, float]] = []
        self.error: str | None = None
        self.session_id: str | None = None
        self.answers = Answers.make(k, tag="-load")
        self.code: str | None = None

    def _call(self, name: str, fn):
        time.sleep(self.rng.random() * self.think_s)
        t0 = time.perf_counter()
        out = fn()
        self.calls.append((name, time.perf_counter() - t0))
        return out

    def run(self) -> "Participant":
        a = self.answers
        try:
            c = client(self.url)
            self.session_id = value(outputs(self._call("consent", lambda: c.predict(api_name="/consent")))["link"])
            self._call("submit_preference", lambda: give_preference(c, a.text))
            for x in LETTERS4:
                self._call("wear", lambda: c.predict(*a.wear[x], api_name=f"/wear_{x}"))
                self._call("rate", lambda: c.predict(a.ratings[x], api_name=f"/rate_{x}"))
                self._call("feedback", lambda: c.predict(a.feedback[x], api_name=f"/feedback_{x}"))
            self._call("rank", lambda: c.predict(*a.ranking[:3], api_name="/rank"))
            self._call("feedback", lambda: c.predict(a.overall, api_name="/feedback_overall"))
            done = self._call("finish", lambda: finish(c, a))
            self.code = value(done["done"]).split("**")[1]
        except Exception as e:  # noqa: BLE001 — counted and reported
            self.error = f"{type(e).__name__}: {str(e)[:200]}"
        return self


def lost_answers(db_path: Path, participants: list[Participant]) -> list[str]:
    """Sessions whose stored answers differ from what the participant gave (and had acknowledged)."""
    import sqlite3

    from tests.app_fixtures import assert_answers_stored

    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    bad = []
    try:
        for p in participants:
            if p.error or not p.session_id:
                continue
            try:
                assert_answers_stored(conn, p.session_id, p.answers)
                row = conn.execute("SELECT status, completion_code FROM sessions WHERE session_id = ?",
                                   (p.session_id,)).fetchone()
                assert tuple(row) == ("completed", p.code)
            except AssertionError as e:
                bad.append(f"participant {p.k}: {e}")
    finally:
        conn.close()
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=10.0, help="arrivals spread over 80%% of this (default 10)")
    parser.add_argument("--think", type=float, default=3.0, help="longest pause between two actions, s (default 3)")
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny study instead of assets/demo.toml")
    parser.add_argument("--no-save", action="store_true", help="print only; do not write bench/RESULTS.md")
    args = parser.parse_args()
    run = Run.start("load")

    folder = Path(tempfile.mkdtemp(prefix="dressup-load-"))
    study_path = tiny_study().with_results("bench-load") if args.tiny else demo_study_copy(folder)
    print(f"starting the app on {study_path} ...", flush=True)
    t0 = time.perf_counter()
    app = start_app(study_path, timeout=900)
    start_s = time.perf_counter() - t0
    pid = app.proc.pid
    samples: list[tuple[float, int, float]] = []  # (seconds since start, sessions finished, RSS MB)
    finished: list[Participant] = []
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(2.0):
            samples.append((time.perf_counter() - began, len(finished), _rss_mb(pid)))

    rss_idle = _rss_mb(pid)
    began = time.perf_counter()
    threading.Thread(target=sampler, daemon=True).start()
    gap = args.minutes * 60 * 0.8 / max(1, args.participants)
    try:
        with ThreadPoolExecutor(args.participants) as pool:
            futures = []
            for k in range(args.participants):
                target = began + k * gap
                time.sleep(max(0.0, target - time.perf_counter()))
                fut = pool.submit(Participant(app.url, 7000 + k, args.think).run)
                fut.add_done_callback(lambda f: finished.append(f.result()))
                futures.append(fut)
            participants = [f.result() for f in futures]
        wall = time.perf_counter() - began
        time.sleep(2.5)
        stop.set()
        rss_end = _rss_mb(pid)
        alive = app.proc.poll() is None
    finally:
        app.stop()
    errors = [f"participant {p.k}: {p.error}" for p in participants if p.error]
    lost = lost_answers(app.study.db_path, participants)
    integrity = integrity_check(app.study.db_path)

    # memory per session: RSS after the first tenth of sessions (warm-up) vs at the end
    warm_n = max(1, args.participants // 10)
    warm = next((s for s in samples if s[1] >= warm_n), samples[0] if samples else (0, 0, rss_idle))
    per_session = (rss_end - warm[2]) / max(1, args.participants - warm[1])
    by_call: dict[str, list[float]] = {}
    for p in participants:
        for name, s in p.calls:
            by_call.setdefault(name, []).append(s)
    latency = [[name, len(v), percentile(v, 50), percentile(v, 95), max(v)] for name, v in by_call.items()]
    step = max(1, len(samples) // 12)
    timeline = [[f"{t:.0f}", n, r] for t, n, r in samples[::step]] + [["end", len(participants), rss_end]]

    print("\n".join(errors[:10] + lost[:10]))
    study_desc = ("the tests' tiny study (200 drawn garments, three untrained retrieval arms, a 4-step DCGAN)"
                  if args.tiny else "assets/demo.toml (demo profile: 4000 drawn garments, three trained retrieval "
                  "arms, the DCGAN), results in a temporary folder")
    body = "\n\n".join([
        f"Study: {study_desc}; "
        f"{args.participants} participants, one gradio_client Client each, arriving every {gap:.1f} s, pauses "
        f"up to {args.think:g} s between actions; app start {start_s:.0f} s; run {wall:.0f} s.",
        f"**Sessions run: {len(participants)}; completed: {len(participants) - len(errors)}; errors: "
        f"{len(errors)}; sessions with a lost or changed answer: {len(lost)}**; database integrity_check: "
        f"{integrity}; app alive at the end: {alive}.",
        f"Memory (app RSS): {rss_idle:.0f} MB idle after start, {warm[2]:.0f} MB after {warm[1]} sessions "
        f"(warm-up), {rss_end:.0f} MB at the end: **{per_session:.2f} MB per further session**. That growth is "
        "Gradio's per-browser-session page state (a copy of the page's component config per session hash, kept "
        "until `state_session_capacity` = 10,000 sessions; consent-only sessions alone cost ~0.28 MB each), not "
        "images: one session's 16 cells would be 3 MB decoded.",
        markdown_table(["s since start", "sessions finished", "RSS MB"], timeline, digits=0),
        "Latency per call as the participant saw it (seconds; `submit_preference` runs every arm, one "
        "preference at a time):",
        markdown_table(["call", "n", "p50 s", "p95 s", "max s"], latency, digits=2),
    ])
    emit(run, body, save=not args.no_save)
    return 0 if not errors and not lost and integrity == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
