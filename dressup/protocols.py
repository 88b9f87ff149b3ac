"""The seams between modules, in one place: what an encoder, a generator and an arm promise each other.

Every module that takes one of these from another module types it with the protocol here, not with
``object``/``Any`` and ``hasattr``. They are ``typing.Protocol``s (structural), so a tiny model in a test, a
FashionCLIP wrapper and the demo's own towers all satisfy them without inheriting from anything.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # only for the annotations: importing torch or PIL here would make this module heavy
    import torch
    from PIL import Image

    from dressup.records import Preference, Shown

GRID = 4  # images in every grid a participant sees (2 x 2), whichever arm made them


@runtime_checkable
class Encoder(Protocol):
    """An image + text model with one L2-normalised embedding space (``dressup.encoders.Encoder`` and its
    backends). Generators use it to score candidates; indexes to embed a catalogue."""

    name: str
    spec: str  # where the weights came from (see dressup.config.EncoderSpec)
    embed_dim: int

    @property
    def device(self) -> "torch.device": ...

    @property
    def preprocessing(self) -> str:
        """How an image becomes pixels (resize rule, size, mean, std): part of every index's cache key."""

    @property
    def geometry(self) -> object:
        """The image geometry (squash or letterbox) an index's photos are cut to."""

    def fingerprint(self) -> str:
        """sha256 of the weights: an index built with other weights is another index."""

    def preprocess(self, image: "Image.Image") -> "torch.Tensor": ...

    def encode_images(self, batch: "torch.Tensor") -> "torch.Tensor": ...

    def encode_texts(self, texts: list[str]) -> "torch.Tensor": ...


@runtime_checkable
class Generator(Protocol):
    """A preference in, four images out (``dressup.generators.BaseGenerator`` implements it for every kind)."""

    kind: str
    model_id: str

    def prepare(self, pref: "Preference", seed: int) -> None:
        """Start drawing for ``pref`` now, for a later ``generate`` with the same words and seed."""

    def generate(self, pref: "Preference", seed: int) -> list["Shown"]:
        """Exactly ``GRID`` images, deterministic for a given seed."""


@runtime_checkable
class Arm(Protocol):
    """One arm of the study as the session sees it: retrieval or generative, it shows ``GRID`` images."""

    name: str

    def recommend(self, pref: "Preference", seed: int = 0) -> list["Shown"]:
        """Exactly ``GRID`` images for one preference."""
