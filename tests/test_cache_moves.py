"""A project moved or copied with its cache is reused, not rebuilt (issue 20): the demo build's key and the
indexes' manifests are keyed by content, not by the folder the project happens to sit in.

Real code end to end on a tiny demo-profile project: the demo build draws a small catalogue and trains a tiny
encoder, ``build_arms`` embeds the catalogue into a retrieval index; the project folder (study file, model
config, cache) is then copied elsewhere and loaded from there.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from dressup.config import load_study
from dressup.demo import BUILD_FILE, build_key, ensure_demo_build, is_built
from tests.tiny_models import TINY_CLIP, write_tiny_config

STUDY = """
[study]
name = "moves"
profile = "demo"
seed = 1
results_dir = "../results"
cache_dir = "../cache"
device = "cpu"

[catalogue]
kind = "demo"
root = "../cache/catalogue"
size = 40
image_size = 32
seed = 2
split = "all"

[encoders.untrained]
spec = "config:models/tiny.json"

[encoders.baseline]
spec = "local:../cache/encoders/baseline"

[train.baseline]
init = "untrained"
captions = "category"
lock_text = true
steps = 2
batch_size = 8
lr = 1e-3
checkpoint_every = 2

[arms.shop]
kind = "retrieval"
encoder = "baseline"
"""


def _files(cache: Path) -> dict[str, int]:
    """Every file under the cache with its modification time (ns), by path relative to the cache."""
    return {p.relative_to(cache).as_posix(): p.stat().st_mtime_ns for p in sorted(cache.rglob("*")) if p.is_file()}


def _project(folder: Path) -> Path:
    (folder / "assets" / "models").mkdir(parents=True)
    write_tiny_config(folder / "assets" / "models", "tiny", TINY_CLIP)
    path = folder / "assets" / "study.toml"
    path.write_text(STUDY)
    return path


def test_a_copied_project_reuses_its_cache_and_a_changed_recipe_still_rebuilds(tmp_path):
    from dressup.arms import build_arms
    from dressup.demo import ensure_study_models

    original = load_study(_project(tmp_path / "first"))
    ensure_study_models(original, progress=False)  # the demo build, as the app does before loading the arms
    build_arms(original, progress=False)  # then the retrieval arm's index
    cache = tmp_path / "first" / "cache"
    assert is_built(original) and any(cache.glob("indexes/baseline-all-*/manifest.json"))
    built = json.loads((cache / BUILD_FILE).read_text())
    built_index = json.loads(next(cache.glob("indexes/baseline-all-*/manifest.json")).read_text())

    shutil.copytree(tmp_path / "first", tmp_path / "elsewhere" / "second", symlinks=True)
    moved = tmp_path / "elsewhere" / "second"
    shutil.rmtree(tmp_path / "first")  # moved, not copied: nothing may still lean on the old folder
    copy = load_study(moved / "assets" / "study.toml")
    assert copy.cache_dir == moved / "cache" and copy.catalogue.root == moved / "cache" / "catalogue"

    assert build_key(copy) == built["key"]
    assert is_built(copy)
    before = _files(copy.cache_dir)
    ensure_study_models(copy, progress=False)  # what the app does at start
    arms = build_arms(copy, progress=False)
    assert _files(copy.cache_dir) == before  # nothing drawn, trained, embedded or rewritten: the cache is reused
    assert json.loads((copy.cache_dir / BUILD_FILE).read_text()) == built
    index = arms["shop"].index
    assert len(index.items) == 40 and index.manifest.built_at == built_index["built_at"]  # loaded, not re-embedded

    # The safety the key had is kept: another recipe, catalogue or model file is another build.
    text = (moved / "assets" / "study.toml").read_text()
    (moved / "assets" / "steps.toml").write_text(text.replace("steps = 2", "steps = 3"))
    assert not is_built(load_study(moved / "assets" / "steps.toml"))
    (moved / "assets" / "size.toml").write_text(text.replace("size = 40", "size = 41"))
    assert not is_built(load_study(moved / "assets" / "size.toml"))
    (moved / "assets" / "models" / "tiny.json").write_text(json.dumps(dict(TINY_CLIP, embed_dim=16)))
    assert not is_built(load_study(moved / "assets" / "study.toml"))  # the model file is keyed by its content
    (moved / "assets" / "models" / "tiny.json").write_text(json.dumps(TINY_CLIP))
    assert is_built(load_study(moved / "assets" / "study.toml"))


def test_an_interrupted_build_moved_with_its_project_resumes_instead_of_failing(tmp_path):
    """A build stopped mid-recipe, then moved: its checkpoint's settings must not name the old folder, or the
    resumed recipe refuses the checkpoint ("made with other settings") and the start fails."""
    study = load_study(_project(tmp_path / "first"))
    ensure_demo_build(study, progress=False)
    cache = tmp_path / "first" / "cache"
    (cache / BUILD_FILE).rename(cache / "BUILDING.json")  # stopped before the end: same key, no BUILD.json
    log = cache / "encoders" / "baseline" / "train_log.jsonl"
    lines = log.read_text().splitlines()
    log.write_text(lines[0] + "\n")  # the recipe's log stops short of its steps: it is resumed from its checkpoint
    checkpoint = cache / "encoders" / "baseline" / "checkpoint.pt"
    saved = checkpoint.stat().st_mtime_ns
    shutil.copytree(tmp_path / "first", tmp_path / "second")
    shutil.rmtree(tmp_path / "first")
    copy = load_study(tmp_path / "second" / "assets" / "study.toml")
    assert not is_built(copy)
    ensure_demo_build(copy, progress=False)
    assert is_built(copy)
    moved = tmp_path / "second" / "cache" / "encoders" / "baseline" / "checkpoint.pt"
    assert moved.stat().st_mtime_ns == saved  # resumed from it (already at its last step), not trained afresh
