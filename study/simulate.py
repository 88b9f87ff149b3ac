"""Simulated participants: synthetic studies with known true arm effects.

Used to check that the analysis recovers a known truth, to estimate power before recruiting, and to load-
test the store. A study database is written THROUGH ``study.store.Store``, the code the app uses
(``create_session`` with the Latin-square ``study.design.assignment``, ``save_preference``, ``save_shown``,
``answer_*``, ``complete``, ``withdraw``), so a simulated database looks exactly like a real one.

The model (one participant i, arm j):
    utility      u_ij = effect_j + letter_effect(letter of j) + e_ij,      e_ij ~ N(0, participant_sd)
    rating       clip(round(5.5 + (u_ij + l_i) * rating_scale + noise), 1, 10),  l_i ~ N(0, leniency_sd)
    ranking      arms ordered by u_ij (highest utility = rank 1)
    relevance    each of the 4 images is wearable ~ Bernoulli(sigmoid(relevance_bias + relevance_slope u_ij))
``l_i`` (a participant who rates everything high) moves ratings only, so paired tests are needed to see
effects through it, as in a real study.

``python -m study simulate --n 200 --out results/sim.sqlite --effects baseline=0,finetuned=0.8``
writes a database; ``python -m study simulate --power --n 20 --diff 0.8 --reps 200`` prints how often a
difference would be found significant, all in memory.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from study import analyze
from study.design import assignment, cycle_length
from study.schema import GRID_SIZE
from study.store import ShownRow, Store

DEFAULT_ARMS = ("baseline", "finetuned", "stn", "generative")
# Roughly the paper's Table 2 ratings (5.53 / 6.32 / 3.42 / 6.58) under the default rating scale.
PAPER_LIKE_EFFECTS = {"baseline": 0.0, "finetuned": 0.5, "stn": -1.4, "generative": 0.7}
COUNTER = "latin_square"  # the Store counter that hands out Latin-square rows (study.session.LATIN_SQUARE_COUNTER)


@dataclass
class SimParams:
    """Noise and scale of the simulated participants (see the module docstring for the model)."""

    participant_sd: float = 1.0
    leniency_sd: float = 0.5
    rating_scale: float = 1.5
    rating_noise_sd: float = 0.75
    relevance_bias: float = 0.0
    relevance_slope: float = 1.0
    letter_effects: dict[str, float] = field(default_factory=dict)  # e.g. {"A": 0.3}: a first-seen bonus


@dataclass
class SimulatedAnswers:
    """The answers of n simulated participants; arrays are participant x arm (``arms`` order)."""

    arms: list[str]
    assignments: list[dict[str, str]]  # letter -> arm, per participant
    utility: np.ndarray
    rating: np.ndarray  # int 1..10
    rank: np.ndarray  # int, 1 = best
    relevance: np.ndarray  # (n, arms, 4) int 0/1, positions in display order

    def letter_of(self, i: int) -> dict[str, str]:
        """Arm -> letter for participant i."""
        return {arm: letter for letter, arm in self.assignments[i].items()}

    def to_long(self) -> pd.DataFrame:
        """The answers in the analysis' interchange format (one row per shown image)."""
        n, k = self.rating.shape
        letters = np.array([[self.letter_of(i)[arm] for arm in self.arms] for i in range(n)])
        return pd.DataFrame({
            "participant": np.repeat([f"sim-{i:05d}" for i in range(n)], k * GRID_SIZE),
            "arm": np.tile(np.repeat(self.arms, GRID_SIZE), n),
            "position": np.tile(np.arange(1, GRID_SIZE + 1), n * k),
            "relevant": self.relevance.ravel(),
            "rating": np.repeat(self.rating.ravel(), GRID_SIZE),
            "rank": np.repeat(self.rank.ravel(), GRID_SIZE),
            "letter": np.repeat(letters.ravel(), GRID_SIZE),
        })


def parse_effects(text: str) -> dict[str, float]:
    """``"baseline=0,finetuned=0.8"`` -> ``{"baseline": 0.0, "finetuned": 0.8}`` (order kept)."""
    effects: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            effects[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--effects: {part!r} is not ARM=NUMBER; write e.g. baseline=0,finetuned=0.8") from None
    if not 2 <= len(effects) <= 4:
        raise ValueError(f"--effects needs 2 to 4 arms (the page has letters A-D), got {len(effects)}")
    return effects


def generate(effects: dict[str, float], n: int, *, seed: int | np.random.Generator = 0,
             params: SimParams | None = None, assignments: list[dict[str, str]] | None = None,
             design_seed: int = 0) -> SimulatedAnswers:
    """Draw n participants' answers, vectorised. Without ``assignments`` participant i gets row i of the
    study's Latin square (``study.design.assignment``), as consecutive real participants would."""
    p = params or SimParams()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    arms = list(effects)
    k = len(arms)
    if assignments is None:
        assignments = [assignment(arms, i, design_seed) for i in range(n)]
    if len(assignments) != n:
        raise ValueError(f"{len(assignments)} assignments for {n} participants")
    letter_bonus = np.array([[p.letter_effects.get(_letter(a, arm), 0.0) for arm in arms] for a in assignments])
    utility = np.array([effects[a] for a in arms])[None, :] + letter_bonus.reshape(n, k) \
        + rng.normal(0.0, p.participant_sd, (n, k))
    leniency = rng.normal(0.0, p.leniency_sd, (n, 1))
    raw = 5.5 + (utility + leniency) * p.rating_scale + rng.normal(0.0, p.rating_noise_sd, (n, k))
    rating = np.clip(np.rint(raw), 1, 10).astype(int)
    rank = np.argsort(np.argsort(-utility, axis=1), axis=1) + 1
    prob = 1.0 / (1.0 + np.exp(-(p.relevance_bias + p.relevance_slope * utility)))
    relevance = (rng.random((n, k, GRID_SIZE)) < prob[:, :, None]).astype(int)
    return SimulatedAnswers(arms, assignments, utility, rating, rank, relevance)


def _letter(assign: dict[str, str], arm: str) -> str:
    return next(letter for letter, a in assign.items() if a == arm)


# --- writing a database through the Store -----------------------------------------------------------------
@dataclass
class WriteSummary:
    path: Path
    sessions: int
    completed: int
    incomplete: int
    withdrawn: int
    attention_failed: int
    seconds: float


BATCH = 500  # sessions per transaction when writing a simulated study


def write_study(path: str | Path, effects: dict[str, float], n: int, *, seed: int = 0,
                params: SimParams | None = None, incomplete: float = 0.0, withdrawn: float = 0.0,
                attention_fail: float | None = None, feedback: float = 0.1, study: str = "simulated",
                design_seed: int = 0, progress: bool = True) -> WriteSummary:
    """Write n simulated sessions to a NEW database through ``Store``.

    ``incomplete`` / ``withdrawn`` are the shares of sessions that stop part-way / withdraw after
    answering; ``attention_fail`` (None = no attention check configured) is the share that fail it.
    Refuses an existing file, so simulated sessions never mix with a real study's."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists; simulate into a new file (simulated sessions must never"
                              " mix with a real study's)")
    if not 0 <= incomplete + withdrawn <= 1:
        raise ValueError("incomplete + withdrawn must be a share between 0 and 1")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    arms = list(effects)
    store = Store(path, study)
    try:
        ids, assigns = [], []
        with store.batch():
            for i in tqdm(range(n), desc="consent", disable=not progress, leave=False):
                order = store.next_counter(COUNTER)
                assign = assignment(arms, order, design_seed)
                ids.append(store.create_session(f"sim-{i:05d}", order_index=order, seed=design_seed,
                                                assignments=assign, source={"simulated": True}))
                assigns.append(assign)
        answers = generate(effects, n, seed=rng, params=params, assignments=assigns)
        fate = rng.choice(3, size=n, p=[1 - incomplete - withdrawn, incomplete, withdrawn])
        stop_after = rng.integers(0, 3 + 2 * len(arms), size=n)  # how far an incomplete session gets
        attention = rng.random(n) >= (attention_fail or 0.0)
        wants_feedback = rng.random(n) < feedback
        for start in tqdm(range(0, n, BATCH), desc="answers", disable=not progress, leave=False):
            # Store.batch: the same Store calls and checks, one fsync per BATCH sessions instead of per answer.
            with store.batch():
                for i in range(start, min(n, start + BATCH)):
                    sid = ids[i]
                    steps = _session_steps(store, sid, answers, i, attention_fail is not None and attention[i],
                                           attention_fail is not None, wants_feedback[i])
                    for step, write in enumerate(steps):
                        if fate[i] == 1 and step >= stop_after[i]:
                            break
                        write()
                    if fate[i] == 2:
                        store.withdraw(sid)
    finally:
        store.close()
    return WriteSummary(path, n, int((fate == 0).sum()), int((fate == 1).sum()), int((fate == 2).sum()),
                        int(((fate == 0) & ~attention).sum()) if attention_fail is not None else 0,
                        time.perf_counter() - t0)


def _session_steps(store: Store, sid: str, answers: SimulatedAnswers, i: int, passed: bool,
                   check_attention: bool, feedback: bool) -> list:
    """The participant's actions in the app's order, each one Store call (one transaction)."""
    letter_of = answers.letter_of(i)
    grids = {
        letter_of[arm]: [
            ShownRow(letter_of[arm], pos, f"sim/{arm}/{i}/{pos}",
                     hashlib.sha256(f"{arm}/{i}/{pos}".encode()).hexdigest(), "", None)
            for pos in range(1, GRID_SIZE + 1)]
        for arm in answers.arms}
    steps = [lambda: store.save_preference(sid, "simulated participant", None, [], []),
             lambda: store.save_shown(sid, grids)]
    for j, arm in enumerate(answers.arms):
        letter = letter_of[arm]
        marked = [pos + 1 for pos in np.flatnonzero(answers.relevance[i, j])]
        steps.append(lambda letter=letter, marked=marked: store.answer_relevance_grid(sid, letter, marked))
        steps.append(lambda letter=letter, r=int(answers.rating[i, j]): store.answer_rating(sid, letter, r))
    ranking = {letter_of[arm]: int(answers.rank[i, j]) for j, arm in enumerate(answers.arms)}
    steps.append(lambda: store.answer_ranking(sid, ranking))
    if check_attention:
        steps.append(lambda: store.set_attention(sid, passed))
    if feedback:
        steps.append(lambda: store.answer_feedback(sid, "", "simulated feedback"))
    steps.append(lambda: store.complete(sid))
    return steps


# --- power ---------------------------------------------------------------------------------------------
@dataclass
class PowerResult:
    """Share of simulated studies in which each test is significant (Holm-corrected for pairs)."""

    effects: dict[str, float]
    n: int
    reps: int
    alpha: float
    friedman: dict[str, float]  # measure -> share significant
    pairs: pd.DataFrame  # measure, arm_a, arm_b, share significant (Holm)


def power(effects: dict[str, float], n: int, *, reps: int = 200, seed: int = 0, alpha: float = 0.05,
          params: SimParams | None = None, progress: bool = False) -> PowerResult:
    """Simulate ``reps`` studies of n participants in memory and run the analysis' own tests on each."""
    rng = np.random.default_rng(seed)
    arms = list(effects)
    hits = {m: 0 for m in analyze.MEASURES}
    pair_hits: dict[tuple[str, str, str], int] = {}
    for _ in tqdm(range(reps), desc="power", disable=not progress, leave=False):
        sim = generate(effects, n, seed=rng, params=params)
        values = {"rating": sim.rating.astype(float), "rank": sim.rank.astype(float),
                  "ap_paper": analyze.ap_paper(sim.relevance)}
        for measure, x in values.items():
            if len(arms) >= 3:
                hits[measure] += analyze.friedman(x, measure).p < alpha
            for r in analyze.pairwise(x, arms, measure):
                key = (measure, r.arm_a, r.arm_b)
                pair_hits[key] = pair_hits.get(key, 0) + (r.p_holm < alpha)
    pairs = pd.DataFrame([{"measure": m, "arm_a": a, "arm_b": b, "significant": v / reps}
                          for (m, a, b), v in pair_hits.items()])
    friedman = {m: v / reps for m, v in hits.items()} if len(arms) >= 3 else {}
    return PowerResult(dict(effects), n, reps, alpha, friedman, pairs)


# --- command line --------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study simulate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, required=True, help="number of participants (sessions)")
    parser.add_argument("--out", help="new database file to write (not with --power)")
    parser.add_argument("--effects", help="true arm effects, e.g. baseline=0,finetuned=0.8,stn=-1,generative=0.7"
                        " (default: roughly the paper's Table 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--incomplete", type=float, default=0.0, help="share of sessions that stop part-way")
    parser.add_argument("--withdrawn", type=float, default=0.0, help="share of sessions that withdraw")
    parser.add_argument("--attention-fail", type=float, default=None,
                        help="share failing the attention check (default: no attention check)")
    parser.add_argument("--power", action="store_true", help="estimate power in memory instead of writing")
    parser.add_argument("--diff", type=float, help="with --power: effect of the 2nd arm over the others")
    parser.add_argument("--reps", type=int, default=200, help="with --power: simulated studies")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--json", action="store_true", help="print the result (or the error) as JSON")
    args = parser.parse_args(argv)
    try:
        if args.diff is not None and args.effects:
            raise ValueError("give either --diff or --effects, not both")
        if args.diff is not None:
            effects = {arm: 0.0 for arm in DEFAULT_ARMS}
            effects[DEFAULT_ARMS[1]] = args.diff
        else:
            effects = parse_effects(args.effects) if args.effects else dict(PAPER_LIKE_EFFECTS)
        if args.n < 1:
            raise ValueError("--n must be at least 1")
        if args.power:
            result = power(effects, args.n, reps=args.reps, seed=args.seed, alpha=args.alpha, progress=not args.json)
            return _print_power_json(result) if args.json else _print_power(result)
        if not args.out:
            raise ValueError("--out DB is needed to write a simulated study (or use --power)")
        s = write_study(args.out, effects, args.n, seed=args.seed, incomplete=args.incomplete,
                        withdrawn=args.withdrawn, attention_fail=args.attention_fail)
    except (ValueError, FileExistsError) as e:
        if args.json:
            print(json.dumps({"error": str(e)}))
        else:
            print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"path": str(s.path), "sessions": s.sessions, "completed": s.completed,
                          "incomplete": s.incomplete, "withdrawn": s.withdrawn,
                          "attention_failed": s.attention_failed, "seconds": s.seconds}))
        return 0
    balanced = "" if args.n % cycle_length(len(effects)) == 0 else \
        f" (not a multiple of {cycle_length(len(effects))}: the Latin square is not exactly balanced)"
    print(f"wrote {s.sessions} sessions to {s.path} in {s.seconds:.1f} s{balanced}: {s.completed} completed,"
          f" {s.incomplete} incomplete, {s.withdrawn} withdrawn, {s.attention_failed} failed the attention check")
    return 0


def _print_power_json(r: PowerResult) -> int:
    """The power estimate as JSON: the share of simulated studies in which each test was significant."""
    pairs = [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
             for row in r.pairs[["arm_a", "arm_b", "measure", "significant"]].to_dict("records")]
    print(json.dumps({"n": r.n, "reps": r.reps, "alpha": r.alpha, "effects": r.effects,
                      "friedman": {m: float(v) for m, v in (r.friedman or {}).items()}, "pairwise": pairs}))
    return 0


def _print_power(r: PowerResult) -> int:
    effects = ", ".join(f"{a}={v:g}" for a, v in r.effects.items())
    print(f"power over {r.reps} simulated studies of {r.n} participants, true effects {effects}, alpha {r.alpha:g}")
    if r.friedman:
        print("Friedman test significant: " + ", ".join(f"{m} {v:.0%}" for m, v in r.friedman.items()))
    table = r.pairs.pivot_table(index=["arm_a", "arm_b"], columns="measure", values="significant")
    print("pairwise Wilcoxon (Holm) significant:")
    print(table.to_string(float_format=lambda v: f"{v:.0%}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
