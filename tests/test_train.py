"""Training learns, resumes where it stopped (exactly), and leaves a folder that loads back identically."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from dressup.config import EncoderSpec
from dressup.encoders import load_encoder
from dressup.train import CaptionClipLoss, TrainError, _epoch_batches, read_train_log, train_encoder
from tests.tiny_models import write_tiny_config

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (30, 60, 220), "yellow": (240, 210, 40)}


@pytest.fixture()
def tiny_config(tmp_path):
    return write_tiny_config(tmp_path, "tiny-train-clip")


def squares(n: int, seed: int = 0) -> tuple[list[Image.Image], list[str]]:
    """Coloured squares on grey, at random places: the caption is the colour."""
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    images, captions = [], []
    for i in range(n):
        name = names[i % len(names)]
        im = Image.new("RGB", (32, 32), (128, 128, 128))
        x, y = rng.integers(0, 16, size=2)
        ImageDraw.Draw(im).rectangle([x, y, x + 15, y + 15], fill=COLOURS[name])
        images.append(im)
        captions.append(name)
    return images, captions


def _loss_drop(out_dir) -> tuple[float, float]:
    losses = [r["loss"] for r in read_train_log(out_dir)]
    return float(np.mean(losses[:5])), float(np.mean(losses[-5:]))


@pytest.mark.parametrize("stn", [False, True], ids=["plain", "stn"])
def test_loss_decreases_on_coloured_squares(tiny_config, tmp_path, stn):
    enc = load_encoder(EncoderSpec(name="t", spec=f"config:{tiny_config}", stn=stn))
    images, captions = squares(64)
    train_encoder(enc, images, captions, out_dir=tmp_path / "run", steps=40, batch_size=16, lr=2e-3,
                  warmup=3, progress=False)
    first, last = _loss_drop(tmp_path / "run")
    assert last < 0.8 * first, (first, last)
    texts = enc.encode_texts(list(COLOURS))
    test_images, test_captions = squares(16, seed=1)
    hits = (enc.encode_pil(test_images) @ texts.T).argmax(1)
    accuracy = np.mean([list(COLOURS)[h] == c for h, c in zip(hits.tolist(), test_captions)])
    assert accuracy > 0.5  # chance is 0.25


class Killed(Exception):
    pass


class _Killable(Dataset):
    """Images by index; raises after ``die_after`` reads, like a run killed mid-training."""

    def __init__(self, images, die_after=None):
        self.images, self.die_after, self.reads = images, die_after, 0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        self.reads += 1
        if self.die_after is not None and self.reads > self.die_after:
            raise Killed("killed mid-run")
        return self.images[i]


def test_resume_continues_at_the_right_step_and_matches_an_uninterrupted_run(tiny_config, tmp_path):
    images, captions = squares(32)
    kwargs = dict(steps=6, batch_size=8, lr=1e-3, warmup=2, checkpoint_every=2, progress=False, num_workers=0)

    whole = load_encoder(f"config:{tiny_config}")
    train_encoder(whole, _Killable(images), captions, out_dir=tmp_path / "whole", **kwargs)

    killed = load_encoder(f"config:{tiny_config}")
    with pytest.raises(Killed):  # dies while reading the 4th batch: checkpoint at step 2
        train_encoder(killed, _Killable(images, die_after=8 * 3 + 2), captions, out_dir=tmp_path / "cut", **kwargs)
    assert [r["step"] for r in read_train_log(tmp_path / "cut")] == [1, 2]
    assert not (tmp_path / "cut" / "encoder.json").exists()

    resumed = load_encoder(f"config:{tiny_config}")  # a fresh process would rebuild the start encoder
    train_encoder(resumed, _Killable(images), captions, out_dir=tmp_path / "cut", **kwargs)
    assert [r["step"] for r in read_train_log(tmp_path / "cut")] == [1, 2, 3, 4, 5, 6]
    assert resumed.fingerprint() == whole.fingerprint()


def test_resume_with_other_settings_is_refused(tiny_config, tmp_path):
    images, captions = squares(16)
    enc = load_encoder(f"config:{tiny_config}")
    train_encoder(enc, images, captions, out_dir=tmp_path / "r", steps=2, batch_size=8, progress=False)
    with pytest.raises(TrainError, match="resume=False"):
        train_encoder(load_encoder(f"config:{tiny_config}"), images, captions, out_dir=tmp_path / "r", steps=4,
                      batch_size=4, progress=False)
    # resume=False starts over instead
    train_encoder(load_encoder(f"config:{tiny_config}"), images, captions, out_dir=tmp_path / "r", steps=1,
                  batch_size=4, resume=False, progress=False)
    assert [r["step"] for r in read_train_log(tmp_path / "r")] == [1]


def test_saved_folder_loads_back_with_identical_outputs(tiny_config, tmp_path):
    images, captions = squares(24)
    enc = load_encoder(EncoderSpec(name="t", spec=f"config:{tiny_config}", stn=True, lock_text=True))
    text_before = enc.encode_texts(list(COLOURS))
    paths = []
    for i, im in enumerate(images):  # paths go through DataLoader workers
        paths.append(tmp_path / f"{i}.png")
        im.save(paths[-1])
    train_encoder(enc, paths, captions, out_dir=tmp_path / "out", steps=3, batch_size=8, lr=1e-3,
                  progress=False, num_workers=1)
    back = load_encoder(f"local:{tmp_path / 'out'}")
    assert back.stn and back.fingerprint() == enc.fingerprint()
    batch = torch.stack([enc.preprocess(im) for im in images[:6]])
    assert torch.equal(back.encode_images(batch), enc.encode_images(batch))
    assert torch.equal(back.encode_texts(list(COLOURS)), enc.encode_texts(list(COLOURS)))
    torch.testing.assert_close(enc.encode_texts(list(COLOURS)), text_before)  # the locked tower did not move


def test_caption_clip_loss_matches_clip_loss_unless_a_captions_features_differ():
    torch.manual_seed(0)
    unit = lambda x: torch.nn.functional.normalize(x, dim=-1)  # noqa: E731
    img, txt, scale = unit(torch.randn(6, 8)), unit(torch.randn(6, 8)), torch.tensor(10.0)
    ids = torch.tensor([0, 0, 2, 3, 4, 5])
    plain = open_clip.ClipLoss()
    torch.testing.assert_close(CaptionClipLoss()(img, txt, scale, caption_ids=torch.arange(6)), plain(img, txt, scale))
    # one caption, one text feature (a deterministic text tower): summed over the duplicate rows, the hard
    # targets already equal the shared ones, so both losses agree
    same = torch.cat([txt[:1], txt[:1], txt[2:]])
    torch.testing.assert_close(CaptionClipLoss()(img, same, scale, caption_ids=ids), plain(img, same, scale))
    # when a caption's features differ (dropout in an unlocked text tower) plain CLIP loss asks each copy to
    # prefer "its" image; the shared target does not
    jitter = unit(same + 0.3 * torch.randn_like(same))
    assert not torch.isclose(CaptionClipLoss()(img, jitter, scale, caption_ids=ids), plain(img, jitter, scale))


def test_distinct_batches_never_repeat_a_caption():
    ids = np.repeat(np.arange(5), [10, 3, 7, 1, 9])
    batches = _epoch_batches(ids, batch_size=4, seed=0, epoch=0, duplicates="distinct")
    assert batches and all(len(set(ids[b].tolist())) == len(b) for b in batches)
    assert all(2 <= len(b) <= 4 for b in batches) and len(batches[0]) == 4
    assert len(np.unique(np.concatenate(batches))) == sum(map(len, batches))  # no image twice in an epoch


def test_mismatched_inputs_are_refused(tiny_config, tmp_path):
    enc = load_encoder(f"config:{tiny_config}")
    images, captions = squares(4)
    with pytest.raises(TrainError, match="one caption per image"):
        train_encoder(enc, images, captions[:3], out_dir=tmp_path, steps=1, progress=False)
    with pytest.raises(TrainError, match="duplicates"):
        train_encoder(enc, images, captions, out_dir=tmp_path, steps=1, duplicates="nope", progress=False)


def test_demo_swin_with_stn_trains_with_the_locked_minilm_tower(tmp_path):
    from dressup.encoders import DEMO_MODELS_DIR

    spec = EncoderSpec(name="swin", spec=f"config:{DEMO_MODELS_DIR / 'dressup-demo-swin.json'}", stn=True,
                       lock_text=True)
    enc = load_encoder(spec)
    images, captions = squares(8)
    train_encoder(enc, images, captions, out_dir=tmp_path / "swin", steps=2, batch_size=4, lr=1e-4, progress=False)
    assert [r["step"] for r in read_train_log(tmp_path / "swin")] == [1, 2]
    assert enc.fingerprint() != load_encoder(spec).fingerprint()  # the image side moved
    back = load_encoder(f"local:{tmp_path / 'swin'}")
    batch = torch.stack([enc.preprocess(im) for im in images[:3]])
    assert torch.equal(back.encode_images(batch), enc.encode_images(batch))
