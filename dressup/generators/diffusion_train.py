"""Training the miniature diffusion model of ``dressup.generators.diffusion`` on tensors (``train_diffusion``)
or on a catalogue (``train_diffusion_on_catalogue``).

The DDPM objective with AdamW, classifier-free guidance's dropped texts, horizontal flips and EMA weights
(diffusers' ``EMAModel``, with warm-up). Deterministic under a seed and resumable: every random draw of step
``s`` comes from generators seeded by ``(seed, s)`` (``dressup.generators.steps``), so 200 steps then 200 more
equals 400 at once. ``train_state.pt`` holds the raw weights and the optimiser, only for resuming; the EMA
model is saved beside it as ``model.pt`` + ``model.json`` (``DiffusionModel.save``).
"""
from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from dressup.files import atomic_write
from dressup.generators.base import resolve_device
from dressup.generators.diffusion import (NULL_TEXT, DiffusionConfig, DiffusionError, DiffusionModel, MiniLMTokens,
                                          TextTower)
from dressup.generators.garment_texts import garment_phrase, pattern_text, short_text
from dressup.generators.pixels import as_unit, images_to_tensor
from dressup.generators.steps import batch_indices, step_rng

log = logging.getLogger(__name__)

TRAIN_STATE = "train_state.pt"


@dataclass
class TrainingTexts:
    """Every distinct training text embedded once: ``states[k]``/``mask[k]`` is text ``k``; ``of_item[i, v]``
    is the index of image ``i``'s text view ``v``; text 0 is the empty (unconditional) text."""

    states: torch.Tensor
    mask: torch.Tensor
    of_item: torch.Tensor
    texts: list[str]

    @classmethod
    def embed(cls, tower: TextTower, per_item: Sequence[Sequence[str]], batch: int = 256) -> "TrainingTexts":
        texts = [NULL_TEXT] + sorted({t for views in per_item for t in views} - {NULL_TEXT})
        where = {t: k for k, t in enumerate(texts)}
        parts = [tower(texts[i:i + batch]) for i in range(0, len(texts), batch)]
        return cls(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]),
                   torch.tensor([[where[t] for t in views] for views in per_item]), texts)


def denoising_loss(unet, scheduler, x0: torch.Tensor, states: torch.Tensor, mask: torch.Tensor,
                   rng: torch.Generator, config: DiffusionConfig) -> torch.Tensor:
    """The DDPM objective: MSE between the noise added at a random timestep and the UNet's prediction of it."""
    noise = torch.randn(x0.shape, generator=rng)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(x0),), generator=rng)
    dev = next(unet.parameters()).device
    noisy = scheduler.add_noise(x0, noise, t)
    cond = config.condition(states.to(dev), mask.to(dev))
    pred = unet(noisy.to(dev), t.to(dev), **cond).sample
    return F.mse_loss(pred.float(), noise.to(dev))


@torch.no_grad()
def probe_loss(unet, config: DiffusionConfig, images: torch.Tensor, texts: TrainingTexts, *, seed: int = 12345,
               n: int = 64, repeats: int = 4) -> float:
    """The denoising loss on a fixed set of images, texts, timesteps and noises: comparable across steps,
    unlike the training loss, which is drawn afresh every step."""
    rng = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(images), generator=rng)[:n]
    k = texts.of_item[rows, 0]
    was = unet.training
    unet.eval()
    losses = [float(denoising_loss(unet, config.train_scheduler(), as_unit(images[rows]), texts.states[k],
                                   texts.mask[k], rng, config)) for _ in range(repeats)]
    unet.train(was)
    return float(np.mean(losses))


def train_diffusion(images: torch.Tensor, texts: TrainingTexts, tower: TextTower, out_dir: str | os.PathLike, *,
                    steps: int, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.01,
                    cond_drop: float = 0.1, ema_decay: float = 0.999, seed: int = 0,
                    config: DiffusionConfig | None = None, checkpoint_every: int = 500, resume: bool = True,
                    deadline: float | None = None, progress: bool = True, meta: dict[str, Any] | None = None,
                    device: str | torch.device = "cpu") -> DiffusionModel:
    """Train the denoiser on ``images`` (uint8 [N, 3, S, S], S = config.image_size) with AdamW.

    Each step draws a batch (stateless per-epoch permutations), one text view per image, the empty text for a
    ``cond_drop`` share (classifier-free guidance), a horizontal flip for half, a timestep and a noise. A
    finished or resumed run returns the EMA model, also saved to ``out_dir``. ``deadline`` (a ``time.time()``)
    stops early, after a checkpoint, so a run on a shared machine can be bounded by the clock; the step reached
    is in ``meta["step"]``.
    """
    cfg = config or DiffusionConfig()
    if images.shape[-1] != cfg.image_size:
        raise DiffusionError(f"images are {images.shape[-1]} px but the config says {cfg.image_size}; resize them "
                             f"with dressup.generators.pixels.images_to_tensor(..., {cfg.image_size}, 3)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    recipe = {"seed": seed, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
              "cond_drop": cond_drop, "ema_decay": ema_decay, "config": asdict(cfg), "images": len(images),
              "texts": len(texts.texts)}
    run = _start(cfg, recipe, out / TRAIN_STATE, resume, resolve_device(device))
    bar = tqdm(total=steps, initial=run.state["step"], desc="training diffusion", disable=not progress)
    while run.state["step"] < steps:
        if deadline is not None and time.time() >= deadline:
            log.info("deadline reached at step %d of %d", run.state["step"], steps)
            break
        t0 = time.perf_counter()
        loss = _train_step(run, images, texts, seed, batch_size, cond_drop)
        run.state["step"] += 1
        run.state["seconds"] += time.perf_counter() - t0
        run.state["losses"].append(round(loss.item(), 5))
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(run.state['losses'][-50:]):.4f}")
        if run.state["step"] % checkpoint_every == 0 and run.state["step"] < steps:
            _save(run, tower, out, meta)
    bar.close()
    return _save(run, tower, out, meta)


@dataclass
class _Run:
    """A training run in progress: the denoiser, its optimiser and EMA, and what ``train_state.pt`` records."""

    cfg: DiffusionConfig
    unet: Any
    opt: torch.optim.Optimizer
    ema: Any
    scheduler: Any
    recipe: dict[str, Any]
    state: dict[str, Any]
    resume_path: Path


def _start(cfg: DiffusionConfig, recipe: dict[str, Any], resume_path: Path, resume: bool,
           dev: torch.device) -> _Run:
    """A fresh denoiser (initial weights seeded by the recipe's seed), or the one ``resume_path`` holds when
    ``resume`` and it was trained with the same recipe."""
    from diffusers.training_utils import EMAModel  # diffusers is heavy: only a training run pays for it

    torch.manual_seed(recipe["seed"])  # the UNet's initial weights
    unet = cfg.unet().to(dev).train()
    opt = torch.optim.AdamW(unet.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    ema = EMAModel(unet.parameters(), decay=recipe["ema_decay"], use_ema_warmup=True, power=3 / 4)
    run = _Run(cfg, unet, opt, ema, cfg.train_scheduler(), recipe, {"step": 0, "seconds": 0.0, "losses": []},
               resume_path)
    if resume and resume_path.is_file():
        ck = torch.load(resume_path, map_location="cpu", weights_only=False)
        if ck["recipe"] != recipe:
            raise DiffusionError(f"{resume_path} was trained with another recipe ({ck['recipe']}); use another "
                                 f"folder or resume=False")
        unet.load_state_dict(ck["unet"])
        opt.load_state_dict(ck["opt"])
        ema.load_state_dict(ck["ema"])
        run.state = ck["state"]
    return run


def _train_step(run: _Run, images: torch.Tensor, texts: TrainingTexts, seed: int, batch_size: int,
                cond_drop: float) -> torch.Tensor:
    """One AdamW step on step ``run.state["step"]``'s batch (every draw seeded by ``(seed, step)``)."""
    s = run.state["step"]
    rng = step_rng(seed, s, "diffusion")
    rows = batch_indices(len(images), batch_size, seed, s)
    view = torch.randint(texts.of_item.shape[1], (batch_size,), generator=rng)
    k = texts.of_item[rows, view]
    k = torch.where(torch.rand(batch_size, generator=rng) < cond_drop, torch.zeros_like(k), k)
    x0 = as_unit(images[rows])
    flip = torch.rand(batch_size, generator=rng) < 0.5
    x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
    loss = denoising_loss(run.unet, run.scheduler, x0, texts.states[k], texts.mask[k], rng, run.cfg)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.unet.parameters(), 1.0)
    run.opt.step()
    run.ema.step(run.unet.parameters())
    return loss


def _save(run: _Run, tower: TextTower, out: Path, meta: dict[str, Any] | None) -> DiffusionModel:
    """Write ``train_state.pt`` (for resuming) and the EMA model (``model.pt``, ``model.json``); return the latter."""
    ck = {"recipe": run.recipe, "unet": run.unet.state_dict(), "opt": run.opt.state_dict(),
          "ema": run.ema.state_dict(), "state": run.state}
    atomic_write(run.resume_path, lambda tmp: torch.save(ck, tmp))
    averaged = copy.deepcopy(run.unet).eval()
    run.ema.copy_to(averaged.parameters())
    model = DiffusionModel(averaged, run.cfg, tower, meta={**(meta or {}), **run.recipe, "step": run.state["step"],
                                                           "seconds": round(run.state["seconds"], 1),
                                                           "text_tower": getattr(tower, "name", repr(tower))})
    model.save(out)
    return model


def item_texts(item) -> list[str]:
    """The texts an image is trained with (one drawn per step): "red dress", "red striped dress" (as the
    DCGAN), and "a red dress", the way ``colour_prompts`` and participants ask."""
    colour = item.attribute_of("colour")
    phrase = garment_phrase(colour, item.category) if colour else short_text(item)
    return [short_text(item), pattern_text(item), phrase]


def train_diffusion_on_catalogue(catalog, out_dir: str | os.PathLike, *, steps: int, split: str = "all",
                                 tower: TextTower | None = None, config: DiffusionConfig | None = None,
                                 progress: bool = True, **kwargs: Any) -> DiffusionModel:
    """Train on a catalogue's images (resized to the config's size) and ``item_texts``; ``kwargs`` go to
    ``train_diffusion`` (batch_size, lr, seed, deadline, ...)."""
    cfg = config or DiffusionConfig()
    items = [it for it in catalog.split(split) if Path(it.image_path).is_file()]
    if len(items) < 2:
        raise DiffusionError(f"the catalogue has {len(items)} images in split {split!r}; build it first "
                             f"(`python -m dressup demo build`) or choose split='all'")
    tower = tower if tower is not None else MiniLMTokens(cfg.max_tokens)
    texts = TrainingTexts.embed(tower, [item_texts(it) for it in items])
    images = images_to_tensor([it.image_path for it in items], cfg.image_size, 3, progress)
    return train_diffusion(images, texts, tower, out_dir, steps=steps, config=cfg, progress=progress, **kwargs)

