"""Counterbalancing: the Williams square as participants actually receive it (through consent and the
database's atomic counter), not only as a table."""
from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from itertools import permutations

import pytest

from study.design import assignment, cycle_length
from study.schema import LETTERS
from study.session import Sessions, Visit
from study.store import Store
from tests.app_fixtures import tiny_arms, tiny_study


def _balance(orders: list[list[str]], arms: list[str]) -> tuple[Counter, Counter]:
    at_letter = Counter((o[i], LETTERS[i]) for o in orders for i in range(len(o)))
    follows = Counter((o[i], o[i + 1]) for o in orders for i in range(len(o) - 1))
    return at_letter, follows


@pytest.mark.parametrize("arms, participants", [(["a", "b", "c", "d"], 24), (["a", "b", "c"], 6), (["a", "b", "c"], 24)])
def test_williams_square_balances_letters_and_carry_over(arms, participants):
    assert participants % cycle_length(len(arms)) == 0
    orders = []
    for i in range(participants):
        a = assignment(arms, i, secret="11")
        assert sorted(a) == list(LETTERS[: len(arms)]) and sorted(a.values()) == sorted(arms)
        orders.append([a[x] for x in LETTERS[: len(arms)]])
    at_letter, follows = _balance(orders, arms)
    assert set(at_letter.values()) == {participants // len(arms)}
    assert len(at_letter) == len(arms) ** 2
    pairs = list(permutations(arms, 2))
    assert set(follows) == set(pairs)
    assert set(follows.values()) == {participants * (len(arms) - 1) // len(pairs)}


def test_seed_changes_which_arm_gets_which_row():
    arms = ["a", "b", "c", "d"]
    assert [assignment(arms, i, 1) for i in range(4)] != [assignment(arms, i, 2) for i in range(4)]


def test_concurrent_consents_take_every_square_row_once(tmp_path):
    """Twenty-four participants consenting at the same moment still get 24 distinct rows, so the square
    stays exactly balanced (the counter is taken inside one write transaction)."""
    study = tiny_study().load(results_dir=tmp_path)
    sessions = Sessions(study, tiny_arms(), Store(study.db_path, study.name))
    with ThreadPoolExecutor(8) as pool:
        visits = list(pool.map(lambda _: sessions.consent(Visit()), range(24)))
    rows = [sessions.store.session(v.session_id) for v in visits]
    assert sorted(r.order_index for r in rows) == list(range(24))
    arms = [a.name for a in study.arms]
    orders = [[r.assignments[x] for x in LETTERS[: len(arms)]] for r in rows]
    at_letter, follows = _balance(orders, arms)
    assert set(at_letter.values()) == {24 // len(arms)}
    assert set(follows.values()) == {24 * (len(arms) - 1) // (len(arms) * (len(arms) - 1))}
    for r in rows:  # what is recorded is what the design says for that row
        assert r.assignments == assignment(arms, r.order_index, sessions.store.secret("assignment"))
