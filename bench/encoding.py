"""Encoding throughput: images/s and texts/s per encoder and batch size, and embed_items on JPEGs (workers 0 vs 2).

    python -m bench encoding              # demo encoder (+ trained ones in cache/demo/encoders), ViT-B/32
    python -m bench encoding --quick      # batches 1 and 64, 500 JPEGs
    python -m bench encoding --encoder local:cache/demo/encoders/finetuned

Encoders run on the CPU with random inputs of their own image size (the image tower's cost does not depend
on the pixels); texts are attribute captions of the demo's vocabulary. ``embed_items`` is the indexer's path:
JPEG files decoded in a ``DataLoader`` (the demo catalogue's images if it is built, else 2,000 drawn garments
written to /tmp), measured with ``num_workers`` 0 and 2 in alternation so load from other jobs hits both.

Loading each encoder runs under an audit hook that refuses and counts any network connection or DNS lookup:
``openclip:ViT-B-32`` (random weights) and ``config:`` specs must load with nothing downloaded.
"""
from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from bench.common import (REPO, Run, demo_catalogue_items, emit, jpeg_items, markdown_table,  # noqa: E402
                          median, repeat, stopwatch, time_calls)
from dressup.encoders import Encoder, load_encoder  # noqa: E402
from dressup.index import embed_items  # noqa: E402

DEMO_SPEC = "config:assets/models/dressup-demo-small.json"
VIT_SPEC = "openclip:ViT-B-32"
BATCHES = (1, 64, 256)
QUICK_BATCHES = (1, 64)
NETWORK_EVENTS = ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
                  "http.client.connect")
COLOURS = ("red", "navy", "black", "white", "mustard", "olive", "pink", "grey", "teal", "beige")
PATTERNS = ("striped", "floral", "polka-dot", "solid", "checked", "animal print")
GARMENTS = ("dress", "blouse", "jacket", "skirt", "trousers", "jumper", "shirt", "coat")
DETAILS = ("long sleeves", "short sleeves", "v-neck", "crew neck", "chiffon", "denim", "knit", "relaxed fit")


class NetworkGuard:
    """While ``active``, refuses every connection and DNS lookup this process attempts, and lists them.

    An audit hook cannot be removed, so the guard is switched on only around encoder loading (the
    DataLoader's workers talk over local sockets later, which must stay allowed).
    """

    def __init__(self) -> None:
        self.active = False
        self.attempts: list[str] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        if self.active and event in NETWORK_EVENTS:
            self.attempts.append(f"{event}{args[1:2]!r}")
            raise ConnectionRefusedError(f"bench/encoding.py refused {event} while loading an encoder")

    def load(self, spec: str) -> tuple[Encoder, list[str], float]:
        start = len(self.attempts)
        self.active = True
        try:
            with stopwatch() as sw:
                enc = load_encoder(spec)
        finally:
            self.active = False
        return enc, self.attempts[start:], sw.wall


def captions(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    pick = lambda xs: xs[rng.integers(len(xs))]  # noqa: E731
    return [f"{pick(COLOURS)} {pick(PATTERNS)} {pick(GARMENTS)} with {pick(DETAILS)} and {pick(DETAILS)}"
            for _ in range(n)]


def encoder_specs(extra: list[str], skip_vit: bool) -> list[str]:
    specs = [DEMO_SPEC]
    trained = REPO / "cache" / "demo" / "encoders"
    specs += [f"local:{d.relative_to(REPO)}" for d in sorted(trained.glob("*")) if (d / "encoder.json").is_file()]
    if not skip_vit:
        specs.append(VIT_SPEC)
    return list(dict.fromkeys(specs + extra))


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Throughput:
    spec: str
    what: str  # "images" | "texts"
    threads: int
    batch: int
    per_s: float
    batch_ms: float
    cpu_ms: float
    timed: int


def image_throughput(enc: Encoder, spec: str, threads: int, batches: tuple[int, ...],
                     budget_s: float) -> list[Throughput]:
    out = []
    g = torch.Generator().manual_seed(0)
    s = enc.image_size
    enc.encode_images(torch.randint(0, 256, (2, 3, s, s), dtype=torch.uint8, generator=g))  # warm-up
    for b in batches:
        x = torch.randint(0, 256, (b, 3, s, s), dtype=torch.uint8, generator=g)
        t = repeat(lambda: enc.encode_images(x), times=20 if b == 1 else 3, warmup=0, budget_s=budget_s)
        out.append(Throughput(spec, "images", threads, b, b / t.p50, t.p50 * 1e3, t.cpu_p50 * 1e3, t.n))
    return out


def text_throughput(enc: Encoder, spec: str, threads: int, batches: tuple[int, ...],
                    budget_s: float) -> list[Throughput]:
    out = []
    texts = captions(max(batches) * 4)
    enc.encode_texts(texts[:2])  # warm-up
    for b in batches:
        t = time_calls(lambda i: enc.encode_texts(texts[(i * b) % len(texts):][:b]), 20 if b == 1 else 3,
                       warmup=0, budget_s=budget_s, min_n=1)
        out.append(Throughput(spec, "texts", threads, b, b / t.p50, t.p50 * 1e3, t.cpu_p50 * 1e3, t.n))
    return out


@dataclass
class IndexerRun:
    spec: str
    threads: int
    workers: int
    items: int
    per_s: list[float]


def indexer_throughput(enc: Encoder, spec: str, items: list, threads: tuple[int, ...], reps: int,
                       budget_s: float) -> list[IndexerRun]:
    """``embed_items`` with 0 and 2 workers under each torch thread count, in alternation (so other jobs'
    load hits every setting alike), ``reps`` rounds or fewer once ``budget_s`` is spent."""
    runs = {(t, w): IndexerRun(spec, t, w, len(items), []) for t in threads for w in (0, 2)}
    spent = 0.0
    for _ in range(reps):
        for (t, w), run in runs.items():
            with torch_threads(t), stopwatch() as sw:
                embed_items(enc, items, batch_size=256, num_workers=w, progress=False)
            run.per_s.append(len(items) / sw.wall)
            spent += sw.wall
        if spent > budget_s:
            break
    return list(runs.values())


def decode_only(enc: Encoder, items: list, workers: int) -> float:
    """Images/s of the indexer's DataLoader alone (decode + resize + normalise, no model)."""
    from torch.utils.data import DataLoader

    from dressup.index import _ImageDataset  # the indexer's own dataset, so the same work is timed

    loader = DataLoader(_ImageDataset(items, enc.preprocess), batch_size=256, num_workers=workers)
    with stopwatch() as sw:
        for _ in loader:
            pass
    return len(items) / sw.wall


def report(loads: list[list], rows: list[Throughput], indexer: list[IndexerRun], decode: list[list],
           items_note: str) -> str:
    by = {(r.spec, r.what, r.threads, r.batch): r for r in rows}
    table = [[r.spec, r.what, r.threads, r.batch, r.per_s, r.batch_ms, r.cpu_ms, r.timed] for r in rows]
    ratios = []
    for (spec, what, threads, batch), one in by.items():
        batched = [r for (s, w, t, b), r in by.items() if (s, w, t) == (spec, what, threads) and b > 1]
        if batch == 1 and batched:
            best = max(batched, key=lambda r: r.per_s)
            ratios.append([spec, what, threads, one.per_s, best.batch, best.per_s, best.per_s / one.per_s])
    thread_counts = sorted({r.threads for r in rows})
    by_threads = []
    if len(thread_counts) > 1:
        lo, hi = thread_counts[0], thread_counts[-1]
        for (spec, what, threads, batch), r in by.items():
            other = by.get((spec, what, hi, batch))
            if threads == lo and other:
                by_threads.append([spec, what, batch, r.per_s, other.per_s, other.per_s / r.per_s])
    idx = [[r.spec, r.items, r.threads, r.workers, median(r.per_s), len(r.per_s)] for r in indexer]
    speedup = []
    for (spec, threads) in dict.fromkeys((r.spec, r.threads) for r in indexer):
        w = {r.workers: r for r in indexer if (r.spec, r.threads) == (spec, threads)}
        if 0 in w and 2 in w:
            speedup.append([spec, threads, median(w[2].per_s) / median(w[0].per_s)])
    parts = [
        f"CPU, torch {torch.__version__} (default {torch.get_num_threads()} threads; each figure names the torch "
        "thread count it ran with). `per s` = batch size / median time per batch; CPU ms = this process's CPU "
        "time per batch (all threads).",
        "### Loading (network refused and counted while loading)",
        markdown_table(["encoder", "load s", "network attempts", "embed dim", "image size"], loads),
        "### Throughput by batch size",
        markdown_table(["encoder", "input", "threads", "batch", "per s", "ms per batch", "CPU ms", "n"], table,
                       digits=1),
        "### Batched vs unbatched (same run, same thread count)",
        markdown_table(["encoder", "input", "threads", "batch 1 per s", "best batch", "per s", "ratio"], ratios,
                       digits=1),
    ]
    if by_threads:
        parts += [f"### {thread_counts[-1]} torch threads vs {thread_counts[0]} (same run)",
                  markdown_table(["encoder", "input", "batch", f"per s, {thread_counts[0]} thr",
                                  f"per s, {thread_counts[-1]} thr", "ratio"], by_threads)]
    parts += [
        f"### Indexer: `embed_items` on JPEG files ({items_note}), batch 256",
        markdown_table(["encoder", "items", "torch threads", "num_workers", "images/s (median)", "runs"], idx,
                       digits=1),
    ]
    if speedup:
        parts.append(markdown_table(["encoder", "torch threads", "images/s with 2 workers ÷ with 0"], speedup))
    if decode:
        parts += ["Decoding alone (the indexer's DataLoader, no model):",
                  markdown_table(["num_workers", "images/s"], decode, digits=1)]
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench encoding", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="batches 1 and 64, 500 JPEGs, one indexer run each")
    p.add_argument("--batches", type=lambda s: tuple(int(x) for x in s.split(",")), default=None)
    p.add_argument("--encoder", action="append", default=[], help="another encoder spec to measure")
    p.add_argument("--skip-vit", action="store_true", help="leave out openclip:ViT-B-32")
    p.add_argument("--jpegs", type=int, default=2000, help="JPEGs to write when the demo catalogue is not built")
    p.add_argument("--budget", type=float, default=20.0, help="seconds per measurement (at least one batch)")
    p.add_argument("--threads", type=lambda s: tuple(int(x) for x in s.split(",")), default=None,
                   help="torch thread counts to compare (default: 1 and torch's default)")
    p.add_argument("--no-record", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = p.parse_args(argv)
    batches = args.batches or (QUICK_BATCHES if args.quick else BATCHES)
    run = Run.start("encoding", argv)
    guard = NetworkGuard()

    threads = args.threads or tuple(sorted({1, torch.get_num_threads()}))
    items = demo_catalogue_items()
    source = "images of the demo catalogue" if items else "drawn 64 px garments in /tmp (demo catalogue not built)"
    if not items:
        items = jpeg_items(500 if args.quick else args.jpegs)
    if args.quick:
        items = items[:500]
    items_note = f"{len(items):,} {source}"

    loads, rows, indexer = [], [], []
    decode: list[list] = []
    for spec in tqdm(encoder_specs(args.encoder, args.skip_vit), desc="encoders", unit="encoder"):
        enc, attempts, load_s = guard.load(spec)
        loads.append([spec, load_s, len(attempts), enc.embed_dim, enc.image_size])
        for a in attempts:
            tqdm.write(f"  {spec}: refused {a}")
        for t in threads:
            with torch_threads(t):
                rows += image_throughput(enc, spec, t, batches, args.budget)
                rows += text_throughput(enc, spec, t, batches, args.budget)
        if enc.image_size <= 64 and not indexer:  # the demo's tower (ViT-B/32 at 224 px is too slow for this)
            indexer += indexer_throughput(enc, spec, items, threads, 1 if args.quick else 2, args.budget * 6)
            if not decode:
                decode = [[w, decode_only(enc, items, w)] for w in (0, 2)]
        del enc
    emit(run, report(loads, rows, indexer, decode, items_note), save=not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
