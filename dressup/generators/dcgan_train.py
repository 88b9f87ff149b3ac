"""Training the conditional DCGAN of ``dressup.generators.dcgan``: on tensors (``train_dcgan``) or on a
catalogue (``train_dcgan_on_catalogue``), with sample sheets and a pixel-judged colour check.

Training is deterministic and resumable: every random draw of step ``s`` (batch order, flips, noise, the
mismatched texts) comes from generators seeded by ``(seed, s)`` (``dressup.generators.steps``), so training to
400 steps in one go or to 200 then resuming to 400 gives the same weights. ``checkpoint.pt`` (written
atomically) and sample sheets ``samples/step_XXXXXX.png`` (one row per sample text, one column per noise) go
into ``out_dir``. The discriminator is matching-aware (a real image with another sample's text is "fake"),
and a mode-seeking term keeps a grid's four images different; see the step function for both.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from dressup.colours import CATALOGUE_COLOURS, garment_colour
from dressup.files import atomic_write
from dressup.generators.base import resolve_device
from dressup.generators.dcgan import (CHECKPOINT, DEMO_DIVERSITY, DEMO_LR, FORMAT, PROBE_TEXT, ConditionalDiscriminator,
                                      ConditionalGenerator, DCGANConfig, DCGANError, init_weights, read_checkpoint)
from dressup.generators.garment_texts import garment_phrase, pattern_text, short_text
from dressup.generators.pixels import as_unit, images_to_tensor, to_pixels
from dressup.generators.steps import batch_indices, step_rng
from dressup.protocols import Encoder

log = logging.getLogger(__name__)


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


def _save(path: Path, state: TrainState, nets: _Nets, sample: torch.Tensor) -> None:
    ck = {"format": FORMAT, "state": asdict(state), "generator": nets.g.state_dict(),
          "discriminator": nets.d.state_dict(), "opt_g": nets.opt_g.state_dict(), "opt_d": nets.opt_d.state_dict(),
          "sample_embeddings": sample}
    atomic_write(path, lambda tmp: torch.save(ck, tmp))


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
    images, emb = _training_data(images, text_embeddings, image_size, channels, batch_size, progress)
    cfg = config or DCGANConfig(image_size=image_size, channels=channels, text_dim=emb.shape[-1])
    if (cfg.image_size, cfg.channels, cfg.text_dim) != (image_size, channels, emb.shape[-1]):
        raise DCGANError(f"config {cfg} does not match image_size={image_size}, channels={channels}, "
                         f"text_dim={emb.shape[-1]}")
    state = TrainState(asdict(cfg), int(seed), int(batch_size), float(lr), (float(betas[0]), float(betas[1])),
                       float(diversity), meta=dict(meta or {}))
    dev = resolve_device(device)
    nets = _build(cfg, emb, seed, lr, betas, dev)
    if sample_embeddings is None:
        rows = torch.linspace(0, len(emb) - 1, min(8, len(emb))).long()
        sample_embeddings = emb[rows, 0]
    sample = sample_embeddings.detach().float().cpu()
    path = out / CHECKPOINT
    if path.is_file() and resume:
        _resume(path, state, nets)
    if state.step >= steps:
        return path
    nets.g.train()
    nets.d.train()
    bar = tqdm(total=steps, initial=state.step, desc="training DCGAN", unit="step", disable=not progress)
    t0 = time.perf_counter()
    start_step = state.step
    while state.step < steps:
        batch = _draw_batch(images, emb, cfg.noise_dim, seed, state.step, batch_size, dev)
        loss_d, loss_g = _train_step(nets, batch, diversity)
        state.step += 1
        bar.update(1)
        if state.step % 20 == 0:
            rate = (state.step - start_step) / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss_d=f"{loss_d.item():.3f}", loss_g=f"{loss_g.item():.3f}", steps_s=f"{rate:.2f}")
        if state.step % checkpoint_every == 0 or state.step == steps:
            state.seconds += time.perf_counter() - t0
            t0, start_step = time.perf_counter(), state.step
            _save(path, state, nets, sample)
            sample_sheet(nets.g, sample).save(out / "samples" / f"step_{state.step:06d}.png")
    bar.close()
    log.info("DCGAN trained to step %d in %.1f s (this run)", state.step, state.seconds)
    return path


def _training_data(images: torch.Tensor | Sequence[str | os.PathLike | Image.Image], text_embeddings: torch.Tensor,
                   image_size: int, channels: int, batch_size: int,
                   progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``train_dcgan``'s inputs checked and shaped: uint8/float images [N, C, S, S] and embeddings [N, V, D]."""
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
    return images, emb


@dataclass
class _Nets:
    """The two networks being trained and their optimisers."""

    g: ConditionalGenerator
    d: ConditionalDiscriminator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer


def _build(cfg: DCGANConfig, emb: torch.Tensor, seed: int, lr: float, betas: tuple[float, float],
           dev: torch.device) -> _Nets:
    """Fresh networks (initial weights seeded by ``seed``), their text standardisers fitted to ``emb``."""
    torch.manual_seed(seed)
    g, d = ConditionalGenerator(cfg), ConditionalDiscriminator(cfg)
    init_weights(g)
    init_weights(d)
    g.text_norm.fit(emb)
    d.text_norm.fit(emb)
    # Channels-last convolutions: a training step ran 1.25x faster on 2 CPU cores (oneDNN), same values.
    g.to(dev, memory_format=torch.channels_last)
    d.to(dev, memory_format=torch.channels_last)
    return _Nets(g, d, torch.optim.Adam(g.parameters(), lr=lr, betas=betas),
                 torch.optim.Adam(d.parameters(), lr=lr, betas=betas))


def _resume(path: Path, state: TrainState, nets: _Nets) -> None:
    """Continue from ``path``'s checkpoint (refused unless it was trained with the same recipe)."""
    ck = read_checkpoint(path)
    old = TrainState(**{**ck["state"], "betas": tuple(ck["state"]["betas"])})
    mine = (state.config, state.seed, state.batch_size, state.lr, state.betas, state.diversity)
    theirs = (old.config, old.seed, old.batch_size, old.lr, old.betas, old.diversity)
    if mine != theirs:
        raise DCGANError(f"{path} was trained with config/seed/batch_size/lr/betas/diversity {theirs}, not {mine}; "
                         f"use another out_dir or resume=False to start over")
    nets.g.load_state_dict(ck["generator"])
    nets.d.load_state_dict(ck["discriminator"])
    nets.opt_g.load_state_dict(ck["opt_g"])
    nets.opt_d.load_state_dict(ck["opt_d"])
    state.step, state.seconds = old.step, old.seconds
    state.meta = {**old.meta, **state.meta}


@dataclass
class _Batch:
    """One step's draws: real images ``x`` with their texts ``t``, mismatched texts, noise and fake texts."""

    x: torch.Tensor
    t: torch.Tensor
    t_wrong: torch.Tensor
    z: torch.Tensor
    t_fake: torch.Tensor


def _draw_batch(images: torch.Tensor, emb: torch.Tensor, noise_dim: int, seed: int, step: int, batch_size: int,
                dev: torch.device) -> _Batch:
    """Step ``step``'s batch, every draw from generators seeded by ``(seed, step)`` (``dressup.generators.steps``)."""
    rows = batch_indices(len(images), batch_size, seed, step)
    rng = step_rng(seed, step, "draws")
    x = as_unit(images[rows])
    flip = torch.rand(batch_size, generator=rng) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x).to(dev).contiguous(memory_format=torch.channels_last)
    view = torch.randint(emb.shape[1], (batch_size,), generator=rng)
    t = emb[rows, view].to(dev)
    shift = int(torch.randint(1, batch_size, (1,), generator=rng))
    t_wrong = t.roll(shift, 0)
    z = torch.randn(batch_size, noise_dim, generator=rng).to(dev)
    # Fakes come in pairs with the same text and different noise (rows i and i + half) for the
    # mode-seeking term in ``_train_step``.
    half = batch_size // 2
    t_fake = t.clone()
    t_fake[half:2 * half] = t[:half]
    return _Batch(x, t, t_wrong, z, t_fake)


def _train_step(nets: _Nets, b: _Batch, diversity: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One discriminator and one generator update; returns (discriminator loss, generator loss)."""
    g, d = nets.g, nets.d
    batch_size = len(b.x)
    half = batch_size // 2
    ones = torch.ones(batch_size, device=b.x.device)
    zeros = torch.zeros(batch_size, device=b.x.device)
    fake = g(b.z, b.t_fake)
    # Real, mismatched and fake pairs go through D as ONE batch, so its BatchNorm statistics are shared:
    # with separate all-real / all-fake batches BatchNorm normalises away exactly the global differences
    # (brightness, colour) the generator most needs to hear about, and a small DCGAN stays grey.
    logits = d(torch.cat([b.x, b.x, fake.detach()]), torch.cat([b.t, b.t_wrong, b.t_fake]))
    real_l, wrong_l, fake_l = logits.split(batch_size)
    loss_d = (F.binary_cross_entropy_with_logits(real_l, ones)
              + 0.5 * (F.binary_cross_entropy_with_logits(wrong_l, zeros)
                       + F.binary_cross_entropy_with_logits(fake_l, zeros)))
    nets.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    nets.opt_d.step()
    loss_g = F.binary_cross_entropy_with_logits(d(torch.cat([b.x, fake]), torch.cat([b.t, b.t_fake]))[batch_size:],
                                                ones)
    if diversity > 0:
        # Mode seeking (Mao et al. 2019, MSGAN): a conditional GAN learns to ignore its noise and draw one
        # image per text; rewarding image distance per unit of noise distance keeps the four images of a
        # grid different.
        spread = ((fake[:half] - fake[half:2 * half]).abs().mean()
                  / (b.z[:half] - b.z[half:2 * half]).abs().mean())
        loss_g = loss_g + diversity / (spread + 1e-5)
    nets.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    nets.opt_g.step()
    return loss_d, loss_g


# ---------------------------------------------------------------------------------------------------------
# Training on a catalogue


# The texts an image is trained with (one drawn per sample and step). Short phrases are what participants
# write and cost little to embed (a few hundred distinct ones); full captions are what the paper trains its
# encoders on, but embedding the demo's ~2800 distinct captions with MiniLM takes about a minute of the
# build's budget, so they are opt-in.
TEXT_VIEWS = {"short": short_text, "pattern": pattern_text, "caption": lambda item: item.caption}


def embed_texts(encoder: Encoder, texts: Sequence[str], cache_dir: str | os.PathLike | None = None,
                progress: bool = False) -> torch.Tensor:
    """``encoder.encode_texts`` for many texts, batched, each distinct text once, reused across runs through
    ``cache_dir`` (keyed by the encoder's fingerprint, so another encoder never reads these)."""
    distinct = sorted(set(texts))
    known: dict[str, torch.Tensor] = {}
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"text-embeddings-{encoder.fingerprint()[:16]}.pt"
        if path.is_file():
            known = torch.load(path, map_location="cpu")
    missing = [t for t in distinct if t not in known]
    for i in tqdm(range(0, len(missing), 256), desc="embedding texts", disable=not progress or not missing):
        chunk = missing[i:i + 256]
        known.update(zip(chunk, encoder.encode_texts(chunk).float().cpu()))
    if path is not None and missing:
        atomic_write(path, lambda tmp: torch.save(known, tmp))
    return torch.stack([known[t] for t in texts])


def train_dcgan_on_catalogue(catalog, encoder: Encoder, out_dir: str | os.PathLike, *, steps: int = 400,
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
    chosen by measurement to fit about a minute on two CPU cores (see ``dressup.generators.dcgan``'s docstring).
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
            "sample_texts": sample_texts, "items": len(items), "split": split, "texts": list(texts),
            "encoder_fingerprint": encoder.fingerprint()}
    sample = encoder.encode_texts(sample_texts).float().cpu()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "samples.json", json.dumps({"rows": sample_texts}, indent=1))
    return train_dcgan(images, emb, out, steps=steps, batch_size=batch_size, image_size=image_size, channels=3,
                       lr=lr, diversity=diversity, seed=seed, checkpoint_every=checkpoint_every, resume=resume,
                       progress=progress, config=config, sample_embeddings=sample, meta=meta, device=device)


def _sample_texts(items, rows: int = 8) -> list[str]:
    """Sample-sheet rows: what a participant would ask for, one row per colour (in catalogue order)."""
    seen: dict[str, str] = {}
    for it in items:
        colour = it.attribute_of("colour") or ""
        if colour not in seen:
            seen[colour] = garment_phrase(colour, it.category) if colour else it.category
    texts = list(seen.values())[:rows]
    return texts or ["a garment"]


def colour_fidelity(net: ConditionalGenerator, encoder: Encoder, colours: Sequence[str],
                    categories: Sequence[str], *, prompts: int = 50, per_prompt: int = 4, seed: int = 0,
                    palette: dict[str, tuple] | None = None) -> tuple[float, list[dict[str, Any]]]:
    """Mean number of a prompt's ``per_prompt`` images that carry the asked colour, over ``prompts`` random
    "colour category" prompts, judged by ``dressup.colours.garment_colour`` (pixels, not the GAN or an encoder,
    so a generator cannot be trained to fool the check). Returns (mean, one row per prompt)."""
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
