"""The mixed model (study.mixed) recovers known effects, agrees with an independent computation, and
appears in the report and in --json."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from study import analyze as A
from study.mixed import design, fit_mixed

ARMS = ["a", "b", "c", "d"]
ARM_EFFECT = {"a": 0.0, "b": 0.10, "c": -0.20, "d": 0.15}
LETTER_EFFECT = {"A": 0.0, "B": 0.05, "C": 0.0, "D": -0.05}


def generated(n: int, seed: int = 0, participant_sd: float = 0.1, residual_sd: float = 0.1) -> pd.DataFrame:
    """n participants x 4 arms, letters rotated (a Latin square), known arm, letter and participant effects."""
    rng = np.random.default_rng(seed)
    u = rng.normal(0, participant_sd, n)
    rows = [{"unit": f"u{i:03d}", "arm": arm, "letter": "ABCD"[(i + j) % 4],
             "v": 0.5 + ARM_EFFECT[arm] + LETTER_EFFECT["ABCD"[(i + j) % 4]] + u[i] + rng.normal(0, residual_sd)}
            for i in range(n) for j, arm in enumerate(ARMS)]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def fitted():
    table = generated(400)
    return table, fit_mixed(table, "v", ARMS)


def test_the_mixed_model_recovers_known_arm_letter_and_participant_effects(fitted):
    _, fit = fitted
    est = fit.terms.set_index("term")
    for arm in ARMS[1:]:
        r = est.loc[f"arm {arm} − a"]
        assert r["estimate"] == pytest.approx(ARM_EFFECT[arm], abs=0.025)
        assert r["ci_low"] < ARM_EFFECT[arm] < r["ci_high"] or abs(r["estimate"] - ARM_EFFECT[arm]) < 3 * r["se"]
    for letter in "BCD":
        assert est.loc[f"letter {letter} − A", "estimate"] == pytest.approx(LETTER_EFFECT[letter], abs=0.025)
    assert fit.participant_var == pytest.approx(0.01, rel=0.3) and fit.residual_var == pytest.approx(0.01, rel=0.2)
    assert fit.icc == pytest.approx(0.5, abs=0.1)


def test_the_mixed_model_agrees_with_the_within_participant_least_squares_reference(fitted):
    # Every participant sees every arm and every letter once, so arm and letter are orthogonal to the
    # participant: REML's fixed effects equal ordinary least squares with a dummy per participant (numpy),
    # and its residual variance equals that fit's residual mean square (balanced one-way ANOVA).
    table, fit = fitted
    x, _ = design(table, ARMS, list("ABCD"))
    dummies = pd.get_dummies(table["unit"]).to_numpy(float)
    xx = np.column_stack([x[:, 1:], dummies])
    y = table["v"].to_numpy()
    beta, ss, rank, _ = np.linalg.lstsq(xx, y, rcond=None)
    assert fit.terms["estimate"].to_numpy()[1:] == pytest.approx(beta[:6], abs=1e-6)
    assert fit.residual_var == pytest.approx(ss[0] / (len(y) - rank), rel=1e-4)


def test_a_participant_missing_an_answer_keeps_their_other_answers(fitted):
    table, _ = fitted
    fit = fit_mixed(table.drop(index=[0]), "v", ARMS)  # u000 has no answer for arm a
    assert fit.n_participants == 400 and fit.n_observations == 1599


def test_too_little_data_is_a_note_not_a_crash():
    fit = fit_mixed(generated(2), "v", ARMS)
    assert fit.terms.empty and "too few" in fit.note


def test_the_model_is_in_the_report_the_tables_and_json(tmp_path):
    from study import simulate
    sim = simulate.generate(simulate.PAPER_LIKE_EFFECTS, 24, seed=3)
    a = A.analyze(A.from_table(sim.to_long()), replicates=100)
    assert [f.measure for f in a.models] == ["ap_paper", "rating"]
    report = A.report_markdown(a, [])
    assert "### Mixed model: all answers at once" in report and "intraclass correlation" in report
    assert "| arm generative − baseline |" in report and "| letter B − A |" in report
    out = A.to_json(a)["mixed_models"]["rating"]
    est = {t["term"]: t["estimate"] for t in out["terms"]}
    assert est["arm stn − baseline"] < 0 < est["arm generative − baseline"]  # the simulated truth's signs
    A.write_tables(a, tmp_path)
    assert "arm stn − baseline" in (tmp_path / "mixed_models.csv").read_text()
