"""The conditional DCGAN: architecture for each image format, deterministic resumable training, learning a
colour from a text embedding, and the generator the study uses (tiny sizes, seconds on two CPU cores)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from dressup.catalog import Catalog
from dressup.colours import CATALOGUE_COLOURS
from dressup.config import EncoderSpec
from dressup.generators.dcgan import (CHECKPOINT, ConditionalDiscriminator, ConditionalGenerator, DCGANConfig, DCGANError,
                                      DCGANGenerator, generator_from_checkpoint, layout, read_checkpoint)
from dressup.generators.dcgan_train import colour_fidelity, embed_texts, train_dcgan, train_dcgan_on_catalogue
from dressup.generators import GeneratorSettingsError, image_seed, load_generator
from dressup.records import Item, Preference
from tests.tiny_models import TINY_RESNET_CLIP, write_tiny_config

SMALL = dict(g_width=8, d_width=8, noise_dim=16, cond_dim=8)


def squares(n: int, size: int, colours: list[tuple[int, int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """n images of a filled square on white, alternating colours; one-hot "text" embeddings of the colour."""
    x = torch.full((n, 3, size, size), 255, dtype=torch.uint8)
    q = size // 4
    for i in range(n):
        x[i, :, q:size - q, q:size - q] = torch.tensor(colours[i % len(colours)], dtype=torch.uint8)[:, None, None]
    emb = torch.eye(4)[[i % len(colours) for i in range(n)]]
    return x, emb


@pytest.mark.parametrize("size,channels,start,ups", [(64, 3, 4, 4), (256, 3, 4, 6), (28, 1, 7, 2), (32, 3, 4, 3)])
def test_architecture_fits_each_image_format(size, channels, start, ups):
    assert layout(size) == (start, ups)
    cfg = DCGANConfig(image_size=size, channels=channels, text_dim=12, **SMALL)
    g, d = ConditionalGenerator(cfg), ConditionalDiscriminator(cfg)
    z, t = torch.randn(2, cfg.noise_dim), torch.randn(2, 12)
    x = g(z, t)
    assert x.shape == (2, channels, size, size) and x.abs().max() <= 1
    assert d(x, t).shape == (2,)
    kinds = {type(m).__name__ for m in g.modules()} | {type(m).__name__ for m in d.modules()}
    assert {"ConvTranspose2d", "BatchNorm2d", "ReLU", "Tanh", "Conv2d", "LeakyReLU"} <= kinds
    assert not kinds & {"MaxPool2d", "AvgPool2d"}


def test_sizes_that_do_not_halve_to_4_or_7_are_refused():
    with pytest.raises(DCGANError, match="power of two"):
        layout(30)


def test_training_writes_checkpoints_and_sample_sheets(tmp_path):
    x, emb = squares(24, 28, [(255, 0, 0), (0, 0, 255)])
    x = x[:, :1]  # single-channel 28x28
    path = train_dcgan(x, emb, tmp_path, steps=6, batch_size=8, image_size=28, channels=1, checkpoint_every=3,
                       progress=False, config=DCGANConfig(image_size=28, channels=1, text_dim=4, **SMALL))
    assert path == tmp_path / CHECKPOINT
    ck = read_checkpoint(tmp_path)
    assert ck["state"]["step"] == 6 and ck["state"]["config"]["channels"] == 1
    sheets = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert sheets == ["step_000003.png", "step_000006.png"]
    sheet = Image.open(tmp_path / "samples" / "step_000006.png")
    assert sheet.mode == "L" and sheet.size == (8 * 30 + 2, 8 * 30 + 2)  # 8 sample rows x 8 noises


def test_resume_continues_exactly_where_training_stopped(tmp_path):
    x, emb = squares(20, 32, [(255, 0, 0), (0, 160, 0)])
    cfg = DCGANConfig(image_size=32, text_dim=4, **SMALL)
    kw = dict(batch_size=8, image_size=32, checkpoint_every=100, progress=False, config=cfg, seed=3)
    train_dcgan(x, emb, tmp_path / "straight", steps=6, **kw)
    train_dcgan(x, emb, tmp_path / "resumed", steps=3, **kw)
    train_dcgan(x, emb, tmp_path / "resumed", steps=6, **kw)
    a, b = read_checkpoint(tmp_path / "straight"), read_checkpoint(tmp_path / "resumed")
    assert b["state"]["step"] == 6
    for k in a["generator"]:
        assert torch.equal(a["generator"][k], b["generator"][k]), k
    with pytest.raises(DCGANError, match="resume=False"):
        train_dcgan(x, emb, tmp_path / "resumed", steps=9, **{**kw, "seed": 4})


def test_bad_inputs_name_the_fix(tmp_path):
    x, emb = squares(8, 32, [(255, 0, 0)])
    with pytest.raises(DCGANError, match="image_size"):
        train_dcgan(x, emb, tmp_path, steps=1, image_size=64, progress=False)
    with pytest.raises(DCGANError, match="one .or V. per image"):
        train_dcgan(x, emb[:5], tmp_path, steps=1, image_size=32, progress=False)
    with pytest.raises(DCGANError, match="train-gan"):
        read_checkpoint(tmp_path / "nothing-here")


def test_generator_learns_the_colour_its_text_asks_for(tmp_path):
    red, blue = (230, 20, 20), (20, 40, 230)
    x, emb = squares(64, 32, [red, blue])
    cfg = DCGANConfig(image_size=32, text_dim=4, **SMALL)
    # Solid squares have no variety for the mode-seeking term to find, so it is off here.
    path = train_dcgan(x, emb, tmp_path, steps=150, batch_size=32, image_size=32, lr=1e-3, checkpoint_every=150,
                       progress=False, config=cfg, diversity=0.0)
    g = generator_from_checkpoint(read_checkpoint(path))
    z = torch.randn(16, cfg.noise_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        as_red = g(z, emb[0].expand(16, -1))
        as_blue = g(z, emb[1].expand(16, -1))
    centre = slice(12, 20)
    redness = lambda im: (im[:, 0, centre, centre] - im[:, 2, centre, centre]).mean().item()  # noqa: E731
    # Fully red is +1.65, fully blue -1.65; after 150 steps the two must clearly part, each on its own side.
    assert redness(as_red) > 0.3 and redness(as_blue) < -0.2 and redness(as_red) - redness(as_blue) > 0.8


@pytest.mark.parametrize("conditioning", ["projection", "concat"])
def test_both_discriminator_conditionings_score_text_and_image(conditioning):
    cfg = DCGANConfig(image_size=32, text_dim=4, conditioning=conditioning, **SMALL)
    d = ConditionalDiscriminator(cfg)
    x = torch.randn(3, 3, 32, 32, requires_grad=True)
    t = torch.randn(3, 4, requires_grad=True)
    out = d(x, t)
    assert out.shape == (3,)
    out.sum().backward()
    assert x.grad.abs().sum() > 0 and t.grad.abs().sum() > 0  # the logit depends on both
    with pytest.raises(DCGANError, match="conditioning"):
        ConditionalDiscriminator(DCGANConfig(image_size=32, text_dim=4, conditioning="sum", **SMALL))


class _PaintsRed(torch.nn.Module):
    """A 'generator' that ignores its text: a red block on white, in [-1, 1]."""

    cfg = DCGANConfig(image_size=32, text_dim=4, **SMALL)

    def forward(self, z, text):
        x = torch.ones(len(z), 3, 32, 32)
        x[:, 1:, 8:24, 8:24] = -1
        return x


class _Encoder:
    def encode_texts(self, texts):
        return torch.zeros(len(texts), 4)


def test_colour_fidelity_counts_images_with_the_asked_colour_from_pixels():
    assert colour_fidelity(_PaintsRed(), _Encoder(), ["red"], ["dress"], prompts=5)[0] == 4.0
    mean, rows = colour_fidelity(_PaintsRed(), _Encoder(), ["blue", "green"], ["dress"], prompts=5)
    assert mean == 0.0 and len(rows) == 5 and all(r["seen"] == ["red"] * 4 for r in rows)


def test_mode_seeking_keeps_the_noise_in_use(tmp_path):
    x, emb = squares(64, 32, [(230, 20, 20), (20, 40, 230)])
    cfg = DCGANConfig(image_size=32, text_dim=4, **SMALL)
    spread = {}
    for diversity in (0.0, 1.0):
        path = train_dcgan(x, emb, tmp_path / str(diversity), steps=60, batch_size=32, image_size=32, lr=1e-3,
                           checkpoint_every=60, progress=False, config=cfg, diversity=diversity)
        g = generator_from_checkpoint(read_checkpoint(path))
        z = torch.randn(16, cfg.noise_dim, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            out = g(z, emb[0].expand(16, -1))
        spread[diversity] = (out[:8] - out[8:]).abs().mean().item()
    assert spread[1.0] > 2 * spread[0.0]


# ------------------------------------------------------------------------------------------ the study's side


def catalogue(tmp_path: Path, n: int = 16) -> Catalog:
    """A real Catalog of tiny drawn garments in two colours."""
    colours = ["red", "blue"]
    items = []
    (tmp_path / "img").mkdir()
    for i in range(n):
        colour = colours[i % 2]
        im = Image.new("RGB", (32, 32), (245, 245, 245))
        ImageDraw.Draw(im).polygon([(12, 4), (20, 4), (28, 28), (4, 28)], fill=CATALOGUE_COLOURS[colour])
        path = tmp_path / "img" / f"{i:03d}.png"
        im.save(path)
        items.append(Item(item_id=f"img/{i:03d}.png", image_path=path, category="dress", category_type=3,
                          attributes=(colour, "solid"), attribute_types={colour: "colour", "solid": "texture"},
                          split="train", caption=f"dress with {colour} colour, solid pattern"))
    return Catalog(root=tmp_path, items=items, attribute_names=[*colours, "solid"],
                   attribute_types={**{c: "colour" for c in colours}, "solid": "texture"}, categories=["dress"],
                   splits=("train",))


@pytest.fixture(scope="module")
def tiny_encoders(tmp_path_factory):
    """Two real open_clip encoders from a tiny random config, differing only in their seed."""
    from dressup.encoders import load_encoder

    path = write_tiny_config(tmp_path_factory.mktemp("enc"), "dressup-test-tiny-gan", TINY_RESNET_CLIP)
    return [load_encoder(EncoderSpec(name=f"tiny{s}", spec=f"config:{path}", options={"seed": s})) for s in (0, 1)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_encoders):
    root = tmp_path_factory.mktemp("gan")
    cat = catalogue(root)
    out = root / "dcgan"
    train_dcgan_on_catalogue(cat, tiny_encoders[0], out, steps=4, batch_size=8, split="all", checkpoint_every=4,
                             progress=False, config=DCGANConfig(image_size=32, text_dim=16, **SMALL),
                             text_cache=root / "texts")
    return root, out


def test_catalogue_training_records_its_encoder_and_sample_rows(trained):
    root, out = trained
    ck = read_checkpoint(out)
    meta = ck["state"]["meta"]
    assert meta["items"] == 16 and len(meta["probe_embedding"]) == 16 and "encoder_fingerprint" in meta
    assert meta["sample_texts"] == ["a red dress", "a blue dress"] and meta["texts"] == ["short", "pattern"]
    assert json.loads((out / "samples.json").read_text())["rows"] == meta["sample_texts"]
    assert (out / "samples" / "step_000004.png").is_file()


def test_text_embeddings_are_cached_per_encoder(trained, tiny_encoders):
    root, _ = trained
    cached = list((root / "texts").glob("text-embeddings-*.pt"))
    assert len(cached) == 1
    table = torch.load(cached[0])
    assert set(table) == {"red dress", "blue dress", "red solid dress", "blue solid dress"}
    texts = ["blue dress", "red solid dress", "blue dress"]
    assert torch.allclose(embed_texts(tiny_encoders[0], texts, root / "texts"), tiny_encoders[0].encode_texts(texts))
    other = embed_texts(tiny_encoders[1], texts, root / "texts")  # another encoder: its own file, its own vectors
    assert len(list((root / "texts").glob("text-embeddings-*.pt"))) == 2
    assert torch.allclose(other, tiny_encoders[1].encode_texts(texts))


def test_dcgan_generator_gives_four_seeded_images_with_stable_ids(trained, tiny_encoders):
    root, out = trained
    gen = load_generator({"kind": "dcgan", "checkpoint": "dcgan", "encoder": "tiny0"}, device="cpu",
                         encoder=tiny_encoders[0], base_dir=root)
    assert isinstance(gen, DCGANGenerator)
    a = gen.generate(Preference(text="a crimson dress"), seed=4)
    b = gen.generate(Preference(text="a crimson dress"), seed=4)
    c = gen.generate(Preference(text="a crimson dress"), seed=5)
    assert len(a) == 4 and all(s.image.size == (32, 32) and s.image.mode == "RGB" for s in a)
    assert [s.item_id for s in a] == [s.item_id for s in b] and all(i.startswith("gen:") for i in (s.item_id for s in a))
    assert all(np.array_equal(np.asarray(x.image), np.asarray(y.image)) for x, y in zip(a, b))
    assert not np.array_equal(np.asarray(a[0].image), np.asarray(c[0].image))
    assert a[0].extra["prompt"] == "a red dress" and a[0].extra["colour_mapping"] == {"crimson": "red"}
    assert [s.extra["image_seed"] for s in a] == [image_seed(4, i) for i in range(4)]
    assert a[0].extra["model"].startswith("dcgan:")
    photos_only = gen.generate(Preference(images=[Image.new("RGB", (20, 20), (200, 0, 0))] * 2), seed=4)
    assert photos_only[0].extra["conditioned_on"] == "photos"


def test_dcgan_generator_refuses_another_encoder(trained, tiny_encoders):
    root, out = trained
    with pytest.raises(GeneratorSettingsError, match="another text encoder"):
        DCGANGenerator.load(out, tiny_encoders[1])
    with pytest.raises(GeneratorSettingsError, match="encoder ="):
        load_generator({"kind": "dcgan", "checkpoint": str(out)}, device="cpu", base_dir=root)


def test_dcgan_generator_reads_a_sentence_into_the_words_it_was_trained_on(trained, tiny_encoders, tmp_path):
    """With the study's query reader, a participant's sentence conditions the GAN as the catalogue words it was
    trained on ("red dress"), not as the whole sentence; without one only colour words are grounded."""
    from dressup.colours import CATALOGUE_COLOURS
    from dressup.garments import GarmentLexicon
    from dressup.reading import QueryReader

    root, _ = trained
    lexicon = GarmentLexicon.load_or_build({"dress": ["dress.n.01"], "skirt": ["skirt.n.02"]}, tmp_path)
    reader = QueryReader(dict(CATALOGUE_COLOURS), lexicon, ["solid"])
    settings = {"kind": "dcgan", "checkpoint": "dcgan", "encoder": "tiny0"}
    gen = load_generator(settings, device="cpu", encoder=tiny_encoders[0], base_dir=root, reader=reader)
    sentence = "Hi! I'd love a crimson frock for a June wedding, nothing with stripes"
    shown = gen.generate(Preference(text=sentence), seed=4)
    assert shown[0].extra["prompt"] == "red dress" and shown[0].extra["colour_mapping"] == {"crimson": "red"}
    direct = gen.generate(Preference(text="red dress"), seed=4)
    assert all(np.array_equal(np.asarray(x.image), np.asarray(y.image)) for x, y in zip(shown, direct))
    plain = load_generator(settings, device="cpu", encoder=tiny_encoders[0], base_dir=root)
    assert plain.generate(Preference(text=sentence), seed=4)[0].extra["prompt"] == sentence.replace("crimson", "red")
    no_grounding = load_generator({**settings, "colour_grounding": False}, device="cpu", encoder=tiny_encoders[0],
                                  base_dir=root, reader=reader)
    assert no_grounding.generate(Preference(text=sentence), seed=4)[0].extra["prompt"] == sentence
