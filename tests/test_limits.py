"""The budgets' arithmetic (study.limits) on an injected clock: windows, growing waits, lockouts, and what the
HTTP edge asks (``waiting``) agreeing with what a counted attempt would be told."""
from __future__ import annotations

import pytest

from study.limits import Budget, Limiter, Refused


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_full_window_refuses_until_its_oldest_event_ages_out_and_waiting_says_so():
    clock = Clock()
    limits = Limiter({"x": Budget(per_window=3, window_s=60)}, clock=clock)
    for _ in range(3):
        assert limits.waiting("x", "a") == 0
        limits.check("x", "a")
        clock.t += 1
    assert limits.waiting("x", "a") == pytest.approx(57)  # the first event leaves the window at t + 60
    with pytest.raises(Refused) as r:
        limits.check("x", "a")
    assert r.value.retry_after_s == pytest.approx(57)
    assert limits.waiting("x", "b") == 0  # another key has its own budget
    clock.t += 57.01
    assert limits.waiting("x", "a") == 0
    limits.check("x", "a")


def test_failures_back_off_then_lock_out_and_waiting_counts_nothing():
    clock = Clock()
    limits = Limiter({"g": Budget(per_window=100, window_s=600, free_failures=2, lockout_after=5, lockout_s=900)},
                     clock=clock)
    for _ in range(2):
        limits.failed("g", "a")
    assert limits.waiting("g", "a") == 0  # the free failures
    limits.failed("g", "a")
    assert limits.waiting("g", "a") == pytest.approx(1)
    limits.failed("g", "a")
    assert limits.waiting("g", "a") == pytest.approx(2)  # doubling
    for _ in range(50):
        limits.waiting("g", "a")  # asking is free: no event, no failure
    limits.failed("g", "a")
    assert limits.waiting("g", "a") == pytest.approx(900)  # locked out
    clock.t += 901
    limits.succeeded("g", "a")
    assert limits.waiting("g", "a") == 0
