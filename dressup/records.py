"""Records that cross module boundaries.

Every module of the library agrees on these few dataclasses, so data flows one way
(catalogue -> encoder -> index -> arm -> session) without modules knowing each other's internals.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image


@dataclass(frozen=True)
class Item:
    """One catalogue garment.

    ``item_id`` is the DeepFashion image name (e.g. ``img/Striped_Dress/img_00000001.jpg``): it is unique,
    stable across rebuilds, and is what the study store records as "shown".
    ``attributes`` holds the names of the attributes whose label is 1, in the order of
    ``list_attr_cloth.txt``; ``attribute_types`` maps each of those names to its type name
    (e.g. ``{"red": "colour", "striped": "texture"}``).
    """

    item_id: str
    image_path: Path  # absolute path on disk (may not exist: a catalogue may be partial)
    category: str  # e.g. "dress"
    category_type: int  # DeepFashion: 1 upper-body, 2 lower-body, 3 full-body
    attributes: tuple[str, ...]
    attribute_types: dict[str, str]
    split: str  # "train" | "val" | "test" (or "query"/"gallery" for In-shop partitions)
    caption: str
    garment_id: str = ""  # In-shop item id (several images of one garment); "" when unknown

    def attribute_of(self, kind: str) -> str | None:
        """The first attribute of one type (e.g. "colour"), or None."""
        for name in self.attributes:
            if self.attribute_types.get(name) == kind:
                return name
        return None


@dataclass
class Preference:
    """What a participant gives: free text, 2-4 photos, optional constraints.

    ``images`` are already-decoded RGB images (see ``dressup.images.load_image``), so an arm never
    sees a raw upload. ``gender`` is "menswear", "womenswear" or None (any). ``avoid_colours`` are
    colour words as the participant typed them; arms ground them to catalogue colours.
    """

    text: str = ""
    images: list[Image.Image] = field(default_factory=list)
    gender: str | None = None
    avoid_colours: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Shown:
    """One image an arm returns for a grid position.

    ``item_id`` is a catalogue item id for retrieval arms, or a stable generated-image id
    (hash of model, prompt, seed and settings) for generative arms. ``image`` is the RGB picture to show;
    ``caption`` and ``score`` are for researchers only and must never reach a participant.
    """

    item_id: str
    image: Image.Image
    caption: str = ""
    score: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
