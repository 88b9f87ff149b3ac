"""Do the analysis' 95% intervals keep their promise? Coverage over simulated studies at 10, 20 and 40 participants.

    python -m bench coverage [--studies 200] [--sizes 10 20 40] [--replicates 2000] [--population 400000]

Each simulated study (``study.simulate.generate``, the paper-like effects, Latin-square letters) is
analysed with the analysis' own interval code (``study.analyze._Blocks`` and
``study.intervals.bootstrap_intervals``: the same statistic, the same participant resampling, BCa by
scipy), and every interval is checked against the truth: the figure's value in a population of
``--population`` simulated participants (rating variance: the population variance). The percentile
interval of the same resamples is shown beside BCa for comparison.

Per figure, coverage is pooled over the four arms (pairwise differences: over the six pairs); "worst" is the
worst single arm or pair. With 200 studies a single coverage has a Monte Carlo standard error of about
1.5 points (sqrt(0.95 x 0.05 / 200)); the pooled figure's is smaller, but arms share participants.
"""
from __future__ import annotations

import argparse
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from study import analyze, simulate  # noqa: E402
from study.intervals import bootstrap_intervals  # noqa: E402

TARGET = 0.93  # at n = 20, every figure's 95% interval should cover at least this often
FIGURES = [name for name, _, _ in analyze.FIGURES]
DIFFS = [f"diff_{m}" for m in analyze.MEASURES]


def values(sim: simulate.SimulatedAnswers) -> dict[str, np.ndarray]:
    """The participant x arm matrices the analysis computes from the same answers."""
    rel = sim.relevance.astype(float)
    return {"ap_paper": analyze.ap_paper(rel), "ap_kaggle": analyze.ap_kaggle(rel),
            "relevant_share": rel.mean(axis=2), "rank": sim.rank.astype(float), "rating": sim.rating.astype(float)}


def statistics(v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per figure, the point values (arms, or pairs for differences) of a study or a population."""
    out = {name: (np.mean if stat == "mean" else lambda x, axis: np.var(x, axis=axis, ddof=1))(v[attr], axis=0)
           for name, attr, stat in analyze.FIGURES}
    pairs = list(combinations(range(v["rating"].shape[1]), 2))
    for m in analyze.MEASURES:
        out[f"diff_{m}"] = np.array([np.mean(v[m][:, a] - v[m][:, b]) for a, b in pairs])
    return out


def study_intervals(v: dict[str, np.ndarray], replicates: int, seed: int, confidence: float = 0.95
                    ) -> dict[str, dict[str, np.ndarray]]:
    """BCa and percentile intervals per figure for one study, as ``study.analyze.analyze`` computes them."""
    blocks = dict(v)
    blocks.update({f"diff_{m}": analyze._paired_differences(v[m]) for m in analyze.MEASURES})
    stacked = analyze._Blocks(blocks)

    def parts(w: np.ndarray) -> list[np.ndarray]:
        boot = stacked.resampled(w)
        out = [boot.mean(attr) if stat == "mean" else boot.var(attr) for _, attr, stat in analyze.FIGURES]
        return out + [boot.mean(d) for d in DIFFS]

    n = len(v["rating"])
    sizes = [p.shape[-1] for p in parts(np.ones(n))]
    res = bootstrap_intervals(lambda w: np.concatenate(parts(w), axis=-1), n, replicates=replicates, seed=seed,
                              confidence=confidence)
    tail = (1 - confidence) / 2
    p_lo, p_hi = np.nanquantile(res.replicates, [tail, 1 - tail], axis=1)
    edges = np.cumsum([0] + sizes)
    out = {}
    for name, a, b in zip(FIGURES + DIFFS, edges[:-1], edges[1:]):
        out[name] = {"bca": (res.low[a:b], res.high[a:b]), "percentile": (p_lo[a:b], p_hi[a:b])}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 40])
    parser.add_argument("--replicates", type=int, default=2000)
    parser.add_argument("--population", type=int, default=400_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    t0 = time.perf_counter()
    effects = simulate.PAPER_LIKE_EFFECTS
    arms = list(effects)
    same = [dict(zip("ABCD", arms))] * args.population  # no letter effects: the letters do not change values
    truth = statistics(values(simulate.generate(effects, args.population, seed=10_000 + args.seed,
                                                assignments=same)))
    hits = {(n, name, method): [] for n in args.sizes for name in FIGURES + DIFFS for method in ("bca", "percentile")}
    for n in args.sizes:
        for s in range(args.studies):
            sim = simulate.generate(effects, n, seed=args.seed * 1_000_003 + n * 10_007 + s, design_seed=s)
            for name, by_method in study_intervals(values(sim), args.replicates, seed=s).items():
                for method, (lo, hi) in by_method.items():
                    hits[(n, name, method)].append((lo <= truth[name]) & (truth[name] <= hi))
    seconds = time.perf_counter() - t0

    print(f"{args.studies} simulated studies per size, {args.replicates} bootstrap replicates each, truth from"
          f" {args.population} simulated participants (paper-like effects {effects}); {seconds:.0f} s\n")
    header = "| figure | " + " | ".join(f"n = {n}: BCa (worst) | n = {n}: percentile" for n in args.sizes) + " |"
    print(header)
    print("|" + "---|" * (1 + 2 * len(args.sizes)))
    short = []
    for name in FIGURES + DIFFS:
        cells = []
        for n in args.sizes:
            bca = np.array(hits[(n, name, "bca")])
            pct = np.array(hits[(n, name, "percentile")])
            cells += [f"{bca.mean():.1%} ({bca.mean(axis=0).min():.1%})", f"{pct.mean():.1%}"]
            if n == 20 and bca.mean() < TARGET:
                short.append(f"{name}: {bca.mean():.1%} at n = 20, {TARGET - bca.mean():.1%} short of {TARGET:.0%}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nshort of the target at n = 20: " + ("; ".join(short) if short else "none"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
