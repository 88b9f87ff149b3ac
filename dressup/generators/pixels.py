"""Images as tensors and back: what the DCGAN and the diffusion model (and ``dressup.judge``) share about pixels.

Training sets are held as uint8 ``[N, C, S, S]`` tensors (``images_to_tensor``: a quarter of float32's memory);
models work in [-1, 1] (``as_unit``) and hand back uint8 pixels (``to_pixels``), the exact inverse.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm


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


def as_unit(pixels: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats from uint8 (0-255) or float (0-1) pixels."""
    x = pixels.float()
    return x / 127.5 - 1.0 if pixels.dtype == torch.uint8 else x * 2.0 - 1.0


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, S, S] on the CPU from generator outputs in [-1, 1] (the inverse of ``as_unit``)."""
    return ((x.detach() + 1) * 127.5).clamp(0, 255).round().to(torch.uint8).cpu()

