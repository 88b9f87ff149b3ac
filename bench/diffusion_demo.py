"""Generative arm (diffusion): train the miniature diffusion model on the demo catalogue, judge its grids independently.

    python -m bench diffusion_demo --minutes 30                 # train (resuming in --out) for 30 min, then judge
    python -m bench diffusion_demo --steps 2000 --until 15:40   # at most 2000 steps, and stop at 15:40 UTC
    python -m bench diffusion_demo --steps 0 --out cache/demo/diffusion   # judge the demo's model as it draws

Trains ``dressup.generators.diffusion`` on the demo catalogue (built with the demo's settings if missing) and asks its
generator (``DiffusionGenerator``, the study's interface) for 4 images per "colour + category" prompt
(``dressup.generators.colour_prompts``: every colour but white, x every category, shuffled, 40 by default).

The judge never looks inside the generator: a small CNN trained here on the catalogue's own images and their
category and colour labels (train split; its accuracy on the test split is reported, as the ceiling the
figures can reach). A generated image counts for the category (the colour) when the judge's top class is the
asked one. Colour is also judged from pixels by ``garment_colour`` (the DCGAN's measure), for comparison.

Distinctness: the distance of two images is their mean absolute pixel difference (0-255) at the model's
resolution; a grid's figure is its nearest pair. The threshold is taken from the catalogue itself: the 1st
percentile, over its items, of the distance to the nearest *other* item with the same colour and category, i.e.
closer than 99% of real, different garments of one description come to each other.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from bench.common import (DEMO_CATALOGUE, DEMO_STUDY, RESULTS, command_line, fmt, load_average,  # noqa: E402
                          machine_line, markdown_table)
from dressup.judge import JUDGE_STEPS, judge_grids, train_catalogue_judge  # noqa: E402

TITLE = "## Generative arm (diffusion)"
SHEET = Path(__file__).resolve().parent / "diffusion_demo_sheet.png"


# ---------------------------------------------------------------------------------------------- the sheet
def labelled_sheet(rows: list[tuple[str, list[Image.Image]]], cell: int = 64, label_w: int = 150) -> Image.Image:
    pad = 2
    sheet = Image.new("RGB", (label_w + 4 * (cell + pad) + pad, len(rows) * (cell + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, (text, images) in enumerate(rows):
        y = pad + r * (cell + pad)
        draw.text((4, y + cell // 2 - 6), text, fill=(0, 0, 0))
        for c, im in enumerate(images):
            sheet.paste(im.resize((cell, cell), Image.Resampling.BICUBIC), (label_w + pad + c * (cell + pad), y))
    return sheet


# ---------------------------------------------------------------------------------------------- results
def record(command: str, body: str, started: str, load_start: str) -> None:
    """Write this run under ``TITLE`` in RESULTS.md, replacing an earlier run's section."""
    section = (f"{TITLE}\n\n`{command}`\n\n- date: {started}\n- machine: {machine_line()}\n"
               f"- load average (1/5/15 min) at start: {load_start}; at end: {load_average()}\n\n{body.strip()}\n")
    text = RESULTS.read_text(encoding="utf-8")
    parts = re.split(r"(?m)^(?=## )", text)
    kept = [p for p in parts if not p.startswith(TITLE[:-1])]  # also an earlier title's run
    analysis = next((i for i, p in enumerate(kept) if p.startswith("## Analysis")), len(kept))
    kept.insert(analysis, section + "\n")
    RESULTS.write_text("".join(kept).rstrip() + "\n", encoding="utf-8")


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (RESULTS.md is read on other machines)."""
    root = Path(__file__).resolve().parent.parent
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def deadline_of(args: argparse.Namespace) -> float | None:
    """When training must stop (``--minutes``, ``--until``, the earlier of the two), or None."""
    ends = []
    if args.minutes:
        ends.append(time.time() + 60 * args.minutes)
    if args.until:
        hh, mm = map(int, args.until.split(":"))
        now = dt.datetime.now(dt.timezone.utc)
        ends.append(now.replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp())
    return min(ends) if ends else None


# ---------------------------------------------------------------------------------------------- arguments
def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--catalogue", type=Path, default=DEMO_CATALOGUE, help="built with the demo's settings if missing")
    p.add_argument("--out", type=Path, default=Path("/tmp/dressup-bench/diffusion"), help="training folder (resumed)")
    p.add_argument("--steps", type=int, default=20000, help="at most this many training steps in all")
    p.add_argument("--minutes", type=float, default=0, help="stop training after this many minutes")
    p.add_argument("--until", default="", help="stop training at this UTC time, HH:MM")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (one is faster on a busy 2-core machine)")
    p.add_argument("--guidance", type=float, help="default: the demo study's guidance_scale")
    p.add_argument("--sampling-steps", type=int, help="default: the demo study's sampling_steps")
    p.add_argument("--eta", type=float, help="DDIM's noise per step (0 deterministic, 1 ancestral); default: the "
                                             "demo study's eta")
    p.add_argument("--candidates", type=int, help="images drawn per grid, the 4 the study's scoring encoder puts "
                                                  "closest to the prompt shown; default: the demo study's")
    p.add_argument("--prompts", type=int, default=40)
    p.add_argument("--judge-steps", type=int, default=JUDGE_STEPS)
    p.add_argument("--sheet", type=Path, default=SHEET, help="sample sheet PNG ('' for none)")
    p.add_argument("--no-save", action="store_true", help="print, do not write RESULTS.md")
    return p.parse_args()


# ---------------------------------------------------------------------------------------------- the run
def demo_catalogue(args: argparse.Namespace) -> tuple[Any, Any]:
    """The demo study and its catalogue at ``--catalogue``, drawn if missing."""
    from dressup.catalog import load_catalog
    from dressup.config import load_study
    from dressup.demo import ensure_catalogue

    # Drawn with the demo study's own [catalogue] settings (into another folder when --catalogue says so), so
    # the demo's cache is never redrawn with other settings under the app.
    demo = load_study(DEMO_STUDY)
    if args.catalogue.resolve() != demo.catalogue.root.resolve():
        demo.catalogue.root = args.catalogue
    ensure_catalogue(demo)
    return demo, load_catalog(args.catalogue, require_images=True)


def train_judge(catalog: Any, args: argparse.Namespace) -> tuple[Any, float]:
    """The judge, on the catalogue alone; and the seconds it took."""
    t0 = time.perf_counter()
    judge = train_catalogue_judge(catalog, steps=args.judge_steps, seed=args.seed)
    judge_s = time.perf_counter() - t0
    print(f"judge: category {judge.accuracy[0]:.3f}, colour {judge.accuracy[1]:.3f} on the test split "
          f"({judge_s:.0f} s); distinctness threshold {judge.threshold:.2f} (catalogue median "
          f"{judge.catalogue_median:.2f})")
    return judge, judge_s


@dataclass
class Drawn:
    """The generator as the study draws with it, its training losses and the scoring encoder's name."""

    gen: Any
    losses: list[float]
    scoring: str


def train_generator(catalog: Any, demo: Any, args: argparse.Namespace) -> Drawn:
    """Train (resuming in ``--out``) unless ``--steps 0``, then load the model as the study's generator."""
    from dressup.colours import CATALOGUE_COLOURS
    from dressup.generators.diffusion_train import train_diffusion_on_catalogue

    if args.steps:  # else judge only: a model already trained (e.g. the demo's, cache/demo/diffusion), untouched
        train_diffusion_on_catalogue(catalog, args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                     seed=args.seed, deadline=deadline_of(args), checkpoint_every=100)
    state = args.out / "train_state.pt"  # the shipped model carries no optimiser state, so no loss curve
    losses = torch.load(state, map_location="cpu", weights_only=False)["state"]["losses"] if state.is_file() else []
    # Drawn through the study's own loader with the demo study's [arms.generative] keys (its defaults and checks
    # too), the model from --out, and what the command line overrides.
    from dressup.encoders import load_encoder
    from dressup.generators import load_generator

    drawing = dict(demo.arm("generative").generator, checkpoint=str(args.out.resolve()))
    drawing.update({k: v for k, v in (("guidance_scale", args.guidance), ("sampling_steps", args.sampling_steps),
                                      ("eta", args.eta), ("candidates", args.candidates)) if v is not None})
    scoring = drawing.get("encoder") or "finetuned"
    encoder = load_encoder(demo.encoder(scoring)) if int(drawing.get("candidates", 4)) > 4 else None
    gen = load_generator(drawing, device="cpu", encoder=encoder, palette=CATALOGUE_COLOURS)
    return Drawn(gen, losses, scoring)


@dataclass
class Judged:
    """The judge's verdicts per prompt (``rows``), their means, and the sampling time per grid."""

    rows: list[dict]
    mean: dict[str, float]
    distinct: float  # share of grids with no pair under the threshold
    sample_s: float
    sheet_rows: int  # prompts on the sample sheet


def judge_generator(judge: Any, gen: Any, args: argparse.Namespace) -> Judged:
    """Judge ``--prompts`` grids; write the sample sheet (unless ``--sheet ''``) and ``--out``/judged.json."""
    from dressup.colours import CATALOGUE_COLOURS, garment_colour

    t0 = time.perf_counter()
    verdicts = judge_grids(judge, gen, prompts=args.prompts, seed=args.seed)
    sample_s = (time.perf_counter() - t0) / max(len(verdicts), 1)
    sheet_rows = [(v.text, v.images) for v in verdicts[:10]]
    rows = []
    for v in verdicts:
        pixel_hits = sum(garment_colour(im, CATALOGUE_COLOURS) == v.colour for im in v.images)
        rows.append({**{k: val for k, val in asdict(v).items() if k != "images"}, "pixel_colour_hits": pixel_hits})
    mean = {k: float(np.mean([r[k] for r in rows])) for k in
            ("category_hits", "colour_hits", "both_hits", "pixel_colour_hits", "nearest_pair")}
    distinct = float(np.mean([r["nearest_pair"] > judge.threshold for r in rows]))
    if args.sheet.name:  # Path('') reads as '.', whose name is ''
        # 256 colours keep the sheet small enough to commit (about 100 KB instead of 300)
        labelled_sheet(sheet_rows).quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                            dither=Image.Dither.NONE).save(args.sheet, optimize=True)
    (args.out / "judged.json").write_text(json.dumps(rows, indent=1))
    return Judged(rows, mean, distinct, sample_s, len(sheet_rows))


def report(args: argparse.Namespace, catalog: Any, judge: Any, judge_s: float, drawn: Drawn, judged: Judged) -> str:
    """The RESULTS.md section's body: how the model was trained and drawn, the judge, the table."""
    gen, losses, mean, threshold = drawn.gen, drawn.losses, judged.mean, judge.threshold
    model = gen.model
    meta = model.meta
    return (
        f"Trained by `dressup.generators.diffusion` ({sum(p.numel() for p in model.unet.parameters()) / 1e6:.2f} M parameters, "
        f"{model.config.image_size} px, widths {list(model.config.widths)}, cross-attention on MiniLM token states), "
        f"batch {meta.get('batch_size')}, AdamW lr {meta.get('lr')}, seed {meta.get('seed')}: "
        f"**{meta['step']} steps in {meta['seconds'] / 60:.1f} min** of training"
        + (f"; training loss (mean of the last 100 steps) {np.mean(losses[-100:]):.4f}, first 100 "
           f"{np.mean(losses[:100]):.4f}" if losses else "")
        + f". Sampling ({args.threads} torch thread(s)): DDIM "
        f"{gen.steps} steps, eta {gen.eta:g}, guidance {gen.guidance_scale}, "
        + (f"{gen.candidates} candidates per grid, the 4 closest to the prompt under the "
           f"{drawn.scoring} encoder shown, " if gen.scorer is not None else "")
        + f"{judged.sample_s:.1f} s per grid of four. Model sha256 "
        f"`{model.sha256[:16]}…`.\n\n"
        f"Judge (trained here on the catalogue's train split, {args.judge_steps} steps, {judge_s:.0f} s): "
        f"test-split accuracy {judge.accuracy[0]:.3f} (category), {judge.accuracy[1]:.3f} (colour). Chance: "
        f"{4 / len(list(catalog.categories)):.2f} and {4 / len(catalog.attribute_values('colour')):.2f} of 4.\n\n"
        + markdown_table(
            [f"measure ({len(judged.rows)} prompts x 4 images)", "mean of 4", "done-when target"],
            [["asked category (judge)", fmt(mean["category_hits"]), ">= 3"],
             ["asked colour (judge)", fmt(mean["colour_hits"]), ">= 3.5"],
             ["both (judge)", fmt(mean["both_hits"]), ""],
             ["asked colour (pixels, `garment_colour`)", fmt(mean["pixel_colour_hits"]), ""],
             ["grid's nearest pair, mean abs. difference (0-255)", fmt(mean["nearest_pair"]), f"> {threshold:.2f}"],
             ["grids with no pair under the threshold (share)", fmt(judged.distinct), "1.00"]])
        + f"\n\nThreshold {threshold:.2f}: the 1st percentile of the distance from a catalogue item to the nearest "
          f"other item of the same colour and category (median {judge.catalogue_median:.2f}). Per-prompt detail: "
          f"`{args.out / 'judged.json'}`"
        + (f"; sample sheet (first {judged.sheet_rows} prompts, 4 seeds each): `{shown_path(args.sheet)}`."
           if args.sheet.name else ".")
    )


def main() -> int:
    args = parse_args()
    command = command_line("diffusion_demo")
    started = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load_start = load_average()
    torch.set_num_threads(args.threads)
    demo, catalog = demo_catalogue(args)
    judge, judge_s = train_judge(catalog, args)
    drawn = train_generator(catalog, demo, args)
    body = report(args, catalog, judge, judge_s, drawn, judge_generator(judge, drawn.gen, args))
    print(body)
    if not args.no_save:
        record(command, body, started, load_start)
        print(f"\nrecorded in {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
