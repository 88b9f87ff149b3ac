"""The analysis against hand computations: every figure of a small study is worked out below as literal
numbers, with the arithmetic in a comment, and compared with what ``study.analyze`` reports."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from study import analyze as A
from study.store import ShownRow, Store

ROOT = Path(__file__).resolve().parent.parent
ARMS = ["baseline", "finetuned", "generative", "stn"]  # the analysis orders arms by name

# --- a hand-made database ------------------------------------------------------------------------------
# Three included participants. Relevance marks in display order, ratings and ranks:
REL = {
    "P1": {"baseline": [1, 0, 1, 0], "finetuned": [1, 1, 1, 1], "generative": [0, 1, 1, 0], "stn": [0, 0, 0, 0]},
    "P2": {"baseline": [0, 1, 0, 0], "finetuned": [1, 1, 0, 1], "generative": [1, 0, 0, 0], "stn": [0, 0, 0, 1]},
    "P3": {"baseline": [1, 1, 0, 0], "finetuned": [1, 0, 1, 1], "generative": [1, 1, 1, 0], "stn": [0, 0, 1, 0]},
}
RATING = {"P1": {"baseline": 6, "finetuned": 9, "generative": 7, "stn": 2},
          "P2": {"baseline": 5, "finetuned": 8, "generative": 7, "stn": 3},
          "P3": {"baseline": 3, "finetuned": 8, "generative": 9, "stn": 3}}
RANK = {"P1": {"baseline": 3, "finetuned": 1, "generative": 2, "stn": 4},
        "P2": {"baseline": 3, "finetuned": 1, "generative": 2, "stn": 4},
        "P3": {"baseline": 3, "finetuned": 2, "generative": 1, "stn": 4}}
LETTERS = {"P1": {"A": "baseline", "B": "finetuned", "C": "generative", "D": "stn"},
           "P2": {"A": "finetuned", "B": "generative", "C": "stn", "D": "baseline"},
           "P3": {"A": "generative", "B": "stn", "C": "baseline", "D": "finetuned"}}


def _grids(assign: dict[str, str], tag: str) -> dict[str, list[ShownRow]]:
    return {L: [ShownRow(L, p, f"{tag}/{arm}/{p}", "00" * 32, "", None) for p in range(1, 5)]
            for L, arm in assign.items()}


def _answer(store: Store, sid: str, who: str, assign: dict[str, str]) -> None:
    for L, arm in assign.items():
        store.answer_relevance_grid(sid, L, [i + 1 for i, r in enumerate(REL[who][arm]) if r])
        store.answer_rating(sid, L, RATING[who][arm])
    store.answer_ranking(sid, {L: RANK[who][arm] for L, arm in assign.items()})


def make_db(path: Path) -> Path:
    """Through the Store the app uses: 3 included sessions, and one of each kind of exclusion."""
    store = Store(path, "hand")
    for who in ("P1", "P2", "P3"):
        sid = store.create_session(who, order_index=0, seed=0, assignments=LETTERS[who])
        store.save_preference(sid, "text", None, [], [])
        store.save_shown(sid, _grids(LETTERS[who], who))
        _answer(store, sid, who, LETTERS[who])
        if who == "P2":
            store.set_attention(sid, True)
        store.complete(sid)
    # withdrawn after answering everything (P1's answers reused)
    sid = store.create_session("W", order_index=1, seed=0, assignments=LETTERS["P1"])
    store.save_preference(sid, "text", None, [], [])
    store.save_shown(sid, _grids(LETTERS["P1"], "W"))
    _answer(store, sid, "P1", LETTERS["P1"])
    store.withdraw(sid)
    # incomplete: shown and half answered; and one that only consented
    sid = store.create_session("I", order_index=2, seed=0, assignments=LETTERS["P2"])
    store.save_preference(sid, "text", None, [], [])
    store.save_shown(sid, _grids(LETTERS["P2"], "I"))
    store.answer_rating(sid, "A", 10)
    store.create_session("C", order_index=3, seed=0, assignments=LETTERS["P3"])
    # failed the attention check
    sid = store.create_session("F", order_index=0, seed=0, assignments=LETTERS["P1"])
    store.save_preference(sid, "text", None, [], [])
    store.save_shown(sid, _grids(LETTERS["P1"], "F"))
    _answer(store, sid, "P2", LETTERS["P1"])
    store.set_attention(sid, False)
    store.complete(sid)
    # P1 again, later: only the first session of a participant counts
    sid = store.create_session("P1", order_index=1, seed=0, assignments=LETTERS["P2"])
    store.save_preference(sid, "text", None, [], [])
    store.save_shown(sid, _grids(LETTERS["P2"], "P1b"))
    _answer(store, sid, "P3", LETTERS["P2"])
    store.complete(sid)
    store.close()
    return path


@pytest.fixture(scope="module")
def hand(tmp_path_factory) -> A.Analysis:
    db = make_db(tmp_path_factory.mktemp("hand") / "study.sqlite")
    return A.analyze(A.load(db), replicates=500, seed=1)


def fig(a: A.Analysis, column: str) -> list[float]:
    return a.figures.set_index("arm").loc[ARMS, column].tolist()


def test_participants_included_and_excluded_with_reasons(hand):
    assert hand.n_included == 3
    assert hand.exclusions() == {"withdrawn": 1, "incomplete": 2, "failed attention check": 1,
                                 "repeat session of a participant": 1}
    included = hand.participants[hand.participants["included"]]["participant"].tolist()
    assert included == ["P1", "P2", "P3"]


def test_map4_as_the_paper_defines_it(hand):
    # AP@4 = (P@1 + P@2 + P@3 + P@4) / 4, in 48ths:
    # baseline   P1 [1,0,1,0]: (1 + 1/2 + 2/3 + 2/4)/4 = 32/48; P2 [0,1,0,0]: (0 + 1/2 + 1/3 + 1/4)/4 = 13/48;
    #            P3 [1,1,0,0]: (1 + 1 + 2/3 + 2/4)/4 = 38/48                       -> MAP = 83/144
    # finetuned  48/48; [1,1,0,1]: (1 + 1 + 2/3 + 3/4)/4 = 41/48; [1,0,1,1]: (1 + 1/2 + 2/3 + 3/4)/4 = 35/48 -> 124/144
    # generative [0,1,1,0]: (0 + 1/2 + 2/3 + 2/4)/4 = 20/48; [1,0,0,0]: 25/48; [1,1,1,0]: 45/48 -> 90/144
    # stn        0; [0,0,0,1]: (1/4)/4 = 3/48; [0,0,1,0]: (1/3 + 1/4)/4 = 7/48 -> 10/144
    assert fig(hand, "map4_paper") == pytest.approx([83 / 144, 124 / 144, 90 / 144, 10 / 144], abs=1e-12)


def test_map4_as_the_hm_kaggle_challenge_defines_it(hand):
    # AP@4 = sum of P@i over relevant i / min(4, #relevant):
    # baseline   [1,0,1,0]: (1 + 2/3)/2 = 5/6; [0,1,0,0]: (1/2)/1; [1,1,0,0]: (1 + 1)/2 = 1   -> (5/6+1/2+1)/3 = 7/9
    # finetuned  1; [1,1,0,1]: (1 + 1 + 3/4)/3 = 11/12; [1,0,1,1]: (1 + 2/3 + 3/4)/3 = 29/36     -> 49/54
    # generative [0,1,1,0]: (1/2 + 2/3)/2 = 7/12; [1,0,0,0]: 1; [1,1,1,0]: 1                     -> 31/36
    # stn        none relevant: 0; [0,0,0,1]: 1/4; [0,0,1,0]: 1/3                                 -> 7/36
    assert fig(hand, "map4_kaggle") == pytest.approx([7 / 9, 49 / 54, 31 / 36, 7 / 36], abs=1e-12)


def test_ratings_ranks_and_rating_variance(hand):
    # ratings baseline 6,5,3 | finetuned 9,8,8 | generative 7,7,9 | stn 2,3,3
    assert fig(hand, "avg_rating") == pytest.approx([14 / 3, 25 / 3, 23 / 3, 8 / 3])
    # variance, ddof 1: baseline ((4/3)^2 + (1/3)^2 + (5/3)^2)/2 = (42/9)/2 = 7/3; finetuned (4+1+1)/9/2 = 1/3;
    # generative (4+4+16)/9/2 = 4/3; stn (4+1+1)/9/2 = 1/3
    assert fig(hand, "rating_var") == pytest.approx([7 / 3, 1 / 3, 4 / 3, 1 / 3])
    # ranks baseline 3,3,3 | finetuned 1,1,2 | generative 2,2,1 | stn 4,4,4
    assert fig(hand, "avg_rank") == pytest.approx([3, 4 / 3, 5 / 3, 4])
    # wearable share: baseline (2+1+2)/12, finetuned (4+3+3)/12, generative (2+1+3)/12, stn (0+1+1)/12
    assert fig(hand, "relevant_share") == pytest.approx([5 / 12, 10 / 12, 6 / 12, 2 / 12])
    assert fig(hand, "n_map") == fig(hand, "n_rating") == fig(hand, "n_rank") == [3, 3, 3, 3]


def test_friedman_tests_and_kendalls_w(hand):
    fr = hand.friedman.set_index(["measure", "by"])
    # ratings ranked within participant (ties averaged): P1 b2 f4 g3 s1; P2 b2 f4 g3 s1; P3 b1.5 f3 g4 s1.5
    # R = 5.5, 11, 10, 3.5; sum R^2 = 263.5; chi2 = 12/(3*4*5)*263.5 - 3*3*5 = 7.7;
    # tie correction 1 - (2^3-2)/(3*4*(16-1)) = 29/30 -> chi2 = 7.7*30/29 = 231/29; W = chi2/(3*3) = 77/87
    r = fr.loc[("rating", "arm")]
    assert r["chi2"] == pytest.approx(231 / 29) and r["kendalls_w"] == pytest.approx(77 / 87)
    assert r["p"] == pytest.approx(stats.chi2.sf(231 / 29, 3)) and r["df"] == 3 and r["n"] == 3
    # ranks: R = 9, 4, 5, 12; sum R^2 = 266; chi2 = 0.2*266 - 45 = 8.2; W = 8.2/9 = 41/45
    r = fr.loc[("rank", "arm")]
    assert r["chi2"] == pytest.approx(8.2) and r["kendalls_w"] == pytest.approx(41 / 45)
    # AP (paper) ranked within participant: P1 b3 f4 g2 s1; P2 b2 f4 g3 s1; P3 b3 f2 g4 s1 -> R = 8, 10, 9, 3
    # sum R^2 = 254; chi2 = 0.2*254 - 45 = 5.8; W = 5.8/9 = 29/45
    r = fr.loc[("ap_paper", "arm")]
    assert r["chi2"] == pytest.approx(5.8) and r["kendalls_w"] == pytest.approx(29 / 45)
    assert hand.kendall["kendalls_w"].iloc[0] == pytest.approx(41 / 45)


def test_pairwise_wilcoxon_effect_sizes_and_p_values(hand):
    pw = hand.pairwise.set_index(["measure", "arm_a", "arm_b"])
    r = pw.loc[("rating", "baseline", "finetuned")]
    # differences 6-9, 5-8, 3-8 = -3, -3, -5: |d| ranks 1.5, 1.5, 3, all negative -> W+ 0, W- 6, r = -1
    # with ties and n <= 13 the p-value is the full sign-flip permutation: only 1 of 8 flips is as extreme
    # on each side -> p = 2/8
    assert (r["w_plus"], r["w_minus"], r["rank_biserial"], r["p"]) == (0, 6, -1, pytest.approx(0.25))
    assert r["mean_diff"] == pytest.approx(-11 / 3) and r["better"] == "finetuned" and r["n"] == 3
    r = pw.loc[("rating", "baseline", "stn")]
    # 6-2, 5-3, 3-3 = 4, 2, 0: the zero is dropped -> W+ = 1 + 2 = 3, r = 1, 2 non-zero pairs, p = 2 * 1/4
    assert (r["w_plus"], r["w_minus"], r["n_nonzero"], r["p"]) == (3, 0, 2, pytest.approx(0.5))
    r = pw.loc[("rating", "finetuned", "generative")]
    # 9-7, 8-7, 8-9 = 2, 1, -1: ranks 3, 1.5, 1.5 -> W+ 4.5, W- 1.5, r = 3/6; sign flips give W+ in
    # {0, 1.5, 1.5, 3, 3, 4.5, 4.5, 6}: P(W+ >= 4.5) = 3/8 -> p = 6/8
    assert (r["w_plus"], r["w_minus"], r["rank_biserial"], r["p"]) == (4.5, 1.5, 0.5, pytest.approx(0.75))
    # Holm over the six rating pairs: p = .25, .25, .5, .75, .25, .25 -> the smallest times 6 is above 1: all 1
    assert pw.loc["rating"]["p_holm"].tolist() == [1.0] * 6
    r = pw.loc[("rank", "baseline", "finetuned")]
    # ranks 3-1, 3-1, 3-2 = 2, 2, 1: positive = baseline placed lower -> favours finetuned
    assert (r["w_plus"], r["rank_biserial"], r["better"]) == (6, 1, "finetuned")


def test_small_sample_wilcoxon_p_values_are_scipys():
    rng = np.random.default_rng(5)
    for n in (3, 6, 9, 13, 14, 30):
        x, y = rng.integers(1, 6, size=n).astype(float), rng.integers(1, 6, size=n).astype(float)
        _, _, p, _ = A.wilcoxon_pair(x, y)
        if (x != y).any():
            assert p == pytest.approx(stats.wilcoxon(x - y, method="auto").pvalue, rel=1e-9), n


def test_holm_adjustment():
    # sorted .005 .01 .03 .04 times 4, 3, 2, 1 = .02 .03 .06 .04 -> running max .02 .03 .06 .06
    assert A.holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert A.holm([0.2, 0.9]).tolist() == pytest.approx([0.4, 0.9])  # .2 * 2; .9 * 1


def test_position_effects_and_counterbalancing(hand):
    pos = hand.positions.set_index("letter")
    # letter A showed P1 baseline 6, P2 finetuned 8, P3 generative 9 -> 23/3; D: P1 stn 2, P2 baseline 5,
    # P3 finetuned 8 -> 5
    assert pos.loc["A", "rating"] == pytest.approx(23 / 3) and pos.loc["D", "rating"] == pytest.approx(5)
    assert hand.arm_letter_counts.loc["baseline"].tolist() == [1, 0, 1, 1]
    assert hand.arm_letter_counts.to_numpy().sum() == 12


def test_plackett_luce_recovers_the_generating_worths():
    # 4000 rankings drawn from a Plackett-Luce model with worths .5 .3 .15 .05 (Gumbel-max sampling)
    rng = np.random.default_rng(3)
    worth = np.array([0.5, 0.3, 0.15, 0.05])
    keys = np.log(worth) + rng.gumbel(size=(4000, 4))
    order = np.argsort(-keys, axis=1)
    orders, alive, chosen = A._ranking_patterns(4)
    index = {o: i for i, o in enumerate(orders)}
    counts = np.bincount([index[tuple(o)] for o in order], minlength=len(orders))
    assert A.plackett_luce(counts, alive, chosen) == pytest.approx(worth, abs=0.02)


# --- the interchange CSV: ties, missing answers, a withdrawn participant -------------------------------
CSV_ROWS = [  # participant, arm, relevance in display order, rating, rank, letter
    ("Q1", "x", "1100", 8, 1, "A"), ("Q1", "y", "0000", 3, 2, "B"), ("Q1", "z", "1000", 5, 2, "C"),
    ("Q2", "x", "0101", 6, 2, "B"), ("Q2", "y", "1110", None, 1, "C"), ("Q2", "z", "0010", 4, 3, "A"),
    ("Q3", "x", "1010", 7, 1, "C"), ("Q3", "y", "0100", 5, 3, "A"), ("Q3", "z", "1?11", 9, 1, "B"),
    ("Q4", "x", "0001", 5, None, "A"), ("Q4", "y", "1000", 6, 1, "B"), ("Q4", "z", "0000", 2, 2, "C"),
]


def write_csv(path: Path) -> Path:
    lines = ["participant,arm,position,relevant,rating,rank,letter,status"]
    for who, arm, rel, rating, rank, letter in CSV_ROWS:
        for pos, mark in enumerate(rel, 1):
            lines.append(",".join([who, arm, str(pos), "" if mark == "?" else mark,
                                   "" if rating is None else str(rating), "" if rank is None else str(rank),
                                   letter, "completed"]))
    lines += [f"Q5,{arm},{pos},,,,,withdrawn" for arm in "xyz" for pos in range(1, 5)]
    lines += ["Q6,,,,,,,incomplete"]  # a participant listed without any grid
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def csv_analysis(tmp_path_factory) -> A.Analysis:
    path = write_csv(tmp_path_factory.mktemp("csv") / "answers.csv")
    return A.analyze(A.load(path), replicates=300, seed=0)


def test_csv_with_ties_and_missing_answers(csv_analysis):
    a = csv_analysis
    f = a.figures.set_index("arm")
    assert a.n_included == 4 and a.exclusions() == {"withdrawn": 1, "incomplete": 1}
    # MAP paper: x: 19/24 (38/48) + [0,1,0,1] (0 + 1/2 + 1/3 + 2/4)/4 = 16/48 + 32/48 + [0,0,0,1] 3/48 = 89/48 -> /4
    #            y: 0 + [1,1,1,0] 45/48 + [0,1,0,0] 13/48 + [1,0,0,0] 25/48 = 83/48 -> /4
    #            z: Q3's grid has an unanswered mark, so no AP: 25/48 + 7/48 + 0 = 32/48 -> /3 = 2/9
    assert f["map4_paper"].tolist() == pytest.approx([89 / 192, 83 / 192, 2 / 9])
    # Kaggle: x 1 + 1/2 + 5/6 + 1/4 = 31/12 -> 31/48; y 0 + 1 + 1/2 + 1 -> 5/8; z 1 + 1/3 + 0 -> 4/9
    assert f["map4_kaggle"].tolist() == pytest.approx([31 / 48, 5 / 8, 4 / 9])
    assert f["n_map"].tolist() == [4, 4, 3]
    # ratings x 8,6,7,5 -> 6.5, var (2.25+.25+.25+2.25)/3 = 5/3; y 3,-,5,6 -> 14/3, var (25+1+16)/9/2 = 7/3;
    # z 5,4,9,2 -> 5, var (0+1+16+9)/3 = 26/3
    assert f["avg_rating"].tolist() == pytest.approx([6.5, 14 / 3, 5])
    assert f["rating_var"].tolist() == pytest.approx([5 / 3, 7 / 3, 26 / 3])
    assert f["n_rating"].tolist() == [4, 3, 4]
    # ranks: Q1 1,2,2 -> 1, 2.5, 2.5; Q2 2,1,3; Q3 1,3,1 -> 1.5, 3, 1.5; Q4 has no rank for x: left out
    # x (1 + 2 + 1.5)/3 = 1.5; y (2.5 + 1 + 3)/3 = 13/6; z (2.5 + 3 + 1.5)/3 = 7/3
    assert f["avg_rank"].tolist() == pytest.approx([1.5, 13 / 6, 7 / 3])
    assert f["n_rank"].tolist() == [3, 3, 3]
    assert a.missing == {"grids with an unanswered relevance mark": 1, "participants missing a rating": 1,
                         "participants with an incomplete ranking": 1,
                         "participants shown only some arms (ranking left out)": 0, "participants with tied ranks": 2}


def test_csv_tests_drop_participants_with_missing_answers(csv_analysis):
    fr = csv_analysis.friedman.set_index(["measure", "by"])
    # ratings: Q2 has no rating for y -> n = 3 (Q1, Q3, Q4); within-participant ranks x3 y1 z2 | x2 y1 z3 |
    # x2 y3 z1 -> R = 7, 5, 6; chi2 = 12/(3*3*4) * 110 - 3*3*4 = 2/3; W = (2/3)/(3*2) = 1/9
    r = fr.loc[("rating", "arm")]
    assert (r["n"], r["chi2"], r["kendalls_w"]) == (3, pytest.approx(2 / 3), pytest.approx(1 / 9))
    # ranks (Q1..Q3): R = 4.5, 6.5, 7; sum R^2 = 111.5 -> 111.5/3 - 36 = 7/6; ties: two pairs, each 2^3-2 = 6
    # -> correction 1 - 12/(3*3*8) = 5/6 -> chi2 = 7/5; W = 1.4/6 = 7/30
    r = fr.loc[("rank", "arm")]
    assert (r["n"], r["chi2"], r["kendalls_w"]) == (3, pytest.approx(1.4), pytest.approx(7 / 30))
    assert set(csv_analysis.pairwise.query("measure == 'rating'")["n"]) == {3}
    # the tied rankings leave one strict ranking (Q2) for Plackett-Luce
    assert csv_analysis.settings["ranking_strict"] == 1


def test_rank_distribution_splits_ties_evenly(csv_analysis):
    shares = csv_analysis.rank_shares
    # x: Q1 1st, Q2 2nd, Q3 tied 1st/2nd -> 1st (1 + .5)/3, 2nd (1 + .5)/3
    assert shares.loc["x"].tolist() == pytest.approx([0.5, 0.5, 0])
    # y: Q1 tied 2nd/3rd, Q2 1st, Q3 3rd -> 1/3, 1/6, 1/2
    assert shares.loc["y"].tolist() == pytest.approx([1 / 3, 1 / 6, 1 / 2])
    assert shares.sum(axis=1).tolist() == pytest.approx([1, 1, 1])


# --- bootstrap -----------------------------------------------------------------------------------------
def test_draw_counts_are_the_participants_a_resample_holds():
    from study.intervals import draw_counts
    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, 3))
    x[rng.random(x.shape) < 0.2] = np.nan
    idx = rng.integers(0, 37, size=(50, 37))
    w = draw_counts(idx, 37)
    blocks = A._Blocks({"x": x})
    boot = blocks.resampled(w)
    for b in range(50):
        sample = x[idx[b]]
        assert boot.sums("x")[b] == pytest.approx(np.nansum(sample, axis=0))
        assert boot.counts("x")[b].tolist() == (~np.isnan(sample)).sum(axis=0).tolist()
        assert boot.var("x")[b] == pytest.approx(np.nanvar(sample, axis=0, ddof=1))


def test_bootstrap_cis_bracket_the_estimate_and_are_reproducible(csv_analysis, tmp_path):
    f = csv_analysis.figures
    for name, _, _ in A.FIGURES:
        assert (f[f"{name}_ci_low"] <= f[name] + 1e-12).all() and (f[name] <= f[f"{name}_ci_high"] + 1e-12).all()
    again = A.analyze(A.load(write_csv(tmp_path / "a.csv")), replicates=300, seed=0)
    pd.testing.assert_frame_equal(again.figures, f)
    other = A.analyze(A.load(write_csv(tmp_path / "b.csv")), replicates=300, seed=1)
    ci = [c for c in f.columns if c.endswith(("_ci_low", "_ci_high"))]
    assert not np.allclose(other.figures[ci], f[ci])


def test_bootstrap_ci_is_scipys_bca_for_a_mean_and_a_variance():
    rng = np.random.default_rng(2)
    ratings = rng.integers(1, 11, size=(60, 2)).astype(float)
    long = pd.DataFrame([
        {"participant": f"p{i:02d}", "arm": arm, "position": pos, "relevant": 1, "rating": ratings[i, j],
         "rank": j + 1} for i in range(60) for j, arm in enumerate("ab") for pos in range(1, 5)])
    a = A.analyze(A.from_table(long), replicates=4000, seed=0)
    assert a.settings["interval_method"].startswith("BCa; ")  # two arms ranked the same way by all: no spread
    f = a.figures.set_index("arm").loc["a"]
    # scipy on the ratings themselves (not on indices): same draws, same BCa interval. The variance is
    # computed from sums here and by np.var there: replicates that tie the estimate in exact arithmetic
    # can fall either side of it in floating point, which moves BCa's bias correction a hair.
    for name, statistic, tol in (("avg_rating", np.mean, 1e-9),
                                 ("rating_var", lambda x, axis: np.var(x, axis=axis, ddof=1), 0.02)):
        ref = stats.bootstrap((ratings[:, 0],), statistic, n_resamples=4000, method="BCa", rng=0).confidence_interval
        assert (f[f"{name}_ci_low"], f[f"{name}_ci_high"]) == pytest.approx((ref.low, ref.high), abs=tol)
    pct = stats.bootstrap((ratings[:, 0],), np.mean, n_resamples=4000, method="percentile", rng=0).confidence_interval
    assert f["avg_rating_ci_low"] != pytest.approx(pct.low, abs=1e-6)  # BCa, not the percentile interval


# --- input errors a user can make ----------------------------------------------------------------------
@pytest.mark.parametrize("edit, message", [
    (lambda t: t.drop(columns="rank"), "missing column"),
    (lambda t: t.assign(rating=t["rating"].replace("8", "11")), "from 1 to 10"),
    (lambda t: t.assign(rating=t["rating"].replace("8", "eight")), "'rating'"),
    (lambda t: t.assign(position=t["position"].replace("4", "5")), "'position'"),
    (lambda t: pd.concat([t, t.iloc[:1]]), "row 63 .*a second row for position 1"),
    (lambda t: t.assign(rating=np.where(t.index == 0, "2", t["rating"])), "differs between the rows"),
    (lambda t: t.assign(letter=t["letter"].replace("A", "Z")), "letter"),
])
def test_a_malformed_csv_is_refused_with_a_message_naming_the_problem(tmp_path, edit, message):
    table = pd.read_csv(write_csv(tmp_path / "ok.csv"), dtype=str, keep_default_na=False)
    bad = tmp_path / "bad.csv"
    edit(table).to_csv(bad, index=False)
    with pytest.raises(A.AnalysisInputError, match=message):
        A.load(bad)


def test_unknown_files_are_refused(tmp_path):
    with pytest.raises(A.AnalysisInputError, match="does not exist"):
        A.load(tmp_path / "nope.sqlite")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(A.AnalysisInputError, match="unknown file type"):
        A.load(tmp_path / "x.txt")
    (tmp_path / "junk.sqlite").write_text("not a database")
    with pytest.raises(A.AnalysisInputError, match="not a Dress-UP study database|cannot open"):
        A.load(tmp_path / "junk.sqlite")


def test_a_database_with_several_studies_needs_a_study_name(tmp_path):
    db = make_db(tmp_path / "study.sqlite")
    other = Store(db, "pilot")
    sid = other.create_session("Z", order_index=0, seed=0, assignments=LETTERS["P1"])
    other.close()
    with pytest.raises(A.AnalysisInputError, match="several studies.*--study-name"):
        A.load(db)
    assert A.analyze(A.load(db, study="hand"), replicates=50).n_included == 3
    pilot = A.participants_table(A.load(db, study="pilot"))
    assert pilot[["unit", "reason"]].values.tolist() == [[sid, "incomplete"]]


# --- outputs and command line --------------------------------------------------------------------------
def test_report_tables_and_plots_are_written(hand, tmp_path):
    pngs = A.plot_all(hand, tmp_path)
    A.write_tables(hand, tmp_path)
    report = A.report_markdown(hand, pngs)
    assert {p.name for p in pngs} == {"map4.png", "ratings.png", "ranks.png", "positions.png"}
    import matplotlib.image as mpimg
    for p in pngs:
        img = mpimg.imread(p)
        assert img.shape[0] > 300 and img.shape[1] > 600 and img[..., :3].std() > 0.05  # not blank
    arms = pd.read_csv(tmp_path / "arms.csv")
    assert arms["map4_paper"].tolist() == pytest.approx([83 / 144, 124 / 144, 90 / 144, 10 / 144])
    assert "| baseline | 0.576 [" in report and "1 excluded (withdrawn)" in report
    assert report.index("For orientation only") > report.index("## Methods")  # the paper's numbers stay apart
    assert "0.417" not in pd.read_csv(tmp_path / "arms.csv").to_string()


def test_command_line_as_a_script_prints_json(tmp_path):
    csv = write_csv(tmp_path / "answers.csv")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, str(ROOT / "study" / "analyze.py"), str(csv), "--json", "--no-plots",
                          "--replicates", "200", "--out", str(tmp_path / "res")],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["participants"] == {"included": 4, "excluded": {"withdrawn": 1, "incomplete": 1}}
    assert result["arms"]["x"]["avg_rating"] == 6.5 and len(result["arms"]["x"]["avg_rating_ci"]) == 2
    assert (tmp_path / "res" / "report.md").is_file()


def test_the_analysis_imports_neither_torch_nor_the_app_nor_the_library(tmp_path):
    csv = write_csv(tmp_path / "answers.csv")
    code = ("import sys; from study.analyze import main;"
            "main([sys.argv[1], '--out', sys.argv[2], '--replicates', '50', '--no-plots']);"
            "bad = [m for m in ('torch', 'gradio', 'dressup', 'open_clip', 'transformers') if m in sys.modules];"
            "assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code, str(csv), str(tmp_path / "res")], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "res" / "report.md").is_file()


def test_command_line_reports_bad_input_without_a_traceback(tmp_path, capsys):
    assert A.main([str(tmp_path / "missing.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
