"""The paper's Spatial Transformer Network (STN) in front of any image tower.

A small localisation net looks at the (normalised) image and regresses a 2x3 affine matrix; the image is
resampled with ``affine_grid`` + ``grid_sample`` and handed to the wrapped tower. The last layer starts at
zero weights and identity bias, so a freshly wrapped encoder computes exactly what it computed before
(up to interpolation error) and training decides how much to warp.

``STNTower`` stands where ``model.visual`` (open_clip) or ``model.vision_model`` (transformers) stood, so
everything the host model calls on its image tower keeps working: calls are delegated to the wrapped
tower, and ``lock`` also freezes the localisation net.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

IDENTITY_AFFINE = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


class Localisation(nn.Module):
    """Two conv+maxpool+ReLU blocks, then two fully connected layers regressing the affine matrix.

    The adaptive pooling before the fully connected layers makes the net independent of the input size
    (64 px demo images and 224 px paper images use the same code).
    """

    def __init__(self, in_chans: int = 3, pooled: int = 3, hidden: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 8, kernel_size=7),
            nn.MaxPool2d(2, stride=2),
            nn.ReLU(True),
            nn.Conv2d(8, 10, kernel_size=5),
            nn.MaxPool2d(2, stride=2),
            nn.ReLU(True),
            nn.AdaptiveAvgPool2d(pooled),
        )
        self.regressor = nn.Sequential(
            nn.Linear(10 * pooled * pooled, hidden),
            nn.ReLU(True),
            nn.Linear(hidden, 6),
        )
        last = self.regressor[-1]
        nn.init.zeros_(last.weight)
        with torch.no_grad():
            last.bias.copy_(torch.tensor(IDENTITY_AFFINE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The affine matrices, [B, 2, 3]."""
        return self.regressor(self.features(x).flatten(1)).view(-1, 2, 3)


class STN(nn.Module):
    """Warp a batch of images with the affine matrix the localisation net predicts for each."""

    def __init__(self, in_chans: int = 3):
        super().__init__()
        self.localisation = Localisation(in_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.localisation(x).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class STNTower(nn.Module):
    """An image tower with an STN in front; a drop-in replacement for the tower it wraps.

    ``forward`` accepts the image batch positionally or as ``pixel_values=`` (what transformers' CLIPModel
    passes to ``vision_model``); every other argument goes to the wrapped tower unchanged. Attributes the
    wrapper does not have (``image_size``, ``preprocess_cfg``, ``output_dim``, ``config``...) are read from
    the wrapped tower.
    """

    def __init__(self, tower: nn.Module, in_chans: int = 3):
        super().__init__()
        self.stn = STN(in_chans)
        self.tower = tower

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            tower = super().__getattr__("tower")
            return getattr(tower, name)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if "pixel_values" in kwargs:
            kwargs["pixel_values"] = self.stn(kwargs["pixel_values"])
        else:
            args = (self.stn(args[0]), *args[1:])
        return self.tower(*args, **kwargs)

    def forward_intermediates(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return self.tower.forward_intermediates(self.stn(x), *args, **kwargs)

    def lock(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """Lock the wrapped tower as open_clip would; a full lock (no unlocked groups) also locks the STN."""
        self.tower.lock(unlocked_groups=unlocked_groups, freeze_bn_stats=freeze_bn_stats)
        if not unlocked_groups:
            for p in self.stn.parameters():
                p.requires_grad = False

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if hasattr(self.tower, "set_grad_checkpointing"):
            self.tower.set_grad_checkpointing(enable)

    def no_weight_decay(self) -> set[str]:
        inner = self.tower.no_weight_decay() if hasattr(self.tower, "no_weight_decay") else set()
        return {"tower." + n for n in inner}
