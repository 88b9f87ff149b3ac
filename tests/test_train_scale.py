"""Training at DeepFashion's scale: small pixel sets stay in memory, large ones stream from disk through
DataLoader workers, both give the same weights, and `train_from_spec` trains on the study's subset from paths."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

import dressup.train as train_mod
from dressup.config import load_study
from dressup.demo import train_from_spec
from dressup.encoders import load_encoder
from dressup.train import (CHECKPOINT, TrainError, _captions_sha256, _ImageDataset, _pixels_in_memory, read_train_log,
                           train_encoder)
from tests.test_catalog import make_catalogue
from tests.test_train import squares
from tests.tiny_models import write_tiny_config


@pytest.fixture()
def tiny_config(tmp_path: Path) -> Path:
    return write_tiny_config(tmp_path, "tiny-scale-clip")


@pytest.fixture()
def streamed(monkeypatch) -> list[bool]:
    """Records, for each training run, whether its images streamed (True) or sat in memory (False)."""
    seen: list[bool] = []
    real = train_mod._pixels_in_memory

    def spy(*args, **kwargs):
        pixels = real(*args, **kwargs)
        seen.append(pixels is None)
        return pixels

    monkeypatch.setattr(train_mod, "_pixels_in_memory", spy)
    return seen


def _png_files(folder: Path, n: int) -> tuple[list[Path], list[str]]:
    images, captions = squares(n)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(images):
        paths.append(folder / f"{i:03d}.png")
        im.save(paths[-1])
    return paths, captions


def test_pixels_stay_in_memory_under_the_budget_and_stream_over_it(tiny_config, tmp_path, monkeypatch):
    enc = load_encoder(f"config:{tiny_config}")
    paths, _ = _png_files(tmp_path / "img", 6)
    pixels = _pixels_in_memory(paths, enc, progress=False)
    assert pixels.dtype == torch.uint8 and pixels.shape == (6, 3, 32, 32)
    dataset = _ImageDataset(paths, enc.resize)
    assert isinstance(dataset.items, np.ndarray)  # one array, not a Python object per path
    assert torch.equal(dataset[4][1], pixels[4]) and torch.equal(pixels[4], enc.resize(squares(6)[0][4]))

    (tmp_path / "img" / "bad.png").write_bytes(b"not a picture")
    with pytest.raises(TrainError, match="bad.png"):  # one damaged file among many names itself
        _ImageDataset([tmp_path / "img" / "bad.png"], enc.resize)[0]

    monkeypatch.setattr(train_mod, "IN_MEMORY_BUDGET", 6 * 3 * 32 * 32 - 1)  # one byte short
    assert _pixels_in_memory(paths, enc, progress=False) is None
    assert _pixels_in_memory(squares(6)[0], enc, progress=False) is None  # decoded images stream too
    assert _pixels_in_memory(pixels, enc, progress=False) is pixels  # a tensor is already the pixels


def test_streaming_from_disk_gives_the_same_weights_as_in_memory(tiny_config, tmp_path, monkeypatch, streamed):
    paths, captions = _png_files(tmp_path / "img", 24)
    kwargs = dict(steps=5, batch_size=8, lr=1e-3, warmup=2, lock_text=False, seed=3, progress=False)
    in_memory = load_encoder(f"config:{tiny_config}")
    train_encoder(in_memory, paths, captions, out_dir=tmp_path / "memory", **kwargs)

    monkeypatch.setattr(train_mod, "IN_MEMORY_BUDGET", 0)
    from_disk = load_encoder(f"config:{tiny_config}")
    train_encoder(from_disk, paths, captions, out_dir=tmp_path / "disk", num_workers=2, **kwargs)

    assert streamed == [False, True]
    assert from_disk.fingerprint() == in_memory.fingerprint()  # same pixels, same batches, same steps
    assert read_train_log(tmp_path / "disk") == read_train_log(tmp_path / "memory")


def _study_with_images(tmp_path: Path, tiny_config: Path) -> Path:
    """A DeepFashion-format folder with real PNGs (40 train, 10 test) and a study whose recipe trains on a
    subset of it, all layers (the paper's recipe)."""
    images, colours = squares(50)
    attrs = {"red": "solid", "green": "striped", "blue": "floral", "yellow": "graphic"}
    rows = [(f"img/Sq/img_{i:08d}.png", 1 + i % 4, {attrs[c]}, "train" if i < 40 else "test")
            for i, c in enumerate(colours)]
    root = make_catalogue(tmp_path / "catalogue", rows)
    for (name, *_), im in zip(rows, images):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        im.save(root / name)
    study = tmp_path / "study.toml"
    study.write_text(f"""
[study]
name = "scale"
profile = "paper"
seed = 5
cache_dir = "{tmp_path / 'cache'}"
device = "cpu"

[catalogue]
root = "{root}"
split = "test"
caption_category = false
subset = {{ train = 24, test = 8 }}

[encoders.tiny]
spec = "config:{tiny_config}"

[encoders.tuned]
spec = "local:{tmp_path / 'tuned'}"

[train.tuned]
init = "tiny"
captions = "full"
lock_text = false
steps = 2
batch_size = 8
lr = 1e-3

[arms.baseline]
kind = "retrieval"
encoder = "tiny"
""")
    return study


def test_train_from_spec_streams_the_subsets_paths(tiny_config, tmp_path, monkeypatch, streamed):
    study = load_study(_study_with_images(tmp_path, tiny_config))
    monkeypatch.setattr(train_mod, "IN_MEMORY_BUDGET", 0)
    train_from_spec(study, study.train["tuned"], progress=False)
    assert streamed == [True]
    settings = torch.load(tmp_path / "tuned" / CHECKPOINT, weights_only=False)["settings"]
    assert settings["n_images"] == 24 and not settings["lock_text"]  # the subset's train images, all layers
    assert [r["step"] for r in read_train_log(tmp_path / "tuned")] == [1, 2]
    trained = load_encoder(f"local:{tmp_path / 'tuned'}")
    assert trained.fingerprint() != load_encoder(f"config:{tiny_config}").fingerprint()
    subset_files = list((tmp_path / "cache" / "subset").glob("scale-*.txt"))
    assert len(subset_files) == 1  # drawn on first load and written beside the cache


def test_the_captions_hash_is_the_one_older_checkpoints_recorded():
    captions = ["garment with solid pattern", "", "dress with red colour, striped pattern"]
    assert _captions_sha256(captions) == hashlib.sha256("\n".join(captions).encode()).hexdigest()
    assert _captions_sha256([]) == hashlib.sha256(b"").hexdigest()
