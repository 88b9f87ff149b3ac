"""The demo profile's build: catalogue -> baseline -> finetuned -> STN -> GAN, cached under the study's cache.

The build is a miniature of the paper's pipeline run by the same code: the catalogue is drawn in DeepFashion's
format and read back by ``dressup.catalog``; encoders are trained by ``dressup.train`` from the study file's
``[train.*]`` recipes; the GAN by ``dressup.generators.dcgan_train``. ``BUILD.json`` records a key of everything that shapes the
result (recipes, catalogue settings, model files, library version; paths relative to the cache or the study file,
so a moved or copied project keeps its key); a second start with the same key reuses the cache, and a
file lock keeps two processes (the app and a test, say) from building at once.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

from dressup import __version__
from dressup.config import EncoderSpec, Study, StudyFileError, TrainSpec, local_dir
from dressup.device import resolve_device

BUILD_FILE = "BUILD.json"
BUILDING_FILE = "BUILDING.json"


def build_key(study: Study, *, version: bool = True) -> str:
    """Everything that changes what the demo build produces, keyed by content rather than by location.

    Paths enter the key as where they are relative to the cache folder (the build's outputs and the demo
    catalogue live there), else relative to the study file when the study file names them relatively, else as
    written (absolute); a ``config:`` model file enters by its sha256. So a project moved or copied with its
    cache (study file, cache and all) has the key its cache was built with and is reused, and a copy of the
    study file elsewhere that points at the same cache has it too (and cannot look like another build and wipe
    it); another recipe, catalogue, model file or library version is another key. ``version=False`` leaves
    the library version out: the key shipped weights are matched on (``dressup.weights``), so a release that
    changes no recipe keeps its weights.
    """
    c = study.catalogue
    recipes = {n: t for n, t in study.train.items() if t.build}  # `build = false` recipes are not the build's
    used = set(recipes) | {t.init for t in recipes.values()} | {a.encoder for a in study.arms}
    used |= {_trained_settings(a.generator).get("encoder", "") for a in study.arms}
    raw = study.raw if isinstance(study.raw, dict) else {}
    catalogue = {k: str(v) for k, v in asdict(c).items()}
    catalogue["root"] = _where(study, c.root, raw.get("catalogue", {}).get("root"))
    encoders = {}
    for n, e in study.encoders.items():
        if n in used:
            written = raw.get("encoders", {}).get(n, {}).get("spec")
            encoders[n] = dict(asdict(e), spec=_spec_key(study, e.spec, written))
    generators = {}
    for a in study.arms:
        if a.kind == "generative":
            g = _trained_settings(a.generator)
            if g.get("checkpoint"):
                written = ((raw.get("arms", {}).get(a.name) or {}).get("generator") or {}).get("checkpoint")
                g["checkpoint"] = _where(study, Path(g["checkpoint"]), written)
            generators[a.name] = g
    parts = {
        "version": __version__ if version else "",
        "catalogue": catalogue,
        "train": {n: asdict(t) for n, t in recipes.items()},
        "encoders": encoders,
        "generators": generators,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


# Generator keys that only say how a trained model draws (guidance, sampling steps, candidate scoring, display):
# changing them changes no weights, so they stay out of the build key and the shipped weights stay usable.
DRAWING_KEYS = frozenset({"guidance_scale", "sampling_steps", "eta", "display_size", "colour_grounding",
                          "candidates", "text_weight"})


def _trained_settings(generator: dict) -> dict:
    """The keys of a generator that change what the build trains. A diffusion model is conditioned on its own
    text tower, so its ``encoder`` only scores candidates (a drawing key); the DCGAN is conditioned on it."""
    drawing = DRAWING_KEYS | ({"encoder"} if generator.get("kind") == "diffusion" else frozenset())
    return {k: v for k, v in generator.items() if k not in drawing}


def _where(study: Study, path: Path, written: object = None) -> str:
    """``path`` in a form that survives moving the project: ``cache:REL`` under the cache folder, ``study:REL``
    when the study file names it relatively (so it moves with the file), else the absolute path."""
    path = Path(path)
    cache = Path(study.cache_dir)
    if path == cache or path.is_relative_to(cache):
        return "cache:" + path.relative_to(cache).as_posix()
    base = Path(study.path).parent
    if isinstance(written, str) and written and not Path(os.path.expanduser(written)).is_absolute() \
            and (base / written).resolve() == path:
        return "study:" + Path(os.path.relpath(path, base)).as_posix()
    return str(path)


def _spec_key(study: Study, spec: str, written: object) -> str:
    """An encoder spec as the key sees it: a ``config:`` model file by its content, a ``local:`` folder by its
    place (see ``_where``), any other spec (a Hub id) as it is."""
    scheme, sep, rest = spec.partition(":")
    if not sep or scheme not in ("config", "local"):
        return spec
    path = Path(rest)
    if scheme == "config" and path.is_file():
        return "config:sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    where = written[len(scheme) + 1:] if isinstance(written, str) and written.startswith(scheme + ":") else None
    return f"{scheme}:" + _where(study, path, where)


@contextmanager
def build_lock(cache_dir: Path) -> Iterator[None]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".build.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def is_built(study: Study) -> bool:
    marker = study.cache_dir / BUILD_FILE
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("key") == build_key(study)
    except ValueError:
        return False


def ensure_catalogue(study: Study, progress: bool = True) -> None:
    c = study.catalogue
    if c.kind != "demo":
        if not (c.root / "Eval" / "list_eval_partition.txt").is_file():
            raise StudyFileError(f"catalogue {c.root} is missing; put DeepFashion there (see `python -m dressup doctor`)")
        return
    from dressup.democatalog import build_demo_catalogue, demo_catalogue_matches

    if demo_catalogue_matches(c.root, size=c.size, image_size=c.image_size, seed=c.seed,
                              inshop_garments=c.inshop_garments):
        return

    build_demo_catalogue(c.root, size=c.size, image_size=c.image_size, seed=c.seed,
                         inshop_garments=c.inshop_garments, progress=progress)


def train_order(study: Study, *, build_only: bool = False) -> list[TrainSpec]:
    """Recipes sorted so each one's ``init`` encoder is trained before it (``build_only``: those the demo
    build trains, i.e. without ``build = false``)."""
    done: set[str] = set()
    order: list[TrainSpec] = []
    pending = {n: t for n, t in study.train.items() if t.build or not build_only}
    for t in pending.values():
        if build_only and t.init in study.train and not study.train[t.init].build:
            raise StudyFileError(f"[train.{t.name}] is part of the demo build but starts from [train.{t.init}], "
                                 f"which has build = false; set build = true on [train.{t.init}] or change init")
    while pending:
        ready = [t for t in pending.values() if t.init not in pending or t.init in done]
        if not ready:
            raise StudyFileError(f"[train.*] recipes form a cycle through {sorted(pending)}")
        for t in ready:
            order.append(t)
            done.add(t.name)
            del pending[t.name]
    return order


def train_from_spec(study: Study, spec: TrainSpec, *, progress: bool = True, steps: int | None = None):
    """Train one ``[train.NAME]`` recipe into ``[encoders.NAME]``'s local folder."""
    from dressup.catalog import category_caption
    from dressup.encoders import load_encoder
    from dressup.subset import study_catalog
    from dressup.train import train_encoder

    init = study.encoder(spec.init)
    encoder = load_encoder(EncoderSpec(name=spec.name, spec=init.spec, stn=spec.stn or init.stn,
                                       lock_text=spec.lock_text, image_size=init.image_size, options=init.options),
                           device="cpu" if study.device == "cpu" else resolve_device("auto"))
    items = study_catalog(study).split("train")
    captions = [category_caption(it) if spec.captions == "category" else it.caption for it in items]
    paths = [it.image_path for it in items]  # decoded by train_encoder: in memory if small, else streamed
    n_steps = steps or spec.steps or max(1, int(spec.epochs * len(items) / spec.batch_size))
    del items  # the catalogue's records are not needed while training: only paths and captions are
    return train_encoder(encoder, paths, captions, out_dir=local_dir(study, spec.name), steps=n_steps,
                         batch_size=spec.batch_size, lr=spec.lr, weight_decay=spec.weight_decay,
                         warmup=spec.warmup, lock_text=spec.lock_text, seed=study.seed, progress=progress,
                         duplicates=spec.duplicates, checkpoint_every=spec.checkpoint_every,
                         text_cache=study.cache_dir / "text-states")


def _choose_threads() -> int:
    """As many intra-op threads as there are idle cores right now (at least one, at most eight).

    Measured here: two OpenMP threads sharing a 2-core machine with another busy process ran 5-10x slower than
    one (threads spin waiting for each other), while on an idle machine two ran 1.7x faster than one. The
    1-minute load average lags by a minute (it still counts a pip install that just ended), so the idle cores
    are read from two samples of /proc/stat; the load average is the fallback where there is no /proc.
    """
    import torch

    cores = os.cpu_count() or 1
    busy = _busy_cores(cores)
    if busy is None:
        busy = os.getloadavg()[0]
    threads = max(1, min(cores, 8, round(cores - busy)))
    torch.set_num_threads(threads)
    return threads


def _busy_cores(cores: int, window_s: float = 0.5) -> float | None:
    """Cores kept busy by other processes during ``window_s`` (this one sleeps meanwhile); None without /proc."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
        return sum(ticks), ticks[3] + ticks[4]

    try:
        total0, idle0 = sample()
        time.sleep(window_s)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    elapsed = total1 - total0
    return cores * (elapsed - (idle1 - idle0)) / elapsed if elapsed > 0 else 0.0


def train_gan_from_study(study: Study, *, arm: str = "generative", steps: int | None = None, progress: bool = True):
    """Train the conditional DCGAN of a generative arm whose generator kind is 'dcgan'."""
    from dressup.catalog import load_catalog
    from dressup.generators.dcgan_train import train_dcgan_on_catalogue
    from dressup.encoders import load_encoder

    spec = study.arm(arm)
    g = dict(spec.generator)
    if g.get("kind") != "dcgan":
        raise StudyFileError(f"[arms.{arm}] generator kind is {g.get('kind')!r}; train-gan trains 'dcgan' generators")
    encoder = load_encoder(study.encoder(g["encoder"]))
    catalog = load_catalog(study.catalogue.root, caption_category=study.catalogue.caption_category,
                           require_images=True)
    out = Path(g["checkpoint"])
    kwargs = {k: g[k] for k in ("batch_size", "image_size") if k in g}
    return train_dcgan_on_catalogue(catalog, encoder, out, steps=steps or int(g.get("steps", 600)),
                                    progress=progress, **kwargs)


def ensure_study_models(study: Study, *, progress: bool = True) -> str | None:
    """What every entry point (the app, the CLI, the tests) calls before ``dressup.arms.build_arms``: a demo-profile
    study's models built, unpacked or reused (``ensure_demo_build``'s answer); None for any other profile, whose
    models come from the Hub or the researcher's folders. ``build_arms`` itself never trains."""
    if study.profile != "demo":
        return None
    return ensure_demo_build(study, progress=progress)


def ensure_demo_build(study: Study, *, progress: bool = True, force: bool = False,
                      from_scratch: bool = False) -> str:
    """Build (or reuse) everything the demo study's arms need. Safe to call from several processes.

    The study's shipped weights (``[study] weights``, ``dressup.weights``) are verified and used when they were
    trained from this study's recipes; otherwise, or with ``from_scratch``, every model is trained here.
    ``force`` redoes the build even when the cache is current. Returns how the models were obtained:
    "cached", "shipped" or "trained".
    """
    if not (force or from_scratch) and is_built(study):
        return "cached"
    with build_lock(study.cache_dir):
        if not (force or from_scratch) and is_built(study):  # another process finished it while we waited
            return "cached"
        t0 = time.time()
        threads = _choose_threads()
        if progress:
            print(f"demo build: {threads} torch thread(s) on {os.cpu_count()} cores", flush=True)
        key = build_key(study)
        building = study.cache_dir / BUILDING_FILE
        previous = json.loads(building.read_text()).get("key") if building.is_file() else None
        if force or from_scratch or previous != key:
            # Outputs of another recipe (or a forced rebuild) must not be resumed from: start them afresh.
            # An interrupted build with the same key resumes each recipe from its last checkpoint instead.
            for folder in _outputs(study):
                shutil.rmtree(folder, ignore_errors=True)
            building.write_text(json.dumps({"key": key}))
        ensure_catalogue(study, progress)
        how = "shipped" if not from_scratch and _use_shipped(study, progress) else "trained"
        if how == "trained":
            for spec in train_order(study, build_only=True):
                if not (local_dir(study, spec.name) / "encoder.json").is_file() or _checkpoint_behind(study, spec):
                    train_from_spec(study, spec, progress=progress)
            for arm in study.arms:
                if arm.kind == "generative" and arm.generator.get("kind") == "dcgan":
                    train_gan_from_study(study, arm=arm.name, progress=progress)
                if arm.kind == "generative" and arm.generator.get("kind") == "diffusion":
                    train_diffusion_from_study(study, arm=arm.name, progress=progress)
        (study.cache_dir / BUILD_FILE).write_text(json.dumps(
            {"key": key, "models": how, "seconds": round(time.time() - t0, 1), "built_at": time.time()}))
        building.unlink(missing_ok=True)
        return how


def _use_shipped(study: Study, progress: bool) -> bool:
    """Unpack the study's shipped weights when they were trained from its recipes (True), else say why not."""
    from dressup.weights import read_manifest, unpack

    if study.weights is None:
        return False
    manifest = read_manifest(study.weights)
    if manifest is None:
        if progress:
            print(f"demo build: no shipped weights in {study.weights}; training", flush=True)
        return False
    if manifest.get("key") != build_key(study, version=False):
        if progress:
            print(f"demo build: the weights in {study.weights} were trained from other recipes than "
                  f"{study.path.name}'s (changed [train.*], [catalogue] or generator settings); training", flush=True)
        return False
    unpack(study, study.weights, manifest)
    if progress:
        print(f"demo build: shipped weights from {study.weights} verified (sha256) and unpacked", flush=True)
    return True


def train_diffusion_from_study(study: Study, *, arm: str = "generative", steps: int | None = None,
                               progress: bool = True):
    """Train the miniature diffusion model of a generative arm whose generator kind is 'diffusion'
    (its ``steps``, ``batch_size``, ``lr`` keys; the study's seed), resuming from its folder."""
    from dressup.catalog import load_catalog
    from dressup.generators.diffusion_train import train_diffusion_on_catalogue

    g = dict(study.arm(arm).generator)
    if g.get("kind") != "diffusion":
        raise StudyFileError(f"[arms.{arm}] generator kind is {g.get('kind')!r}, not 'diffusion'")
    catalog = load_catalog(study.catalogue.root, caption_category=study.catalogue.caption_category,
                           require_images=True)
    return train_diffusion_on_catalogue(catalog, Path(g["checkpoint"]), steps=steps or int(g.get("steps") or 2000),
                                        batch_size=int(g.get("batch_size") or 32), lr=float(g.get("lr") or 1e-3),
                                        seed=int(g.get("seed", 0)), progress=progress, checkpoint_every=200)


def _outputs(study: Study) -> list[Path]:
    """Folders the build trains into (encoders and GAN checkpoints); the catalogue has its own stamp."""
    out = [local_dir(study, name) for name, t in study.train.items() if t.build]
    for arm in study.arms:
        if arm.kind == "generative" and arm.generator.get("checkpoint"):
            out.append(Path(arm.generator["checkpoint"]))
    return out


def _checkpoint_behind(study: Study, spec: TrainSpec) -> bool:
    """True when a recipe's folder holds a checkpoint short of its step count (an interrupted build)."""
    from dressup.train import read_train_log

    log = read_train_log(local_dir(study, spec.name))
    return bool(spec.steps) and (not log or log[-1].get("step", 0) < spec.steps)
