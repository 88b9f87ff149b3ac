"""The analysis' result (``Analysis``) and the names and rules that every output of it shares.

``study.analyze`` fills an ``Analysis``; the report, the CSV tables, ``--json`` (``study.report``) and the
plots (``study.plots``) read it. It lives apart from both sides so that the outputs depend on the record, not
on the code that computes it. ``MEASURES`` are what the tests compare, ``RULES`` the rules the report states
word for word (tests/test_analysis_rules.py checks that the code follows each).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from study.answers import EXCLUSION_ORDER
from study.mixed import MixedFit

MEASURES = ("rating", "rank", "ap_paper")  # what the tests compare; rank: lower is better
MEASURE_LABELS = {"rating": "rating (1-10)", "rank": "rank (1 = best)", "ap_paper": "AP@4 (paper)"}
MODEL_MEASURES = ("ap_paper", "rating")  # fitted by the mixed model (study.mixed) beside the tests
# The rules the report states, word for word; the code follows each (tests/test_analysis_rules.py).
RULES = {
    "ranking": "a ranking counts only when it ranks every arm of the study: a participant who left an arm"
               " unranked, or was shown only some arms, is left out of every rank figure and test (average rank,"
               " rank shares, Kendall's W, Plackett–Luce), while their ratings and AP still count",
    "missing": "a participant missing a rating or an AP for an arm is left out of that measure's tests (Friedman"
               " and all pairwise tests use the same complete participants) but counts in the other arms' means",
    "relevance": "a grid with an unanswered relevance mark has no AP",
    "ties": "tied ranks are replaced by average ranks",
    "favours": "'favours' names an arm only where the Holm-corrected p is below the significance level",
}
BOOTSTRAP_TEXT = ("participants resampled with replacement, all arms of a participant kept together;"
                  " bias-corrected and accelerated (BCa) intervals by scipy.stats.bootstrap")


@dataclass
class Analysis:
    """Everything the report, the CSV tables, the plots and ``--json`` are made from."""

    source: str
    arms: list[str]
    participants: pd.DataFrame  # per unit: participant, status, included, reason
    per_participant: pd.DataFrame  # included unit x arm: ap_paper, ap_kaggle, rating, rank, letter
    figures: pd.DataFrame  # per arm, point estimates with ci_low/ci_high columns
    friedman: pd.DataFrame
    pairwise: pd.DataFrame
    kendall: pd.DataFrame  # agreement of rankings (W with CI)
    plackett_luce: pd.DataFrame
    positions: pd.DataFrame  # per letter: rating, rank, MAP with CIs
    arm_letter_counts: pd.DataFrame
    rating_counts: pd.DataFrame  # arm x rating 1..10: number of participants
    rank_shares: pd.DataFrame  # arm x place 1..k: share of participants (ties split evenly)
    missing: dict[str, int]
    settings: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    models: list[MixedFit] = field(default_factory=list)  # the mixed models (study.mixed), per measure

    @property
    def n_included(self) -> int:
        """Participants analysed."""
        return int(self.participants["included"].sum())

    def exclusions(self) -> dict[str, int]:
        """Excluded units per reason, in ``EXCLUSION_ORDER``; reasons with none are left out."""
        counts = self.participants.loc[~self.participants["included"], "reason"].value_counts()
        return {r: int(counts.get(r, 0)) for r in EXCLUSION_ORDER if counts.get(r, 0)}
