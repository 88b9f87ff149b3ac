"""Copies of the demo study file for the benchmarks that run the app on it, leaving the real results (and,
on request, the real cache) alone; and whether the demo models are built, being built, or missing.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import tomllib
from pathlib import Path

from bench.common.app import DEMO_STUDY


def demo_build_state(study_path: Path = DEMO_STUDY) -> str:
    """'built' when the demo models under the study's cache match its file; else what the app will do at start."""
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


