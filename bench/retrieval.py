"""Retrieval at catalogue scale: exact faiss vs numpy brute force vs HNSW (latency, build, memory, recall@4).

    python -m bench retrieval                      # 10k, 100k, 800k x 512-d; random + clustered (+ demo vectors)
    python -m bench retrieval --quick              # 10k and 100k only
    python -m bench retrieval --sizes 800000 --data clustered

Every query is a single top-4 search through ``dressup.index.VectorIndex.search``, as the app issues them.
Recall@4 is measured against exact search over the same vectors (an item counts as found when its score
reaches the 4th best exact score, so exact ties cannot count as misses). Filtered search keeps a random
50% or 5% of rows through ``allowed``. The ``efSearch`` sweep shows where ``HNSW_EF_SEARCH`` sits.

Data sets:
- ``random``: i.i.d. Gaussian vectors on the unit sphere. In 512 dimensions every pair is nearly equally
  far apart, the hardest case for approximate search, unlike any real embedding.
- ``clustered``: a Gaussian mixture closer to real embeddings: one cluster per 1,000 items, each a 16-d
  Gaussian (spread 0.25 per direction) around a random unit centre plus isotropic noise of norm 0.3. Queries
  are fresh draws from the same mixture. The nearest neighbour has a cosine of about 0.82.
- ``demo`` (automatic when ``cache/demo/indexes/*/vectors.npy`` exist) and ``--vectors FILE.npy``: real
  embeddings; held-out rows serve as queries.
"""
from __future__ import annotations

import argparse
import gc
import math
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import faiss  # noqa: E402
import numpy as np  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from bench.common import REPO, Run, blas_threads, emit, markdown_table, rss_mb, stopwatch, time_calls  # noqa: E402
from dressup import config as dressup_config  # noqa: E402
from dressup import index as dressup_index  # noqa: E402
from dressup.index import VectorIndex  # noqa: E402

FULL_SIZES = (10_000, 100_000, 800_000)
QUICK_SIZES = (10_000, 100_000)
FILTERS = {"50%": 0.5, "5%": 0.05}
EF_SWEEP = (16, 32, 64, 128, 256, 384, 512)
EXACT_BUDGET_MS = 10.0  # "exact search is fine while its p50 is small": within a text encoding's cost
TARGET_P50_MS = 2.0
TARGET_RECALL = 0.99
SCORE_TOL = 1e-5  # float32 kernels differ in the last bits; a score this close to the 4th best counts as a hit
CLUSTER_ITEMS, CLUSTER_RANK, CLUSTER_SPREAD, CLUSTER_NOISE = 1000, 16, 0.25, 0.3
CHUNK = 65_536
RANDOM_HNSW_MAX = 100_000
CROSSOVER_MIN_N = 100_000


# ---------------------------------------------------------------------------------------------- data
@dataclass
class Dataset:
    name: str
    vectors: np.ndarray  # N x D, float32, L2-normalised
    queries: np.ndarray  # Q x D, float32, L2-normalised

    @property
    def n(self) -> int:
        return len(self.vectors)


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    faiss.normalize_L2(x)
    return x


def random_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    out = np.empty((n, dim), dtype=np.float32)
    for i in range(0, n, CHUNK):
        out[i:i + CHUNK] = rng.standard_normal((min(CHUNK, n - i), dim), dtype=np.float32)
    faiss.normalize_L2(out)
    return out


class Mixture:
    """The ``clustered`` data set's generator: low-rank Gaussian clusters plus isotropic noise."""

    def __init__(self, n_clusters: int, dim: int, rng: np.random.Generator) -> None:
        self.dim, self.rng = dim, rng
        self.centres = _normalise(rng.standard_normal((n_clusters, dim), dtype=np.float32))
        scale = np.float32(CLUSTER_SPREAD / math.sqrt(dim))
        self.bases = rng.standard_normal((n_clusters, CLUSTER_RANK, dim), dtype=np.float32) * scale

    def draw(self, n: int) -> np.ndarray:
        rng, k = self.rng, len(self.centres)
        labels = rng.integers(0, k, n)
        out = np.empty((n, self.dim), dtype=np.float32)
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(k + 1))
        noise = np.float32(CLUSTER_NOISE / math.sqrt(self.dim))
        for c in range(k):  # one matrix product per cluster; rows land where their (shuffled) labels put them
            rows = order[bounds[c]:bounds[c + 1]]
            z = rng.standard_normal((len(rows), CLUSTER_RANK), dtype=np.float32)
            out[rows] = self.centres[c] + z @ self.bases[c]
        for i in range(0, n, CHUNK):
            out[i:i + CHUNK] += rng.standard_normal((min(CHUNK, n - i), self.dim), dtype=np.float32) * noise
        faiss.normalize_L2(out)
        return out


def make_dataset(kind: str, n: int, dim: int, n_queries: int, seed: int) -> Dataset:
    rng = np.random.default_rng([seed, n, dim])
    if kind == "random":
        return Dataset(kind, random_vectors(n, dim, rng), random_vectors(n_queries, dim, rng))
    if kind == "clustered":
        mix = Mixture(max(16, n // CLUSTER_ITEMS), dim, rng)
        return Dataset(kind, mix.draw(n), mix.draw(n_queries))
    raise ValueError(f"unknown data set {kind!r}; use random, clustered or demo")


def file_dataset(path: Path, n_queries: int, seed: int, name: str | None = None) -> Dataset:
    """Real embeddings from a ``vectors.npy``: held-out rows (up to a tenth) are the queries."""
    x = _normalise(np.load(path))
    rng = np.random.default_rng(seed)
    nq = min(n_queries, max(1, len(x) // 10))
    held = rng.choice(len(x), nq, replace=False)
    keep = np.ones(len(x), dtype=bool)
    keep[held] = False
    return Dataset(name or f"{path.parent.name}", np.ascontiguousarray(x[keep]), np.ascontiguousarray(x[held]))


def demo_vector_files() -> list[Path]:
    return sorted((REPO / "cache" / "demo" / "indexes").glob("*/vectors.npy"))


# ---------------------------------------------------------------------------------------------- searching
def numpy_search(x: np.ndarray, q: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """Brute force with numpy: one matrix-vector product, then a partial sort."""
    s = x @ q
    if allowed is not None:
        s = np.where(allowed, s, -np.inf)
    top = np.argpartition(-s, k)[:k]
    return top[np.argsort(-s[top])]


def bitmap_search(index: VectorIndex, q: np.ndarray, k: int, allowed: np.ndarray) -> np.ndarray:
    """Filtered search with a bitmap selector (one bit per row, O(N/8) to build) instead of
    ``IDSelectorBatch`` (a hash set of every allowed id, rebuilt per query): the change proposed in the report."""
    sel = faiss.IDSelectorBitmap(np.packbits(allowed, bitorder="little"))
    if index.kind == "hnsw":
        params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(dressup_index.HNSW_EF_SEARCH, k))
    else:
        params = faiss.SearchParameters(sel=sel)
    _, rows = index.faiss.search(q.reshape(1, -1), k, params=params)
    return rows[0]


def ground_truth(x: np.ndarray, queries: np.ndarray, masks: dict[str, np.ndarray | None],
                 k: int) -> dict[str, np.ndarray]:
    """The k-th best exact score per query under each mask (one pass over the vectors, chunked)."""
    best = {name: np.full((len(queries), k), -np.inf, dtype=np.float32) for name in masks}
    for i in range(0, len(x), CHUNK):
        s = queries @ x[i:i + CHUNK].T
        for name, mask in masks.items():
            t = s if mask is None else np.where(mask[i:i + CHUNK], s, -np.inf)
            kk = min(k, t.shape[1])
            part = -np.partition(-t, kk - 1, axis=1)[:, :kk]
            both = np.concatenate([best[name], part], axis=1)
            best[name] = -np.partition(-both, k - 1, axis=1)[:, :k]
    return {name: b.min(axis=1) for name, b in best.items()}


def hits(x: np.ndarray, queries: np.ndarray, found: dict[int, np.ndarray], kth: np.ndarray, k: int) -> np.ndarray:
    """Per query, the share of the k returned rows whose exact score reaches the k-th best exact score."""
    out = []
    for i, rows in found.items():
        rows = rows[rows >= 0]
        scores = x[rows] @ queries[i]
        out.append(min(k, int((scores >= kth[i] - SCORE_TOL).sum())) / k)
    return np.asarray(out, dtype=float)


def recall(x: np.ndarray, queries: np.ndarray, found: dict[int, np.ndarray], kth: np.ndarray, k: int) -> float:
    """Mean share of the k returned rows whose exact score reaches the k-th best exact score."""
    h = hits(x, queries, found, kth, k)
    return float(h.mean()) if len(h) else float("nan")


# ---------------------------------------------------------------------------------------------- measuring
@dataclass
class Row:
    dataset: str
    n: int
    method: str
    keep: str = "all"
    build_s: float = float("nan")
    build_cpu_s: float = float("nan")
    extra_mb: float = float("nan")
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    cpu_ms: float = float("nan")
    recall: float = float("nan")
    timed: int = 0
    vectors_mb: float = float("nan")


def measure(row: Row, search, data: Dataset, kth: np.ndarray, k: int, budget_s: float) -> Row:
    """Time single-query searches (stopping at the budget) and score the rows they returned."""
    found: dict[int, np.ndarray] = {}

    def one(i: int) -> None:
        j = i % len(data.queries)
        found[j] = np.asarray(search(data.queries[j]))

    t = time_calls(one, len(data.queries), budget_s=budget_s, min_n=10)
    row.p50_ms, row.p99_ms, row.cpu_ms, row.timed = t.p50 * 1e3, t.p99 * 1e3, t.cpu_p50 * 1e3, t.n
    row.recall = recall(data.vectors, data.queries, found, kth, k)
    return row


@contextmanager
def faiss_threads(n: int) -> Iterator[None]:
    """faiss's OpenMP threads inside the block (its single-query flat search splits the scan over them)."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def build(kind: str, x: np.ndarray) -> tuple[VectorIndex, float, float, float]:
    gc.collect()
    before = rss_mb()
    with stopwatch() as sw:
        index = VectorIndex(x, kind)  # x is float32 and contiguous: VectorIndex keeps it, faiss copies it
    return index, sw.wall, sw.cpu, rss_mb() - before


def ef_sweep(index: VectorIndex, data: Dataset, kth: np.ndarray, k: int, budget_s: float) -> list[list]:
    rows = []
    for ef in EF_SWEEP:
        params = faiss.SearchParametersHNSW(efSearch=max(ef, k))
        _, got = index.faiss.search(data.queries, k, params=params)
        h = hits(data.vectors, data.queries, dict(enumerate(got)), kth, k)
        t = time_calls(lambda i: index.faiss.search(data.queries[i % len(data.queries)][None], k, params=params),
                       min(100, len(data.queries)), budget_s=budget_s / 2, min_n=10)
        rows.append([data.name, data.n, ef, h.mean(), (h == 1).mean() * 100, (h == 0).mean() * 100,
                     t.p50 * 1e3, t.p99 * 1e3])
    return rows


def bench_dataset(data: Dataset, k: int, budget_s: float, seed: int, sweep: bool,
                  hnsw: bool = True) -> tuple[list[Row], list[list]]:
    rng = np.random.default_rng(seed)
    masks: dict[str, np.ndarray | None] = {"all": None}
    for name, share in FILTERS.items():
        masks[name] = rng.random(data.n) < share
    tqdm.write(f"[{data.name} {data.n:,}] exact ground truth for {len(data.queries)} queries")
    kth = ground_truth(data.vectors, data.queries, masks, k)
    rows: list[Row] = []
    sweep_rows: list[list] = []
    vec_mb = data.vectors.nbytes / 2 ** 20

    kinds = (("exact", "exact (faiss IndexFlatIP)"), ("hnsw", "hnsw (faiss IndexHNSWFlat)"))
    for kind, label in kinds if hnsw else kinds[:1]:
        if kind == "hnsw":
            tqdm.write(f"[{data.name} {data.n:,}] building HNSW (M={dressup_index.HNSW_M}, "
                       f"efConstruction={dressup_index.HNSW_EF_CONSTRUCTION}); minutes at 800k on 2 cores")
        index, wall, cpu, extra = build(kind, data.vectors)
        tqdm.write(f"[{data.name} {data.n:,}] {kind} built in {wall:.1f} s; timing queries")
        for keep, mask in masks.items():
            row = Row(data.name, data.n, label, keep, wall, cpu, extra)
            measure(row, lambda q, m=mask: index.search(q, k, m)[0], data, kth[keep], k, budget_s)
            rows.append(row)
            if mask is not None:
                alt = Row(data.name, data.n, label.split(" ")[0] + " + bitmap selector (proposed)", keep)
                rows.append(measure(alt, lambda q, m=mask: bitmap_search(index, q, k, m), data, kth[keep], k,
                                    budget_s))
        if kind == "hnsw" and sweep:
            sweep_rows = ef_sweep(index, data, kth["all"], k, budget_s)
        if kind == "exact":
            with faiss_threads(1):
                row = Row(data.name, data.n, "exact (faiss IndexFlatIP, 1 thread)", "all")
                rows.append(measure(row, lambda q: index.search(q, k)[0], data, kth["all"], k, budget_s))
        del index
        gc.collect()
        if kind == "exact":
            with blas_threads(1):
                for keep, mask in masks.items():
                    row = Row(data.name, data.n, "numpy brute force (1 BLAS thread)", keep, 0.0, 0.0, 0.0)
                    rows.append(measure(row, lambda q, m=mask: numpy_search(data.vectors, q, k, m), data, kth[keep],
                                        k, budget_s))
            row = Row(data.name, data.n, "numpy brute force (default BLAS threads)", "all", 0.0, 0.0, 0.0)
            rows.append(measure(row, lambda q: numpy_search(data.vectors, q, k), data, kth["all"], k, budget_s))
    for row in rows:
        row.vectors_mb = vec_mb
    return rows, sweep_rows


# ---------------------------------------------------------------------------------------------- report
def crossover(rows: list[Row]) -> list[list]:
    """Each exact method's cost per item at the largest size measured (where the scan dominates fixed
    costs; data sets under ``CROSSOVER_MIN_N`` rows are left out) and the catalogue size at which its p50
    would reach ``EXACT_BUDGET_MS``."""
    out = []
    for name in dict.fromkeys(r.dataset for r in rows):
        exact = [r for r in rows if r.dataset == name and r.keep == "all" and not r.method.startswith("hnsw")]
        if not exact:
            continue
        n_max = max(r.n for r in exact)
        if n_max < CROSSOVER_MIN_N:  # a small matrix sits in cache: its per-item cost does not extrapolate
            continue
        for r in (r for r in exact if r.n == n_max):
            out.append([name, r.method, n_max, r.p50_ms / n_max * 1e5, EXACT_BUDGET_MS * n_max / r.p50_ms,
                        r.cpu_ms / n_max * 1e5, EXACT_BUDGET_MS * n_max / r.cpu_ms])
    return out


def verdicts(rows: list[Row]) -> list[str]:
    lines = []
    for r in rows:
        if r.method.startswith("hnsw (") and r.keep == "all" and r.n >= 800_000:
            ok = r.p50_ms <= TARGET_P50_MS and r.recall >= TARGET_RECALL
            lines.append(f"- {r.dataset} {r.n:,}: HNSW top-{4} p50 {r.p50_ms:.2f} ms (target ≤ {TARGET_P50_MS}), "
                         f"recall@4 {r.recall:.4f} (target ≥ {TARGET_RECALL}): **{'met' if ok else 'not met'}**")
    return lines


def report(rows: list[Row], sweeps: list[list], k: int, budget_s: float) -> str:
    main = [[r.dataset, r.n, r.method, r.vectors_mb, r.extra_mb, r.build_s, r.build_cpu_s, r.p50_ms, r.p99_ms,
             r.cpu_ms, r.recall, r.timed] for r in rows if r.keep == "all"]
    filt = [[r.dataset, r.n, r.method, r.keep, r.p50_ms, r.p99_ms, r.cpu_ms, r.recall, r.timed]
            for r in rows if r.keep != "all"]
    parts = [
        f"Single top-{k} queries through `VectorIndex.search` (numpy: `x @ q` + `argpartition`). "
        f"Tuning: HNSW_M={dressup_index.HNSW_M}, HNSW_EF_CONSTRUCTION={dressup_index.HNSW_EF_CONSTRUCTION}, "
        f"HNSW_EF_SEARCH={dressup_index.HNSW_EF_SEARCH}; `QuerySpec.approximate_above` = "
        f"{dressup_config.QuerySpec().approximate_above:,}. Each latency is over up to the data set's queries, "
        f"stopping after {budget_s:g} s (n = queries timed); CPU ms is this process's CPU time per query (all "
        "threads), which other jobs' load barely moves.",
        "### Unfiltered: build, memory, latency, recall",
        "`vectors MB` = the N×D float32 matrix VectorIndex keeps; `index MB` = what building the faiss index "
        "added to RSS on top of it.",
        markdown_table(["data", "N", "method", "vectors MB", "index MB", "build s", "build CPU s", "p50 ms",
                        "p99 ms", "CPU ms", f"recall@{k}", "n"], main),
        "### Filtered search (`allowed` keeps a random share of rows)",
        markdown_table(["data", "N", "method", "kept", "p50 ms", "p99 ms", "CPU ms", f"recall@{k}", "n"], filt),
    ]
    if sweeps:
        parts += ["### HNSW efSearch sweep (unfiltered, raw faiss on the same index)",
                  markdown_table(["data", "N", "efSearch", f"recall@{k}", f"% queries all {k} found",
                                  "% queries none found", "p50 ms", "p99 ms"], sweeps, digits=4)]
    cross = crossover(rows)
    if cross:
        parts += [f"### Exact search: cost per item at the largest size, and the size where a query takes "
                  f"{EXACT_BUDGET_MS:g} ms",
                  markdown_table(["data", "method", "at N", "p50 ms per 100k", f"N at {EXACT_BUDGET_MS:g} ms p50",
                                  "CPU ms per 100k", f"N at {EXACT_BUDGET_MS:g} ms CPU"], cross)]
    v = verdicts(rows)
    if v:
        parts += ["### Targets at 800k", "\n".join(v)]
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench retrieval", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=lambda s: [int(float(x)) for x in s.split(",")], default=None,
                   help="comma-separated catalogue sizes (default 10000,100000,800000)")
    p.add_argument("--quick", action="store_true", help="10k and 100k only")
    p.add_argument("--data", default="random,clustered,demo",
                   help="comma-separated: random, clustered, demo (default: all three; demo only if built)")
    p.add_argument("--random-hnsw-max", type=int, default=RANDOM_HNSW_MAX,
                   help="largest random data set to build HNSW for (default %(default)s: on random vectors HNSW "
                        "builds slowest and its recall is already far below target at 100k); 0 = no limit")
    p.add_argument("--vectors", type=Path, action="append", default=[], help="also benchmark this vectors.npy")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--queries", type=int, default=200, help="queries per data set (recall is averaged over them)")
    p.add_argument("--budget", type=float, default=10.0, help="seconds per latency measurement (at least 10 queries)")
    p.add_argument("--no-sweep", action="store_true", help="skip the efSearch sweep")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-record", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = p.parse_args(argv)
    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    kinds = [d.strip() for d in args.data.split(",") if d.strip()]
    run = Run.start("retrieval", argv)

    jobs: list[tuple[str, int | Path]] = []
    for kind in kinds:
        if kind == "demo":
            jobs += [("file", f) for f in demo_vector_files()]
        else:
            jobs += [(kind, n) for n in sizes]
    jobs += [("file", Path(f)) for f in args.vectors]

    rows: list[Row] = []
    sweeps: list[list] = []
    skipped: list[int] = []
    for kind, what in tqdm(jobs, desc="retrieval benchmark", unit="data set"):
        if kind == "file":
            data = file_dataset(Path(what), args.queries, args.seed,
                                name=f"demo:{Path(what).parent.name}" if Path(what) in demo_vector_files() else None)
        else:
            data = make_dataset(kind, int(what), args.dim, args.queries, args.seed)
        hnsw = not (kind == "random" and args.random_hnsw_max and data.n > args.random_hnsw_max)
        if not hnsw:
            skipped.append(data.n)
        r, s = bench_dataset(data, args.k, args.budget, args.seed, not args.no_sweep, hnsw)
        rows += r
        sweeps += s
        del data
        gc.collect()
    body = report(rows, sweeps, args.k, args.budget)
    if skipped:
        body += (f"\n\nHNSW was not built on random vectors of {', '.join(f'{n:,}' for n in skipped)} rows "
                 f"(`--random-hnsw-max {args.random_hnsw_max}`; pass 0 to build it anyway).")
    emit(run, body, save=not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
