"""Contrastive image-caption training of an ``Encoder``: the paper's finetuning and the demo's build.

One loop for every encoder (plain, STN, Swin, STN+Swin; open_clip or transformers; CPU or GPU): AdamW,
linear warmup then cosine decay, the CLIP loss from open_clip, resumable checkpoints in ``out_dir``, and at
the end a ``local:`` folder in the same ``out_dir`` (``load_encoder("local:" + out_dir)``).

Two decisions worth knowing:

* ``lock_text`` freezes the text transformer, so each distinct caption's trunk output is computed once
  before the first step and only the text head (a projection, or nothing) runs per step. This is what makes
  the demo build fast on a CPU.
* Captions repeat (the demo catalogue's category-only captions have a dozen values; DeepFashion's attribute
  captions repeat too). With plain CLIP loss two images with the same caption are each other's negatives,
  although the caption describes both. ``duplicates="soft"`` (the default) gives every image of a caption an
  equal share of the target (``CaptionClipLoss``); it equals open_clip's ``ClipLoss`` when a batch's captions
  are distinct. ``"distinct"`` instead samples batches with no repeated caption (a batch is then at most as
  large as the number of distinct captions), and ``"ignore"`` is the paper's plain loss.

Batches are a function of (seed, step), and every step reseeds torch's RNG from (seed, step), so a run
resumed from a checkpoint takes the same steps as one that was never interrupted.

Images are decoded once into one uint8 tensor when that tensor is small (``IN_MEMORY_BUDGET``), else streamed
from disk by DataLoader workers in the plan's order; both give the same pixels, so the same weights.

What a run leaves in ``out_dir`` (settings, checkpoint, cached text states, log) is ``dressup.train_checkpoints``;
its names are re-exported here.
"""
from __future__ import annotations

import math
import os
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from dressup.encoders import Encoder
from dressup.images import ImageError, load_image
from dressup.train_checkpoints import (CHECKPOINT, TRAIN_LOG, TrainError, TrainSettings, append_log,
                                       cached_text_states, captions_sha256, frozen_fingerprint, load_checkpoint,
                                       read_train_log, save_checkpoint)

__all__ = ["CHECKPOINT", "TRAIN_LOG", "DUPLICATE_MODES", "IN_MEMORY_BUDGET", "PREFETCH_BATCHES", "TrainError",
           "TrainSettings", "CaptionClipLoss", "batch_plan", "lr_at", "cached_text_states", "train_encoder",
           "read_train_log"]

_captions_sha256 = captions_sha256  # the name it had here before it moved (tests import it)

DUPLICATE_MODES = ("soft", "distinct", "ignore")
# Decoded pixels (N * 3 * S * S bytes) up to this size stay in memory: the demo build's 3 200 images at 64 px
# are 39 MB, decoded once in a second instead of by workers every epoch. Above it images stream from disk
# (DeepFashion's 209k training images at 224 px are 31 GB), so memory does not grow with the catalogue.
IN_MEMORY_BUDGET = 1 << 30
PREFETCH_BATCHES = 2  # per DataLoader worker: what streaming holds in memory beyond the batch being trained


class CaptionClipLoss(open_clip.ClipLoss):
    """open_clip's ``ClipLoss`` in which images that share a caption are not each other's negatives.

    With ``caption_ids`` whose values repeat, the target of each row is spread evenly over the columns with
    the same caption, in both directions; with distinct ids (or none) it is exactly ``ClipLoss``.
    """

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                caption_ids: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if caption_ids is None or caption_ids.unique().numel() == caption_ids.numel():
            return super().forward(image_features, text_features, logit_scale)
        logits_per_image, logits_per_text = self.get_logits(image_features, text_features, logit_scale)
        same = (caption_ids[:, None] == caption_ids[None, :]).float()
        target = same / same.sum(dim=1, keepdim=True)
        return (F.cross_entropy(logits_per_image, target) + F.cross_entropy(logits_per_text, target)) / 2


# ------------------------------------------------------------------------------------------ images
def _is_path(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike))


class _ImageDataset(Dataset):
    """Decodes (``load_image``, as the index does) and resizes one image per item, in DataLoader workers.

    A sequence of paths is kept as one numpy byte array, not a list of Python objects: forked workers touch
    every object they read (reference counts), which copies its memory page into each worker, so a list of
    100k paths grows every worker's memory with the catalogue; one array does not.
    """

    def __init__(self, items: Sequence[Any] | Dataset, resize: Callable[[Image.Image], torch.Tensor]):
        paths = isinstance(items, Sequence) and len(items) > 0 and all(_is_path(x) for x in items)
        self.items = np.array([os.fsencode(x) for x in items], dtype=np.bytes_) if paths else items
        self.resize = resize

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        item = self.items[int(i)]
        if isinstance(item, np.bytes_):
            item = os.fsdecode(bytes(item))
        if _is_path(item):
            try:
                item = load_image(item)
            except ImageError as e:  # one bad file among 200k must say which it is
                raise TrainError(f"training image {item}: {e}") from None
        if isinstance(item, Image.Image):
            item = self.resize(item)
        return int(i), item


def _pixels_in_memory(images: Any, encoder: Encoder, progress: bool) -> torch.Tensor | None:
    """uint8 [N, 3, S, S] when the images are a tensor, or PIL images / paths whose pixels fit in
    ``IN_MEMORY_BUDGET`` (decoded one at a time into one preallocated tensor); None means stream them."""
    size = encoder.image_size
    if isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise TrainError(f"an image tensor must be uint8 [N, 3, {size}, {size}] (Encoder.resize), "
                             f"not {images.dtype} {tuple(images.shape)}")
        return images
    if not isinstance(images, Sequence) or len(images) * 3 * size * size > IN_MEMORY_BUDGET:
        return None
    if not (all(isinstance(im, Image.Image) for im in images) or all(_is_path(im) for im in images)):
        return None
    dataset = _ImageDataset(images, encoder.resize)
    pixels = torch.empty((len(images), 3, size, size), dtype=torch.uint8)
    for i in tqdm(range(len(images)), desc="preparing images", disable=not progress):
        pixels[i] = dataset[i][1]
    return pixels


# ------------------------------------------------------------------------------------------ batches
def _epoch_batches(caption_ids: np.ndarray, batch_size: int, seed: int, epoch: int, duplicates: str) -> list[np.ndarray]:
    n = len(caption_ids)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n)
    if duplicates != "distinct":
        if n <= batch_size:
            return [order]
        return [order[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]
    # each caption at most once per batch: take items round-robin over captions, greedily
    rank = np.zeros(n, dtype=np.int64)
    seen: dict[int, int] = {}
    for i in order:
        rank[i] = seen.get(int(caption_ids[i]), 0)
        seen[int(caption_ids[i])] = rank[i] + 1
    queue = deque(order[np.lexsort((rng.random(n), rank[order]))])
    batches: list[np.ndarray] = []
    while queue:
        batch, used, skipped = [], set(), []
        while queue and len(batch) < batch_size:
            i = queue.popleft()
            (skipped if int(caption_ids[i]) in used else batch).append(i)
            used.add(int(caption_ids[i]))
        queue.extendleft(reversed(skipped))
        batches.append(np.array(batch))
    # the tail of an epoch runs out of distinct captions; its small batches would be noisy steps
    full = min(batch_size, len(seen))
    return [b for b in batches if len(b) >= max(2, full // 2)]


def batch_plan(caption_ids: np.ndarray, batch_size: int, seed: int, duplicates: str, start: int = 0) -> Iterator[np.ndarray]:
    """The batches of steps ``start``, ``start + 1``, ...: epochs of shuffled indices, a function of seed."""
    step, epoch = 0, 0
    while True:
        batches = _epoch_batches(caption_ids, batch_size, seed, epoch, duplicates)
        if not batches:
            raise TrainError("no batch of at least two distinct captions can be made; give more images or captions")
        for b in batches:
            if step >= start:
                yield b
            step += 1
        epoch += 1


def lr_at(step: int, *, lr: float, warmup: int, steps: int) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay to zero at ``steps`` (open_clip's schedule)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    span = max(1, steps - warmup)
    return 0.5 * lr * (1 + math.cos(math.pi * min(1.0, (step - warmup) / span)))


def _param_groups(encoder: Encoder, weight_decay: float) -> list[dict[str, Any]]:
    """open_clip's rule: no weight decay on gains, biases, norms and the logit scale."""
    decay, no_decay = [], []
    for name, p in encoder.module.named_parameters():
        if not p.requires_grad:
            continue
        exclude = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if exclude else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


# ------------------------------------------------------------------------------------------ the loop
def train_encoder(
    encoder: Encoder,
    images: Sequence[Image.Image] | Sequence[str | os.PathLike] | torch.Tensor | Dataset,
    captions: Sequence[str],
    *,
    out_dir: str | os.PathLike,
    steps: int,
    batch_size: int = 128,
    lr: float = 1e-6,
    weight_decay: float = 0.1,
    warmup: int = 10,
    lock_text: bool | None = None,
    seed: int = 0,
    duplicates: str = "soft",
    checkpoint_every: int = 100,
    resume: bool = True,
    progress: bool = True,
    device: str | torch.device | None = None,
    num_workers: int | None = None,
    text_cache: str | os.PathLike | None = None,
) -> Encoder:
    """Train ``encoder`` in place on image-caption pairs and write a ``local:`` folder to ``out_dir``.

    ``images`` are PIL images or paths (decoded once into memory when their pixels fit ``IN_MEMORY_BUDGET``,
    else streamed by ``num_workers`` DataLoader workers), a uint8 tensor from ``Encoder.resize`` (fastest), or
    a Dataset of any of these (always streamed). ``lock_text=None`` keeps the encoder's own setting. With
    ``resume=True`` an existing checkpoint in ``out_dir`` is continued (its settings must match; ``steps``
    may be raised); with ``resume=False`` it is discarded. Returns the encoder, in eval mode.
    """
    _check_inputs(images, captions, steps=steps, batch_size=batch_size, duplicates=duplicates)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if device is not None:
        encoder.to(device)
    dev = encoder.device
    if lock_text is not None:
        encoder.set_lock_text(lock_text)

    uniq = list(dict.fromkeys(captions))
    index = {c: i for i, c in enumerate(uniq)}
    caption_ids = np.array([index[c] for c in captions], dtype=np.int64)
    settings = TrainSettings(
        spec=encoder.options.get("base_spec", encoder.spec), steps=steps, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, warmup=warmup, lock_text=encoder.lock_text, seed=seed, duplicates=duplicates,
        n_images=len(captions), captions_sha256=captions_sha256(captions),
        image_size=encoder.image_size, frozen_fingerprint=frozen_fingerprint(encoder))

    optimizer = torch.optim.AdamW(_param_groups(encoder, weight_decay), lr=lr, betas=(0.9, 0.98), eps=1e-6)
    start = _resume_or_start(out, encoder, optimizer, settings, resume)

    text_states = None
    if encoder.lock_text and start < steps:
        text_states = cached_text_states(encoder, uniq, text_cache, progress).to(dev)

    plan = batch_plan(caption_ids, batch_size, seed, duplicates, start=start)
    batches = _batches(images, encoder, plan, start=start, steps=steps, num_workers=num_workers, progress=progress)
    step = _Step(encoder, optimizer, settings, caption_ids, uniq, text_states)
    _run_steps(step, batches, out, start=start, checkpoint_every=checkpoint_every, progress=progress)
    encoder.train(False)
    encoder.save(out)
    return encoder


def _check_inputs(images: Any, captions: Sequence[str], *, steps: int, batch_size: int, duplicates: str) -> None:
    """Refuse inputs no run can train on, before anything is written."""
    if len(images) != len(captions):
        raise TrainError(f"{len(images)} images but {len(captions)} captions; give one caption per image")
    if len(captions) < 2:
        raise TrainError("contrastive training needs at least two image-caption pairs")
    if steps < 1 or batch_size < 2:
        raise TrainError(f"steps must be >= 1 and batch_size >= 2 (got steps={steps}, batch_size={batch_size})")
    if duplicates not in DUPLICATE_MODES:
        raise TrainError(f"duplicates must be one of {DUPLICATE_MODES}, not {duplicates!r}")


def _resume_or_start(out: Path, encoder: Encoder, optimizer: torch.optim.Optimizer, settings: TrainSettings,
                     resume: bool) -> int:
    """The step to start at: an existing checkpoint's (``resume``), else 0 with no trace of an earlier run left."""
    ckpt_path = out / CHECKPOINT
    if ckpt_path.exists() and resume:
        return load_checkpoint(ckpt_path, encoder, optimizer, settings)
    # a fresh run: nothing of an earlier one may linger
    ckpt_path.unlink(missing_ok=True)
    (out / TRAIN_LOG).unlink(missing_ok=True)
    return 0


def _batches(images: Any, encoder: Encoder, plan: Iterator[np.ndarray], *, start: int, steps: int,
             num_workers: int | None, progress: bool) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(indices, uint8 pixels) of each planned batch: sliced from pixels decoded once when they fit in memory,
    else decoded by DataLoader workers in the plan's order, at most ``PREFETCH_BATCHES`` ahead each."""
    pixels = _pixels_in_memory(images, encoder, progress) if start < steps else None
    if pixels is not None or start >= steps:
        return ((b, pixels[torch.from_numpy(b)]) for b in plan)
    workers = min(4, os.cpu_count() or 1) if num_workers is None else num_workers
    loader = DataLoader(_ImageDataset(images, encoder.resize), batch_sampler=_Plan(plan, steps - start),
                        num_workers=workers, pin_memory=encoder.device.type == "cuda",
                        prefetch_factor=PREFETCH_BATCHES if workers else None)
    return ((i.numpy(), px) for i, px in loader)


class _Step:
    """One optimisation step of a run: its learning rate, per-step seed, loss, update and logit-scale clamp."""

    def __init__(self, encoder: Encoder, optimizer: torch.optim.Optimizer, settings: TrainSettings,
                 caption_ids: np.ndarray, uniq: list[str], text_states: torch.Tensor | None):
        self.encoder, self.optimizer, self.settings = encoder, optimizer, settings
        self.caption_ids, self.uniq, self.text_states = caption_ids, uniq, text_states
        self.loss_fn = CaptionClipLoss() if settings.duplicates == "soft" else open_clip.ClipLoss()
        self.logit_scale = encoder._logit_scale()
        self.dev = encoder.device

    def __call__(self, step: int, idx: np.ndarray, px: torch.Tensor) -> float:
        """Train on one batch (indices ``idx``, uint8 pixels ``px``) as step ``step``; returns its loss."""
        s, dev, encoder = self.settings, self.dev, self.encoder
        for g in self.optimizer.param_groups:
            g["lr"] = lr_at(step, lr=s.lr, warmup=s.warmup, steps=s.steps)
        torch.manual_seed(s.seed * 1_000_003 + step)
        x = encoder.normalize(px.to(dev, non_blocking=True))
        cid = torch.from_numpy(self.caption_ids[idx]).to(dev)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            if self.text_states is not None:
                img_f, txt_f, scale = encoder.features(x, text_states=self.text_states[cid])
            else:
                img_f, txt_f, scale = encoder.features(x, [self.uniq[c] for c in self.caption_ids[idx]])
        loss = self.loss_fn(img_f.float(), txt_f.float(), scale.float(),
                            **({"caption_ids": cid} if s.duplicates == "soft" else {}))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            self.logit_scale.clamp_(0, math.log(100))
        return float(loss.detach())


def _run_steps(step: _Step, batches: Iterator[tuple[np.ndarray, torch.Tensor]], out: Path, *, start: int,
               checkpoint_every: int, progress: bool) -> None:
    """Steps ``start`` to ``steps``, with a progress bar, a checkpoint and the log every ``checkpoint_every``
    steps and at the end; per-step seeds are drawn in a forked RNG so they do not leak to the caller."""
    encoder, settings, dev = step.encoder, step.settings, step.dev
    steps = settings.steps
    encoder.train(True)
    bar = tqdm(total=steps, initial=start, desc=f"training {encoder.name}", disable=not progress)
    ema, log_lines = None, []
    rng_devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices), bar:
        for i in range(start, steps):
            idx, px = next(batches)
            value = step(i, idx, px)
            ema = value if ema is None else 0.9 * ema + 0.1 * value
            bar.update(1)
            bar.set_postfix(loss=f"{ema:.3f}")
            log_lines.append({"step": i + 1, "loss": value, "lr": step.optimizer.param_groups[0]["lr"],
                              "logit_scale": float(step.logit_scale.detach().exp())})
            if (i + 1) % checkpoint_every == 0 or i + 1 == steps:
                save_checkpoint(out / CHECKPOINT, encoder, step.optimizer, i + 1, settings)
                append_log(out / TRAIN_LOG, log_lines)
                log_lines = []


class _Plan:
    """A DataLoader batch sampler over the first ``n`` batches of a plan."""

    def __init__(self, plan: Iterator[np.ndarray], n: int):
        self.plan, self.n = plan, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[np.ndarray]:
        for _ in range(self.n):
            yield next(self.plan)
