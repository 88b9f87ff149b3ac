"""The STN starts as the identity, learns through the CLIP loss, and stands in for any image tower."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import open_clip
import pytest
import torch

from dressup.config import EncoderSpec
from dressup.encoders import load_encoder
from dressup.stn import STN, STNTower
from tests.tiny_models import write_tiny_config



@pytest.fixture()
def tiny_config(tmp_path):
    return write_tiny_config(tmp_path, "tiny-stn-clip")


def test_stn_starts_as_identity():
    torch.manual_seed(0)
    stn = STN()
    x = torch.randn(4, 3, 40, 40)
    y = stn(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, x, atol=1e-5, rtol=1e-5)


def test_stn_tower_computes_what_the_bare_tower_computes(tiny_config):
    enc = load_encoder(EncoderSpec(name="t", spec=f"config:{tiny_config}"))
    x = torch.randn(3, 3, 32, 32)
    before = enc.encode_images(x)
    enc.add_stn()
    assert isinstance(enc.module.visual, STNTower)
    torch.testing.assert_close(enc.encode_images(x), before, atol=1e-5, rtol=1e-4)


def test_stn_parameters_receive_gradients(tiny_config):
    enc = load_encoder(EncoderSpec(name="t", spec=f"config:{tiny_config}", stn=True))
    enc.train(True)
    torch.manual_seed(0)
    images = torch.randn(6, 3, 32, 32)
    texts = ["red dress", "blue shirt", "green hat", "black skirt", "white dress", "pink trousers"]
    img_f, txt_f, scale = enc.features(images, texts)
    open_clip.ClipLoss()(img_f, txt_f, scale).backward()
    loc = enc.module.visual.stn.localisation
    last = loc.regressor[-1]
    assert last.weight.grad is not None and last.weight.grad.abs().sum() > 0
    assert last.bias.grad is not None and last.bias.grad.abs().sum() > 0


def test_stn_tower_keeps_open_clip_calls_working(tiny_config):
    enc = load_encoder(EncoderSpec(name="t", spec=f"config:{tiny_config}", stn=True))
    visual = enc.module.visual
    assert visual.image_size == (32, 32)  # delegated to the wrapped VisionTransformer
    assert visual.preprocess_cfg["size"] == (32, 32)
    visual.set_grad_checkpointing(True)
    enc.module.lock_image_tower()
    assert not any(p.requires_grad for p in visual.parameters())
    out = enc.module.encode_image(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 32)
