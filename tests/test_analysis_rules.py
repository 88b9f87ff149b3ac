"""The edge cases a reviewer hits: every rule the report states is the rule the code follows, and every
malformed input is refused with one clean ``error:`` line naming the row, the column and the fix."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study import analyze as A

ROOT = Path(__file__).resolve().parent.parent


def rows(spec: dict[str, dict[str, tuple[int, int]]], letters: bool = False) -> pd.DataFrame:
    """participant -> arm -> (rating, rank); every image relevant; letters A, B, ... in arm order."""
    out = []
    for who, arms in spec.items():
        for j, (arm, (rating, rank)) in enumerate(arms.items()):
            for pos in range(1, 5):
                r = {"participant": who, "arm": arm, "position": pos, "relevant": 1, "rating": rating, "rank": rank}
                if letters:
                    r["letter"] = "ABCD"[j]
                out.append(r)
    return pd.DataFrame(out)


def write(tmp_path: Path, table: pd.DataFrame, name: str = "s.csv") -> Path:
    path = tmp_path / name
    table.to_csv(path, index=False)
    return path


def refused(tmp_path: Path, table: pd.DataFrame, capsys) -> str:
    """Run the command line on the table; it must exit 2 with one error line and no traceback."""
    assert A.main([str(write(tmp_path, table)), "--out", str(tmp_path / "out"), "--no-plots",
                   "--replicates", "50"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


# --- the rule for partial rankings ---------------------------------------------------------------------
def test_a_participant_shown_only_some_arms_is_left_out_of_rank_figures_and_counted():
    # P1 ranks a..d 4,3,2,1; P2 saw only a..c and ranks them 3,2,1. The rule: a ranking that misses an arm
    # is left out of rank figures, so c's average rank is P1's 2 (not (2 + 1)/2 = 1.5).
    table = rows({"P1": {"a": (3, 4), "b": (4, 3), "c": (5, 2), "d": (6, 1)},
                  "P2": {"a": (3, 3), "b": (4, 2), "c": (5, 1)}})
    a = A.analyze(A.from_table(table), replicates=50)
    f = a.figures.set_index("arm")
    assert f.loc["c", "avg_rank"] == 2.0 and f["n_rank"].tolist() == [1, 1, 1, 1]
    assert a.missing["participants shown only some arms (ranking left out)"] == 1
    assert f.loc["c", "avg_rating"] == 5.0 and f.loc["a", "n_rating"] == 2  # their ratings still count
    report = A.report_markdown(a, [])
    assert "participants shown only some arms (ranking left out): 1" in report
    assert A.RULES["ranking"] in report


def test_a_ranking_with_an_unranked_arm_is_left_out_whole():
    table = rows({"P1": {"a": (3, 1), "b": (4, 2), "c": (5, 3)}, "P2": {"a": (3, 2), "b": (4, 1), "c": (5, 3)}})
    table.loc[(table["participant"] == "P2") & (table["arm"] == "c"), "rank"] = None
    a = A.analyze(A.from_table(table), replicates=50)
    assert a.figures["avg_rank"].tolist() == [1, 2, 3]  # P1 only, not P2's ranks of a and b
    assert a.missing["participants with an incomplete ranking"] == 1


def test_every_rule_the_report_states_is_in_the_report_and_the_readme():
    a = A.analyze(A.from_table(rows({"P1": {"a": (3, 1), "b": (4, 2)}, "P2": {"a": (5, 2), "b": (4, 1)}})),
                  replicates=50)
    report = A.report_markdown(a, [])
    for key in ("ranking", "missing", "relevance", "ties"):
        assert A.RULES[key] in report
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "counts in the other arms' figures" not in readme  # the old, wrong rule for missing ranks
    assert "left out of every rank figure" in readme
    assert "never their spacing" not in report and "interval scale" in report


def test_favours_names_an_arm_only_when_the_difference_is_significant():
    rng = np.random.default_rng(0)
    spec = {f"P{i}": {"alpha": (int(rng.integers(4, 8)), 1 + i % 2), "beta": (int(rng.integers(4, 8)), 2 - i % 2)}
            for i in range(12)}
    a = A.analyze(A.from_table(rows(spec)), replicates=50)
    report = A.report_markdown(a, [])
    for r in a.pairwise.itertuples():
        line = next(x for x in report.splitlines() if x.startswith(f"| {A.MEASURE_LABELS[r.measure]} | alpha − beta"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[7] == (r.better if r.p_holm < 0.05 else "–"), (r.p_holm, cells)
    assert (a.pairwise["p_holm"] >= 0.05).any()  # the case the rule is about occurs here


def test_status_is_read_whatever_its_case():
    table = rows({"P1": {"a": (3, 1), "b": (4, 2)}, "P2": {"a": (5, 2), "b": (4, 1)}})
    table["status"] = "Completed"
    assert A.analyze(A.from_table(table), replicates=50).n_included == 2
    table.loc[table["participant"] == "P2", "status"] = " WITHDRAWN"
    a = A.analyze(A.from_table(table), replicates=50)
    assert a.n_included == 1 and a.exclusions() == {"withdrawn": 1}


def test_a_five_arm_study_ranks_one_to_five():
    spec = {f"P{i}": {arm: (5, (j + i) % 5 + 1) for j, arm in enumerate("abcde")} for i in range(5)}
    a = A.analyze(A.from_table(rows(spec)), replicates=50)
    assert a.figures["avg_rank"].tolist() == [3.0] * 5 and a.figures["n_rank"].tolist() == [5] * 5


# --- malformed input: one clean error line, exit 2 -------------------------------------------------------
def test_an_empty_csv_is_refused_cleanly(tmp_path, capsys):
    (tmp_path / "empty.csv").write_bytes(b"")
    assert A.main([str(tmp_path / "empty.csv"), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "header row" in err and "Traceback" not in err


def test_a_fractional_rating_is_refused_naming_row_column_and_fix(tmp_path, capsys):
    table = rows({"P1": {"a": (3, 1), "b": (4, 2)}, "P2": {"a": (5, 2), "b": (4, 1)}}).astype({"rating": float})
    table.loc[5, "rating"] = 7.5
    err = refused(tmp_path, table, capsys)
    assert "row 7 (participant 'P1', arm 'b'), column 'rating'" in err and "whole number from 1 to 10" in err


def test_ranks_beyond_the_number_of_arms_are_refused(tmp_path, capsys):
    table = rows({"P1": {"a": (3, 3), "b": (4, 4)}, "P2": {"a": (5, 1), "b": (4, 2)}})
    err = refused(tmp_path, table, capsys)
    assert "row 2 (participant 'P1', arm 'a'), column 'rank'" in err and "from 1 to 2" in err
    assert "this study has 2 arms" in err


def test_two_arms_under_one_letter_are_refused(tmp_path, capsys):
    table = rows({"P1": {"a": (3, 1), "b": (4, 2)}, "P2": {"a": (5, 2), "b": (4, 1)}}, letters=True)
    table.loc[(table["participant"] == "P2") & (table["arm"] == "b"), "letter"] = "A"
    err = refused(tmp_path, table, capsys)
    assert "row 14 (participant 'P2', arm 'b'), column 'letter'" in err and "already holds arm 'a'" in err


# --- JSON ------------------------------------------------------------------------------------------------
def test_json_keeps_small_p_values_and_has_every_figure_of_the_report():
    rng = np.random.default_rng(1)
    spec = {f"P{i:02d}": {arm: (int(np.clip(3 + 2 * j + rng.integers(0, 2), 1, 10)), j + 1)
                          for j, arm in enumerate("abcd")} for i in range(30)}
    a = A.analyze(A.from_table(rows(spec, letters=True)), replicates=100)
    out = json.loads(json.dumps(A.to_json(a)))
    p = out["friedman"]["rank_by_arm"]["p"]
    assert 0 < p < 1e-6 and p == pytest.approx(a.friedman.set_index(["measure", "by"]).loc[("rank", "arm"), "p"],
                                                rel=1e-5)
    assert len(out["pairwise"]) == 3 * 6 and {"p", "p_holm", "ci_low", "rank_biserial"} <= set(out["pairwise"][0])
    assert len(out["plackett_luce"]) == 4 and "worth" in out["plackett_luce"][0]
    assert out["kendalls_w"]["kendalls_w"] == pytest.approx(1.0)
    assert set(out["mixed_models"]) == {"ap_paper", "rating"}
    assert out["bootstrap"]["interval_method"].startswith("BCa")
    assert len(out["positions"]) == 4 and "missing" in out
    assert sum(out["arm_letter_counts"]["a"].values()) == 30


# --- one participant: no interval, and the plots say so --------------------------------------------------
def test_one_participant_has_no_intervals(tmp_path):
    a = A.analyze(A.from_table(rows({"P1": {"a": (3, 1), "b": (4, 2)}}, letters=True)), replicates=50)
    assert a.figures.filter(like="_ci_").isna().all().all()
    assert a.settings["interval_method"].startswith("none")
    from study.plots import participants
    assert participants(1) == "1 participant" and participants(5) == "5 participants"
    assert len(A.plot_all(a, tmp_path)) == 4
