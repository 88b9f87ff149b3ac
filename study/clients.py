"""Per-client rules of the participant page: one session per tab, one Submit at a time, slow guessing.

``study.session`` says what a participant may do; this says how often and how many at once, per browser tab
(Gradio's ``session_hash``), session and client address, with the budgets of ``study.limits``. It holds
only memory (nothing here survives a restart, and nothing needs to: a budget that restarts empty is still a
budget).

- **One session per tab**: five "I agree" presses arriving at once from one tab (a double click, a script)
  make one session, not five; each would otherwise take a Latin-square row and unbalance the design.
- **One pending Submit per session**: while one computes, a second (a double click) waits for its grids and
  any further one is refused at once, so a loop of Submits on one session cannot occupy the server.
- **Guesses**: a wrong completion code or researcher password counts against the address (and the
  researcher page as a whole) and backs off, then locks out, as ``study.limits`` describes.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from study.limits import Limiter, Refused

T = TypeVar("T")
ADDRESS_MEMORY_S = 6 * 3600  # an address keeps "has a session" (uploads allowed) this long after its consent
TABS_KEEP = 50_000
WAITERS = 2


class ClientGuard:
    """See the module docstring. ``refusal`` turns a ``Refused`` into the caller's participant error type."""

    def __init__(self, limiter: Limiter | None = None, refusal: Callable[[str], Exception] = RuntimeError) -> None:
        self.limiter = limiter or Limiter()
        self.refusal = refusal
        self._lock = threading.Lock()
        self._tab_locks: dict[str, threading.Lock] = {}
        self._tab_session: dict[str, object] = {}
        self._pending: dict[str, threading.Event] = {}  # session -> set when its running Submit ends
        self._waiting: dict[str, int] = {}  # session -> Submits waiting for its running one
        self._addresses: dict[str, float] = {}

    def _check(self, kind: str, key: str | None, message: str) -> None:
        try:
            self.limiter.check(kind, key, message)
        except Refused as r:
            raise self.refusal(f"{r.message} (try again in {max(1, round(r.retry_after_s))} s)") from None

    def photos(self, session_id: str, address: str | None) -> None:
        """One more storing of a draft's photos (``study.drafts``), within the session's and address's budgets."""
        self._check("photos/session", session_id, "Too many photo changes for this session")
        self._check("photos/address", address, "Too many photo changes from your network")

    # --- consent ---------------------------------------------------------------------------------
    def consent(self, tab: str | None, address: str | None, make: Callable[[], T]) -> T:
        """``make()`` once per tab: a tab that already consented gets the same result back."""
        if not tab:
            self._check("consent/address", address, "Too many new sessions from your network")
            result = make()
        else:
            with self._lock:
                lock = self._tab_locks.setdefault(tab, threading.Lock())
            with lock:
                if tab in self._tab_session:
                    return self._tab_session[tab]  # type: ignore[return-value]
                self._check("consent/address", address, "Too many new sessions from your network")
                result = make()
                with self._lock:
                    self._tab_session[tab] = result
                    while len(self._tab_session) > TABS_KEEP:
                        old = next(iter(self._tab_session))
                        self._tab_session.pop(old)
                        self._tab_locks.pop(old, None)
        self.holds_session(address)
        return result

    def holds_session(self, address: str | None) -> None:
        """``address`` consented or opened a session link (a participant may resume on another device)."""
        if address:
            with self._lock:
                self._addresses[address] = time.monotonic()

    def forget_tab(self, tab: str | None) -> None:
        """The tab's session ended (withdrawn): its next "I agree" starts a new one."""
        with self._lock:
            self._tab_session.pop(tab or "", None)

    def has_session(self, address: str) -> bool:
        """Whether ``address`` consented recently (the upload route's admission rule)."""
        with self._lock:
            t = self._addresses.get(address)
            if t is not None and time.monotonic() - t > ADDRESS_MEMORY_S:
                self._addresses.pop(address, None)
                t = None
            return t is not None

    # --- Submit ----------------------------------------------------------------------------------
    @contextmanager
    def submitting(self, session_id: str, address: str | None, wait_s: float = 600.0) -> Iterator[None]:
        """Held while a Submit computes. Up to ``WAITERS`` more Submits of the same session (a double or triple
        click, a second tab) wait for it and then get the grids it recorded; any further one is refused at
        once, so one session can hold at most 1 + ``WAITERS`` of the server's Submit slots."""
        while True:
            with self._lock:
                running = self._pending.get(session_id)
                if running is None:
                    done = self._pending[session_id] = threading.Event()
                    break
                if self._waiting.get(session_id, 0) >= WAITERS:
                    raise self.refusal("Your recommendations are already being prepared; please wait for them.")
                self._waiting[session_id] = self._waiting.get(session_id, 0) + 1
            try:
                running.wait(wait_s)
            finally:
                with self._lock:
                    self._waiting[session_id] -= 1
                    if not self._waiting[session_id]:
                        del self._waiting[session_id]
        try:
            self._check("submit/session", session_id, "Too many attempts for this session")
            self._check("submit/address", address, "Too many attempts from your network")
            yield
        finally:
            with self._lock:
                self._pending.pop(session_id, None)
            done.set()

    # --- guesses ---------------------------------------------------------------------------------
    def guess(self, kinds: tuple[str, ...], keys: tuple[str | None, ...], attempt: Callable[[], T],
              wrong: type[Exception]) -> T:
        """Run ``attempt`` within the guessing budgets; a ``wrong`` exception counts as a failed guess."""
        for kind, key in zip(kinds, keys):
            self._check(kind, key, "Too many attempts; please wait")
        try:
            result = attempt()
        except wrong:
            for kind, key in zip(kinds, keys):
                self.limiter.failed(kind, key)
            raise
        for kind, key in zip(kinds, keys):
            self.limiter.succeeded(kind, key)
        return result
