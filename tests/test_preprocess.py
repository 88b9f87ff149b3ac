"""Each encoder preprocesses as its published model's own library does; an STN sees the whole squashed picture.

References are the libraries themselves, on tiny real models: transformers' ``CLIPImageProcessor`` (both its
backends) and open_clip's ``create_model_and_transforms``. Images are noise (every pixel differs, so a crop
offset or filter that is one off shows), non-square both ways, at odd sizes, smaller and larger than the tower.

Tolerances: open_clip and transformers' PIL backend resample with Pillow as we do, so the pixels are equal and
only float rounding of the normalisation differs (``atol=1e-5`` on values of a few units). transformers 5's
default ``CLIPImageProcessor`` resamples tensors with torchvision's port of Pillow's kernels, whose integer
rounding differs by one grey level on a few pixels; ``<= 1`` level and ``<= 3 %`` of values are allowed there.
"""
from __future__ import annotations

import json
import os
import shutil
import string

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from dressup.config import EncoderSpec
from dressup.encoders import DEMO_MODELS_DIR, EncoderError, load_encoder
from dressup.index import load_or_build
from dressup.preprocess import clip_image, open_clip_eval
from dressup.records import Item
from tests.tiny_models import TINY_CLIP

S = 32  # the tiny towers' input size
# landscape, portrait, odd sizes, smaller than the tower (upsampled), and 35x32: a crop surplus of 3 that
# transformers (floor: 1) and torchvision (round half to even: 2) place differently
NON_SQUARE = [(97, 61), (45, 130), (33, 50), (301, 200), (20, 13), (35, 32), (32, 35)]
SQUARE = [(32, 32), (64, 64), (50, 50), (17, 17)]


def _noise(width: int, height: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    bands = len(mode)
    arr = np.random.default_rng(seed + 7 * width + height).integers(0, 256, (height, width, bands), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if bands == 1 else arr, mode)


def _pictures() -> list[Image.Image]:
    """Noise in every non-square size, plus an RGBA picture with graded alpha and a greyscale one."""
    pics = [_noise(w, h, i) for i, (w, h) in enumerate(NON_SQUARE)]
    rgba = _noise(71, 40, 1)
    rgba.putalpha(Image.linear_gradient("L").resize((71, 40)))
    return pics + [rgba, _noise(40, 57, 2, "L")]


def _old_resize(img: Image.Image, size: int) -> torch.Tensor:
    """``Encoder.resize`` before issue 16, verbatim: the pixels square images must keep."""
    img = img.convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def _red_band_picture() -> Image.Image:
    """Wide blue picture with a red band at the left edge: a centre crop cuts it away, a squash keeps it."""
    wide = Image.new("RGB", (128, 32), (0, 0, 255))
    wide.paste((255, 0, 0), (0, 0, 24, 32))
    return wide


# ------------------------------------------------------------------------------------------ transformers
@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    """A tiny transformers CLIPModel + CLIPTokenizer (no processor yet), saved like a Hub repo."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    d = tmp_path_factory.mktemp("tiny-hf-model")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase + " ":
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77).save_pretrained(d)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                           image_size=S, patch_size=8),
        projection_dim=8,
    )
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(d)
    return d


PROCESSORS = {  # name -> CLIPImageProcessor settings, and the description the encoder must give
    "fashion-clip": ({"size": {"shortest_edge": S}, "crop_size": {"height": S, "width": S}},
                     "clip_processor-shortest32-crop32-bicubic"),
    "resize-then-crop-bilinear": ({"size": {"shortest_edge": 40}, "crop_size": {"height": S, "width": S},
                                   "resample": 2}, "clip_processor-shortest40-crop32-bilinear"),
    "square-size": ({"size": {"height": S, "width": S}, "crop_size": {"height": S, "width": S}},
                    "clip_processor-32x32-crop32-bicubic"),
}


def _hf_repo(hf_model, tmp_path, settings: dict) -> str:
    from transformers import CLIPImageProcessor

    d = tmp_path / "repo"
    shutil.copytree(hf_model, d)
    CLIPImageProcessor(image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3], **settings).save_pretrained(d)
    return str(d)


@pytest.mark.parametrize("name", list(PROCESSORS))
def test_transformers_encoder_preprocesses_as_clip_image_processor(name, hf_model, tmp_path):
    from transformers import CLIPImageProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    settings, description = PROCESSORS[name]
    repo = _hf_repo(hf_model, tmp_path, settings)
    enc = load_encoder(f"transformers:{repo}")
    assert enc.preprocessing == description
    pil_backend, default = CLIPImageProcessorPil.from_pretrained(repo), CLIPImageProcessor.from_pretrained(repo)
    differing, total = 0, 0
    for img in _pictures():
        got = enc.preprocess(img)
        torch.testing.assert_close(got, pil_backend(img, return_tensors="pt")["pixel_values"][0], atol=1e-5, rtol=0)
        want = default(img, return_tensors="pt", do_rescale=False, do_normalize=False)["pixel_values"][0]
        diff = (enc.resize(img).int() - want.int()).abs()
        assert want.dtype == torch.uint8 and diff.max() <= 1
        differing, total = differing + int((diff > 0).sum()), total + diff.numel()
        std = torch.tensor(enc.std).view(3, 1, 1)
        torch.testing.assert_close(got, default(img, return_tensors="pt")["pixel_values"][0],
                                   atol=float(1 / 255 / std.min()) + 1e-5, rtol=0)
    assert differing <= 0.03 * total

    enc.save(tmp_path / "saved")  # the processor travels with a local: folder
    back = load_encoder(f"local:{tmp_path / 'saved'}")
    assert back.preprocessing == description
    for img in _pictures()[:3]:
        assert torch.equal(back.resize(img), enc.resize(img))


def test_transformers_image_size_override_keeps_the_processor_proportions(hf_model, tmp_path):
    repo = _hf_repo(hf_model, tmp_path, PROCESSORS["resize-then-crop-bilinear"][0])
    enc = load_encoder(EncoderSpec(name="big", spec=f"transformers:{repo}", image_size=64))
    assert enc.preprocessing == "clip_processor-shortest80-crop64-bilinear"  # 40 -> 32 becomes 80 -> 64
    assert enc.resize(_noise(97, 61)).shape == (3, 64, 64)


def test_a_processor_the_tower_cannot_take_is_refused_at_load(hf_model, tmp_path):
    repo = _hf_repo(hf_model, tmp_path, {"size": {"shortest_edge": S}, "crop_size": {"height": S, "width": 40}})
    with pytest.raises(EncoderError, match="takes a square"):
        load_encoder(f"transformers:{repo}")


# ------------------------------------------------------------------------------------------ open_clip
OPEN_CLIP_CFGS = [
    ({}, "open_clip-shortest-32-bicubic"),  # open_clip's default (Marqo-FashionCLIP's preprocess_cfg has no mode)
    ({"interpolation": "bilinear"}, "open_clip-shortest-32-bilinear"),
    ({"resize_mode": "longest", "fill_color": 255}, "open_clip-longest-32-bicubic-fill255"),
    ({"resize_mode": "squash"}, "open_clip-squash-32-bicubic"),
]


def _config(folder, preprocess_cfg: dict, name: str = "tiny-pp-clip"):
    """A config: model file carrying a preprocess_cfg, and the same model as open_clip's own local-dir: folder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(dict(TINY_CLIP, preprocess_cfg=preprocess_cfg)))
    reference = {"model_cfg": TINY_CLIP, "preprocess_cfg": preprocess_cfg}
    (folder / "open_clip_config.json").write_text(json.dumps(reference))
    return path


@pytest.mark.parametrize("cfg,description", OPEN_CLIP_CFGS, ids=[d for _, d in OPEN_CLIP_CFGS])
def test_open_clip_encoder_preprocesses_as_create_model_and_transforms(cfg, description, tmp_path):
    path = _config(tmp_path / "m", cfg)
    enc = load_encoder(f"config:{path}")
    assert enc.preprocessing == description
    _, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tmp_path / 'm'}")
    for img in _pictures():
        torch.testing.assert_close(enc.preprocess(img), preprocess(img), atol=1e-5, rtol=0)

    enc.save(tmp_path / "saved")  # preprocess_cfg travels with a local: folder
    back = load_encoder(f"local:{tmp_path / 'saved'}")
    assert back.preprocessing == description
    assert torch.equal(back.resize(_pictures()[0]), enc.resize(_pictures()[0]))


def test_the_two_libraries_centre_their_crops_differently():
    """Why a transformers and an open_clip pipeline have different descriptions even at the same settings."""
    img = _noise(35, 32)
    a = np.asarray(clip_image(img, shortest_edge=S, crop=S))
    b = np.asarray(open_clip_eval(img, S))
    np.testing.assert_array_equal(a, np.asarray(img)[:, 1:33])  # surplus 3: floor(1.5) = 1
    np.testing.assert_array_equal(b, np.asarray(img)[:, 2:34])  # round(1.5) = 2


def test_an_unknown_open_clip_resize_mode_is_refused_at_load(tmp_path):
    with pytest.raises(EncoderError, match="resize_mode"):
        load_encoder(f"config:{_config(tmp_path, {'resize_mode': 'fill'})}")


# ------------------------------------------------------------------------------------------ STN
def test_an_stn_sees_the_whole_picture_squashed(tmp_path, hf_model):
    path = _config(tmp_path / "m", {})
    wide = _red_band_picture()
    plain = load_encoder(f"config:{path}")
    assert plain.resize(wide)[0, :, 0].float().mean() < 50  # the model's own centre crop cuts the band away
    stn = load_encoder(EncoderSpec(name="stn", spec=f"config:{path}", stn=True))
    assert stn.preprocessing == "squash-32-bicubic"
    x = stn.resize(wide)
    assert x[0, :, 0].float().mean() > 200 and x[2, :, 0].float().mean() < 50  # red survives at the left edge
    assert x[2, :, -1].float().mean() > 200
    assert torch.equal(x, _old_resize(wide, S))
    stn.save(tmp_path / "stn")
    assert load_encoder(f"local:{tmp_path / 'stn'}").preprocessing == "squash-32-bicubic"

    repo = _hf_repo(hf_model, tmp_path, PROCESSORS["fashion-clip"][0])
    hf = load_encoder(EncoderSpec(name="hf-stn", spec=f"transformers:{repo}", stn=True))
    assert hf.preprocessing == "squash-32-bicubic" and torch.equal(hf.resize(wide), _old_resize(wide, S))


# ------------------------------------------------------------------------------------------ square images
def test_square_images_keep_the_pixels_they_had_before(tmp_path, hf_model):
    """Square catalogues (the demo's) keep their trained weights and indexes: every bicubic pipeline gives a
    square image exactly the old squash's pixels, at the tower's size or any other."""
    repo = _hf_repo(hf_model, tmp_path, PROCESSORS["fashion-clip"][0])
    encoders = [load_encoder(f"transformers:{repo}"),
                load_encoder(EncoderSpec(name="stn", spec=f"config:{_config(tmp_path / 'a', {})}", stn=True))]
    encoders += [load_encoder(f"config:{_config(tmp_path / str(i), cfg)}")
                 for i, (cfg, _) in enumerate(OPEN_CLIP_CFGS) if cfg.get("interpolation") != "bilinear"]
    for enc in encoders:
        for w, h in SQUARE:
            img = _noise(w, h)
            assert torch.equal(enc.resize(img), _old_resize(img, S)), (enc.preprocessing, w)
            assert enc.geometry.same_as_squash(w, h)
        assert enc.geometry.same_as_squash(97, 61) == (enc.stn or "squash" in enc.preprocessing)


def test_the_demo_towers_see_the_demo_catalogue_as_before():
    enc = load_encoder(f"config:{DEMO_MODELS_DIR / 'dressup-demo-small.json'}")
    assert enc.preprocessing == "open_clip-shortest-64-bicubic"
    for img in (_noise(64, 64), _noise(128, 128), _noise(40, 40)):
        assert torch.equal(enc.resize(img), _old_resize(img, 64))


# ------------------------------------------------------------------------------------------ index manifests
def _catalogue(folder, sizes: list[tuple[int, int]]) -> list[Item]:
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i, (w, h) in enumerate(sizes):
        path = folder / f"{i}.png"
        _noise(w, h, i).save(path)
        items.append(Item(item_id=f"img/{i}.png", image_path=path, category="dress", category_type=3, attributes=(),
                          attribute_types={}, split="train", caption="a dress"))
    return items


def _built_at(folder) -> float:
    return json.loads((folder / "manifest.json").read_text())["built_at"]


def _strip_preprocessing(folder) -> None:
    """Make the manifest look like one written before it recorded preprocessing."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["preprocessing"]
    path.write_text(json.dumps(manifest))


def test_an_index_built_with_other_preprocessing_is_rebuilt(tmp_path):
    items = _catalogue(tmp_path / "cat", [(40, 30), (30, 40), (40, 40)])
    crop = load_encoder(f"config:{_config(tmp_path / 'a', {})}")
    squashing = load_encoder(f"config:{_config(tmp_path / 'b', {'resize_mode': 'squash'})}")
    assert crop.fingerprint() == squashing.fingerprint()  # the same weights: only preprocessing differs
    first = load_or_build(tmp_path / "idx", crop, items, "cat", progress=False)
    assert first.manifest.preprocessing == "open_clip-shortest-32-bicubic"
    again = load_or_build(tmp_path / "idx", crop, items, "cat", progress=False)
    assert again.manifest.built_at == first.manifest.built_at
    other = load_or_build(tmp_path / "idx", squashing, items, "cat", progress=False)
    assert other.manifest.preprocessing == "open_clip-squash-32-bicubic"
    assert other.manifest.built_at != first.manifest.built_at
    assert not np.allclose(other.index.vectors[:2], first.index.vectors[:2])
    np.testing.assert_allclose(other.index.vectors[2], first.index.vectors[2], atol=1e-6)  # square: same pixels


def test_an_old_manifest_is_kept_exactly_when_the_pixels_agree(tmp_path):
    square = _catalogue(tmp_path / "square", [(40, 40), (32, 32), (64, 64)])
    mixed = _catalogue(tmp_path / "mixed", [(40, 40), (40, 30)])
    enc = load_encoder(f"config:{_config(tmp_path / 'a', {})}")
    bilinear = load_encoder(f"config:{_config(tmp_path / 'b', {'interpolation': 'bilinear'})}")
    assert bilinear.fingerprint() == enc.fingerprint()

    first = load_or_build(tmp_path / "sq", enc, square, "sq", progress=False)
    _strip_preprocessing(tmp_path / "sq")
    kept = load_or_build(tmp_path / "sq", enc, square, "sq", progress=False)
    assert kept.manifest.built_at == first.manifest.built_at  # square catalogue: the squash's pixels, kept
    assert json.loads((tmp_path / "sq" / "manifest.json").read_text())["preprocessing"] == enc.preprocessing

    _strip_preprocessing(tmp_path / "sq")  # bilinear resizing of 40 and 64 px squares is not the bicubic squash
    rebuilt = load_or_build(tmp_path / "sq", bilinear, square, "sq", progress=False)
    assert rebuilt.manifest.built_at != first.manifest.built_at
    assert rebuilt.manifest.preprocessing == "open_clip-shortest-32-bilinear"

    first = load_or_build(tmp_path / "mx", enc, mixed, "mx", progress=False)
    _strip_preprocessing(tmp_path / "mx")  # a non-square image was squashed, now it is cropped: rebuilt
    assert load_or_build(tmp_path / "mx", enc, mixed, "mx", progress=False).manifest.built_at != first.manifest.built_at

    stn = load_encoder(EncoderSpec(name="stn", spec=f"config:{_config(tmp_path / 'c', {})}", stn=True))
    first = load_or_build(tmp_path / "stn", stn, mixed, "mx", progress=False)
    _strip_preprocessing(tmp_path / "stn")  # an STN's squash is the old preprocessing on any image: kept
    again = load_or_build(tmp_path / "stn", stn, mixed, "mx", progress=False)
    assert again.manifest.built_at == first.manifest.built_at
