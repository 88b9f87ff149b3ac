"""Load: N simulated participants (default 50) arriving over M minutes against the launched study app; counts
errors and lost answers (targets: zero) and follows the app's memory (RSS) session by session.

    python -m bench load                              # 50 participants over 10 minutes, the demo study
    python -m bench load --minutes 5 --participants 50
    python -m bench load --tiny --minutes 2           # the tests' tiny study (no demo build needed)

Each participant is one gradio_client ``Client`` (one browser tab) that consents, waits, gives a preference
with two real photos, then answers every grid (wear marks, rating, comment), ranks and finishes, with a
random pause of up to ``--think`` seconds between actions; arrivals are spread evenly over the first 80 %
of the run so the last ones finish inside it. Afterwards every answer of every completed session is looked
up in the database (``study.answer_checks.assert_answers_stored``). The demo study runs on a copy of
assets/demo.toml whose results go to a temporary folder (the built cache/demo models are reused).

    python -m bench load --tiny --hosts 2             # two app processes sharing one PostgreSQL database

``--hosts N`` starts N app processes, each on its own port, all storing their answers in one PostgreSQL
database through ``DATABASE_URL`` (``--database URL``, else a fresh database on a throw-away cluster from
study/pg_cluster.py), and deals the participants round-robin over them; with ``--compare`` (on by default when
N > 1) the same participants then run against one host on a fresh database of the same server. Afterwards the
database is checked: every answer stored, one Latin square (order_index 0..n-1, each used once, every session
dealt the design's row, arm x letter counts those of one host). ``--database URL`` alone runs one host on it.
"""
from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, Run, emit, markdown_table, percentile  # noqa: E402
from bench.hosts import Databases, Square, counter, latin_square, start_hosts  # noqa: E402
from dressup.config import load_study  # noqa: E402
from dressup.demo import build_key, is_built  # noqa: E402
from study.answer_checks import assert_answers_stored, integrity_check  # noqa: E402
from study.launcher import RunningApp, start_app  # noqa: E402
from study.participant_client import LETTERS4, Answers, client, finish, give_preference, outputs, value  # noqa: E402
from study.pg_cluster import Reader  # noqa: E402
from study.tiny_study import tiny_study  # noqa: E402


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

    def __init__(self, url: str, k: int, think_s: float, host: int = 0) -> None:
        self.url, self.k, self.think_s, self.host = url, k, think_s, host
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


def lost_answers(conn, participants: list[Participant]) -> list[str]:
    """Sessions whose stored answers differ from what the participant gave (and had acknowledged); ``conn`` is a
    read-only ``sqlite3`` connection or a ``study.pg_cluster.Reader``."""
    bad = []
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
    return bad


@dataclass
class Drive:
    """One load run against one or more app processes."""

    participants: list[Participant]
    wall: float
    gap: float
    samples: list[tuple[float, int, list[float]]]  # (seconds since start, sessions finished, RSS MB per app)
    rss_idle: list[float]
    rss_end: list[float]
    alive: list[bool]


def drive(apps: list[RunningApp], args: argparse.Namespace) -> Drive:
    """``args.participants`` participants arriving evenly over 80 % of ``args.minutes``, dealt round-robin over
    ``apps``; returns once every one has finished (or failed). The apps are left running."""
    pids = [a.proc.pid for a in apps]
    samples: list[tuple[float, int, list[float]]] = []
    finished: list[Participant] = []
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(2.0):
            samples.append((time.perf_counter() - began, len(finished), [_rss_mb(pid) for pid in pids]))

    rss_idle = [_rss_mb(pid) for pid in pids]
    began = time.perf_counter()
    threading.Thread(target=sampler, daemon=True).start()
    gap = args.minutes * 60 * 0.8 / max(1, args.participants)
    with ThreadPoolExecutor(args.participants) as pool:
        futures = []
        for k in range(args.participants):
            target = began + k * gap
            time.sleep(max(0.0, target - time.perf_counter()))
            host = k % len(apps)
            fut = pool.submit(Participant(apps[host].url, 7000 + k, args.think, host).run)
            fut.add_done_callback(lambda f: finished.append(f.result()))
            futures.append(fut)
        participants = [f.result() for f in futures]
    wall = time.perf_counter() - began
    time.sleep(2.5)
    stop.set()
    return Drive(participants, wall, gap, samples, rss_idle, [_rss_mb(pid) for pid in pids],
                 [a.proc.poll() is None for a in apps])


def latency_by_call(participants: list[Participant]) -> dict[str, list[float]]:
    by_call: dict[str, list[float]] = {}
    for p in participants:
        for name, s in p.calls:
            by_call.setdefault(name, []).append(s)
    return by_call


def study_description(tiny: bool) -> str:
    return ("the tests' tiny study (200 drawn garments, three untrained retrieval arms, a 4-step DCGAN)"
            if tiny else "assets/demo.toml (demo profile: 4000 drawn garments, three trained retrieval arms, the "
            "DCGAN), results in a temporary folder")


def study_file(args: argparse.Namespace, folder: Path, name: str) -> Path:
    """The study file for one app: the tiny study or a demo copy, with its own results folder ``name``."""
    return tiny_study().with_results(f"bench-load-{name}") if args.tiny else demo_study_copy(folder / name)


def single_host(args: argparse.Namespace, run: Run) -> int:
    """The original benchmark: one app on its SQLite file, memory followed session by session."""
    folder = Path(tempfile.mkdtemp(prefix="dressup-load-"))
    study_path = tiny_study().with_results("bench-load") if args.tiny else demo_study_copy(folder)
    print(f"starting the app on {study_path} ...", flush=True)
    t0 = time.perf_counter()
    app = start_app(study_path, timeout=900)
    start_s = time.perf_counter() - t0
    try:
        d = drive([app], args)
    finally:
        app.stop()
    participants, samples = d.participants, [(t, n, r[0]) for t, n, r in d.samples]
    rss_idle, rss_end, alive, wall, gap = d.rss_idle[0], d.rss_end[0], d.alive[0], d.wall, d.gap
    errors = [f"participant {p.k}: {p.error}" for p in participants if p.error]
    conn = sqlite3.connect(f"file:{app.study.db_path}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        lost = lost_answers(conn, participants)
    finally:
        conn.close()
    integrity = integrity_check(app.study.db_path)

    # memory per session: RSS after the first tenth of sessions (warm-up) vs at the end
    warm_n = max(1, args.participants // 10)
    warm = next((s for s in samples if s[1] >= warm_n), samples[0] if samples else (0, 0, rss_idle))
    per_session = (rss_end - warm[2]) / max(1, args.participants - warm[1])
    latency = [[name, len(v), percentile(v, 50), percentile(v, 95), max(v)]
               for name, v in latency_by_call(participants).items()]
    step = max(1, len(samples) // 12)
    timeline = [[f"{t:.0f}", n, r] for t, n, r in samples[::step]] + [["end", len(participants), rss_end]]

    print("\n".join(errors[:10] + lost[:10]))
    body = "\n\n".join([
        f"Study: {study_description(args.tiny)}; "
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


@dataclass
class HostsRun:
    """One load run on PostgreSQL: ``hosts`` apps, what the participants saw, what the database holds."""

    hosts: int
    drive: Drive
    start_s: float
    database: str
    lost: dict[int, list[str]]  # host -> sessions with a lost or changed answer
    square: Square

    @property
    def ok(self) -> bool:
        d = self.drive
        return (not any(p.error for p in d.participants) and not any(self.lost.values()) and self.square.ok
                and all(d.alive))


def run_on_postgres(args: argparse.Namespace, databases: Databases, hosts: int, folder: Path) -> HostsRun:
    """Start ``hosts`` apps on a database from ``databases``, drive the participants, check the database."""
    url = databases.fresh()
    paths = [study_file(args, folder, f"{hosts}h-{i + 1}") for i in range(hosts)]
    print(f"starting {hosts} app(s) on {paths[0].name} ... with DATABASE_URL={url}", flush=True)
    t0 = time.perf_counter()
    apps = start_hosts(paths, url)
    start_s = time.perf_counter() - t0
    try:
        first = counter(url)
        d = drive(apps, args)
    finally:
        for a in apps:
            a.stop()
    with Reader(url) as db:
        lost = {h: lost_answers(db, [p for p in d.participants if p.host == h]) for h in range(hosts)}
    square = latin_square(url, first, args.participants, [a.name for a in load_study(paths[0]).arms])
    print("\n".join([f"participant {p.k} (host {p.host + 1}): {p.error}" for p in d.participants if p.error][:10]
                    + [x for v in lost.values() for x in v][:10] + square.problems[:10]), flush=True)
    return HostsRun(hosts, d, start_s, databases.describe(url), lost, square)


def _host_row(label: str, host: str, ps: list[Participant], lost: int, rss: str) -> list:
    submit = [s for p in ps for name, s in p.calls if name == "submit_preference"]
    other = [s for p in ps for name, s in p.calls if name != "submit_preference"]
    return [label, host, len(ps), sum(1 for p in ps if p.error), lost, percentile(submit, 50),
            percentile(submit, 95), max(submit, default=float("nan")), percentile(other, 50), percentile(other, 95),
            rss]


def multi_host(args: argparse.Namespace, run: Run) -> int:
    """--hosts N / --database: N apps on one PostgreSQL database, then (``--compare``) one app the same way."""
    databases = Databases(args.database)
    folder = Path(tempfile.mkdtemp(prefix="dressup-load-"))
    compare = args.hosts > 1 if args.compare is None else args.compare and args.hosts > 1
    runs = [run_on_postgres(args, databases, h, folder) for h in ([args.hosts, 1] if compare else [args.hosts])]

    def label(r: HostsRun) -> str:
        return f"{r.hosts} host{'s' if r.hosts > 1 else ''}"

    rows = []
    for r in runs:
        ps = r.drive.participants
        for h in range(r.hosts):
            rss = f"{r.drive.rss_idle[h]:,.0f} → {r.drive.rss_end[h]:,.0f}"
            rows.append(_host_row(label(r), f"host {h + 1}", [p for p in ps if p.host == h], len(r.lost[h]), rss))
        if r.hosts > 1:
            rows.append(_host_row(label(r), "all", ps, sum(map(len, r.lost.values())), "–"))
    by_run = [latency_by_call(r.drive.participants) for r in runs]
    calls = [[name, len(v)] + [x for lat in by_run for x in (percentile(lat.get(name, []), 50),
                                                             percentile(lat.get(name, []), 95),
                                                             max(lat.get(name, []), default=float("nan")))]
             for name, v in by_run[0].items()]
    submit_p = [(percentile(lat["submit_preference"], 95), percentile(lat["submit_preference"], 50))
                if lat.get("submit_preference") else (float("nan"),) * 2 for lat in by_run]
    nproc = os.cpu_count()
    lines = [
        f"Study: {study_description(args.tiny)}. {args.participants} participants (one gradio_client Client each, "
        f"arriving every {runs[0].drive.gap:.1f} s over 80 % of a {args.minutes:g}-minute run, pauses up to "
        f"{args.think:g} s between actions) dealt round-robin over {args.hosts} `app.py` processes, each on its "
        f"own port and results folder, all given one database as `DATABASE_URL`: {runs[0].database}."
        + (" Then the same participants (the same answers, arrival times and pauses) against one app on a fresh "
           "database of the same server, for the one-host figure beside it." if compare else ""),
        f"Machine: {nproc} cores shared by the app processes, PostgreSQL and the {args.participants} clients "
        f"(threads of the benchmark's own process). {args.hosts} hosts on these {nproc} cores add no computing "
        "capacity, so they cannot make the study faster than one host could be here: they compete for the same "
        "cores, each holds its own copy of every arm's models (RSS below), and every answer is a commit on the "
        "server. A difference between the two latency columns, in either direction, says how one process and "
        f"{args.hosts} processes share {nproc} cores (and what else the machine did meanwhile), not how the study "
        "scales onto machines of their own. The point of this run is correctness across hosts: no errors, no "
        "answer lost, one balanced Latin square.",
    ]
    if compare:
        lines.append(f"**p95 Submit latency, {args.hosts} hosts vs 1 host: {submit_p[0][0]:.2f} s vs "
                     f"{submit_p[1][0]:.2f} s** (p50 {submit_p[0][1]:.2f} s vs {submit_p[1][1]:.2f} s).")
    for r in runs:
        ps = r.drive.participants
        errors = sum(1 for p in ps if p.error)
        lines.append(f"**{label(r)}: sessions run {len(ps)}; completed {len(ps) - errors}; errors {errors}; "
                     f"sessions with a lost or changed answer {sum(map(len, r.lost.values()))}**; "
                     f"{r.square.summary()}; apps started in {r.start_s:.0f} s; run {r.drive.wall:.0f} s; "
                     f"apps alive at the end: {all(r.drive.alive)}.")
        failures = [f"participant {p.k} (host {p.host + 1}): {p.error}" for p in ps if p.error][:10]
        failures += [x for v in r.lost.values() for x in v][:10]
        if failures:
            lines.append("\n".join(f"- {x}" for x in failures))
    lines += [
        "Per host (latency in seconds as the participant saw it; `submit_preference` runs every arm; "
        "\"other calls\" pools consent, wear, rate, feedback, rank and finish; RSS in MB, idle after start → end):",
        markdown_table(["run", "host", "participants", "errors", "lost", "Submit p50", "Submit p95", "Submit max",
                        "other p50", "other p95", "RSS MB"], rows, digits=2),
        "Latency per call, all hosts of a run together (seconds):",
        markdown_table(["call", "n"] + [f"{label(r)} {q}" for r in runs for q in ("p50", "p95", "max")], calls,
                       digits=2),
    ]
    emit(run, "\n\n".join(lines), save=not args.no_save)
    return 0 if all(r.ok for r in runs) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=10.0, help="arrivals spread over 80%% of this (default 10)")
    parser.add_argument("--think", type=float, default=3.0, help="longest pause between two actions, s (default 3)")
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny study instead of assets/demo.toml")
    parser.add_argument("--hosts", type=int, default=1,
                        help="app processes sharing one PostgreSQL database, participants dealt round-robin (default 1:"
                             " one app on SQLite)")
    parser.add_argument("--database", metavar="URL",
                        help="the PostgreSQL database for --hosts (default: a fresh one on a throw-away cluster)")
    parser.add_argument("--compare", action=argparse.BooleanOptionalAction, default=None,
                        help="also run the same participants against one host on the same server (default: on "
                             "when --hosts > 1)")
    parser.add_argument("--no-save", action="store_true", help="print only; do not write bench/RESULTS.md")
    args = parser.parse_args()
    if args.hosts < 1 or args.participants < 1:
        parser.error("--hosts and --participants must be at least 1")
    run = Run.start("load")
    if args.hosts == 1 and not args.database:
        return single_host(args, run)
    return multi_host(args, run)


if __name__ == "__main__":
    raise SystemExit(main())
