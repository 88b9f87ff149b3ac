"""Budgets per client: what one participant's browser, or one hostile script, may ask of the study.

The study is public: anyone with the link can call every endpoint in a loop. Without budgets one client could
fill the queue for everyone, guess completion codes at disk speed, or try researcher passwords forever. A
``Limiter`` keeps, in memory, a sliding window of recent events per (kind, key) — the key is a client address,
a session id or a browser tab — and answers each new event at once: allowed, or refused with how long to wait.
Nothing sleeps (a sleeping handler would hold one of the server's threads, which is how a flood slows others),
and nothing is written to the database (a failed guess costs no fsync).

Failures (a wrong password, an unknown withdrawal code) cost more than successes: after ``free`` failures
each further one makes the client wait twice as long as the last before it may try again (1 s, 2 s, 4 s, ...),
and past ``lockout_after`` failures the key is locked out for ``lockout_s``; a lockout is logged (with the
key, never the value tried). The numbers live in ``BUDGETS`` with the reason for each.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """At most ``per_window`` events per key in ``window_s``; failures back off and lock out as above."""

    per_window: int
    window_s: float
    free_failures: int = 3
    lockout_after: int = 20
    lockout_s: float = 900.0


# Sized for people, with room: a lab running 30 participants behind one address, a participant who clicks
# fast. Each refusal is instant, so a client over budget costs the server almost nothing.
BUDGETS: dict[str, Budget] = {
    # new sessions from one address (a lab's NAT may hold a class of participants)
    "consent/address": Budget(per_window=60, window_s=600),
    # Submits of one session (a retry after an error is normal; a loop is not)
    "submit/session": Budget(per_window=12, window_s=600),
    "submit/address": Budget(per_window=120, window_s=600),
    # upload requests from one address (a participant adds 2-4 photos, perhaps twice)
    "upload/address": Budget(per_window=40, window_s=600),
    # photos stored as they are added on the style page (each decodes them): a participant adds or removes a
    # few; refused early so a client that alternates two sets cannot keep the decoders busy for everyone
    "photos/session": Budget(per_window=30, window_s=600),
    "photos/address": Budget(per_window=200, window_s=600),
    # any event (answers, clicks) from one address: a participant makes a few hundred in a study
    "event/address": Budget(per_window=1200, window_s=60),
    # completion-code guesses: 32-bit codes are safe only if guessing is slow
    "withdraw/address": Budget(per_window=30, window_s=600, free_failures=3, lockout_after=10, lockout_s=3600),
    # researcher passwords: per address, and for the page as a whole (an attacker with many addresses)
    "researcher/address": Budget(per_window=60, window_s=600, free_failures=3, lockout_after=10, lockout_s=3600),
    "researcher/all": Budget(per_window=600, window_s=600, free_failures=20, lockout_after=100, lockout_s=900),
}


class Refused(Exception):
    """Over budget; ``message`` is safe to show the client, ``retry_after_s`` how long to wait."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


@dataclass
class _State:
    events: deque = field(default_factory=deque)
    failures: int = 0
    last_failure: float = 0.0
    not_before: float = 0.0
    locked_until: float = 0.0


class Limiter:
    """Thread-safe budgets (see the module docstring). ``clock`` is injectable for tests of the arithmetic."""

    MAX_KEYS = 100_000  # forget the oldest keys beyond this, so a spray of addresses cannot grow memory

    def __init__(self, budgets: dict[str, Budget] | None = None, clock=time.monotonic) -> None:
        self.budgets = dict(budgets or BUDGETS)
        self.clock = clock
        self._state: dict[tuple[str, str], _State] = {}
        self._lock = threading.Lock()

    def _get(self, kind: str, key: str) -> _State:
        k = (kind, key)
        state = self._state.pop(k, None) or _State()
        self._state[k] = state  # most recently used last
        while len(self._state) > self.MAX_KEYS:
            self._state.pop(next(iter(self._state)))
        return state

    def check(self, kind: str, key: str | None, message: str = "Too many requests; please wait a moment.") -> None:
        """Count one event of ``kind`` for ``key``; raise ``Refused`` when over budget or backing off."""
        if not key:
            return
        budget = self.budgets[kind]
        now = self.clock()
        with self._lock:
            s = self._get(kind, key)
            wait = max(s.locked_until, s.not_before) - now
            if wait > 0:
                raise Refused(message, wait)
            while s.events and s.events[0] <= now - budget.window_s:
                s.events.popleft()
            if len(s.events) >= budget.per_window:
                raise Refused(message, s.events[0] + budget.window_s - now)
            s.events.append(now)

    def waiting(self, kind: str, key: str | None) -> float:
        """Seconds ``key`` must still wait (backing off or locked out) before its next ``kind`` attempt counts;
        0 when it may try. Counts nothing: the HTTP edge asks before a refused client reaches the app."""
        if not key:
            return 0.0
        budget, now = self.budgets[kind], self.clock()
        with self._lock:
            s = self._state.get((kind, key))
            if s is None:
                return 0.0
            live = [t for t in s.events if t > now - budget.window_s]
            full = live[0] + budget.window_s - now if len(live) >= budget.per_window else 0.0
            return max(0.0, s.locked_until - now, s.not_before - now, full)

    def failed(self, kind: str, key: str | None) -> None:
        """Record a failed attempt (wrong password or code): backs off, then locks out (logged)."""
        if not key:
            return
        budget = self.budgets[kind]
        now = self.clock()
        with self._lock:
            s = self._get(kind, key)
            if now - s.last_failure > budget.lockout_s:
                s.failures = 0  # a long quiet spell forgives
            s.failures += 1
            s.last_failure = now
            if s.failures > budget.free_failures:
                s.not_before = now + min(2.0 ** (s.failures - budget.free_failures - 1), budget.lockout_s)
            if s.failures >= budget.lockout_after and s.locked_until <= now:
                s.locked_until = now + budget.lockout_s
                log.warning("lockout: %s for %s after %d failed attempts (%.0f s)", kind, key, s.failures,
                            budget.lockout_s)

    def succeeded(self, kind: str, key: str | None) -> None:
        """A correct attempt clears the failures of ``key`` (not a lockout in force)."""
        if not key:
            return
        with self._lock:
            s = self._get(kind, key)
            s.failures, s.not_before = 0, 0.0
