"""What a demo garment is, and how one is picked: the attribute vocabulary of the demo catalogue, its categories,
and the random draw of a garment's attributes and of the pose of one photo of it.

Attributes are drawn independently and uniformly (colour x pattern x category), so nearly every combination
occurs in 4000 items. Every draw takes its ``numpy`` generator from the caller (``dressup.democatalog`` seeds one
per item), so the same seed gives the same garment whatever the order or process that draws it. How a garment
and pose become pixels is ``dressup.demodraw``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from dressup.colours import CATALOGUE_COLOURS, delta_e_2000, rgb_to_lab

PATTERNS = ("solid", "striped", "dotted", "checked", "floral")
SLEEVES = ("long_sleeve", "short_sleeve", "sleeveless")
NECKLINES = ("crew_neckline", "v_neckline", "collar")
FABRICS = ("cotton", "denim", "knit", "leather")
GENDERS = ("menswear", "womenswear")

# Type ids as written to Anno/list_attr_type.txt; the order is the caption order after colour.
ATTRIBUTE_TYPES: dict[str, tuple[str, ...]] = {
    "colour": tuple(CATALOGUE_COLOURS),
    "texture": PATTERNS,
    "sleeve": SLEEVES,
    "neckline": NECKLINES,
    "fabric": FABRICS,
    "gender": GENDERS,
}


@dataclass(frozen=True)
class Category:
    """A demo category: DeepFashion-style name, category_type, and the attribute values it can take."""

    name: str  # as in list_category_cloth.txt; the reader shows "Long_Sleeve_Top" as "long sleeve top"
    category_type: int  # 1 upper body, 2 lower body, 3 full body (DeepFashion puts coats and dresses in 3)
    sleeves: tuple[str, ...] = ()
    necklines: tuple[str, ...] = ()
    genders: tuple[str, ...] = GENDERS


CATEGORIES: tuple[Category, ...] = (
    Category("Tee", 1, ("short_sleeve",), NECKLINES),
    Category("Tank_Top", 1, ("sleeveless",), ("crew_neckline", "v_neckline")),
    Category("Long_Sleeve_Top", 1, ("long_sleeve",), NECKLINES),
    Category("Hoodie", 1, ("long_sleeve",)),
    Category("Jacket", 1, ("long_sleeve",)),
    Category("Coat", 3, ("long_sleeve",)),
    Category("Dress", 3, SLEEVES, NECKLINES, ("womenswear",)),
    Category("Skirt", 2, genders=("womenswear",)),
    Category("Trousers", 2),
    Category("Shorts", 2),
)
_CATEGORY = {c.name: c for c in CATEGORIES}

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "off-white": (242, 240, 235),
    "light grey": (226, 227, 229),
    "beige": (236, 226, 208),
}


@dataclass(frozen=True)
class Garment:
    """What a garment is (its attributes) and the small details that make it this garment and not another."""

    category: str
    colour: str
    pattern: str
    fabric: str
    gender: str
    sleeve: str | None = None
    neckline: str | None = None
    rgb: tuple[int, int, int] = (0, 0, 0)  # the colour with this garment's lightness jitter
    second_rgb: tuple[int, int, int] = (0, 0, 0)  # the pattern's colour
    width: float = 1.0  # silhouette proportions
    length: float = 1.0
    pattern_size: float = 0.08  # period of the pattern, as a share of the canvas
    pattern_phase: tuple[float, float] = (0.0, 0.0)
    vertical_stripes: bool = False
    detail_seed: int = 0  # texture offsets, folds, flower placement

    @property
    def attributes(self) -> tuple[str, ...]:
        """Present attribute names in list_attr_cloth.txt order."""
        present = {self.colour, self.pattern, self.fabric, self.gender, self.sleeve, self.neckline}
        return tuple(a for values in ATTRIBUTE_TYPES.values() for a in values if a in present)


@dataclass(frozen=True)
class Pose:
    """How one photo of a garment is taken: placement, scale, rotation and background."""

    dx: float = 0.0  # shift as a share of the image side, +-0.15
    dy: float = 0.0
    scale: float = 0.85  # 0.6 - 1.0
    angle: float = 0.0  # degrees, +-20
    background: tuple[int, int, int] = BACKGROUNDS["off-white"]
    background_bottom: tuple[int, int, int] = BACKGROUNDS["off-white"]  # differs for a soft gradient
    light: float = 0.0  # direction of the light, -1 (from the left) to 1


def _jitter_lightness(rgb: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    """Move a colour a little towards white (t > 0) or black (t < 0); its name does not change."""
    c = np.asarray(rgb, dtype=np.float64)
    c = c + t * (255 - c) if t > 0 else c * (1 + t)
    return tuple(int(round(v)) for v in np.clip(c, 0, 255))  # type: ignore[return-value]


@lru_cache(maxsize=1)
def _colour_contrast() -> dict[str, list[str]]:
    """For each catalogue colour, the others that stay visible on it as a pattern (CIEDE2000 >= 25)."""
    names = list(CATALOGUE_COLOURS)
    labs = rgb_to_lab(np.array([CATALOGUE_COLOURS[n] for n in names], dtype=np.float64))
    distance = delta_e_2000(labs[:, None], labs[None])
    return {a: [b for j, b in enumerate(names) if distance[i, j] >= 25] for i, a in enumerate(names)}


def sample_garment(rng: np.random.Generator) -> Garment:
    """Draw a garment's attributes uniformly (within what its category allows) and its details."""
    category = CATEGORIES[rng.integers(len(CATEGORIES))]
    colour = list(CATALOGUE_COLOURS)[rng.integers(len(CATALOGUE_COLOURS))]
    pattern = PATTERNS[rng.integers(len(PATTERNS))]
    fabric = FABRICS[rng.integers(len(FABRICS))]
    gender = category.genders[rng.integers(len(category.genders))]
    sleeve = category.sleeves[rng.integers(len(category.sleeves))] if category.sleeves else None
    neckline = category.necklines[rng.integers(len(category.necklines))] if category.necklines else None
    partners = _colour_contrast()[colour]
    second = partners[rng.integers(len(partners))]
    return Garment(
        category=category.name,
        colour=colour,
        pattern=pattern,
        fabric=fabric,
        gender=gender,
        sleeve=sleeve,
        neckline=neckline,
        rgb=_jitter_lightness(CATALOGUE_COLOURS[colour], float(rng.uniform(-0.08, 0.08))),
        second_rgb=_jitter_lightness(CATALOGUE_COLOURS[second], float(rng.uniform(-0.05, 0.05))),
        width=float(rng.uniform(0.94, 1.06)),
        length=float(rng.uniform(0.96, 1.04)),
        pattern_size=float(rng.uniform(0.065, 0.10)),
        pattern_phase=(float(rng.uniform(0, 1)), float(rng.uniform(0, 1))),
        vertical_stripes=bool(rng.integers(2)),
        detail_seed=int(rng.integers(2**31)),
    )


def sample_pose(rng: np.random.Generator, garment: Garment) -> Pose:
    """A random product-shot pose; white garments are never shot on off-white (as photographers do)."""
    choices = [n for n in BACKGROUNDS if not (garment.colour == "white" and n == "off-white")]
    base = np.asarray(BACKGROUNDS[choices[rng.integers(len(choices))]], dtype=np.float64)
    top = np.clip(base + rng.uniform(-4, 4, size=3), 0, 255)
    bottom = top * rng.uniform(0.92, 0.97) if rng.random() < 0.4 else top
    return Pose(
        dx=float(rng.uniform(-0.15, 0.15)),
        dy=float(rng.uniform(-0.15, 0.15)),
        scale=float(rng.uniform(0.6, 1.0)),
        angle=float(rng.uniform(-20, 20)),
        background=tuple(int(round(v)) for v in top),  # type: ignore[arg-type]
        background_bottom=tuple(int(round(v)) for v in bottom),  # type: ignore[arg-type]
        light=float(rng.uniform(-1, 1)),
    )
