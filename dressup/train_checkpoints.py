"""What a training run keeps in its ``out_dir`` to be resumed and read back: the settings a checkpoint must agree
with, the checkpoint itself, the locked text tower's cached outputs, and the per-step log.

Kept apart from the loop (``dressup.train``) so that what is on disk, and when an earlier run may be continued,
reads in one place: a checkpoint is resumed only when every setting but ``steps`` matches (``TrainSettings``),
its base spec compared by file name so a moved project resumes (``_spec_identity``). Files are written with
``dressup.files.atomic_write``, so an interrupted run never leaves half a checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from dressup.encoders import Encoder, state_fingerprint
from dressup.files import atomic_write

CHECKPOINT = "checkpoint.pt"
TRAIN_LOG = "train_log.jsonl"


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
    path = Path(cache_dir) / f"text-states-{frozen_fingerprint(encoder)[:16]}.pt"
    known: dict[str, torch.Tensor] = torch.load(path) if path.is_file() else {}
    missing = [t for t in texts if t not in known]
    if missing:
        for t, state in zip(missing, encoder.text_states(missing, progress=progress).cpu()):
            known[t] = state.clone()
        atomic_write(path, lambda p: torch.save(known, p))
    return torch.stack([known[t] for t in texts])


def frozen_fingerprint(encoder: Encoder) -> str:
    """The fingerprint of the parameters training leaves alone (a locked text trunk)."""
    return state_fingerprint({n: p for n, p in encoder.module.named_parameters() if not p.requires_grad})


def save_checkpoint(path: Path, encoder: Encoder, optimizer: torch.optim.Optimizer, step: int,
                    settings: TrainSettings) -> None:
    """The trainable weights, the optimizer's state and the settings after ``step`` steps, written atomically."""
    ckpt = {"step": step, "settings": asdict(settings), "trainable": _trainable_state(encoder),
            "optimizer": optimizer.state_dict()}
    atomic_write(path, lambda p: torch.save(ckpt, p))


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


def load_checkpoint(path: Path, encoder: Encoder, optimizer: torch.optim.Optimizer, settings: TrainSettings) -> int:
    """Restore the weights and optimizer a checkpoint holds into ``encoder`` and ``optimizer``; returns its step.
    Refuses a checkpoint made with other settings (``steps`` aside) or with weights this encoder lacks."""
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


def captions_sha256(captions: Sequence[str]) -> str:
    """sha256 of the captions joined by newlines, fed one at a time (no N-caption string is built)."""
    h = hashlib.sha256()
    for i, caption in enumerate(captions):
        h.update(b"\n" if i else b"")
        h.update(caption.encode())
    return h.hexdigest()


def append_log(path: Path, lines: list[dict[str, Any]]) -> None:
    """Append one JSON line per logged step to the run's ``train_log.jsonl``."""
    with open(path, "a", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")


def read_train_log(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The per-step loss, learning rate and logit scale a run in ``out_dir`` logged."""
    path = Path(out_dir) / TRAIN_LOG
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
