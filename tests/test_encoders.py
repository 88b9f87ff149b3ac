"""Every spec scheme loads offline into the same protocol, and a saved encoder is exactly what was trained."""
from __future__ import annotations

import json
import os
import string

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import huggingface_hub.constants
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

from dressup import encoders
from dressup.config import EncoderSpec
from dressup.encoders import DEMO_MODELS_DIR, EncoderError, load_encoder
from dressup.stn import STNTower
from tests.tiny_models import TINY_CLIP, write_tiny_config



@pytest.fixture()
def tiny_config(tmp_path):
    return write_tiny_config(tmp_path, "tiny-enc-clip")


@pytest.fixture(scope="module")
def tiny_transformers(tmp_path_factory):
    """A tiny transformers CLIPModel + CLIPTokenizer + CLIPImageProcessor saved like a Hub repo."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    d = tmp_path_factory.mktemp("tiny-hf-clip")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase + string.digits + ".,":
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77).save_pretrained(d)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(d)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                       image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3]).save_pretrained(d)
    return d


def _pictures(n: int = 5) -> list[Image.Image]:
    colours = [(220, 30, 30), (30, 60, 220), (30, 170, 60), (240, 210, 40), (20, 20, 20)]
    return [Image.new("RGB", (40 + 7 * i, 30 + 5 * i), colours[i % 5]) for i in range(n)]


def _unit_rows(x: torch.Tensor) -> bool:
    return torch.allclose(x.norm(dim=-1), torch.ones(len(x)), atol=1e-5)


# ------------------------------------------------------------------------------------------ protocol
def test_config_encoder_gives_normalised_deterministic_embeddings(tiny_config):
    enc = load_encoder(f"config:{tiny_config}")
    assert (enc.name, enc.embed_dim, enc.image_size) == ("tiny-enc-clip", 32, 32)
    batch = torch.stack([enc.preprocess(im) for im in _pictures()])
    assert batch.shape == (5, 3, 32, 32) and batch.dtype == torch.float32
    img = enc.encode_images(batch)
    txt = enc.encode_texts(["red dress", "blue shirt", "green hat"])
    assert img.shape == (5, 32) and txt.shape == (3, 32)
    assert _unit_rows(img) and _unit_rows(txt)
    again = load_encoder(f"config:{tiny_config}")  # random init is seeded: the same model every build
    assert again.fingerprint() == enc.fingerprint()
    torch.testing.assert_close(again.encode_images(batch), img)


def test_preprocess_is_the_models_own_resize_then_its_normalisation(tiny_config):
    """open_clip's default geometry centre-crops; an STN's squash keeps everything (tests/test_preprocess.py)."""
    enc = load_encoder(f"config:{tiny_config}")
    wide = Image.new("RGB", (128, 32), (0, 0, 255))
    wide.paste((255, 0, 0), (0, 0, 24, 32))  # a red band the centre crop cuts away
    x = enc.resize(wide)
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8
    assert x[0].float().mean() < 50 and x[2].float().mean() > 200  # only the blue centre is left
    stn = load_encoder(EncoderSpec(name="t", spec=f"config:{tiny_config}", stn=True))
    assert stn.resize(wide)[0, :, 0].float().mean() > 200  # red survives at the left edge
    mean = torch.tensor(enc.mean).view(3, 1, 1)
    std = torch.tensor(enc.std).view(3, 1, 1)
    torch.testing.assert_close(enc.preprocess(wide), (x.float() / 255 - mean) / std)
    torch.testing.assert_close(enc.preprocess(wide), enc.preprocess(wide.copy()))


def test_fingerprint_changes_with_any_weight(tiny_config):
    enc = load_encoder(f"config:{tiny_config}")
    before = enc.fingerprint()
    with torch.no_grad():
        next(enc.module.visual.parameters()).view(-1)[0] += 1e-3
    assert enc.fingerprint() != before


def test_unknown_scheme_names_the_known_ones():
    with pytest.raises(EncoderError, match="hf-hub:"):
        load_encoder("marqo-fashionCLIP")
    with pytest.raises(EncoderError, match="does not exist"):
        load_encoder("config:/nonexistent/model.json")


def test_configs_with_the_same_file_name_keep_their_own_architectures(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "model.json").write_text(json.dumps(TINY_CLIP))
    (tmp_path / "b" / "model.json").write_text(json.dumps(dict(TINY_CLIP, embed_dim=24)))
    for _ in range(2):
        assert load_encoder(f"config:{tmp_path / 'a' / 'model.json'}").encode_texts(["x"]).shape == (1, 32)
        assert load_encoder(f"config:{tmp_path / 'b' / 'model.json'}").encode_texts(["x"]).shape == (1, 24)


def test_config_without_required_keys_is_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"embed_dim": 8, "vision_cfg": {}}))
    with pytest.raises(EncoderError, match="text_cfg"):
        load_encoder(f"config:{bad}")


# ------------------------------------------------------------------------------------------ local:
def test_saved_stn_encoder_loads_back_with_identical_outputs(tiny_config, tmp_path):
    enc = load_encoder(EncoderSpec(name="t", spec=f"config:{tiny_config}", stn=True))
    with torch.no_grad():  # make the STN do something, so a lost STN would show
        enc.module.visual.stn.localisation.regressor[-1].bias.copy_(torch.tensor([0.8, 0.1, 0.05, -0.1, 0.9, 0.0]))
    enc.save(tmp_path / "saved")
    back = load_encoder(f"local:{tmp_path / 'saved'}")
    assert back.stn and isinstance(back.module.visual, STNTower)
    assert back.fingerprint() == enc.fingerprint()
    batch = torch.stack([enc.preprocess(im) for im in _pictures()])
    assert torch.equal(back.encode_images(batch), enc.encode_images(batch))
    assert torch.equal(back.encode_texts(["a red dress"]), enc.encode_texts(["a red dress"]))


def test_corrupt_local_folder_is_refused(tiny_config, tmp_path):
    enc = load_encoder(f"config:{tiny_config}")
    enc.save(tmp_path / "saved")
    meta = json.loads((tmp_path / "saved" / "encoder.json").read_text())
    meta["fingerprint"] = "0" * 64
    (tmp_path / "saved" / "encoder.json").write_text(json.dumps(meta))
    with pytest.raises(EncoderError, match="corrupt"):
        load_encoder(f"local:{tmp_path / 'saved'}")
    with pytest.raises(EncoderError, match="encoder.json"):
        load_encoder(f"local:{tmp_path}")


# ------------------------------------------------------------------------------------------ transformers:
def test_transformers_backend_matches_clipmodel_pooler_output(tiny_transformers, tmp_path):
    from transformers import CLIPModel, CLIPTokenizer

    enc = load_encoder(f"transformers:{tiny_transformers}")
    assert (enc.embed_dim, enc.image_size) == (16, 32)
    assert enc.mean == pytest.approx((0.5, 0.4, 0.3)) and enc.std == pytest.approx((0.2, 0.25, 0.3))
    ref = CLIPModel.from_pretrained(tiny_transformers, dtype=torch.float32).eval()
    tok = CLIPTokenizer.from_pretrained(tiny_transformers)
    batch = torch.stack([enc.preprocess(im) for im in _pictures()])
    texts = ["red dress", "a blue shirt with long sleeves"]
    with torch.no_grad():
        want_img = F.normalize(ref.get_image_features(pixel_values=batch).pooler_output, dim=-1)
        t = tok(texts, padding=True, return_tensors="pt")
        want_txt = F.normalize(ref.get_text_features(**t).pooler_output, dim=-1)
    torch.testing.assert_close(enc.encode_images(batch), want_img)
    torch.testing.assert_close(enc.encode_texts(texts), want_txt)

    enc.add_stn()
    enc.save(tmp_path / "hf-saved")
    back = load_encoder(f"local:{tmp_path / 'hf-saved'}")
    assert back.backend == "transformers" and back.stn
    assert torch.equal(back.encode_images(batch), enc.encode_images(batch))
    assert torch.equal(back.encode_texts(texts), enc.encode_texts(texts))


def test_transformers_lock_text_freezes_the_text_transformer_only(tiny_transformers):
    enc = load_encoder(EncoderSpec(name="f", spec=f"transformers:{tiny_transformers}", lock_text=True))
    m = enc.module
    assert not any(p.requires_grad for p in m.text_model.parameters())
    assert all(p.requires_grad for p in m.text_projection.parameters())
    assert all(p.requires_grad for p in m.vision_model.parameters())


# ------------------------------------------------------------------------------------------ hf-hub:
def test_hf_hub_spec_loads_from_an_offline_hub_cache(tmp_path, monkeypatch):
    """The hf-hub: path (open_clip's config + weights download, tokenizer lookup) against a local cache."""
    import open_clip

    torch.manual_seed(1)
    model = open_clip.CLIP(**TINY_CLIP).eval()
    rev = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--tiny-fashion-clip"
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    pp = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}
    (snap / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP, "preprocess_cfg": pp}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(snap / "open_clip_model.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    enc = load_encoder(EncoderSpec(name="hub", spec="hf-hub:acme/tiny-fashion-clip",
                                   options={"cache_dir": str(tmp_path / "hub")}))
    batch = torch.stack([enc.preprocess(im) for im in _pictures()])
    with torch.no_grad():
        want = F.normalize(model.encode_image(batch), dim=-1)
        want_txt = F.normalize(model.encode_text(open_clip.SimpleTokenizer(context_length=16)(["red dress"])), dim=-1)
    torch.testing.assert_close(enc.encode_images(batch), want)
    torch.testing.assert_close(enc.encode_texts(["red dress"]), want_txt)

    enc.save(tmp_path / "from-hub")  # and the local: folder needs no Hub at all
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    assert load_encoder(f"local:{tmp_path / 'from-hub'}").fingerprint() == enc.fingerprint()

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(EncoderError, match="cache_dir"):
        load_encoder(EncoderSpec(name="x", spec="hf-hub:acme/not-cached", options={"cache_dir": str(tmp_path / "hub")}))


# ------------------------------------------------------------------------------------------ demo towers
@pytest.fixture(scope="module")
def demo_small():
    return load_encoder(EncoderSpec(name="demo", spec=f"config:{DEMO_MODELS_DIR / 'dressup-demo-small.json'}"))


def test_demo_text_tower_is_minilm_with_sentence_transformers_pooling(demo_small):
    from transformers import AutoModel, AutoTokenizer

    path = encoders.minilm_path()
    texts = ["a red summer dress", "a crimson dress for summer", "quarterly tax filing deadline"]
    tok = AutoTokenizer.from_pretrained(path)
    ref = AutoModel.from_pretrained(path).eval()
    with torch.no_grad():
        t = tok(texts, padding=True, return_tensors="pt")
        hidden = ref(**t).last_hidden_state
        mask = t["attention_mask"].unsqueeze(-1).float()
        want = F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    got = demo_small.encode_texts(texts)
    assert demo_small.embed_dim == 384
    assert isinstance(demo_small.module.text.proj, torch.nn.Identity)  # images map into MiniLM's own space
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    sims = got @ got.T
    assert sims[0, 1] > 0.7 and sims[0, 2] < 0.3


def test_demo_lock_text_caches_what_encode_texts_computes(demo_small):
    demo_small.set_lock_text(True)
    try:
        assert not any(p.requires_grad for p in demo_small.module.text.parameters())
        assert all(p.requires_grad for p in demo_small.module.visual.parameters())
        states = demo_small.text_states(["red dress", "blue shirt"])
        torch.testing.assert_close(F.normalize(states, dim=-1), demo_small.encode_texts(["red dress", "blue shirt"]))
    finally:
        demo_small.set_lock_text(False)


def test_minilm_with_other_weights_is_refused(monkeypatch):
    monkeypatch.setattr(encoders, "MINILM_SHA256", "f" * 64)
    with pytest.raises(EncoderError, match="sha256"):
        load_encoder(f"config:{DEMO_MODELS_DIR / 'dressup-demo-small.json'}")


def test_demo_linear_projection_variant():
    enc = load_encoder(f"config:{DEMO_MODELS_DIR / 'dressup-demo-small-proj256.json'}")
    assert enc.embed_dim == 256 and isinstance(enc.module.text.proj, torch.nn.Linear)
    enc.set_lock_text(True)
    assert all(p.requires_grad for p in enc.module.text.proj.parameters())  # the head still learns
    assert enc.encode_texts(["red dress"]).shape == (1, 256)


def test_demo_swin_tower_runs_at_64px(tmp_path):
    from open_clip.timm_model import TimmModel
    from timm.models import SwinTransformer

    enc = load_encoder(EncoderSpec(name="swin", spec=f"config:{DEMO_MODELS_DIR / 'dressup-demo-swin.json'}", stn=True))
    assert isinstance(enc.module.visual, STNTower) and isinstance(enc.module.visual.tower, TimmModel)
    assert isinstance(enc.module.visual.tower.trunk, SwinTransformer)
    batch = torch.stack([enc.preprocess(im) for im in _pictures(3)])
    out = enc.encode_images(batch)
    assert out.shape == (3, 384) and _unit_rows(out)
    enc.save(tmp_path / "swin")
    assert torch.equal(load_encoder(f"local:{tmp_path / 'swin'}").encode_images(batch), out)


def test_image_tower_option_swaps_in_a_timm_swin(tiny_config, tiny_transformers, tmp_path):
    options = {"image_tower": "dressup_swin_demo"}
    enc = load_encoder(EncoderSpec(name="s", spec=f"config:{tiny_config}", image_size=64, options=options))
    assert type(enc.module.visual.trunk).__name__ == "SwinTransformer"
    assert enc.encode_images(torch.zeros(2, 3, 64, 64)).shape == (2, 32)
    hf = load_encoder(EncoderSpec(name="h", spec=f"transformers:{tiny_transformers}", image_size=64, options=options))
    batch = torch.randn(2, 3, 64, 64)
    out = hf.encode_images(batch)
    assert out.shape == (2, 16) and _unit_rows(out)
    hf.save(tmp_path / "hf-swin")
    assert torch.equal(load_encoder(f"local:{tmp_path / 'hf-swin'}").encode_images(batch), out)
