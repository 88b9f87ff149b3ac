"""The geometry of each published model's own preprocessing (resize, crop, pad), as pure functions over PIL images.

An image tower takes a square; how a picture of another shape becomes that square is part of the model. A
model evaluated with another model's geometry sees crops or squashed shapes it was never trained on, so
each encoder backend reproduces its own library's pipeline:

=================  =========================================================================================
function           reproduces
=================  =========================================================================================
``clip_image``     transformers' ``CLIPImageProcessor`` (FashionCLIP 2.0, OpenAI CLIP): RGB with any alpha
                   composited on white, shortest edge to ``size["shortest_edge"]`` (long edge truncated),
                   centre crop to ``crop_size`` with offsets floored
``open_clip_eval`` ``open_clip.image_transform(..., is_train=False)`` from the model's ``preprocess_cfg``
                   (``hf-hub:`` Marqo models, ``openclip:`` tags, ``config:``): ``resize_mode`` "shortest"
                   (torchvision ``Resize`` + ``CenterCrop``, offsets rounded half to even), "longest" (fit the
                   long edge, pad with ``fill_color``) or "squash"; RGB conversion comes after the geometry
``squash``         the paper's plain resize in front of the STN: the STN learns its own crop and warp, so it
                   must see the whole garment
=================  =========================================================================================

All resampling is Pillow's: it is what open_clip's torchvision transforms run on PIL images and what
transformers' PIL backend (``CLIPImageProcessorPil``) runs, so those match to the bit. transformers 5's
default ``CLIPImageProcessor`` resamples tensors with torchvision's antialiased kernels, a port of Pillow's,
and differs from Pillow by at most one grey level on a few pixels (tests/test_preprocess.py measures it).
Pillow also keeps square pictures as they were: an image already at the tower's size is never resampled, and
a square image comes out of every pipeline with the same pixels as a squash when both use bicubic filtering
(``same_as_squash``), so the demo's square catalogue keeps its trained weights and indexes.

The ``*Geometry`` dataclasses hold one encoder's settings: calling one maps a PIL image to the RGB square, and
``description`` is a short stable string (``"open_clip-shortest-224-bicubic"``) that index manifests compare,
so an index is never served to an encoder that now preprocesses differently.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Union

import numpy as np
import torch
from PIL import Image, ImageOps

__all__ = [
    "ClipProcessorGeometry",
    "Geometry",
    "OpenClipGeometry",
    "PreprocessError",
    "SquashGeometry",
    "clip_image",
    "open_clip_eval",
    "resize_to_tensor",
    "squash",
    "to_tensor",
]

OPEN_CLIP_RESIZE_MODES = ("shortest", "longest", "squash")


class PreprocessError(ValueError):
    """A model's preprocessing settings that these pipelines cannot reproduce; the message says which and why."""


def _filter(name: str) -> Image.Resampling:
    try:
        return Image.Resampling[name.upper()]
    except KeyError:
        raise PreprocessError(f"unknown resampling filter {name!r}; use one of "
                              f"{[r.name.lower() for r in Image.Resampling]}") from None


def _resize(img: Image.Image, width: int, height: int, interpolation: str) -> Image.Image:
    """Pillow's resize, skipped when the size is already right (torchvision's ``resize`` skips it too)."""
    return img if img.size == (width, height) else img.resize((width, height), _filter(interpolation))


def _shortest_edge(width: int, height: int, edge: int) -> tuple[int, int]:
    """(w, h) with the short side at ``edge`` and the long side ``int(edge * long / short)``: the truncating
    rule of both torchvision's ``Resize(int)`` and transformers' ``get_resize_output_image_size``."""
    if width <= height:
        return edge, int(edge * height / width)
    return int(edge * width / height), edge


def _crop_or_pad(img: Image.Image, size: int, fill: int, offset: Callable[[int], int]) -> Image.Image:
    """The centre ``size`` square; a side shorter than ``size`` is first padded (``fill``), the extra pixel of an
    odd padding on the right/bottom, as torchvision's ``center_crop`` and transformers' default backend do (its
    PIL backend pads on the left; padding happens only when a processor resizes below its crop). ``offset``
    turns the surplus of a side into the crop's left/top offset (the libraries round differently)."""
    width, height = img.size
    if width < size or height < size:
        pad_w, pad_h = max(size - width, 0), max(size - height, 0)
        colour: Any = fill if len(img.getbands()) == 1 else (fill,) * len(img.getbands())
        img = ImageOps.expand(img, border=(pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2),
                              fill=colour)
        width, height = img.size
    if (width, height) == (size, size):
        return img
    left, top = offset(width - size), offset(height - size)
    return img.crop((left, top, left + size, top + size))


def _rgb_on_white(img: Image.Image) -> Image.Image:
    """transformers' ``convert_to_rgb``: transparency is composited on white, other modes converted."""
    if "A" in img.getbands() or img.info.get("transparency") is not None:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


# ----------------------------------------------------------------------------------------------- pipelines
def squash(img: Image.Image, size: int, interpolation: str = "bicubic") -> Image.Image:
    """RGB, resized to ``size`` x ``size`` whatever its aspect: nothing is cut off. The paper's plain resize in
    front of the STN, and what every encoder did before each followed its own model's pipeline."""
    return _resize(img.convert("RGB"), size, size, interpolation)


def open_clip_eval(img: Image.Image, size: int, *, resize_mode: str = "shortest", interpolation: str = "bicubic",
                   fill_color: int = 0) -> Image.Image:
    """open_clip's inference transform (``image_transform(size, is_train=False, ...)``) up to ``ToTensor``.

    "shortest": short side to ``size``, centre crop (offsets ``int(round(surplus / 2))``); "longest": long
    side to ``size`` (short side rounded, as ``ResizeKeepRatio``), padded with ``fill_color`` and centred;
    "squash": ``size`` x ``size``. open_clip resizes the picture in its own mode and converts to RGB last.
    """
    if resize_mode not in OPEN_CLIP_RESIZE_MODES:
        raise PreprocessError(f"open_clip resize_mode must be one of {OPEN_CLIP_RESIZE_MODES}, not {resize_mode!r}")
    if interpolation == "random":  # open_clip's eval transform treats "random" as bicubic
        interpolation = "bicubic"
    width, height = img.size
    if resize_mode == "squash":
        out = _resize(img, size, size, interpolation)
    elif resize_mode == "shortest":
        out = _crop_or_pad(_resize(img, *_shortest_edge(width, height, size), interpolation), size, 0,
                           lambda surplus: int(round(surplus / 2.0)))
    else:  # ResizeKeepRatio(size, longest=1) + CenterCropOrPad(size, fill=fill_color)
        ratio = max(height / size, width / size)
        resized = _resize(img, round(width / ratio), round(height / ratio), interpolation)
        out = _crop_or_pad(resized, size, fill_color, lambda surplus: int(round(surplus / 2.0)))
    return out.convert("RGB")


def clip_image(img: Image.Image, *, shortest_edge: int | None = None, resize_to: tuple[int, int] | None = None,
               crop: int | None = None, resample: str = "bicubic") -> Image.Image:
    """transformers' ``CLIPImageProcessor`` geometry (its PIL backend exactly; the default torchvision backend
    within one grey level): RGB on white, then ``shortest_edge`` (short side to it, long side truncated) or
    ``resize_to`` = (height, width), then a ``crop`` square with offsets ``surplus // 2``."""
    img = _rgb_on_white(img)
    if shortest_edge is not None:
        img = _resize(img, *_shortest_edge(*img.size, shortest_edge), resample)
    elif resize_to is not None:
        img = _resize(img, resize_to[1], resize_to[0], resample)
    return img if crop is None else _crop_or_pad(img, crop, 0, lambda surplus: surplus // 2)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """uint8 [3, H, W] from an RGB image."""
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)


def resize_to_tensor(img: Image.Image, size: int) -> torch.Tensor:
    """uint8 [3, size, size]: ``squash`` with bicubic filtering (the STN's input; the pre-issue-16 default)."""
    return to_tensor(squash(img, size))


# ----------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class SquashGeometry:
    """``squash`` at the tower's size: an encoder with an STN in front."""

    size: int
    interpolation: str = "bicubic"

    @property
    def description(self) -> str:
        return f"squash-{self.size}-{self.interpolation}"

    def __call__(self, img: Image.Image) -> Image.Image:
        return squash(img, self.size, self.interpolation)

    def same_as_squash(self, width: int, height: int) -> bool:
        """Whether an RGB ``width`` x ``height`` image comes out exactly as ``squash(img, size)`` (bicubic)."""
        return self.interpolation == "bicubic" or (width, height) == (self.size, self.size)


@dataclass(frozen=True)
class OpenClipGeometry:
    """``open_clip_eval`` with a model's ``preprocess_cfg`` (``model.visual.preprocess_cfg``)."""

    size: int
    resize_mode: str = "shortest"
    interpolation: str = "bicubic"
    fill_color: int = 0

    @classmethod
    def from_cfg(cls, preprocess_cfg: dict[str, Any], image_size: int | tuple[int, int]) -> "OpenClipGeometry":
        """The tower's ``image_size`` (``model.visual.image_size``: forced sizes included, square only) with the
        cfg's resize mode, filter and fill."""
        if isinstance(image_size, (tuple, list)) and image_size[0] != image_size[1]:
            raise PreprocessError(f"image tower expects non-square {tuple(image_size)} input; only square sizes are "
                             "supported")
        size = int(image_size[0] if isinstance(image_size, (tuple, list)) else image_size)
        interpolation = preprocess_cfg.get("interpolation") or "bicubic"
        geometry = cls(size, preprocess_cfg.get("resize_mode") or "shortest",
                       "bicubic" if interpolation == "random" else interpolation,
                       int(preprocess_cfg.get("fill_color") or 0))
        if geometry.resize_mode not in OPEN_CLIP_RESIZE_MODES or geometry.interpolation not in ("bicubic", "bilinear"):
            raise PreprocessError(f"open_clip preprocess_cfg {preprocess_cfg} has a resize_mode or interpolation "
                             f"open_clip does not know; use resize_mode in {OPEN_CLIP_RESIZE_MODES} and "
                             "interpolation 'bicubic' or 'bilinear'")
        return geometry

    @property
    def description(self) -> str:
        fill = f"-fill{self.fill_color}" if self.resize_mode == "longest" else ""
        return f"open_clip-{self.resize_mode}-{self.size}-{self.interpolation}{fill}"

    def __call__(self, img: Image.Image) -> Image.Image:
        return open_clip_eval(img, self.size, resize_mode=self.resize_mode, interpolation=self.interpolation,
                              fill_color=self.fill_color)

    def same_as_squash(self, width: int, height: int) -> bool:
        """Whether an RGB ``width`` x ``height`` image comes out exactly as ``squash(img, size)`` (bicubic)."""
        untouched = (width, height) == (self.size, self.size)
        return (self.resize_mode == "squash" or width == height) and (self.interpolation == "bicubic" or untouched)


def _size_field(size: Any, key: str) -> int | None:
    """A key of a transformers size: a plain dict (older versions, JSON) or a ``SizeDict``."""
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return None if value is None else int(value)


@dataclass(frozen=True)
class ClipProcessorGeometry:
    """``clip_image`` with a transformers ``CLIPImageProcessor``'s settings, at the tower's size."""

    size: int
    shortest_edge: int | None = None
    resize_to: tuple[int, int] | None = None
    crop: bool = True
    resample: str = "bicubic"

    @classmethod
    def from_processor(cls, processor: Any, size: int) -> "ClipProcessorGeometry":
        """Read ``do_resize``/``size``/``do_center_crop``/``crop_size``/``resample`` from ``processor``.

        When the tower's ``size`` differs from the processor's output (an ``image_size`` override), the
        processor's proportions are kept: its resize scales by ``size / crop``. The output must be square.
        """
        crop = bool(getattr(processor, "do_center_crop", False))
        crop_hw = (_size_field(processor.crop_size, "height"), _size_field(processor.crop_size, "width"))
        resize = processor.size if getattr(processor, "do_resize", True) else None
        edge = _size_field(resize, "shortest_edge") if resize is not None else None
        hw = (_size_field(resize, "height"), _size_field(resize, "width")) if resize is not None else (None, None)
        if resize is not None and (_size_field(resize, "longest_edge") or (edge is None and None in hw)):
            raise PreprocessError(f"image processor size {resize} is not supported; use shortest_edge or height/width")
        if crop and crop_hw[0] != crop_hw[1]:
            raise PreprocessError(f"image processor crops to {crop_hw}; the image tower takes a square")
        if not crop and (edge is not None or hw[0] != hw[1]):
            raise PreprocessError("an image processor without do_center_crop must resize to a square height/width")
        ref = crop_hw[0] if crop else (hw[0] or size)

        def scale(n: int) -> int:
            return n if ref == size else round(n * size / ref)

        resample = getattr(processor, "resample", None)
        try:  # both transformers backends resample bilinearly when it is unset
            name = "bilinear" if resample is None else Image.Resampling(int(resample)).name.lower()
        except (TypeError, ValueError):  # a torchvision InterpolationMode
            name = str(getattr(resample, "value", resample)).lower()
        _filter(name)
        return cls(size, scale(edge) if edge is not None else None,
                   (scale(hw[0]), scale(hw[1])) if edge is None and hw[0] is not None else None, crop, name)

    @property
    def description(self) -> str:
        if self.shortest_edge is not None:
            resize = f"-shortest{self.shortest_edge}"
        else:
            resize = f"-{self.resize_to[0]}x{self.resize_to[1]}" if self.resize_to else ""
        crop = f"-crop{self.size}" if self.crop else ""
        return f"clip_processor{resize}{crop}-{self.resample}"

    def __call__(self, img: Image.Image) -> Image.Image:
        out = clip_image(img, shortest_edge=self.shortest_edge, resize_to=self.resize_to,
                         crop=self.size if self.crop else None, resample=self.resample)
        if out.size != (self.size, self.size):
            raise PreprocessError(f"the image processor made a {out.size} image; the image tower takes {self.size} px")
        return out

    def same_as_squash(self, width: int, height: int) -> bool:
        """Whether an RGB ``width`` x ``height`` image comes out exactly as ``squash(img, size)`` (bicubic)."""
        if (width, height) == (self.size, self.size) and self.shortest_edge in (None, self.size) \
                and self.resize_to in (None, (self.size, self.size)):
            return True
        squashed = self.resize_to == (self.size, self.size) or (width == height and self.shortest_edge == self.size)
        return squashed and self.resample == "bicubic"


Geometry = Union[SquashGeometry, OpenClipGeometry, ClipProcessorGeometry]
