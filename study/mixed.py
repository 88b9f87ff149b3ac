"""One model for all the data at once: a linear mixed model per measure (statsmodels ``MixedLM``).

    value_ij = intercept + arm_j + letter_(letter of j for i) + u_i + e_ij,   u_i ~ N(0, tau^2), e_ij ~ N(0, sigma^2)

for participant i and arm j, fitted by REML, with arm and letter (the grid's place on the page) as fixed
effects and a random intercept per participant. Reviewers of within-subject studies ask for it because,
unlike the Friedman and Wilcoxon tests, it keeps a participant who missed one answer (their other answers
still inform the arm effects), estimates arm effects adjusted for position, and says how much of the
spread is between participants (the intraclass correlation).

Its assumptions, which the report states beside it: the measure is on an interval scale (a step from 3
to 4 is worth a step from 8 to 9), residuals and participant effects are normal with one variance for
every arm, and participants are independent. AP@4 and ratings are bounded, so these hold only
approximately; the nonparametric tests beside it do not need them.

statsmodels is imported when a model is fitted: without it the analysis still runs and the report says
that the model was skipped.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats


@dataclass
class MixedFit:
    """A fitted model, or the reason there is none (``note``)."""

    measure: str
    n_participants: int = 0
    n_observations: int = 0
    terms: pd.DataFrame = field(default_factory=pd.DataFrame)  # term, estimate, se, ci_low, ci_high, p
    participant_var: float = math.nan
    residual_var: float = math.nan
    note: str = ""

    @property
    def icc(self) -> float:
        """Share of the variance that lies between participants."""
        total = self.participant_var + self.residual_var
        return self.participant_var / total if total > 0 else math.nan


def design(table: pd.DataFrame, arms: list[str], letters: list[str]) -> tuple[np.ndarray, list[str]]:
    """Fixed-effect columns: intercept, one column per arm but the first (the reference), one per letter
    but the first. Returns the matrix and the term names ('arm finetuned − baseline', 'letter B − A')."""
    columns, names = [np.ones(len(table))], ["intercept"]
    for arm in arms[1:]:
        columns.append((table["arm"] == arm).to_numpy(float))
        names.append(f"arm {arm} − {arms[0]}")
    for letter in letters[1:]:
        columns.append((table["letter"] == letter).to_numpy(float))
        names.append(f"letter {letter} − {letters[0]}")
    return np.column_stack(columns), names


def fit_mixed(per_participant: pd.DataFrame, measure: str, arms: list[str], confidence: float = 0.95) -> MixedFit:
    """Fit the model to ``per_participant`` (columns unit, arm, letter, and ``measure``); rows without a
    value are left out, the participant's other rows stay."""
    table = per_participant[["unit", "arm", "letter", measure]].dropna(subset=[measure])
    table = table[table["arm"].isin(arms)]
    n = table["unit"].nunique()
    fit = MixedFit(measure, n, len(table))
    letters = sorted(set(table["letter"]) - {""})
    if letters and (table["letter"] == "").any():
        letters = []  # some grids have no letter: the model leaves position out rather than guess
    x, names = design(table, arms, letters)
    if n < 3 or len(table) <= x.shape[1] + n or np.linalg.matrix_rank(x) < x.shape[1]:
        fit.note = "too few participants or answers to separate arm, letter and participant effects"
        return fit
    try:
        from statsmodels.regression.mixed_linear_model import MixedLM
    except ImportError:
        fit.note = "statsmodels is not installed (pip install -r requirements.txt)"
        return fit
    y = table[measure].to_numpy(float)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = MixedLM(y, x, groups=table["unit"].to_numpy()).fit(reml=True)
        except (np.linalg.LinAlgError, ValueError) as e:
            fit.note = f"the model could not be fitted ({e})"
            return fit
    z = stats.norm.ppf(0.5 + confidence / 2)
    k = x.shape[1]
    estimate, se = np.asarray(result.fe_params)[:k], np.asarray(result.bse_fe)[:k]
    with np.errstate(invalid="ignore", divide="ignore"):
        p = 2 * stats.norm.sf(np.abs(estimate / se))
    fit.terms = pd.DataFrame({"term": names, "estimate": estimate, "se": se, "ci_low": estimate - z * se,
                              "ci_high": estimate + z * se, "p": p})
    fit.participant_var = float(np.asarray(result.cov_re)[0, 0])
    fit.residual_var = float(result.scale)
    notes = sorted({str(w.message).split("\n")[0] for w in caught if "converge" in str(w.message).lower()})
    if fit.participant_var < 1e-6 * max(fit.residual_var, 1e-12):
        notes.append("the participant variance is estimated at zero (on the boundary)")
    if not result.converged:
        notes.insert(0, "the optimiser did not converge")
    fit.note = "; ".join(notes)
    return fit


def mixed_table(fits: list[MixedFit]) -> pd.DataFrame:
    """All fits as one long table (for CSV and JSON)."""
    rows = []
    for f in fits:
        for r in f.terms.itertuples():
            rows.append({"measure": f.measure, "term": r.term, "estimate": r.estimate, "se": r.se,
                         "ci_low": r.ci_low, "ci_high": r.ci_high, "p": r.p})
        rows.append({"measure": f.measure, "term": "participant variance", "estimate": f.participant_var})
        rows.append({"measure": f.measure, "term": "residual variance", "estimate": f.residual_var})
    return pd.DataFrame(rows, columns=["measure", "term", "estimate", "se", "ci_low", "ci_high", "p"])
