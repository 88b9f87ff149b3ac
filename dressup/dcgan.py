"""A text-conditional DCGAN: the demo profile's generative arm, small enough to train on a laptop CPU.

Architecture (Radford et al. 2016, "Unsupervised Representation Learning with Deep Convolutional GANs"): the
generator is a stack of stride-2 transposed convolutions with BatchNorm and ReLU (tanh at the output), the
discriminator its mirror of stride-2 convolutions with LeakyReLU(0.2) (BatchNorm on all but the first layer),
no pooling, no fully connected hidden layers. ``DCGANConfig`` sizes it for any square ``image_size`` that is
4 or 7 times a power of two: 64x64 RGB (the demo), 256x256 RGB, 28x28 single-channel.

Conditioning follows Reed et al. 2016 ("Generative Adversarial Text to Image Synthesis", GAN-CLS), which put a
text embedding into exactly this DCGAN: the embedding (here an encoder's ``encode_texts`` vector, e.g.
384-d MiniLM for the demo) is projected to ``cond_dim`` by a linear layer + LeakyReLU and **concatenated** to
the noise in the generator. In the discriminator the projected text meets the image features by a
*projection* (Miyato & Koyama 2018, "cGANs with Projection Discriminator"): logit = psi(h) + <W t, h> over the
last 4x4 (or 7x7) feature map. Reed et al. replicated the text over that map and concatenated it in depth
(``conditioning="concat"``, kept for comparison and for older checkpoints); measured on the demo catalogue at
300 steps, the number of a prompt's 4 images carrying the asked colour (``colour_fidelity``, judged from
pixels, 50 prompts) went from 0.76 with concatenation to 2.42-2.82 with the projection; the demo build trains
500 steps (3.18 at 400, 3.50 at 500). The discriminator is
*matching-aware*: besides real/fake it must call a real image with another sample's text "fake", which is
what forces the generator to follow the text (colour, category) rather than just the data.

Training is deterministic and resumable: every random draw of step ``s`` (batch order, flips, noise, the
mismatched texts) comes from generators seeded by ``(seed, s)``, so training to 400 steps in one go or to 200
then resuming to 400 gives the same weights. ``checkpoint.pt`` (written atomically) and sample sheets
``samples/step_XXXXXX.png`` (one row per sample text, one column per noise) go into ``out_dir``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from dressup.generators import (Drawn, Generator, GeneratorSettingsError, PreferenceScorer, Prompt, TextImageEncoder,
                                image_seed, read_words)
from dressup.records import Preference

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
FORMAT = "dressup-dcgan/1"
PROBE_TEXT = "a red dress"  # embedded at training time; a generator refuses an encoder that embeds it differently
# The demo's training settings (measured on the demo catalogue; see the module docstring).
DEMO_LR = 5e-4
DEMO_DIVERSITY = 0.1


class DCGANError(ValueError):
    """A DCGAN checkpoint or training request is wrong; the message names the problem and the fix."""


@dataclass
class DCGANConfig:
    """Architecture. ``g_width``/``d_width`` are the channels at the highest resolution (Radford: 64 and 64;
    the demo uses 16 so ~4000 images train in about a minute on two CPU cores); deeper layers double them,
    capped at 8x."""

    image_size: int = 64
    channels: int = 3
    text_dim: int = 384
    noise_dim: int = 100
    cond_dim: int = 128
    g_width: int = 16
    d_width: int = 16
    conditioning: str = "projection"  # discriminator: "projection" (Miyato & Koyama 2018) or "concat" (Reed 2016)


def layout(image_size: int) -> tuple[int, int]:
    """(start size, number of 2x upsamplings): 64 -> (4, 4), 256 -> (4, 6), 28 -> (7, 2)."""
    s, k = int(image_size), 0
    while s > 7 and s % 2 == 0:
        s, k = s // 2, k + 1
    if s not in (4, 7) or k == 0:
        raise DCGANError(f"image_size {image_size} is not 4 or 7 times a power of two (e.g. 28, 32, 64, 128, 256)")
    return s, k


def _widths(base: int, k: int) -> list[int]:
    """Channels at resolutions start, 2*start, ... (k entries): base * 8, 4, 2, 1 for k=4, capped at 8x."""
    return [base * min(2 ** (k - 1 - i), 8) for i in range(k)]


class TextStandardiser(nn.Module):
    """Centres and scales text embeddings by the training set's per-dimension mean and std (buffers, saved
    with the weights). Sentence embeddings of captions share a large common direction ("a garment with ...");
    what tells "red" from "blue" is a small difference on top, which standardising makes as large as the noise
    the generator also receives, so conditioning is learned in hundreds of steps instead of thousands."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, embeddings: torch.Tensor) -> None:
        flat = embeddings.reshape(-1, embeddings.shape[-1]).float()
        self.mean.copy_(flat.mean(0))
        self.std.copy_(flat.std(0).clamp_min(1e-4) if len(flat) > 1 else torch.ones_like(self.std))

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return (text - self.mean) / self.std


class ConditionalGenerator(nn.Module):
    """G(z, t): noise ⊕ projected text -> image in [-1, 1]."""

    def __init__(self, cfg: DCGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        start, k = layout(cfg.image_size)
        w = _widths(cfg.g_width, k)
        self.text_norm = TextStandardiser(cfg.text_dim)
        self.project = nn.Sequential(nn.Linear(cfg.text_dim, cfg.cond_dim), nn.LeakyReLU(0.2, inplace=True))
        layers: list[nn.Module] = [nn.ConvTranspose2d(cfg.noise_dim + cfg.cond_dim, w[0], start, 1, 0, bias=False),
                                   nn.BatchNorm2d(w[0]), nn.ReLU(inplace=True)]
        for a, b in zip(w, w[1:]):
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(w[-1], cfg.channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.project(self.text_norm(text))], dim=1)
        return self.net(h[:, :, None, None])


class ConditionalDiscriminator(nn.Module):
    """D(x, t): a logit, high for a real image that matches its text (Reed et al.'s concat conditioning)."""

    def __init__(self, cfg: DCGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        start, k = layout(cfg.image_size)
        w = _widths(cfg.d_width, k)[::-1]  # highest resolution first
        layers: list[nn.Module] = [nn.Conv2d(cfg.channels, w[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        for a, b in zip(w, w[1:]):
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2, inplace=True)]
        self.features = nn.Sequential(*layers)
        self.start = start
        self.text_norm = TextStandardiser(cfg.text_dim)
        self.project = nn.Sequential(nn.Linear(cfg.text_dim, cfg.cond_dim), nn.LeakyReLU(0.2, inplace=True))
        if cfg.conditioning == "projection":
            self.joint = nn.Conv2d(w[-1], 1, start, 1, 0, bias=True)
            self.embed = nn.Linear(cfg.cond_dim, w[-1] * start * start, bias=False)
        elif cfg.conditioning == "concat":
            self.joint = nn.Sequential(nn.Conv2d(w[-1] + cfg.cond_dim, w[-1], 1, 1, 0, bias=False),
                                       nn.BatchNorm2d(w[-1]), nn.LeakyReLU(0.2, inplace=True),
                                       nn.Conv2d(w[-1], 1, start, 1, 0, bias=False))
        else:
            raise DCGANError(f"conditioning must be 'concat' or 'projection', not {cfg.conditioning!r}")

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        t = self.project(self.text_norm(text))
        if self.cfg.conditioning == "projection":  # logit = psi(h) + <embed(t), h>
            return self.joint(h).flatten() + (self.embed(t) * h.flatten(1)).sum(1)
        c = t[:, :, None, None].expand(-1, -1, self.start, self.start)
        return self.joint(torch.cat([h, c], dim=1)).flatten()


def init_weights(module: nn.Module) -> None:
    """Radford et al.'s initialisation: N(0, 0.02) weights, BatchNorm scale N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------------------
# Data


def images_to_tensor(images: Sequence[str | os.PathLike | Image.Image], image_size: int, channels: int,
                     progress: bool = False) -> torch.Tensor:
    """uint8 [N, C, S, S]: each image converted to RGB (or L), squash-resized to S x S (no crop). Memory is
    N*C*S*S bytes (4000 images at 64 px: 49 MB)."""
    mode = "RGB" if channels == 3 else "L"
    out = torch.empty(len(images), channels, image_size, image_size, dtype=torch.uint8)
    for i, im in enumerate(tqdm(images, desc="loading images", disable=not progress)):
        pil = im if isinstance(im, Image.Image) else Image.open(im)
        pil = pil.convert(mode)
        if pil.size != (image_size, image_size):
            pil = pil.resize((image_size, image_size), Image.Resampling.BICUBIC)
        arr = np.array(pil, dtype=np.uint8)
        out[i] = torch.from_numpy(arr.reshape(image_size, image_size, channels)).permute(2, 0, 1)
    return out


def _as_unit(pixels: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats from uint8 (0-255) or float (0-1) pixels."""
    x = pixels.float()
    return x / 127.5 - 1.0 if pixels.dtype == torch.uint8 else x * 2.0 - 1.0


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, S, S] on the CPU from generator outputs in [-1, 1] (the inverse of ``_as_unit``)."""
    return ((x.detach() + 1) * 127.5).clamp(0, 255).round().to(torch.uint8).cpu()


def _step_rng(seed: int, step: int, what: str) -> torch.Generator:
    digest = hashlib.sha256(f"dressup-dcgan/{seed}/{step}/{what}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "big") & (2**63 - 1))


def _batch_indices(n: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """Rows of step ``step``: consecutive slices of a fresh permutation per epoch (stateless, so resumable)."""
    pos = torch.arange(step * batch_size, (step + 1) * batch_size)
    epochs, offsets = pos // n, pos % n
    out = torch.empty(batch_size, dtype=torch.long)
    for e in epochs.unique().tolist():
        perm = torch.randperm(n, generator=_step_rng(seed, int(e), "epoch"))
        sel = epochs == e
        out[sel] = perm[offsets[sel]]
    return out


# ---------------------------------------------------------------------------------------------------------
# Training


@dataclass
class TrainState:
    """What ``checkpoint.pt`` holds besides the weights: enough to resume exactly and to refuse a mismatch."""

    config: dict[str, Any]
    seed: int
    batch_size: int
    lr: float
    betas: tuple[float, float]
    diversity: float = 1.0
    step: int = 0
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)


def _save(path: Path, state: TrainState, g: nn.Module, d: nn.Module, opt_g, opt_d, sample: torch.Tensor) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"format": FORMAT, "state": asdict(state), "generator": g.state_dict(), "discriminator": d.state_dict(),
                "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "sample_embeddings": sample}, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A DCGAN checkpoint (``path`` is the training folder or its ``checkpoint.pt``)."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT
    if not p.is_file():
        raise DCGANError(f"no DCGAN checkpoint at {p}; train one with `python -m dressup train-gan` "
                         f"(or dressup.dcgan.train_dcgan)")
    ck = torch.load(p, map_location="cpu", weights_only=False)
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise DCGANError(f"{p} is not a {FORMAT} checkpoint; retrain with dressup.dcgan.train_dcgan")
    ck["path"] = str(p)
    return ck


@torch.no_grad()
def generator_from_checkpoint(ck: dict[str, Any]) -> ConditionalGenerator:
    """The trained generator of a ``read_checkpoint`` result, in eval mode. Checkpoints written before
    ``DCGANConfig.conditioning`` existed were trained with concatenation and load as such."""
    net = ConditionalGenerator(DCGANConfig(**{"conditioning": "concat", **ck["state"]["config"]}))
    net.load_state_dict(ck["generator"])
    return net.eval()


def sample_sheet(g: ConditionalGenerator, embeddings: torch.Tensor, columns: int = 8, seed: int = 0) -> Image.Image:
    """A PNG-ready grid: one row per text embedding, one column per noise (the same noises in every row)."""
    was_training = g.training
    g.eval()
    dev = next(g.parameters()).device
    z = torch.randn(columns, g.cfg.noise_dim, generator=torch.Generator().manual_seed(seed))
    rows = [g(z.to(dev), e[None].expand(columns, -1).to(dev)) for e in embeddings.float()]
    g.train(was_training)
    x = to_pixels(torch.cat(rows))
    n, c, s, _ = x.shape
    pad = 2
    sheet = torch.full((c, len(rows) * (s + pad) + pad, columns * (s + pad) + pad), 255, dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, columns)
        sheet[:, pad + r * (s + pad):pad + r * (s + pad) + s, pad + col * (s + pad):pad + col * (s + pad) + s] = x[i]
    arr = sheet.permute(1, 2, 0).numpy()
    return Image.fromarray(arr[..., 0] if c == 1 else arr, "L" if c == 1 else "RGB")


def train_dcgan(images: torch.Tensor | Sequence[str | os.PathLike | Image.Image], text_embeddings: torch.Tensor,
                out_dir: str | os.PathLike, *, steps: int, batch_size: int = 64, image_size: int = 64,
                channels: int = 3, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999), seed: int = 0,
                checkpoint_every: int = 200, resume: bool = True, progress: bool = True,
                config: DCGANConfig | None = None, sample_embeddings: torch.Tensor | None = None,
                meta: dict[str, Any] | None = None, diversity: float = 1.0,
                device: str | torch.device = "cpu") -> Path:
    """Train the conditional DCGAN to ``steps`` total steps and return the path of ``checkpoint.pt``.

    ``images``: uint8 [N, C, S, S] (or floats in [0, 1]) already at ``image_size``, or N paths / PIL images
    (loaded and squash-resized). ``text_embeddings``: [N, D], one per image, or [N, V, D] for V texts per image
    (one drawn per sample and step, e.g. a caption and a short "red dress"). Augmentation is horizontal flips
    only. With ``resume`` an existing checkpoint in ``out_dir`` is continued (it must have the same
    architecture, seed, batch size and optimiser); training already at ``steps`` returns at once.
    ``meta`` is stored in the checkpoint (``train_dcgan_on_catalogue`` puts the encoder's fingerprint there).
    """
    out = Path(out_dir)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    emb = text_embeddings.detach().float().cpu()
    if emb.dim() == 2:
        emb = emb[:, None]
    if emb.dim() != 3:
        raise DCGANError(f"text_embeddings must be [N, D] or [N, V, D], not {tuple(text_embeddings.shape)}")
    if not isinstance(images, torch.Tensor):
        images = images_to_tensor(images, image_size, channels, progress)
    if images.dim() != 4 or tuple(images.shape[1:]) != (channels, image_size, image_size):
        raise DCGANError(f"images must be [N, {channels}, {image_size}, {image_size}], not {tuple(images.shape)}; "
                         f"pass paths to have them resized, or set image_size/channels to match")
    if len(images) != len(emb):
        raise DCGANError(f"{len(images)} images but {len(emb)} text embeddings; give one (or V) per image")
    if len(images) < 2 or batch_size < 2:
        raise DCGANError("need at least 2 images and batch_size >= 2 (the discriminator learns from mismatched "
                         "pairs)")
    cfg = config or DCGANConfig(image_size=image_size, channels=channels, text_dim=emb.shape[-1])
    if (cfg.image_size, cfg.channels, cfg.text_dim) != (image_size, channels, emb.shape[-1]):
        raise DCGANError(f"config {cfg} does not match image_size={image_size}, channels={channels}, "
                         f"text_dim={emb.shape[-1]}")
    state = TrainState(asdict(cfg), int(seed), int(batch_size), float(lr), (float(betas[0]), float(betas[1])),
                       float(diversity), meta=dict(meta or {}))
    dev = torch.device(device)
    torch.manual_seed(seed)
    g, d = ConditionalGenerator(cfg), ConditionalDiscriminator(cfg)
    init_weights(g)
    init_weights(d)
    g.text_norm.fit(emb)
    d.text_norm.fit(emb)
    # Channels-last convolutions: a training step ran 1.25x faster on 2 CPU cores (oneDNN), same values.
    g.to(dev, memory_format=torch.channels_last)
    d.to(dev, memory_format=torch.channels_last)
    opt_g = torch.optim.Adam(g.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=lr, betas=betas)
    if sample_embeddings is None:
        rows = torch.linspace(0, len(emb) - 1, min(8, len(emb))).long()
        sample_embeddings = emb[rows, 0]
    sample = sample_embeddings.detach().float().cpu()
    path = out / CHECKPOINT
    if path.is_file() and resume:
        ck = read_checkpoint(path)
        old = TrainState(**{**ck["state"], "betas": tuple(ck["state"]["betas"])})
        mine = (state.config, state.seed, state.batch_size, state.lr, state.betas, state.diversity)
        theirs = (old.config, old.seed, old.batch_size, old.lr, old.betas, old.diversity)
        if mine != theirs:
            raise DCGANError(f"{path} was trained with config/seed/batch_size/lr/betas/diversity {theirs}, not {mine}; "
                             f"use another out_dir or resume=False to start over")
        g.load_state_dict(ck["generator"])
        d.load_state_dict(ck["discriminator"])
        opt_g.load_state_dict(ck["opt_g"])
        opt_d.load_state_dict(ck["opt_d"])
        state.step, state.seconds = old.step, old.seconds
        state.meta = {**old.meta, **state.meta}
    if state.step >= steps:
        return path
    g.train()
    d.train()
    half = batch_size // 2
    ones = torch.ones(batch_size, device=dev)
    zeros = torch.zeros(batch_size, device=dev)
    bar = tqdm(total=steps, initial=state.step, desc="training DCGAN", unit="step", disable=not progress)
    t0 = time.perf_counter()
    start_step = state.step
    while state.step < steps:
        s = state.step
        rows = _batch_indices(len(images), batch_size, seed, s)
        rng = _step_rng(seed, s, "draws")
        x = _as_unit(images[rows])
        flip = torch.rand(batch_size, generator=rng) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x).to(dev).contiguous(memory_format=torch.channels_last)
        view = torch.randint(emb.shape[1], (batch_size,), generator=rng)
        t = emb[rows, view].to(dev)
        shift = int(torch.randint(1, batch_size, (1,), generator=rng))
        t_wrong = t.roll(shift, 0)
        z = torch.randn(batch_size, cfg.noise_dim, generator=rng).to(dev)
        # Fakes come in pairs with the same text and different noise (rows i and i + half) for the
        # mode-seeking term below.
        t_fake = t.clone()
        t_fake[half:2 * half] = t[:half]

        fake = g(z, t_fake)
        # Real, mismatched and fake pairs go through D as ONE batch, so its BatchNorm statistics are shared:
        # with separate all-real / all-fake batches BatchNorm normalises away exactly the global differences
        # (brightness, colour) the generator most needs to hear about, and a small DCGAN stays grey.
        logits = d(torch.cat([x, x, fake.detach()]), torch.cat([t, t_wrong, t_fake]))
        real_l, wrong_l, fake_l = logits.split(batch_size)
        loss_d = (F.binary_cross_entropy_with_logits(real_l, ones)
                  + 0.5 * (F.binary_cross_entropy_with_logits(wrong_l, zeros)
                           + F.binary_cross_entropy_with_logits(fake_l, zeros)))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = F.binary_cross_entropy_with_logits(d(torch.cat([x, fake]), torch.cat([t, t_fake]))[batch_size:], ones)
        if diversity > 0:
            # Mode seeking (Mao et al. 2019, MSGAN): a conditional GAN learns to ignore its noise and draw one
            # image per text; rewarding image distance per unit of noise distance keeps the four images of a
            # grid different.
            spread = ((fake[:half] - fake[half:2 * half]).abs().mean()
                      / (z[:half] - z[half:2 * half]).abs().mean())
            loss_g = loss_g + diversity / (spread + 1e-5)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

        state.step += 1
        bar.update(1)
        if state.step % 20 == 0:
            rate = (state.step - start_step) / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss_d=f"{loss_d.item():.3f}", loss_g=f"{loss_g.item():.3f}", steps_s=f"{rate:.2f}")
        if state.step % checkpoint_every == 0 or state.step == steps:
            state.seconds += time.perf_counter() - t0
            t0, start_step = time.perf_counter(), state.step
            _save(path, state, g, d, opt_g, opt_d, sample)
            sample_sheet(g, sample).save(out / "samples" / f"step_{state.step:06d}.png")
    bar.close()
    log.info("DCGAN trained to step %d in %.1f s (this run)", state.step, state.seconds)
    return path


# ---------------------------------------------------------------------------------------------------------
# Training on a catalogue


def _noun(item) -> str:
    return item.category.replace("_", " ").lower()


def short_text(item) -> str:
    """What a participant would type for an item: "red dress" (colour + category), or the category alone."""
    colour = item.attribute_of("colour")
    return f"{colour} {_noun(item)}" if colour else _noun(item)


def pattern_text(item) -> str:
    """A little more: "red striped dress" (colour + pattern + category), parts the item lacks left out."""
    words = [item.attribute_of("colour"), item.attribute_of("texture"), _noun(item)]
    return " ".join(w.replace("_", " ") for w in words if w)


# The texts an image is trained with (one drawn per sample and step). Short phrases are what participants
# write and cost little to embed (a few hundred distinct ones); full captions are what the paper trains its
# encoders on, but embedding the demo's ~2800 distinct captions with MiniLM takes about a minute of the
# build's budget, so they are opt-in.
TEXT_VIEWS = {"short": short_text, "pattern": pattern_text, "caption": lambda item: item.caption}


def embed_texts(encoder: TextImageEncoder, texts: Sequence[str], cache_dir: str | os.PathLike | None = None,
                progress: bool = False) -> torch.Tensor:
    """``encoder.encode_texts`` for many texts, batched, each distinct text once, reused across runs through
    ``cache_dir`` (keyed by the encoder's fingerprint, so another encoder never reads these)."""
    distinct = sorted(set(texts))
    known: dict[str, torch.Tensor] = {}
    path = None
    if cache_dir is not None and hasattr(encoder, "fingerprint"):
        path = Path(cache_dir) / f"text-embeddings-{encoder.fingerprint()[:16]}.pt"
        if path.is_file():
            known = torch.load(path, map_location="cpu")
    missing = [t for t in distinct if t not in known]
    for i in tqdm(range(0, len(missing), 256), desc="embedding texts", disable=not progress or not missing):
        chunk = missing[i:i + 256]
        known.update(zip(chunk, encoder.encode_texts(chunk).float().cpu()))
    if path is not None and missing:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(known, path.with_suffix(".tmp"))
        os.replace(path.with_suffix(".tmp"), path)
    return torch.stack([known[t] for t in texts])


def train_dcgan_on_catalogue(catalog, encoder: TextImageEncoder, out_dir: str | os.PathLike, *, steps: int = 400,
                             batch_size: int = 64, image_size: int | None = None, split: str = "all",
                             lr: float = DEMO_LR, diversity: float = DEMO_DIVERSITY,
                             texts: Sequence[str] = ("short", "pattern"), seed: int = 0,
                             checkpoint_every: int = 100, resume: bool = True, progress: bool = True,
                             config: DCGANConfig | None = None, text_cache: str | os.PathLike | None = None,
                             device: str | torch.device = "cpu") -> Path:
    """Train the DCGAN on a catalogue's images, conditioned on ``encoder``'s embeddings of texts about them.

    ``texts`` names the views of ``TEXT_VIEWS`` each image is trained with (one drawn per sample and step):
    by default "red dress" and "red striped dress", built from the item's attributes the way participants
    write; add "caption" for the full caption. ``split`` ("all" for every split) picks the items;
    ``image_size`` defaults to the catalogue's. The defaults (lr, diversity, steps, widths) are the demo's,
    chosen by measurement to fit about a minute on two CPU cores (see the module docstring).
    """
    unknown = [v for v in texts if v not in TEXT_VIEWS]
    if unknown or not texts:
        raise DCGANError(f"unknown text view(s) {unknown}; choose from {sorted(TEXT_VIEWS)}")
    items = [it for it in catalog.split(split) if Path(it.image_path).is_file()]
    if len(items) < 2:
        raise DCGANError(f"the catalogue has {len(items)} images in split {split!r}; build the catalogue first "
                         f"(`python -m dressup demo build`) or choose split='all'")
    if image_size is None:
        with Image.open(items[0].image_path) as im:
            image_size = im.size[0]
    views = [[TEXT_VIEWS[v](it) for v in texts] for it in items]
    flat = embed_texts(encoder, [t for v in views for t in v], text_cache, progress)
    emb = flat.reshape(len(items), len(texts), -1)
    images = images_to_tensor([it.image_path for it in items], image_size, 3, progress)
    sample_texts = _sample_texts(items)
    meta = {"encoder": repr(encoder), "probe_text": PROBE_TEXT,
            "probe_embedding": encoder.encode_texts([PROBE_TEXT]).float().cpu()[0].tolist(),
            "sample_texts": sample_texts, "items": len(items), "split": split, "texts": list(texts)}
    if hasattr(encoder, "fingerprint"):
        meta["encoder_fingerprint"] = encoder.fingerprint()
    sample = encoder.encode_texts(sample_texts).float().cpu()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "samples.json").write_text(json.dumps({"rows": sample_texts}, indent=1))
    return train_dcgan(images, emb, out, steps=steps, batch_size=batch_size, image_size=image_size, channels=3,
                       lr=lr, diversity=diversity, seed=seed, checkpoint_every=checkpoint_every, resume=resume,
                       progress=progress, config=config, sample_embeddings=sample, meta=meta, device=device)


def _sample_texts(items, rows: int = 8) -> list[str]:
    """Sample-sheet rows: what a participant would ask for, one row per colour (in catalogue order)."""
    from dressup.generators import garment_phrase

    seen: dict[str, str] = {}
    for it in items:
        colour = it.attribute_of("colour") or ""
        if colour not in seen:
            seen[colour] = garment_phrase(colour, it.category) if colour else it.category
    texts = list(seen.values())[:rows]
    return texts or ["a garment"]


# ---------------------------------------------------------------------------------------------------------
# The generator the study uses


class DCGANGenerator(Generator):
    """Four images from a trained conditional DCGAN: the (colour-grounded) preference text is embedded by the
    encoder the GAN was trained with, and each image comes from its own seeded noise.

    With a ``reader`` (``dressup.reading.QueryReader``, the one the retrieval arms use) a participant's
    sentence is first read into the catalogue's words, the form the GAN was trained on ("red striped dress"):
    measured on the 196 participant-language queries, images carrying the meant colour went from 2.51 of 4
    (colour words grounded in place, the sentence kept) to 2.99 of 4. Without one, only colour words are
    grounded (``palette``). With no words but photos, the GAN is conditioned on the normalised mean photo
    embedding (the encoder's shared space). Menswear/womenswear and colours to avoid are not conditions the GAN
    was trained on; they are recorded in ``Shown.extra`` and otherwise ignored.
    """

    kind = "dcgan"

    def __init__(self, net: ConditionalGenerator, encoder: TextImageEncoder, *, model_id: str,
                 palette: dict[str, tuple[int, int, int]] | None = None, candidates: int = 4,
                 scorer: PreferenceScorer | None = None, device: str | torch.device = "cpu",
                 reader: Any = None) -> None:
        self.net = net.eval().to(device)
        self.encoder = encoder
        self.model_id = model_id
        self.palette = palette
        self.reader = reader
        self.candidates = candidates
        self.scorer = scorer
        self.device = torch.device(device)

    @classmethod
    def load(cls, path: str | os.PathLike, encoder: TextImageEncoder, *, device: str | torch.device = "cpu",
             palette: dict[str, tuple[int, int, int]] | None = None, candidates: int = 4,
             scorer: PreferenceScorer | None = None, reader: Any = None) -> "DCGANGenerator":
        """Load ``checkpoint.pt`` (or the folder holding it) and check the encoder is the one it was trained
        with (same embedding of a probe text)."""
        ck = read_checkpoint(path)
        meta = ck["state"].get("meta", {})
        probe = meta.get("probe_embedding")
        if probe is not None:
            mine = encoder.encode_texts([meta.get("probe_text", PROBE_TEXT)]).float().cpu()[0]
            theirs = torch.tensor(probe)
            if mine.shape != theirs.shape or float(F.cosine_similarity(mine, theirs, dim=0)) < 0.99:
                raise GeneratorSettingsError(
                    f"the DCGAN at {ck['path']} was trained with another text encoder ({meta.get('encoder')}); "
                    f"set the arm's encoder to that one, or retrain with `python -m dressup train-gan`")
        net = generator_from_checkpoint(ck)
        digest = hashlib.sha256(Path(ck["path"]).read_bytes()).hexdigest()[:16]
        return cls(net, encoder, model_id=f"dcgan:{digest}", palette=palette, candidates=candidates, scorer=scorer,
                   device=device, reader=reader)

    def id_settings(self) -> dict[str, Any]:
        return {"image_size": self.net.cfg.image_size, "grounding": bool(self.palette),
                **({"reading": True} if self.reader is not None else {})}

    def prompt(self, pref: Preference) -> Prompt:
        text, extra = read_words(pref, reader=self.reader, palette=self.palette)
        if text:
            condition = self.encoder.encode_texts([text]).float().cpu()[0]
            extra["conditioned_on"] = "text"
        elif pref.images:
            scorer = PreferenceScorer(self.encoder)
            condition = F.normalize(scorer._embed_images(pref.images).mean(0), dim=0)
            text = f"<{len(pref.images)} photos>"
            extra["conditioned_on"] = "photos"
        else:
            raise ValueError("give a description or at least one photo")
        return Prompt(text, "", extra, condition)

    @torch.no_grad()
    def draw(self, prompt: Prompt, seed: int, n: int) -> list[Drawn]:
        seeds = [image_seed(seed, i) for i in range(n)]
        z = torch.stack([torch.randn(self.net.cfg.noise_dim, generator=torch.Generator().manual_seed(s))
                         for s in seeds]).to(self.device)
        t = prompt.condition[None].expand(n, -1).to(self.device)
        x = to_pixels(self.net(z, t))
        arr = x.permute(0, 2, 3, 1).numpy()
        mode = "RGB" if arr.shape[-1] == 3 else "L"
        return [Drawn(Image.fromarray(a if mode == "RGB" else a[..., 0], mode).convert("RGB"), s)
                for a, s in zip(arr, seeds)]


def colour_fidelity(net: ConditionalGenerator, encoder: TextImageEncoder, colours: Sequence[str],
                    categories: Sequence[str], *, prompts: int = 50, per_prompt: int = 4, seed: int = 0,
                    palette: dict[str, tuple] | None = None) -> tuple[float, list[dict[str, Any]]]:
    """Mean number of a prompt's ``per_prompt`` images that carry the asked colour, over ``prompts`` random
    "colour category" prompts, judged by ``dressup.colours.garment_colour`` (pixels, not the GAN or an encoder,
    so a generator cannot be trained to fool the check). Returns (mean, one row per prompt)."""
    from dressup.colours import CATALOGUE_COLOURS, garment_colour

    palette = palette or CATALOGUE_COLOURS
    rng = np.random.default_rng(seed)
    asked = [(str(rng.choice(list(colours))), str(rng.choice(list(categories)))) for _ in range(prompts)]
    emb = encoder.encode_texts([f"{c} {g}" for c, g in asked]).float()
    z = torch.randn(prompts * per_prompt, net.cfg.noise_dim, generator=torch.Generator().manual_seed(seed))
    was = net.training
    net.eval()
    with torch.no_grad():
        out = net(z, emb.repeat_interleave(per_prompt, 0))
    net.train(was)
    pixels = to_pixels(out).permute(0, 2, 3, 1).numpy()
    rows = []
    for i, (c, g) in enumerate(asked):
        seen = [garment_colour(pixels[i * per_prompt + j], palette) for j in range(per_prompt)]
        rows.append({"colour": c, "category": g, "seen": seen, "hits": sum(s == c for s in seen)})
    return float(np.mean([r["hits"] for r in rows])), rows
