"""Simulated participants: the analysis recovers a known truth, keeps its false-positive rate, and a
simulated database is written through the Store exactly as the app writes one."""
from __future__ import annotations

import numpy as np
import pytest

from study import analyze as A
from study import simulate as S
from study.design import assignment
from study.schema import connect

STRONG = {"baseline": 0.0, "finetuned": 1.5, "stn": -1.5, "generative": 0.7}
TRUE_ORDER = ["finetuned", "generative", "baseline", "stn"]  # best first


def test_generated_answers_are_valid_and_follow_the_latin_square():
    sim = S.generate(STRONG, 40, seed=0, design_seed=5)
    assert sim.rating.min() >= 1 and sim.rating.max() <= 10 and sim.rating.dtype.kind == "i"
    assert (np.sort(sim.rank, axis=1) == np.arange(1, 5)).all()  # every ranking is a permutation
    assert set(np.unique(sim.relevance)) <= {0, 1} and sim.relevance.shape == (40, 4, 4)
    assert sim.assignments[7] == assignment(list(STRONG), 7, 5)
    long = sim.to_long()
    assert len(long) == 40 * 4 * 4
    assert list(long.columns) == ["participant", "arm", "position", "relevant", "rating", "rank", "letter"]


def test_simulated_sessions_take_latin_square_rows_from_the_apps_counter():
    from study.session import LATIN_SQUARE_COUNTER

    assert S.COUNTER == LATIN_SQUARE_COUNTER


def test_a_simulated_database_through_the_store_recovers_the_true_order(tmp_path):
    db = tmp_path / "sim.sqlite"
    summary = S.write_study(db, STRONG, 60, seed=3, incomplete=0.1, withdrawn=0.05, attention_fail=0.05,
                            progress=False)
    assert summary.sessions == 60
    assert summary.completed + summary.incomplete + summary.withdrawn == 60
    a = A.analyze(A.load(db), replicates=300, seed=0)
    excluded = a.exclusions()
    assert excluded.get("withdrawn", 0) == summary.withdrawn
    assert excluded.get("incomplete", 0) == summary.incomplete
    assert excluded.get("failed attention check", 0) == summary.attention_failed
    assert a.n_included == summary.completed - summary.attention_failed
    f = a.figures.set_index("arm")
    assert f["avg_rating"].sort_values(ascending=False).index.tolist() == TRUE_ORDER
    assert f["avg_rank"].sort_values().index.tolist() == TRUE_ORDER
    assert f["map4_paper"].sort_values(ascending=False).index.tolist() == TRUE_ORDER
    fr = a.friedman.set_index(["measure", "by"])
    assert fr.loc[("rating", "arm"), "p"] < 1e-6 and fr.loc[("rank", "arm"), "p"] < 1e-6
    # the database holds what the app would write: sessions, Latin-square rows from the counter, statuses
    conn = connect(db, readonly=True)
    statuses = dict(conn.execute("SELECT status, COUNT(*) FROM sessions GROUP BY status").fetchall())
    orders = [r[0] for r in conn.execute("SELECT order_index FROM sessions ORDER BY created_at")]
    conn.close()
    assert statuses["completed"] == summary.completed and statuses["withdrawn"] == summary.withdrawn
    assert orders == list(range(60))


def test_with_no_true_effect_friedman_is_significant_about_5_percent_of_the_time():
    rng = np.random.default_rng(11)
    nulls = {arm: 0.0 for arm in STRONG}
    p_rating, p_rank = [], []
    for _ in range(200):
        sim = S.generate(nulls, 20, seed=rng)
        p_rating.append(A.friedman(sim.rating, "rating").p)
        p_rank.append(A.friedman(sim.rank, "rank").p)
    assert 0.01 <= np.mean(np.array(p_rating) < 0.05) <= 0.10
    assert 0.01 <= np.mean(np.array(p_rank) < 0.05) <= 0.10


def test_a_position_effect_shows_in_the_letter_analysis_but_not_in_the_arm_figures():
    params = S.SimParams(letter_effects={"A": 2.0})
    sim = S.generate({arm: 0.0 for arm in STRONG}, 96, seed=4, params=params)
    a = A.analyze(A.from_table(sim.to_long()), replicates=200, seed=0)
    pos = a.positions.set_index("letter")
    assert pos["rating"].idxmax() == "A" and pos["rank"].idxmin() == "A"
    fr = a.friedman.set_index(["measure", "by"])
    assert fr.loc[("rating", "letter"), "p"] < 0.001
    # the balanced Latin square spreads the bonus over all arms: no arm effect is found
    assert fr.loc[("rating", "arm"), "p"] > 0.05
    assert a.arm_letter_counts.to_numpy().tolist() == [[24] * 4] * 4


def test_power_grows_with_the_difference():
    small = S.power({"a": 0.0, "b": 0.2, "c": 0.0}, 12, reps=30, seed=0)
    large = S.power({"a": 0.0, "b": 1.5, "c": 0.0}, 12, reps=30, seed=0)
    assert large.friedman["rating"] > small.friedman["rating"]
    assert large.friedman["rank"] >= 0.8
    pair = large.pairs.set_index(["measure", "arm_a", "arm_b"]).loc[("rank", "a", "b"), "significant"]
    assert pair > 0.5


def test_power_command_prints_a_table(capsys):
    assert S.main(["--power", "--n", "10", "--diff", "1.0", "--reps", "10"]) == 0
    out = capsys.readouterr().out
    assert "power over 10 simulated studies of 10 participants" in out and "finetuned=1" in out
    assert "Friedman test significant: rating" in out


def test_simulate_command_writes_a_new_database_and_refuses_an_existing_one(tmp_path, capsys):
    db = tmp_path / "s.sqlite"
    assert S.main(["--n", "8", "--out", str(db), "--effects", "a=0,b=1", "--seed", "2"]) == 0
    assert "wrote 8 sessions" in capsys.readouterr().out
    assert S.main(["--n", "8", "--out", str(db)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [("a=0,b", "ARM=NUMBER"), ("a=x,b=1", "ARM=NUMBER"), ("a=1", "2 to 4"),
                                           ("a=0,b=0,c=0,d=0,e=0", "2 to 4")])
def test_malformed_effects_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        S.parse_effects(text)
