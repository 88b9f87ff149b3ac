"""Generative arm: what limits its asked colour, the generator or the ranking of its candidates?

    python -m bench diffusion_ranking                # the test suite's 40 prompts (seed 0)
    python -m bench diffusion_ranking --seed 1       # 40 other prompts, and a judge trained from another seed
    python -m bench diffusion_ranking --judge-seed 1 # the suite's prompts, judged by that other judge

The demo's generative arm draws ``candidates`` images a grid and shows the four its scoring encoder puts closest
to the participant's words (``BaseGenerator.rank``). This benchmark builds that arm exactly as the study does
(``dressup.arms.build_arms`` on the demo study: the study's reader, scorer and drawing keys), trains the
catalogue judge of ``dressup.judge`` (which never looks inside the generator), and judges *every* candidate of
each prompt (``dressup.judge.judge_candidates``). Three figures per prompt set, each of 4:

- **first four**: the first four candidates, no ranking: the generator alone;
- **shown**: the four the study's ranking shows (the test suite's figure);
- **judge's best four**: the four the judge itself would pick: the ceiling of *any* ranking of these candidates.

When the ceiling is near the shown figure, a better ranking cannot help; only a better generator (or more
candidates) can.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.common import DEMO_STUDY, Run, emit, markdown_table  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=40)
    p.add_argument("--seed", type=int, default=0, help="prompt set and image seeds (and the judge's seed)")
    p.add_argument("--judge-seed", type=int, help="the judge's training seed, when it differs from --seed (two "
                                                  "judges on the same images: the instrument's own spread)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--no-save", action="store_true", help="print, do not write RESULTS.md")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    run = Run.start("diffusion_ranking")
    import torch

    from dressup.arms import build_arms
    from dressup.catalog import load_catalog
    from dressup.config import load_study
    from dressup.demo import ensure_demo_build
    from dressup.judge import judge_candidates, train_catalogue_judge

    torch.set_num_threads(args.threads)
    study = load_study(DEMO_STUDY)
    ensure_demo_build(study, progress=False)
    generator = build_arms(study, progress=False)["generative"].generator
    judge_seed = args.seed if args.judge_seed is None else args.judge_seed
    t0 = time.perf_counter()
    judge = train_catalogue_judge(load_catalog(study.catalogue.root, require_images=True), seed=judge_seed)
    judge_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    verdicts = judge_candidates(judge, generator, prompts=args.prompts, seed=args.seed)
    draw_s = (time.perf_counter() - t0) / max(len(verdicts), 1)
    rows = []
    for which, label in (("first", "first four candidates (the generator alone)"),
                         ("shown", "the four the study's ranking shows"),
                         ("best", "the judge's best four (ceiling of any ranking)")):
        hits = np.array([v.hits(which) for v in verdicts], dtype=float)
        rows.append([label, hits[:, 0].mean(), hits[:, 1].mean()])
    per_candidate = np.mean([np.mean(v.colour_hits) for v in verdicts])
    body = (f"{len(verdicts)} \"colour + category\" prompts (seed {args.seed}), {generator.candidates} candidates "
            f"each, drawn through the demo study's arm; judge (seed {judge_seed}): {judge.accuracy[0]:.3f} / "
            f"{judge.accuracy[1]:.3f} (category / colour) on the catalogue's test split, trained in {judge_s:.0f} s; "
            f"{draw_s:.1f} s per prompt to draw and rank.\n\n"
            + markdown_table(["four images", "asked category, of 4", "asked colour, of 4"], rows)
            + f"\n\nA single candidate carries the asked colour {per_candidate:.1%} of the time. A better ranking of "
              f"these candidates could add at most {rows[2][2] - rows[1][2]:.2f} of colour; the remaining "
              f"{4 - rows[2][2]:.2f} only a better generator (or more candidates) can.\n")
    emit(run, body, save=not args.no_save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
