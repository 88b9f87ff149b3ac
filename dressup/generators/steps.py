"""Stateless per-step randomness: why DCGAN and diffusion training are deterministic and resumable.

Every random draw of training step ``s`` (batch order, flips, noise, texts) comes from a ``torch.Generator``
seeded by a hash of ``(seed, s, what)``, and a step's batch is a slice of a fresh permutation per epoch, also
seeded by the epoch. Nothing is carried from one step to the next, so training to 400 steps in one go or to
200 then resuming to 400 gives the same weights.
"""
from __future__ import annotations

import hashlib

import torch


def step_rng(seed: int, step: int, what: str) -> torch.Generator:
    """A CPU generator for draw ``what`` of step ``step`` under ``seed`` (the digest's text is part of the
    format: changing it changes every trained model)."""
    digest = hashlib.sha256(f"dressup-dcgan/{seed}/{step}/{what}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "big") & (2**63 - 1))


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """Rows of step ``step``: consecutive slices of a fresh permutation per epoch (stateless, so resumable)."""
    pos = torch.arange(step * batch_size, (step + 1) * batch_size)
    epochs, offsets = pos // n, pos % n
    out = torch.empty(batch_size, dtype=torch.long)
    for e in epochs.unique().tolist():
        perm = torch.randperm(n, generator=step_rng(seed, int(e), "epoch"))
        sel = epochs == e
        out[sel] = perm[offsets[sel]]
    return out
