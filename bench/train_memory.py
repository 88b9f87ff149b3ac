"""Memory of training at DeepFashion's scale: peak RSS of train_from_spec on 10k- and 100k-image catalogues.

    python -m bench train_memory              # 10k and 100k images at 224 px, 30 steps each
    python -m bench train_memory --quick      # 2k and 10k images
    python -m bench train_memory --keep       # leave the catalogues on disk (they are deleted by default)

Each catalogue is a DeepFashion-format folder on /tmp: ``--distinct`` garments (default 2 000) are drawn once at
224 px by ``dressup.democatalog``, then copied (real copies, one file per image, never links) under new names
with the drawn garment's category, attributes and 80/10/10 partition, until the catalogue holds the asked count.
Each count then trains one tiny ``config:`` open_clip model (224 px ViT image tower, a one-layer text tower) for
a fixed number of steps through ``dressup.demo.train_from_spec`` with the paper's recipe (full captions,
``lock_text = false``: every layer trains, no text states cached), in a fresh Python process whose peak RSS
(``ru_maxrss`` from ``wait4``) is the figure. The training split is 80% of the catalogue, so both counts are
over ``dressup.train.IN_MEMORY_BUDGET`` and stream from disk; what may grow with the count is the catalogue's
records, the caption and path lists, and anything else kept per item. Target: peak(100k) / peak(10k) <= 1.3.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tqdm.auto import tqdm  # noqa: E402

from bench.common import Run, emit, markdown_table, rss_mb  # noqa: E402

COUNTS = (10_000, 100_000)
QUICK_COUNTS = (2_000, 10_000)
WORK = Path("/tmp/dressup-bench/train_memory")
TARGET_RATIO = 1.3
TINY_224 = {  # tests/tiny_models.py's TINY_CLIP at DeepFashion's 224 px
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
ANNO = ("Anno/list_category_img.txt", "Anno/list_attr_img.txt", "Eval/list_eval_partition.txt")
SHARED = ("Anno/list_category_cloth.txt", "Anno/list_attr_cloth.txt", "Anno/list_attr_type.txt")


def draw_base(distinct: int) -> Path:
    """``distinct`` garments at 224 px, drawn once (reused by later runs with the same count)."""
    from dressup.democatalog import build_demo_catalogue, demo_catalogue_matches

    base = WORK / f"base-{distinct}"
    if not demo_catalogue_matches(base, size=distinct, image_size=224, seed=0, inshop_garments=0):
        build_demo_catalogue(base, size=distinct, image_size=224, seed=0, progress=True)
    return base


def _rows(path: Path) -> list[str]:
    return [ln for ln in path.read_text(encoding="utf-8").splitlines()[2:] if ln.strip()]


def write_catalogue(base: Path, count: int) -> Path:
    """A ``count``-image catalogue of copies of ``base``'s images, each a distinct file with its own name."""
    root = WORK / f"catalogue-{count}"
    if (root / "DONE").is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)
    for rel in SHARED:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(base / rel, root / rel)
    rows = {rel: [ln.split(None, 1) for ln in _rows(base / rel)] for rel in ANNO}
    names = [name for name, _ in rows[ANNO[0]]]
    tails = {rel: {name: tail for name, tail in rows[rel]} for rel in ANNO}
    out: dict[str, list[str]] = {rel: [] for rel in ANNO}
    folders: set[Path] = set()
    for i in tqdm(range(count), desc=f"copying {count:,} JPEGs into {root}", unit="img"):
        src = names[i % len(names)]
        name = f"{src.rsplit('/', 1)[0]}/img_{i + 1:08d}.jpg"
        target = root / name
        if target.parent not in folders:
            target.parent.mkdir(parents=True, exist_ok=True)
            folders.add(target.parent)
        shutil.copyfile(base / src, target)
        for rel in ANNO:
            out[rel].append(f"{name}  {tails[rel][src]}")
    headers = {ANNO[0]: "image_name  category_label", ANNO[1]: "image_name  attribute_labels",
               ANNO[2]: "image_name  evaluation_status"}
    for rel, lines in out.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"{len(lines)}\n{headers[rel]}\n" + "\n".join(lines) + "\n", encoding="utf-8")
    (root / "DONE").write_text("ok\n")
    return root


def write_study(root: Path, count: int, steps: int, batch_size: int) -> Path:
    folder = WORK / f"study-{count}"
    shutil.rmtree(folder, ignore_errors=True)  # a fresh run: no checkpoint to resume from
    folder.mkdir(parents=True)
    (folder / "tiny-224.json").write_text(json.dumps(TINY_224))
    study = folder / "study.toml"
    study.write_text(f"""[study]
name = "train-memory-{count}"
profile = "paper"
seed = 0
cache_dir = "{folder / 'cache'}"
device = "cpu"
allow_cpu = true

[catalogue]
root = "{root}"
split = "test"
caption_category = false        # the paper's captions

[encoders.tiny]
spec = "config:{folder / 'tiny-224.json'}"

[encoders.tiny_tuned]
spec = "local:{folder / 'tuned'}"

[train.tiny_tuned]             # the paper's recipe: full captions, every layer trains
init = "tiny"
captions = "full"
lock_text = false
steps = {steps}
batch_size = {batch_size}
lr = 1e-4
warmup = 5
checkpoint_every = {steps}

[arms.baseline]
kind = "retrieval"
encoder = "tiny"
""", encoding="utf-8")
    return study


def child(study_path: str, out: str) -> int:
    """One measurement, in this fresh process: train the recipe, write the figures as JSON to ``out``."""
    import torch

    from dressup.config import load_study
    from dressup.demo import train_from_spec
    from dressup.train import IN_MEMORY_BUDGET, read_train_log

    study = load_study(study_path)
    before = rss_mb()
    t0 = time.perf_counter()
    train_from_spec(study, study.train["tiny_tuned"], progress=True)
    wall = time.perf_counter() - t0
    log = read_train_log(study.encoder("tiny_tuned").spec[len("local:"):])
    Path(out).write_text(json.dumps({
        "rss_before_mb": before, "seconds": wall, "steps": len(log), "torch_threads": torch.get_num_threads(),
        "self_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "workers_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "budget": IN_MEMORY_BUDGET,
    }))
    return 0


def measure(study: Path, root: Path, count: int) -> dict:
    """Train in a fresh process; its peak RSS from ``wait4`` (the process itself and the workers it reaped)."""
    out = study.parent / "figures.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(study), "--out", str(out)]
    proc = subprocess.Popen(cmd, env=dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"))
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"training on {count:,} images failed (exit {proc.returncode}); see its output above")
    figures = json.loads(out.read_text())
    train = sum(1 for ln in _rows(root / ANNO[2]) if ln.split()[-1] == "train")
    return {"count": count, "train": train, "peak_mb": usage.ru_maxrss / 1024, **figures}


def report(results: list[dict], distinct: int, steps: int, batch_size: int, budget: int, keep: bool) -> str:
    rows = [[r["count"], r["train"], r["train"] * 3 * 224 * 224 / 2 ** 30,
             "yes" if r["train"] * 3 * 224 * 224 > budget else "no", r["rss_before_mb"], r["self_peak_mb"],
             r["workers_peak_mb"], r["peak_mb"], r["seconds"]] for r in results]
    small, large = results[0], results[-1]
    ratio = large["peak_mb"] / small["peak_mb"]
    per_item = (large["peak_mb"] - small["peak_mb"]) * 2 ** 20 / (large["count"] - small["count"])
    verdict = "yes" if ratio <= TARGET_RATIO else "no"
    return "\n\n".join([
        f"`dressup.demo.train_from_spec` with the paper's recipe (full captions, `lock_text = false`), a tiny "
        f"`config:` open_clip model at 224 px (ViT, 2 layers, width 64, patch 32; text tower 1 layer, width 32), "
        f"{steps} steps of batch {batch_size}, DataLoader workers as `train_encoder` chooses them. Each catalogue "
        f"is a DeepFashion-format folder on /tmp of JPEG copies of {distinct:,} garments drawn at 224 px by "
        "`dressup.democatalog`: every image is its own file on disk (copied, not linked), with the drawn "
        "garment's category, attributes and partition (80/10/10). Each count runs in a fresh Python process. "
        "MiB throughout. `peak RSS` = `ru_maxrss` of that process from `wait4` (the largest of it and the "
        "DataLoader workers it reaped); `training process` and `largest worker` are the same split by "
        "`getrusage` inside it; `before` = its RSS after imports, before the catalogue is read. "
        f"`IN_MEMORY_BUDGET` = {budget / 2 ** 30:g} GiB: a training split whose pixels exceed it streams from disk "
        "(`streamed`), a smaller one is decoded into memory once.",
        markdown_table(["images", "train split", "train pixels GiB", "streamed", "before", "training process",
                        "largest worker", "peak RSS", "seconds"], rows, digits=2),
        f"Peak RSS ratio {large['count']:,} / {small['count']:,} images: **{ratio:.2f}** (target <= "
        f"{TARGET_RATIO}: {verdict}); growth {per_item:,.0f} bytes per catalogue image (the catalogue's records "
        "while it is read, and the path and caption lists training keeps). "
        + ("The catalogues were kept (`--keep`)." if keep else
           f"The catalogues ({sum(r['count'] for r in results):,} JPEG files) were deleted afterwards; the "
           f"{distinct:,} drawn garments stay in {WORK} for the next run."),
    ])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench train_memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--counts", type=lambda s: tuple(int(float(x)) for x in s.split(",")), default=None)
    p.add_argument("--quick", action="store_true", help="2k and 10k images")
    p.add_argument("--distinct", type=int, default=2000, help="garments to draw (copied up to each count)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--keep", action="store_true", help="keep the catalogues under /tmp for another run")
    p.add_argument("--no-record", action="store_true", help="print only; leave bench/RESULTS.md alone")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child, args.out)

    from dressup.train import IN_MEMORY_BUDGET

    counts = args.counts or (QUICK_COUNTS if args.quick else COUNTS)
    run = Run.start("train_memory", argv)
    base = draw_base(args.distinct)
    results = []
    try:
        for count in tqdm(counts, desc="train_memory", unit="catalogue"):
            root = write_catalogue(base, count)
            study = write_study(root, count, args.steps, args.batch_size)
            results.append(measure(study, root, count))
            print(json.dumps(results[-1]), flush=True)
    finally:
        if not args.keep:
            for count in counts:
                shutil.rmtree(WORK / f"catalogue-{count}", ignore_errors=True)
                shutil.rmtree(WORK / f"study-{count}", ignore_errors=True)
    emit(run, report(results, args.distinct, args.steps, args.batch_size, IN_MEMORY_BUDGET, args.keep), save=not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
