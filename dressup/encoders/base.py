"""The ``Encoder`` base class: everything an image+text model does the same way whatever library built it.

Preprocessing (the published model's own geometry, or a plain squash in front of an STN), normalisation,
batched L2-normalised image and text embeddings, ``features`` with gradients for training, the locked text
trunk, the STN, the weights' ``fingerprint`` and ``save`` to a ``local:`` folder. A backend
(``dressup.encoders.open_clip_backend``, ``dressup.encoders.transformers_backend``) fills in the hooks that
touch its library's model; ``dressup.encoders.load_encoder`` builds one from a spec.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from dressup.device import resolve_device
from dressup.encoders.checkpoints import FORMAT_VERSION, state_fingerprint, write_folder
from dressup.preprocess import Geometry, SquashGeometry, to_tensor
from dressup.stn import STNTower


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Random initialisation inside is a function of ``seed`` and leaves the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class Encoder:
    """An image+text model with a shared, L2-normalised embedding space.

    Backends implement ``_image_forward``, ``_tokenize``, ``_text_trunk``, ``_text_head``,
    ``_text_trunk_modules`` and the image-tower surgery; everything else is shared. ``lock_text`` freezes
    the text transformer (the part ``_text_trunk`` runs): its outputs for a caption never change, so
    training computes them once (``text_states``) and only the text head (a projection, or nothing) runs
    per step, as open_clip's ``lock_text_tower`` leaves an HF tower's projection trainable.
    """

    backend: str = ""

    def __init__(self, name: str, spec: str, module: nn.Module, *, image_size: int, mean: Sequence[float],
                 std: Sequence[float], embed_dim: int, options: dict[str, Any] | None = None,
                 geometry: Geometry | None = None):
        self.name = name
        self.spec = spec
        self.module = module
        self.image_size = int(image_size)
        self.embed_dim = int(embed_dim)
        self.options = dict(options or {})
        self.stn = False
        self.lock_text = False
        self._geometry = geometry or SquashGeometry(self.image_size)
        self._mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, spec={self.spec!r}, embed_dim={self.embed_dim}, "
                f"image_size={self.image_size}, stn={self.stn}, lock_text={self.lock_text}, device={self.device})")

    # --- where the model lives
    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self._mean.flatten().tolist())

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self._std.flatten().tolist())

    def to(self, device: str | torch.device) -> "Encoder":
        """Move to ``device``, convolution weights in channels-last order (see ``_image_features``)."""
        self.module.to(torch.device(resolve_device(str(device))), memory_format=torch.channels_last)
        return self

    def train(self, mode: bool = True) -> "Encoder":
        """Set train/eval mode; a locked text trunk always stays in eval mode (no dropout), so the caption
        embeddings cached before training are the ones the trunk would compute."""
        self.module.train(mode)
        if self.lock_text:
            for m in self._text_trunk_modules():
                m.eval()
        return self

    # --- images
    @property
    def geometry(self) -> Geometry:
        """How ``resize`` makes the tower's square: the published model's own pipeline, or the paper's plain squash
        with an STN in front (it learns its own crop and warp, so it must see the whole garment)."""
        return SquashGeometry(self.image_size) if self.stn else self._geometry

    @property
    def preprocessing(self) -> str:
        """``geometry``'s stable name (e.g. "open_clip-shortest-224-bicubic"); index manifests compare it."""
        return self.geometry.description

    def resize(self, img: Image.Image) -> torch.Tensor:
        """uint8 [3, S, S]: RGB, resized (and cropped or padded) by ``geometry``; the input training caches."""
        return to_tensor(self.geometry(img))

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """float32 normalised pixels from uint8 [..., 3, S, S] (or float in [0, 1])."""
        x = pixels.float()
        if pixels.dtype == torch.uint8:
            x = x / 255.0
        return (x - self._mean.to(x.device)) / self._std.to(x.device)

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        """float32 [3, S, S]: ``resize``, then normalised with the model's mean/std."""
        return self.normalize(self.resize(img))

    def encode_images(self, batch: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """L2-normalised float32 [B, D] on the CPU, from preprocessed [B, 3, S, S] (uint8 is normalised here)."""
        outs = []
        with self._inference():
            for i in range(0, len(batch), batch_size):
                x = batch[i:i + batch_size].to(self.device)
                if x.dtype == torch.uint8:
                    x = self.normalize(x)
                outs.append(F.normalize(self._image_features(x).float(), dim=-1).cpu())
        return torch.cat(outs) if outs else torch.zeros(0, self.embed_dim)

    def encode_pil(self, images: Sequence[Image.Image], batch_size: int = 256, progress: bool = False) -> torch.Tensor:
        """L2-normalised [N, D] for PIL images, preprocessed and encoded batch by batch."""
        outs = []
        for i in tqdm(range(0, len(images), batch_size), desc=f"encoding images ({self.name})", disable=not progress):
            outs.append(self.encode_images(torch.stack([self.resize(im) for im in images[i:i + batch_size]])))
        return torch.cat(outs) if outs else torch.zeros(0, self.embed_dim)

    # --- texts
    def text_states(self, texts: Sequence[str], batch_size: int = 256, progress: bool = False) -> torch.Tensor:
        """The text trunk's outputs (no grad, eval mode): what ``lock_text`` training caches per caption."""
        outs = []
        with self._inference():
            for i in tqdm(range(0, len(texts), batch_size), desc="caption embeddings", disable=not progress):
                outs.append(self._text_trunk(self._tokenize(list(texts[i:i + batch_size]))).float())
        return torch.cat(outs) if outs else torch.zeros(0, self.embed_dim)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """L2-normalised float32 [B, D] on the CPU."""
        if isinstance(texts, str):
            raise TypeError("encode_texts takes a list of strings; wrap a single text in a list")
        outs = []
        with self._inference():
            for i in range(0, len(texts), batch_size):
                z = self._text_head(self._text_trunk(self._tokenize(list(texts[i:i + batch_size]))))
                outs.append(F.normalize(z.float(), dim=-1).cpu())
        return torch.cat(outs) if outs else torch.zeros(0, self.embed_dim)

    # --- training
    def features(self, images: torch.Tensor, texts: Sequence[str] | None = None, *,
                 text_states: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(image_features, text_features, logit_scale) with gradients, as open_clip's ``ClipLoss`` takes them.

        Features are L2-normalised and ``logit_scale`` is already exponentiated. Pass either ``texts`` or,
        for a locked text trunk, ``text_states`` computed once by ``text_states``.
        """
        if (texts is None) == (text_states is None):
            raise TypeError("features() needs exactly one of texts= or text_states=")
        image_features = F.normalize(self._image_features(images), dim=-1)
        if text_states is None:
            text_states = self._text_trunk(self._tokenize(list(texts)))
        text_features = F.normalize(self._text_head(text_states.to(self.device)), dim=-1)
        return image_features, text_features, self._logit_scale().exp()

    def set_lock_text(self, lock: bool) -> None:
        """Freeze (or unfreeze) the text transformer; see the class docstring for what stays trainable."""
        for p in self._text_trunk_params():
            p.requires_grad = not lock
        self.lock_text = lock

    def add_stn(self) -> None:
        """Put an identity-initialised STN in front of the image tower (idempotent)."""
        if self.stn:
            return
        with seeded(int(self.options.get("seed", 0)) + 1):
            self._wrap_image_tower(lambda tower: STNTower(tower))
        self.to(self.device)
        self.stn = True

    # --- identity and persistence
    def fingerprint(self) -> str:
        """sha256 over every tensor of the state dict: equal fingerprints mean equal embeddings."""
        return state_fingerprint(self.module.state_dict())

    def save(self, directory: str | os.PathLike) -> Path:
        """Write a ``local:`` folder (encoder.json + model.safetensors + backend files) and return it."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT_VERSION,
            "backend": self.backend,
            "name": self.name,
            "base_spec": self.options.get("base_spec", self.spec),
            "stn": self.stn,
            "lock_text": self.lock_text,
            "image_size": self.image_size,
            "embed_dim": self.embed_dim,
            "mean": list(self.mean),
            "std": list(self.std),
            "options": {k: v for k, v in self.options.items() if k not in ("cache_dir", "base_spec")},
        }
        meta.update(self._save_backend(d))
        return write_folder(d, meta, self.module.state_dict())
        return d

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The image tower on a channels-last batch. oneDNN's convolutions (and cuDNN's under mixed precision)
        are fastest in that order; measured on the demo's CNN tower on 2 CPU cores, a training step ran 1.6x
        faster (``python -m bench encoding``). Only the memory layout changes, not the values."""
        if pixels.dim() == 4:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        return self._image_forward(pixels)

    # --- backend hooks
    def _image_forward(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _tokenize(self, texts: list[str]) -> Any:
        raise NotImplementedError

    def _text_trunk(self, tokens: Any) -> torch.Tensor:
        raise NotImplementedError

    def _text_head(self, states: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _text_trunk_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def _text_trunk_params(self) -> list[nn.Parameter]:
        return [p for m in self._text_trunk_modules() for p in m.parameters()]

    def _logit_scale(self) -> torch.Tensor:
        return self.module.logit_scale

    def _wrap_image_tower(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        raise NotImplementedError

    def _replace_image_tower(self, timm_name: str, pretrained: bool) -> None:
        raise NotImplementedError

    def _save_backend(self, d: Path) -> dict[str, Any]:
        raise NotImplementedError

    @contextmanager
    def _inference(self) -> Iterator[None]:
        was_training = self.module.training
        self.module.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was_training)
