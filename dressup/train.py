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
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from dressup.encoders import Encoder, state_fingerprint
from dressup.images import ImageError, load_image

CHECKPOINT = "checkpoint.pt"
TRAIN_LOG = "train_log.jsonl"
DUPLICATE_MODES = ("soft", "distinct", "ignore")
# Decoded pixels (N * 3 * S * S bytes) up to this size stay in memory: the demo build's 3 200 images at 64 px
# are 39 MB, decoded once in a second instead of by workers every epoch. Above it images stream from disk
# (DeepFashion's 209k training images at 224 px are 31 GB), so memory does not grow with the catalogue.
IN_MEMORY_BUDGET = 1 << 30
PREFETCH_BATCHES = 2  # per DataLoader worker: what streaming holds in memory beyond the batch being trained


class TrainError(ValueError):
    """Training inputs or an existing checkpoint do not fit; the message names the problem and the fix."""


@dataclass
class TrainSettings:
    """What a checkpoint must agree with to be resumed (``steps`` may grow between calls)."""

    spec: str
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup: int
    lock_text: bool
    seed: int
    duplicates: str
    n_images: int
    captions_sha256: str
    image_size: int
    frozen_fingerprint: str


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


# ------------------------------------------------------------------------------------------ checkpoints
def _trainable_state(encoder: Encoder) -> dict[str, torch.Tensor]:
    """Everything in the state dict but the frozen parameters (those are checked by fingerprint instead)."""
    frozen = {n for n, p in encoder.module.named_parameters() if not p.requires_grad}
    return {k: v.detach().cpu().clone() for k, v in encoder.module.state_dict().items() if k not in frozen}


def cached_text_states(encoder: Encoder, texts: list[str], cache_dir: str | os.PathLike | None,
                       progress: bool) -> torch.Tensor:
    """The locked text tower's outputs for ``texts``, reused across training runs through ``cache_dir``.

    A locked tower gives the same states for the same caption whatever image tower it is trained with, so
    the demo's finetuned and STN encoders share one pass of MiniLM over the captions (about a minute on
    a 2-core CPU) instead of paying it each. Keyed by the frozen weights' fingerprint, so a different text
    tower never reads another's states.
    """
    if cache_dir is None:
        return encoder.text_states(texts, progress=progress)
    path = Path(cache_dir) / f"text-states-{_frozen_fingerprint(encoder)[:16]}.pt"
    known: dict[str, torch.Tensor] = torch.load(path) if path.is_file() else {}
    missing = [t for t in texts if t not in known]
    if missing:
        for t, state in zip(missing, encoder.text_states(missing, progress=progress).cpu()):
            known[t] = state.clone()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(known, tmp)
        tmp.replace(path)
    return torch.stack([known[t] for t in texts])


def _frozen_fingerprint(encoder: Encoder) -> str:
    return state_fingerprint({n: p for n, p in encoder.module.named_parameters() if not p.requires_grad})


def _save_checkpoint(path: Path, encoder: Encoder, optimizer: torch.optim.Optimizer, step: int,
                     settings: TrainSettings) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"step": step, "settings": asdict(settings), "trainable": _trainable_state(encoder),
                "optimizer": optimizer.state_dict()}, tmp)
    os.replace(tmp, path)


def _spec_identity(spec: object) -> object:
    """A base spec as a checkpoint is matched on: a ``config:`` file or ``local:`` folder by its name, not the
    folder it sat in, so a project moved or copied mid-training resumes (issue 20). What the weights are
    trained from is checked by content besides: captions, images, frozen fingerprint and the state dict's
    shapes."""
    if isinstance(spec, str):
        scheme, sep, rest = spec.partition(":")
        if sep and scheme in ("config", "local"):
            return f"{scheme}:{Path(rest).name}"
    return spec


def _load_checkpoint(path: Path, encoder: Encoder, optimizer: torch.optim.Optimizer, settings: TrainSettings) -> int:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    saved = dict(ckpt["settings"])
    mine = asdict(settings)
    saved.pop("steps"), mine.pop("steps")
    diff = {k: (saved.get(k), v) for k, v in mine.items()
            if (_spec_identity(saved.get(k)) != _spec_identity(v) if k == "spec" else saved.get(k) != v)}
    if diff:
        raise TrainError(f"the checkpoint in {path.parent} was made with other settings {diff} (saved, now); "
                         "pass resume=False to start over or use another out_dir")
    missing, unexpected = encoder.module.load_state_dict(ckpt["trainable"], strict=False)
    if unexpected:
        raise TrainError(f"the checkpoint in {path.parent} has weights this encoder lacks: {unexpected[:5]}; "
                         "pass resume=False or use another out_dir")
    optimizer.load_state_dict(ckpt["optimizer"])
    return int(ckpt["step"])


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
    if len(images) != len(captions):
        raise TrainError(f"{len(images)} images but {len(captions)} captions; give one caption per image")
    if len(captions) < 2:
        raise TrainError("contrastive training needs at least two image-caption pairs")
    if steps < 1 or batch_size < 2:
        raise TrainError(f"steps must be >= 1 and batch_size >= 2 (got steps={steps}, batch_size={batch_size})")
    if duplicates not in DUPLICATE_MODES:
        raise TrainError(f"duplicates must be one of {DUPLICATE_MODES}, not {duplicates!r}")
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
        n_images=len(captions), captions_sha256=_captions_sha256(captions),
        image_size=encoder.image_size, frozen_fingerprint=_frozen_fingerprint(encoder))

    optimizer = torch.optim.AdamW(_param_groups(encoder, weight_decay), lr=lr, betas=(0.9, 0.98), eps=1e-6)
    ckpt_path = out / CHECKPOINT
    start = 0
    if ckpt_path.exists() and resume:
        start = _load_checkpoint(ckpt_path, encoder, optimizer, settings)
    else:  # a fresh run: nothing of an earlier one may linger
        ckpt_path.unlink(missing_ok=True)
        (out / TRAIN_LOG).unlink(missing_ok=True)

    text_states = None
    if encoder.lock_text and start < steps:
        text_states = cached_text_states(encoder, uniq, text_cache, progress).to(dev)

    plan = batch_plan(caption_ids, batch_size, seed, duplicates, start=start)
    pixels = _pixels_in_memory(images, encoder, progress) if start < steps else None
    batches: Iterator[tuple[np.ndarray, torch.Tensor]]
    if pixels is not None or start >= steps:
        batches = ((b, pixels[torch.from_numpy(b)]) for b in plan)
    else:  # decode in DataLoader workers, in the order the plan says, at most PREFETCH_BATCHES ahead each
        workers = min(4, os.cpu_count() or 1) if num_workers is None else num_workers
        loader = DataLoader(_ImageDataset(images, encoder.resize), batch_sampler=_Plan(plan, steps - start),
                            num_workers=workers, pin_memory=dev.type == "cuda",
                            prefetch_factor=PREFETCH_BATCHES if workers else None)
        batches = ((i.numpy(), px) for i, px in loader)

    loss_fn = CaptionClipLoss() if duplicates == "soft" else open_clip.ClipLoss()
    logit_scale = encoder._logit_scale()
    encoder.train(True)
    bar = tqdm(total=steps, initial=start, desc=f"training {encoder.name}", disable=not progress)
    ema, log_lines = None, []
    rng_devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices), bar:  # per-step seeds must not leak to the caller
        for step in range(start, steps):
            idx, px = next(batches)
            for g in optimizer.param_groups:
                g["lr"] = lr_at(step, lr=lr, warmup=warmup, steps=steps)
            torch.manual_seed(seed * 1_000_003 + step)
            x = encoder.normalize(px.to(dev, non_blocking=True))
            cid = torch.from_numpy(caption_ids[idx]).to(dev)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                if text_states is not None:
                    img_f, txt_f, scale = encoder.features(x, text_states=text_states[cid])
                else:
                    img_f, txt_f, scale = encoder.features(x, [uniq[c] for c in caption_ids[idx]])
            loss = loss_fn(img_f.float(), txt_f.float(), scale.float(),
                           **({"caption_ids": cid} if duplicates == "soft" else {}))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                logit_scale.clamp_(0, math.log(100))
            value = float(loss.detach())
            ema = value if ema is None else 0.9 * ema + 0.1 * value
            bar.update(1)
            bar.set_postfix(loss=f"{ema:.3f}")
            log_lines.append({"step": step + 1, "loss": value, "lr": optimizer.param_groups[0]["lr"],
                              "logit_scale": float(logit_scale.detach().exp())})
            if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
                _save_checkpoint(ckpt_path, encoder, optimizer, step + 1, settings)
                _append_log(out / TRAIN_LOG, log_lines)
                log_lines = []
    encoder.train(False)
    encoder.save(out)
    return encoder


class _Plan:
    """A DataLoader batch sampler over the first ``n`` batches of a plan."""

    def __init__(self, plan: Iterator[np.ndarray], n: int):
        self.plan, self.n = plan, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[np.ndarray]:
        for _ in range(self.n):
            yield next(self.plan)


def _captions_sha256(captions: Sequence[str]) -> str:
    """sha256 of the captions joined by newlines, fed one at a time (no N-caption string is built)."""
    h = hashlib.sha256()
    for i, caption in enumerate(captions):
        h.update(b"\n" if i else b"")
        h.update(caption.encode())
    return h.hexdigest()


def _append_log(path: Path, lines: list[dict[str, Any]]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")


def read_train_log(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The per-step loss, learning rate and logit scale a run in ``out_dir`` logged."""
    path = Path(out_dir) / TRAIN_LOG
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
