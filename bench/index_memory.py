"""Memory of indexing: peak RSS of embed_items over 10k, 50k and 100k JPEG files (flat apart from the N×D output).

    python -m bench index_memory                    # 10k, 50k, 100k items
    python -m bench index_memory --quick            # 2k, 10k, 20k items
    python -m bench index_memory --distinct 20000   # write fewer files, list them repeatedly

Each count runs in a fresh Python process (so one count's peak cannot hide in another's) that loads the demo
encoder, then streams the items through ``dressup.index.embed_items`` while a thread samples the memory of the
process and its DataLoader workers. The JPEGs (64 px drawn garments with per-file noise) are written once to
/tmp and reused. The figure that must stay flat is ``peak − before − output``: what indexing costs beyond the
N×D float32 matrix it returns.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tqdm.auto import tqdm  # noqa: E402

from bench.common import (Run, TreeMemorySampler, emit, jpeg_items, markdown_table, peak_rss_mb,  # noqa: E402
                          reset_peak_rss, rss_mb, stopwatch, tree_pss_mb)

COUNTS = (10_000, 50_000, 100_000)
QUICK_COUNTS = (2_000, 10_000, 20_000)
SPEC = "config:assets/models/dressup-demo-small.json"


def child(count: int, distinct: int, workers: int | None, batch_size: int, threads: int | None) -> dict:
    """One measurement, in this (fresh) process: returns the figures as a dict (printed as JSON)."""
    import torch

    from dressup.encoders import load_encoder
    from dressup.index import embed_items

    if threads:
        torch.set_num_threads(threads)

    items = jpeg_items(count, distinct=distinct, progress=False)
    enc = load_encoder(SPEC)
    enc.encode_images(torch.zeros(2, 3, enc.image_size, enc.image_size))  # allocate lazily-made state first
    reset_peak_rss()
    before_rss, before_pss = rss_mb(), tree_pss_mb()
    with TreeMemorySampler(0.05) as tree, stopwatch() as sw:
        out = embed_items(enc, items, batch_size=batch_size, num_workers=workers, progress=True)
    return {
        "count": count, "workers": workers if workers is not None else (0 if count < 20_000 else 2),
        "before_rss": before_rss, "before_pss": before_pss, "main_peak": peak_rss_mb(), "main_after": rss_mb(),
        "tree_peak_rss": tree.peak_rss_mb, "tree_peak_pss": tree.peak_pss_mb, "processes": tree.max_processes,
        "output_mb": out.nbytes / 2 ** 20, "seconds": sw.wall, "per_s": count / sw.wall,
        "threads": torch.get_num_threads(),
    }


def report(results: list[dict], distinct: int, batch_size: int) -> str:
    rows = []
    for r in results:
        main_extra = r["main_peak"] - r["before_rss"] - r["output_mb"]
        tree_extra = r["tree_peak_pss"] - r["before_pss"] - r["output_mb"]
        rows.append([r["count"], r["workers"], r["threads"], r["before_rss"], r["output_mb"], r["main_peak"],
                     main_extra, r["tree_peak_pss"], tree_extra, r["tree_peak_rss"], r["seconds"], r["per_s"]])
    extras = [row[6] for row in rows]
    tree_extras = [row[8] for row in rows]
    flat = (max(extras) - min(extras), max(tree_extras) - min(tree_extras)) if rows else (0.0, 0.0)
    return "\n\n".join([
        f"Demo encoder (`{SPEC}`), `embed_items(batch_size={batch_size})`, JPEG files: {distinct:,} distinct "
        "64 px files on /tmp (listed repeatedly where the count is larger). MiB throughout. `main` = the indexing "
        "process (VmHWM, reset after the model is loaded); `tree` = it plus its DataLoader workers, sampled every "
        "50 ms (PSS counts pages shared by forked workers once; the RSS sum counts them per process).",
        markdown_table(["items", "workers", "torch threads", "RSS before", "output N×D", "main peak",
                        "main peak − before − output", "tree peak PSS", "tree PSS − before − output",
                        "tree peak RSS sum", "seconds", "images/s"],
                       rows, digits=1),
        f"Spread of `peak − before − output` across counts: main process {flat[0]:.1f} MiB, process tree "
        f"{flat[1]:.1f} MiB (flat = the indexer streams; growth with N would show here).",
    ])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench index_memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--counts", type=lambda s: tuple(int(float(x)) for x in s.split(",")), default=None)
    p.add_argument("--quick", action="store_true", help="2k, 10k and 20k items")
    p.add_argument("--distinct", type=int, default=None,
                   help="distinct JPEG files to write (default: as many as the largest count)")
    p.add_argument("--workers", default="2",
                   help="DataLoader workers for every count (default 2, so counts compare); 'auto' = embed_items' "
                        "own choice (0 below 20k items, 2 above)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=None, help="torch threads in the indexing process (default: "
                   "torch's own); memory does not depend on it, time does")
    p.add_argument("--no-record", action="store_true", help="print only; leave bench/RESULTS.md alone")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    workers = None if args.workers == "auto" else int(args.workers)
    counts = args.counts or (QUICK_COUNTS if args.quick else COUNTS)
    distinct = args.distinct or max(counts)

    if args.child:
        print(json.dumps(child(args.child, distinct, workers, args.batch_size, args.threads)))
        return 0

    run = Run.start("index_memory", argv)
    jpeg_items(max(counts), distinct=distinct)  # write the files once, here, outside the measured processes
    results = []
    for count in tqdm(counts, desc="index_memory", unit="count"):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(count), "--distinct", str(distinct),
               "--workers", args.workers, "--batch-size", str(args.batch_size)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        if proc.returncode != 0:
            print(f"the measurement for {count} items failed (exit {proc.returncode}); see the output above",
                  file=sys.stderr)
            return proc.returncode
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    emit(run, report(results, distinct, args.batch_size), save=not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
