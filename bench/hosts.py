"""Not a benchmark: the PostgreSQL and multi-host helpers of ``python -m bench load --hosts N``.

A database for the hosts (the URL given, or a fresh database on a throw-away cluster, study/pg_cluster.py),
N ``app.py`` processes on it started together (study/launcher.py's launcher, the database passed as
``DATABASE_URL``), and the check of the Latin square they dealt together.
"""
from __future__ import annotations

import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from study import pg_cluster  # noqa: E402
from study.launcher import RunningApp, start_app  # noqa: E402

COUNTER = "latin_square"  # study.session.LATIN_SQUARE_COUNTER


class Databases:
    """Where each run's answers go: ``url`` when given (every run shares it; the Latin-square counter goes on
    from run to run), else a fresh database per run on one throw-away PostgreSQL cluster, stopped at exit."""

    def __init__(self, url: str | None = None) -> None:
        self.given = url
        self.server: pg_cluster.PostgresServer | None = None
        if not url:
            why = pg_cluster.available()
            if why:
                raise SystemExit(f"--hosts needs PostgreSQL: {why}; or pass --database URL")
            self.server = pg_cluster.server()  # initdb + pg_ctl start (fsync on), removed at exit

    def fresh(self) -> str:
        return self.given or self.server.fresh_database()

    def describe(self, url: str) -> str:
        with pg_cluster.Reader(url) as db:
            version = db.execute("SHOW server_version").fetchone()[0]
        where = ("the database given by --database" if self.given else
                 "a fresh database on a throw-away cluster (study/pg_cluster.py: initdb, 127.0.0.1, fsync on)")
        return f"PostgreSQL {version.split()[0]}, {where}"


def start_hosts(study_paths: list[Path], url: str, timeout: float = 900) -> list[RunningApp]:
    """One ``app.py`` per study file, each on its own port, all with ``DATABASE_URL=url``, started together."""
    with ThreadPoolExecutor(len(study_paths)) as pool:
        futures = [pool.submit(start_app, p, timeout=timeout, env={"DATABASE_URL": url}) for p in study_paths]
    apps, failure = [], None
    for f in futures:
        try:
            apps.append(f.result())
        except Exception as e:  # noqa: BLE001 — the others are stopped, then it is raised
            failure = failure or e
    if failure:
        for a in apps:
            a.stop()
        raise failure
    return apps


def counter(url: str) -> int:
    """The next Latin-square position the database will hand out (0 on a fresh database)."""
    with pg_cluster.Reader(url) as db:
        row = db.execute("SELECT value FROM counters WHERE name = ?", (COUNTER,)).fetchone()
    return int(row[0]) if row else 0


@dataclass
class Square:
    """The Latin square the hosts dealt to the sessions at positions ``first`` .. ``first + n - 1``."""

    first: int
    n: int
    problems: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # (arm, letter) -> sessions dealt it

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        span = f"{min(self.counts.values())}–{max(self.counts.values())}" if self.counts else "–"
        verdict = "**one balanced Latin square**" if self.ok else "**NOT one Latin square: " + "; ".join(
            self.problems[:5]) + "**"
        return (f"{verdict}: order_index {self.first}..{self.first + self.n - 1} each used once, every session "
                f"dealt its position's row of the design, {len(self.counts)} arm × letter cells holding {span} "
                f"sessions each, the same counts one host deals to positions {self.first}..{self.first + self.n - 1}")


def latin_square(url: str, first: int, n: int, arms: list[str]) -> Square:
    """Check the sessions at positions >= ``first`` (this run's, when nothing else writes to the database):
    positions ``first`` .. ``first + n - 1``, each once; each session's letters are the row
    ``study.design.assignment`` gives its position; arm × letter counts equal those of one host's deal."""
    from study.design import assignment  # study.session loads the models' code: only when a square is checked
    from study.session import ASSIGNMENT_SECRET

    sq = Square(first, n)
    with pg_cluster.Reader(url) as db:
        secret = db.execute("SELECT value FROM meta WHERE key = ?", (f"secret:{ASSIGNMENT_SECRET}",)).fetchone()
        order = dict(db.execute("SELECT session_id, order_index FROM sessions WHERE order_index >= ?",
                                (first,)).fetchall())
        dealt: dict[str, dict[str, str]] = {}
        for sid, letter, arm in db.execute("SELECT a.session_id, a.letter, a.arm FROM assignments a JOIN sessions s "
                                           "ON s.session_id = a.session_id WHERE s.order_index >= ?", (first,)):
            dealt.setdefault(sid, {})[letter] = arm
    positions = sorted(order.values())
    repeated = sorted(i for i, c in Counter(positions).items() if c > 1)
    if repeated:
        sq.problems.append(f"order_index used more than once: {repeated[:10]}")
    if sorted(set(positions)) != list(range(first, first + n)):
        sq.problems.append(f"order_index values {positions[:3]}...{positions[-3:]} ({len(positions)}) are not "
                           f"{first}..{first + n - 1}")
    if secret is None:
        sq.problems.append("no assignment secret in the database")
        return sq
    for sid, i in order.items():
        if dealt.get(sid) != assignment(arms, i, secret[0]):
            sq.problems.append(f"session at position {i} dealt {dealt.get(sid)}, not its row")
    sq.counts = Counter((arm, letter) for letters in dealt.values() for letter, arm in letters.items())
    one_host = Counter((arm, letter) for i in range(first, first + n)
                       for letter, arm in assignment(arms, i, secret[0]).items())
    if sq.counts != one_host:
        sq.problems.append(f"arm × letter counts {dict(sq.counts)} differ from one host's {dict(one_host)}")
    return sq


if __name__ == "__main__":
    raise SystemExit("bench/hosts.py holds helpers of `python -m bench load --hosts N`; it is not a benchmark")
