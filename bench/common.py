"""What every benchmark needs: timing with repeats and percentiles, memory from ``/proc``, the machine's
description, Markdown tables, and recording a dated section in ``bench/RESULTS.md``; and, for the benchmarks that
measure the study app from outside, copies of the demo study file that leave the real results (and, on request,
the real cache) alone and a ``python app.py`` process to drive.

The machine these run on is shared and often busy, so every timing records CPU time next to wall time
(CPU time per call barely moves with other processes' load; wall time does), comparisons are made inside one
run, and sections say what the load average was while they ran.
"""
from __future__ import annotations

import datetime as _dt
import gc
import os
import platform
import re
import shlex
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "RESULTS.md"
RESULTS_HEADER = """# Benchmark results

Written by the scripts under `bench/` (`python -m bench` lists them; `python -m bench NAME --help` gives a
script's options). Each section is the latest run of the command in its title: rerunning that command replaces
the section. Wall times depend on what else the machine was doing (the load average is given); CPU times and
ratios measured inside one run are the figures to compare.
"""


# ---------------------------------------------------------------------------------------------- timing
def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100, linear interpolation); NaN for no samples."""
    return float(np.percentile(np.asarray(samples, dtype=float), q)) if len(samples) else float("nan")


def median(samples: Sequence[float]) -> float:
    return percentile(samples, 50)


@dataclass
class Timing:
    """Per-call wall and CPU seconds (CPU = this process, all threads)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.wall)

    @property
    def p50(self) -> float:
        return median(self.wall)

    @property
    def p99(self) -> float:
        return percentile(self.wall, 99)

    @property
    def cpu_p50(self) -> float:
        return median(self.cpu)

    @property
    def total(self) -> float:
        return float(sum(self.wall))


def time_calls(fn: Callable[[int], Any], n: int, *, budget_s: float | None = None, min_n: int = 5,
               warmup: int = 1) -> Timing:
    """Call ``fn(i)`` for i = 0..n-1 and time each call; stop early once ``budget_s`` is spent (after at least
    ``min_n`` calls), so a slow method at a large size cannot hold a run for minutes. ``i`` lets the caller
    vary the input (a different query each call) so caches do not flatter the figures."""
    for i in range(warmup):
        fn(i)
    t = Timing()
    started = time.perf_counter()
    for i in range(n):
        w, c = time.perf_counter(), time.process_time()
        fn(i)
        t.cpu.append(time.process_time() - c)
        t.wall.append(time.perf_counter() - w)
        if budget_s is not None and i + 1 >= min_n and time.perf_counter() - started > budget_s:
            break
    return t


def repeat(fn: Callable[[], Any], times: int = 3, *, warmup: int = 1, budget_s: float | None = None) -> Timing:
    """Time a whole operation ``times`` times (after ``warmup`` untimed runs); use the median."""
    return time_calls(lambda _: fn(), times, budget_s=budget_s, min_n=1, warmup=warmup)


@dataclass
class Stopwatch:
    wall: float = 0.0
    cpu: float = 0.0


@contextmanager
def stopwatch() -> Iterator[Stopwatch]:
    """``with stopwatch() as sw: ...`` then ``sw.wall`` / ``sw.cpu`` in seconds."""
    sw = Stopwatch()
    w, c = time.perf_counter(), time.process_time()
    try:
        yield sw
    finally:
        sw.wall, sw.cpu = time.perf_counter() - w, time.process_time() - c


def _numpy_openblas() -> Any:
    """numpy's own OpenBLAS (the wheel's ``scipy_openblas``), or None where numpy was built otherwise."""
    import ctypes

    libs = sorted((Path(np.__file__).resolve().parent.parent / "numpy.libs").glob("libscipy_openblas*.so*"))
    if not libs:
        return None
    lib = ctypes.CDLL(str(libs[0]))
    for suffix in ("64_", "_64_", ""):
        get = getattr(lib, f"scipy_openblas_get_num_threads{suffix}", None)
        put = getattr(lib, f"scipy_openblas_set_num_threads{suffix}", None)
        if get is not None and put is not None:
            return get, put
    return None


@contextmanager
def blas_threads(n: int) -> Iterator[bool]:
    """Run numpy's BLAS on ``n`` threads inside the block (yields False, changing nothing, if it cannot).

    A matrix-vector product split over two threads needs two free cores at once; on a busy 2-core machine
    the second thread often waits a scheduler tick, so single queries are timed on one thread, like faiss's.
    """
    fns = _numpy_openblas()
    if fns is None:
        yield False
        return
    get, put = fns
    before = get()
    put(n)
    try:
        yield True
    finally:
        put(before)


# ---------------------------------------------------------------------------------------------- memory
def _status_mb(key: str, pid: int | str = "self") -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def rss_mb() -> float:
    """Resident memory of this process now (VmRSS), MiB."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """Peak resident memory of this process since start or the last ``reset_peak_rss`` (VmHWM), MiB."""
    return _status_mb("VmHWM")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5), so one process can measure several stages."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(x) for x in fh.read().split()]
    except OSError:
        pass
    return out


def process_tree(pid: int | None = None) -> list[int]:
    """This process and all its descendants (e.g. DataLoader workers)."""
    todo, seen = [pid or os.getpid()], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def _pss_mb(pid: int) -> float:
    """Proportional set size: shared pages (a forked worker's copy-on-write memory) counted once overall."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_pss_mb() -> float:
    """PSS summed over this process and its descendants, MiB."""
    return sum(_pss_mb(p) for p in process_tree())


class TreeMemorySampler:
    """Samples the memory of this process and its descendants in a thread (``with TreeMemorySampler() as m``).

    ``peak_rss_mb`` sums RSS over the tree (counts pages shared by forked workers once per process, so it
    overstates); ``peak_pss_mb`` sums PSS (shared pages split between sharers: what the tree really costs).
    """

    def __init__(self, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self.peak_rss_mb = 0.0
        self.peak_pss_mb = 0.0
        self.max_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        pids = process_tree()
        self.max_processes = max(self.max_processes, len(pids))
        self.peak_rss_mb = max(self.peak_rss_mb, sum(_status_mb("VmRSS", p) for p in pids if p))
        self.peak_pss_mb = max(self.peak_pss_mb, sum(_pss_mb(p) for p in pids))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> "TreeMemorySampler":
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


# ---------------------------------------------------------------------------------------------- images
JPEG_DIR = Path("/tmp/dressup-bench/jpegs")
DEMO_CATALOGUE = REPO / "cache" / "demo" / "catalogue"


def jpeg_items(n: int, *, folder: Path = JPEG_DIR, size: int = 64, distinct: int | None = None,
               progress: bool = True) -> list:
    """``n`` catalogue items (``dressup.records.Item``) whose images are real JPEG files on disk.

    The images are demo garments drawn by ``dressup.democatalog`` (200 of them), each file a copy with its
    own pixel noise so no two files are identical. Files are written once into ``folder`` and reused by later
    runs. ``distinct`` < n writes only that many files and lists them repeatedly (what matters to a streaming
    indexer is the number of items read, not the number of distinct files).
    """
    from PIL import Image
    from tqdm.auto import tqdm

    from dressup.democatalog import draw_garment, sample_garment, sample_pose
    from dressup.records import Item

    distinct = min(n, distinct or n)
    folder = folder / f"{size}px"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i // 10_000:02d}" / f"img_{i:08d}.jpg" for i in range(distinct)]
    missing = [i for i, p in enumerate(paths) if not p.is_file()]
    if missing:
        rng = np.random.default_rng(0)
        bases = []
        for _ in range(200):
            g = sample_garment(rng)
            bases.append(np.asarray(draw_garment(g, sample_pose(rng, g), size), dtype=np.int16))
        for i in tqdm(missing, desc=f"writing {len(missing):,} JPEGs to {folder}", disable=not progress):
            noise = np.random.default_rng(i).integers(-6, 7, bases[0].shape, dtype=np.int16)
            img = Image.fromarray(np.clip(bases[i % len(bases)] + noise, 0, 255).astype(np.uint8), "RGB")
            paths[i].parent.mkdir(exist_ok=True)
            tmp = paths[i].with_suffix(".tmp")
            img.save(tmp, "JPEG", quality=92, subsampling=0)
            tmp.replace(paths[i])
    return [Item(item_id=f"bench/{i:08d}", image_path=paths[i % distinct], category="bench", category_type=1,
                 attributes=(), attribute_types={}, split="train", caption="") for i in range(n)]


def demo_catalogue_items() -> list:
    """The built demo catalogue's items (all splits), or [] if ``cache/demo/catalogue`` is not built."""
    if not (DEMO_CATALOGUE / "Anno").is_dir():
        return []
    from dressup.catalog import load_catalog

    return load_catalog(DEMO_CATALOGUE, require_images=True).items


# ---------------------------------------------------------------------------------------------- machine
def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return m.group(1).strip() if m else platform.processor() or "unknown"


def load_average() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def machine() -> dict[str, str]:
    """What a reader needs to compare figures across machines: cores, CPU, memory, versions."""
    try:
        mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{mem_kb / 1024 ** 2:.0f} GiB"
    except (OSError, AttributeError):
        mem = "unknown"
    info = {"nproc": str(os.cpu_count()), "cpu": cpu_model(), "memory": mem,
            "python": platform.python_version()}
    for mod in ("numpy", "faiss", "torch", "open_clip"):
        m = sys.modules.get(mod)
        if m is not None:
            info[mod] = getattr(m, "__version__", "?")
    if "torch" in sys.modules:
        info["torch threads"] = str(sys.modules["torch"].get_num_threads())
    if "faiss" in sys.modules:
        info["faiss threads"] = str(sys.modules["faiss"].omp_get_max_threads())
    return info


def machine_line() -> str:
    info = machine()
    head = f"nproc {info.pop('nproc')}, {info.pop('cpu')}, {info.pop('memory')} RAM"
    return head + "; " + ", ".join(f"{k} {v}" for k, v in info.items())


# ---------------------------------------------------------------------------------------------- tables
def fmt(x: Any, digits: int = 2) -> str:
    """Numbers for tables: NaN/None as an en dash, large values without needless decimals."""
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    x = float(x)
    if x != x:
        return "–"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 2) -> str:
    """A GitHub Markdown table; numbers are formatted with ``fmt`` and right-aligned."""
    cells = [[fmt(c, digits) for c in row] for row in rows]
    numeric = [all(not isinstance(row[i], str) for row in rows) if rows else False for i in range(len(headers))]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.rjust(w) if num else v.ljust(w)
                                 for v, w, num in zip(values, widths, numeric)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric)) + "|"
    return "\n".join([line(headers), rule] + [line(r) for r in cells])


# ---------------------------------------------------------------------------------------------- results
def command_line(name: str, argv: Sequence[str] | None = None) -> str:
    """How to rerun this benchmark, as the user would type it."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python -m bench", name, *map(shlex.quote, args)])


@dataclass
class Run:
    """One benchmark run: when, where and how it started, for the header of its RESULTS.md section."""

    name: str
    command: str
    started: str
    load_start: str

    @classmethod
    def start(cls, name: str, argv: Sequence[str] | None = None) -> "Run":
        return cls(name, command_line(name, argv), _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
                   load_average())

    def header(self) -> str:
        return (f"## `{self.command}`\n\n"
                f"- date: {self.started}\n- machine: {machine_line()}\n"
                f"- load average (1/5/15 min) at start: {self.load_start}; at end: {load_average()}\n")


def record(run: Run, body: str, path: Path = RESULTS) -> Path:
    """Write ``body`` under ``run``'s header into ``path``, replacing the section of the same command."""
    text = path.read_text(encoding="utf-8") if path.is_file() else RESULTS_HEADER
    section = run.header() + "\n" + body.strip() + "\n"
    title = f"## `{run.command}`\n"
    parts = re.split(r"(?m)^(?=## )", text)
    replaced = False
    for i, part in enumerate(parts):
        if part.startswith(title):
            parts[i] = section + "\n"
            replaced = True
    if not replaced:
        parts.append(("\n" if not parts[-1].endswith("\n\n") else "") + section + "\n")
    path.write_text("".join(parts).rstrip() + "\n", encoding="utf-8")
    return path


def emit(run: Run, body: str, *, save: bool = True) -> None:
    """Print the tables and, unless ``save`` is false, record them in RESULTS.md."""
    print(run.header())
    print(body)
    if save:
        print(f"\nrecorded in {record(run, body)}")


# ---------------------------------------------------------------------------------------------- the app
DEMO_STUDY = REPO / "assets" / "demo.toml"
PHOTOS = REPO / "assets" / "photos"  # real participant photos (MIT, see its NOTICE.md)
APP_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}


def offline_env(**extra: str) -> dict[str, str]:
    """This process's environment with no network for models and no analytics, as the benchmarks run the app."""
    return {**os.environ, **APP_ENV, **extra}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) another process has used so far; NaN once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_memory_mb(pid: int) -> tuple[float, float]:
    """Another process's resident memory now (VmRSS) and at its peak so far (VmHWM), MiB."""
    return _status_mb("VmRSS", pid), _status_mb("VmHWM", pid)


@dataclass
class AppProcess:
    """``python app.py`` running in a subprocess on a loopback port (``start_app``)."""

    proc: subprocess.Popen
    url: str
    log_path: Path
    ready_s: float = float("nan")  # from the process start until GET /config first answered 200
    ready_cpu_s: float = float("nan")  # the app's CPU seconds at that moment
    marks: dict[str, float] = field(default_factory=dict)  # log line marker -> seconds after start it appeared

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s; only this process, which this module started."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)

    def __enter__(self) -> "AppProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_app(study: Path, folder: Path, *, timeout_s: float = 3600, marks: Sequence[str] = (),
              poll_s: float = 0.1, heartbeat_s: float = 60, say: Callable[[str], None] = print,
              repo: Path = REPO, env: dict[str, str] | None = None) -> AppProcess:
    """Start ``python app.py --study STUDY`` on a free loopback port, with Gradio's temp files and the log under
    ``folder``, and return once GET /config answers (``ready_s`` says when). ``marks`` are log lines to time
    (the first line containing each). Raises RuntimeError with the log's tail if the app exits or does not
    answer within ``timeout_s``; every ``heartbeat_s`` it says what the log shows last, since a demo study
    whose models are not built yet builds them first (minutes). ``repo``: the project whose app.py runs; ``env``:
    more environment for the app."""
    import urllib.request

    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = folder / f"app-{port}.log"
    env = offline_env(GRADIO_TEMP_DIR=str(folder / "gradio"), **(env or {}))
    log = open(log_path, "w", encoding="utf-8")
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(repo / "app.py"), "--study", str(study), "--host", "127.0.0.1",
                             "--port", str(port)], cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    app = AppProcess(proc, f"http://127.0.0.1:{port}/", log_path)
    next_beat = started + heartbeat_s
    try:
        while True:
            now = time.perf_counter()
            if marks and len(app.marks) < len(marks):
                text = app.log_tail(1 << 20)
                for m in marks:
                    if m not in app.marks and m in text:
                        app.marks[m] = now - started
            if proc.poll() is not None:
                raise RuntimeError(f"the app exited with {proc.returncode}; its log ({log_path}) ends:\n"
                                   f"{app.log_tail()}")
            try:
                with urllib.request.urlopen(app.url + "config", timeout=5) as r:
                    if r.status == 200:
                        app.ready_s, app.ready_cpu_s = time.perf_counter() - started, process_cpu_s(proc.pid)
                        return app
            except OSError:
                pass
            if now - started > timeout_s:
                raise RuntimeError(f"the app did not answer GET /config within {timeout_s:.0f} s; its log "
                                   f"({log_path}) ends:\n{app.log_tail()}")
            if now > next_beat:
                last = [ln for ln in re.split(r"[\r\n]+", app.log_tail(2000)) if ln.strip()]
                tail = last[-1][:160] if last else "(empty)"
                say(f"  ... app not answering yet after {now - started:.0f} s; log: {tail}")
                next_beat = now + heartbeat_s
            time.sleep(poll_s)
    except BaseException:
        app.stop()
        raise


def demo_build_state(study_path: Path = DEMO_STUDY) -> str:
    """'built' when the demo models under the study's cache match its file; else what the app will do at start."""
    import fcntl

    from dressup.config import load_study
    from dressup.demo import is_built

    study = load_study(study_path)
    if is_built(study):
        return "built"
    lock = study.cache_dir / ".build.lock"
    if lock.is_file():
        with open(lock, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fh, fcntl.LOCK_UN)
            except OSError:
                return "building"  # another process holds the build lock: the app will wait for it
    return "missing"


def _toml_string(value: str) -> str:
    import json

    return json.dumps(value)  # a JSON string is a valid TOML basic string


def demo_study_copy(folder: Path, *, fresh_cache: bool = False, source: Path = DEMO_STUDY) -> Path:
    """A copy of the demo study file in ``folder/study/`` whose answers go to ``folder/results``.

    ``fresh_cache=False``: it uses the real models. The cache folder, catalogue and encoder folders become
    absolute paths to the real ones; the generative arm's checkpoint stays as written (the demo build's key
    hashes that text, and another key would make the app rebuild, and so delete, the real models) and a
    symlink under ``folder`` makes it resolve to the real checkpoint. The copy is checked to have the real
    build key.

    ``fresh_cache=True``: everything the build writes (cache, catalogue, encoder folders, GAN checkpoint: the
    paths under the real cache folder) moves to the same place under ``folder/cache``; other relative paths
    (``config:`` model configs) become absolute. The copy is checked to write nothing outside ``folder``.
    """
    import tomllib

    from dressup.config import load_study
    from dressup.demo import build_key

    folder = Path(folder).resolve()
    text = source.read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    base = source.resolve().parent
    out_dir = folder / "study"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / source.name

    def resolve(value: str) -> Path:
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else (base / p).resolve()

    real_cache = resolve(raw["study"].get("cache_dir", "../cache"))
    new_cache = folder / "cache" if fresh_cache else real_cache

    def moved(value: str) -> Path:
        p = resolve(value)
        return new_cache / p.relative_to(real_cache) if fresh_cache and p.is_relative_to(real_cache) else p

    swaps = {"results_dir": (raw["study"].get("results_dir", "../results"), folder / "results"),
             "cache_dir": (raw["study"].get("cache_dir", "../cache"), new_cache),
             "catalogue.root": (raw["catalogue"]["root"], moved(raw["catalogue"]["root"]))}
    for name, e in raw.get("encoders", {}).items():
        for scheme in ("local:", "config:"):
            if e["spec"].startswith(scheme):
                swaps[f"encoders.{name}"] = (e["spec"], scheme + str(moved(e["spec"][len(scheme):])))
    checkpoints = {name: a["generator"]["checkpoint"] for name, a in raw.get("arms", {}).items()
                   if isinstance(a.get("generator"), dict) and a["generator"].get("checkpoint")}
    for name, ckpt in checkpoints.items():
        if fresh_cache:
            swaps[f"arms.{name}.generator.checkpoint"] = (ckpt, moved(ckpt))
        elif not Path(ckpt).is_absolute():
            link = Path(os.path.normpath(out_dir / ckpt))
            if not link.is_relative_to(folder):
                raise ValueError(f"checkpoint {ckpt!r} of [arms.{name}] would resolve outside {folder} from the copy")
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(resolve(ckpt), target_is_directory=True)
    for key, (old, new) in swaps.items():
        text, n = re.subn(re.escape(_toml_string(old)), lambda _m, s=_toml_string(str(new)): s, text)
        if not n:
            raise ValueError(f"{source}: could not find {key} = {old!r} written as a plain string to rewrite")
    out.write_text(text, encoding="utf-8")

    copy, real = load_study(out), load_study(source)
    assert copy.results_dir == folder / "results", copy.results_dir
    if fresh_cache:
        written = [copy.cache_dir, copy.catalogue.root]
        written += [Path(e.spec[len("local:"):]) for e in copy.encoders.values() if e.spec.startswith("local:")]
        written += [Path(c) for c in (a.generator.get("checkpoint") for a in copy.arms if a.generator) if c]
        outside = [p for p in written if not p.is_relative_to(folder)]
        if outside:
            raise ValueError(f"the fresh-cache copy {out} would still write outside {folder}: {outside}")
    else:
        if build_key(copy) != build_key(real):
            raise ValueError(f"the copy {out} has another demo build key than {source}: starting the app on it "
                             f"would rebuild the real models under {real.cache_dir}")
        for name, ckpt in checkpoints.items():
            assert (out_dir / ckpt).resolve() == resolve(ckpt), (name, ckpt)
    return out


def photos(n: int = 2, offset: int = 0) -> list[Path]:
    """``n`` of the shared participant photos, starting at ``offset`` (wrapping), so calls can vary them."""
    found = sorted(PHOTOS.glob("*.jpg"))
    if len(found) < n:
        raise FileNotFoundError(f"need {n} JPEG photos in {PHOTOS} (assets/photos)")
    return [found[(offset + i) % len(found)] for i in range(n)]
