"""The demo's shipped weights (issue 20): a short build from scratch, packed, verified and unpacked again; a damaged
file or a changed recipe is never used; the weights in the repository fit the committed study file."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from dressup.config import load_study
from dressup.demo import build_key, ensure_demo_build
from dressup.encoders import load_encoder
from dressup.weights import MANIFEST, WeightsError, trunk_keys, pack, read_manifest, verify

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def short_demo(root: Path) -> Path:
    """assets/demo.toml in ``root``/assets with a small catalogue and a few steps per recipe, everything else
    (relative paths included) as committed: the real build path, shortened."""
    (root / "assets").mkdir(parents=True)
    shutil.copytree(ASSETS / "models", root / "assets" / "models")
    text = (ASSETS / "demo.toml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^size = \d+", "size = 240", text)
    text = re.sub(r"(?m)^inshop_garments = \d+", "inshop_garments = 20", text)
    text = re.sub(r"(?m)^steps = \d+", "steps = 2", text)
    text = re.sub(r"(?m)^batch_size = \d+", "batch_size = 16", text)
    text = re.sub(r"generator = \{ kind = \"diffusion\", (.*?)steps = \d+, batch_size = \d+",
                  r'generator = { kind = "diffusion", \1steps = 2, batch_size = 8', text)
    assert 'kind = "diffusion", checkpoint = "../cache/demo/diffusion", steps = 2, batch_size = 8' in text
    path = root / "assets" / "demo.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A short from-scratch build of the demo's recipes, packed into the study's weights folder."""
    root = tmp_path_factory.mktemp("short-demo")
    study = load_study(short_demo(root))
    assert study.weights == root / "assets" / "weights" / "demo"
    assert ensure_demo_build(study, progress=False, from_scratch=True) == "trained"
    trained = {n: load_encoder(study.encoder(n)).fingerprint() for n in ("baseline", "finetuned", "stn")}
    diffusion = json.loads((root / "cache" / "demo" / "diffusion" / "model.json").read_text())["sha256"]
    pack(study, key=build_key(study, version=False))
    return study, trained, diffusion


def test_a_short_build_from_scratch_packs_without_the_text_tower_and_unpacks_to_the_same_models(packed):
    study, trained, diffusion = packed
    manifest = read_manifest(study.weights)
    assert manifest["key"] == build_key(study, version=False)
    assert set(manifest["files"]) == {"baseline.json", "baseline.safetensors", "finetuned.json",
                                      "finetuned.safetensors", "stn.json", "stn.safetensors",
                                      "generative/model.json", "generative/model.pt"}
    # the text tower (MiniLM, 22.7 M parameters) is never shipped, only the image tower and the heads
    for name in ("baseline", "finetuned", "stn"):
        packed_keys = set(load_file(str(study.weights / f"{name}.safetensors")))
        trunk = trunk_keys(load_encoder(study.encoder(name)))
        assert len(trunk) > 50 and not packed_keys & trunk
    assert sum((study.weights / f).stat().st_size for f in manifest["files"]) < 40_000_000
    shutil.rmtree(study.cache_dir / "encoders")
    shutil.rmtree(study.cache_dir / "diffusion")
    (study.cache_dir / "BUILD.json").unlink()
    assert ensure_demo_build(study, progress=False) == "shipped"
    assert {n: load_encoder(study.encoder(n)).fingerprint() for n in trained} == trained
    assert json.loads((study.cache_dir / "diffusion" / "model.json").read_text())["sha256"] == diffusion
    assert ensure_demo_build(study, progress=False) == "cached"


def test_a_damaged_shipped_file_is_refused_with_its_name_and_the_fix(packed, tmp_path):
    study, _, _ = packed
    copy = tmp_path / "weights"
    shutil.copytree(study.weights, copy)
    target = copy / "finetuned.safetensors"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"finetuned\.safetensors.*damaged.*--from-scratch"):
        verify(copy, read_manifest(copy))
    target.unlink()
    with pytest.raises(WeightsError, match=r"finetuned\.safetensors are missing"):
        verify(copy, read_manifest(copy))


def test_weights_from_another_recipe_are_not_used_the_build_trains(packed, tmp_path, capsys):
    study, _, _ = packed
    path = Path(study.path)
    changed = path.read_text(encoding="utf-8").replace("lr = 2e-3\nduplicates", "lr = 5e-4\nduplicates", 1)
    copy = path.with_name("changed.toml")
    copy.write_text(changed, encoding="utf-8")
    other = load_study(copy)
    assert build_key(other) != build_key(study)
    assert ensure_demo_build(other, progress=True) == "trained"
    assert "trained from other recipes" in capsys.readouterr().out


def test_the_committed_weights_fit_the_committed_study_and_verify():
    """Forgetting `python -m dressup demo pack` after changing a recipe would silently make every fresh clone
    train for many minutes: the committed weights must carry the committed study's key."""
    study = load_study(ASSETS / "demo.toml")
    manifest = read_manifest(study.weights)
    assert manifest is not None, f"no {MANIFEST} in {study.weights}"
    assert manifest["key"] == build_key(study, version=False)
    verify(study.weights, manifest)
    assert "--from-scratch" in manifest["command"]
