"""The demo profile's synthetic catalogue: garments drawn with PIL, written in DeepFashion's format.

No garment photographs can be downloaded on the demo's machine, yet the demo must run the paper's code path
(catalogue reader, training, index, arms). So this module draws a catalogue whose annotations are true by
construction: every item's colour, pattern, sleeve, neckline, fabric and gender is what the picture shows,
and the folder it writes is read by ``dressup.catalog.load_catalog`` exactly like DeepFashion.

The pictures imitate product shots so that a participant's phone photo of a garment can land near them: one
garment, centred-ish, on a plain light background (off-white, light grey or beige, sometimes a soft gradient),
with soft shading, fabric texture and a drop shadow. Position (+-15%), scale (0.6-1.0) and rotation (+-20 deg)
vary so a Spatial Transformer has something to undo. Everything is drawn at ``SUPERSAMPLE`` times the output
size and reduced, which antialiases edges and fine patterns.

Attributes are drawn independently and uniformly (colour x pattern x category), so nearly every combination
occurs in 4000 items, and every random choice comes from ``numpy.random.default_rng([seed, stream, index])``:
the same seed gives the same bytes, whatever the order or process that draws an item.
"""
from __future__ import annotations

import json
import math
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from dressup.catalog import ATTR_CLOTH, ATTR_IMG, ATTR_TYPE, CATEGORY_CLOTH, CATEGORY_IMG, PARTITION
from dressup.colours import CATALOGUE_COLOURS, delta_e_2000, rgb_to_lab

DRAW_VERSION = 1  # bump when drawing changes, so cached demo catalogues are rebuilt
SUPERSAMPLE = 3
JPEG_QUALITY = 92
FRAME = 0.8  # the garment's longer side as a share of the image at scale 1.0
STAMP = "demo_catalogue.json"

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


# ---------------------------------------------------------------------------------------------- silhouettes
# Shapes are drawn in a unit square (x right, y down). Each function returns the silhouette polygons, "inner"
# polygons (the inside of the garment seen through a neckline or hood, drawn darker), seam/edge polylines,
# and buttons (centre points).


@dataclass
class _Shape:
    body: list[list[tuple[float, float]]] = field(default_factory=list)
    inner: list[list[tuple[float, float]]] = field(default_factory=list)
    flaps: list[list[tuple[float, float]]] = field(default_factory=list)  # collars/lapels: garment colour, outlined
    lines: list[list[tuple[float, float]]] = field(default_factory=list)
    buttons: list[tuple[float, float]] = field(default_factory=list)


def _mirror(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(1 - x, y) for x, y in points]


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 12) -> list[tuple[float, float]]:
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in np.linspace(math.radians(a0), math.radians(a1), n)]


def _top(shape: _Shape, g: Garment, top: float, hem: float, shoulder: float, hem_half: float, sleeve_to: float,
         boxy: bool = False) -> tuple[float, float]:
    """Torso and sleeves of an upper-body garment; returns (neck half-width, armpit y)."""
    w = g.width
    men = g.gender == "menswear" or boxy
    sw = (shoulder + (0.025 if men else 0)) * w
    hw = hem_half * w
    ww = hw if men else hw - 0.045 * w
    nw = 0.085 * w
    drop = 0.035
    armpit = top + 0.2
    waist = (armpit + hem) / 2
    sleeveless = g.sleeve == "sleeveless"
    if sleeveless:  # a strap, then the armhole curving out to the armpit
        left = [(0.5 - nw, top), (0.5 - nw - 0.045, top), (0.5 - nw - 0.055, top + 0.06), (0.5 - sw + 0.05, armpit - 0.05)]
    else:
        left = [(0.5 - nw, top), (0.5 - sw, top + drop)]
    left += [(0.5 - sw + 0.012, armpit), (0.5 - ww, waist), (0.5 - hw, hem)]
    shape.body.append(left + _mirror(left)[::-1])
    shape.lines.append([(0.5 - hw, hem - 0.035), (0.5 + hw, hem - 0.035)])
    if g.sleeve in ("short_sleeve", "long_sleeve"):
        if g.sleeve == "short_sleeve":
            sleeve = [(0.5 - sw, top + drop), (0.5 - sw - 0.13, top + drop + 0.13), (0.5 - sw - 0.06, top + drop + 0.21),
                      (0.5 - sw + 0.012, armpit)]
            cuff = [sleeve[1], sleeve[2]]
        else:
            sleeve = [(0.5 - sw, top + drop), (0.5 - sw - 0.15, sleeve_to), (0.5 - sw - 0.05, sleeve_to + 0.03),
                      (0.5 - sw + 0.012, armpit)]
            cuff = [(0.5 - sw - 0.135, sleeve_to - 0.04), (0.5 - sw - 0.045, sleeve_to - 0.01)]
        for part, edge in ((sleeve, cuff), (_mirror(sleeve), _mirror(cuff))):
            shape.body.append(part)
            shape.lines.append([part[0], part[3]])
            shape.lines.append(edge)
    return nw, armpit


def _neckline(shape: _Shape, g: Garment, top: float, nw: float) -> None:
    if g.neckline == "v_neckline":
        shape.inner.append([(0.5 - nw, top), (0.5 + nw, top), (0.5, top + 0.16)])
    elif g.neckline == "collar":
        shape.inner.append(_arc(0.5, top, nw, 0.035, 0, 180))
        flap = [(0.5 - nw - 0.02, top - 0.008), (0.5 - 0.004, top + 0.055), (0.5 - nw + 0.025, top + 0.095)]
        shape.flaps += [flap, _mirror(flap)]
        shape.lines.append([(0.5, top + 0.055), (0.5, top + 0.22)])
        shape.buttons += [(0.5, top + 0.11), (0.5, top + 0.18)]
    else:  # crew, and the scoop of a tank top
        shape.inner.append(_arc(0.5, top, nw, 0.06, 0, 180))


def _tops(g: Garment) -> _Shape:
    s = _Shape()
    top, hem = 0.12, 0.12 + 0.76 * g.length
    nw, _ = _top(s, g, top, hem, 0.2, 0.19, hem - 0.05)
    _neckline(s, g, top, nw)
    return s


def _hoodie(g: Garment) -> _Shape:
    s, w = _Shape(), g.width
    top, hem = 0.17, 0.17 + 0.72 * g.length
    s.body.append(_arc(0.5, top + 0.02, 0.14 * w, 0.16, 180, 360, 14))  # hood, behind the torso
    _top(s, g, top, hem, 0.21, 0.2, hem - 0.04, boxy=True)
    s.inner.append(_arc(0.5, top, 0.085 * w, 0.1, 180, 360, 12) + _arc(0.5, top, 0.085 * w, 0.03, 0, 180, 8))
    s.lines += [[(0.47, top + 0.03), (0.465, top + 0.15)], [(0.53, top + 0.03), (0.535, top + 0.15)]]  # drawstrings
    p = 0.12 * w
    s.lines.append([(0.5 - p, hem - 0.06), (0.5 - p + 0.03, hem - 0.2), (0.5 + p - 0.03, hem - 0.2), (0.5 + p, hem - 0.06)])
    return s


def _outerwear(g: Garment) -> _Shape:
    """Jackets and coats: open front with lapels; a coat is longer, wider at the hem, buttoned and belted."""
    s, w = _Shape(), g.width
    coat = g.category == "Coat"
    top, hem = (0.06, 0.06 + 0.9 * g.length) if coat else (0.12, 0.12 + 0.74 * g.length)
    nw, armpit = _top(s, g, top, hem, 0.21, 0.24 if coat else 0.2, 0.7 if coat else hem - 0.05, boxy=True)
    s.inner.append([(0.5 - nw, top), (0.5 + nw, top), (0.5, top + 0.2)])
    lapel = [(0.5 - nw - 0.01, top - 0.005), (0.5 - 0.012, top + 0.22), (0.5 - nw - 0.07, top + 0.13)]
    s.flaps += [lapel, _mirror(lapel)]
    s.lines.append([(0.5, top + 0.2), (0.5, hem)])
    if coat:
        s.buttons += [(0.5 + dx, y) for y in (top + 0.3, top + 0.42, top + 0.54) for dx in (-0.05, 0.05)]
        s.lines.append([(0.5 - 0.2 * w, armpit + 0.1), (0.5 + 0.2 * w, armpit + 0.1)])  # belt
    else:
        pocket = [(0.5 - 0.15 * w, hem - 0.15), (0.5 - 0.08 * w, hem - 0.18)]
        s.lines += [pocket, _mirror(pocket)]
    return s


def _dress(g: Garment) -> _Shape:
    s, w = _Shape(), g.width
    top, waist, hem = 0.07, 0.38, 0.07 + 0.88 * g.length
    sw, ww, hw, nw = 0.17 * w, 0.12 * w, 0.3 * w, 0.08 * w
    if g.sleeve == "sleeveless":
        left = [(0.5 - nw, top), (0.5 - nw - 0.04, top), (0.5 - nw - 0.05, top + 0.06), (0.5 - sw + 0.04, top + 0.13)]
    else:
        left = [(0.5 - nw, top), (0.5 - sw, top + 0.03)]
    left += [(0.5 - sw + 0.01, top + 0.17), (0.5 - ww, waist), (0.5 - hw, hem)]
    s.body.append(left + _mirror(left)[::-1])
    s.lines.append([(0.5 - ww, waist), (0.5 + ww, waist)])
    shoulder, armpit = (0.5 - sw, top + 0.03), (0.5 - sw + 0.01, top + 0.17)
    ends = {"short_sleeve": [(0.5 - sw - 0.1, top + 0.14), (0.5 - sw - 0.04, top + 0.2)],
            "long_sleeve": [(0.5 - sw - 0.13, top + 0.55), (0.5 - sw - 0.05, top + 0.57)]}
    if g.sleeve in ends:
        sleeve = [shoulder, *ends[g.sleeve], armpit]
        s.body += [sleeve, _mirror(sleeve)]
        s.lines += [[shoulder, armpit], _mirror([shoulder, armpit])]
    _neckline(s, g, top, nw)
    return s


def _skirt(g: Garment) -> _Shape:
    s, w = _Shape(), g.width
    top, hem = 0.2, 0.2 + 0.6 * g.length
    ww, hw = 0.17 * w, 0.31 * w
    s.body.append([(0.5 - ww, top), (0.5 + ww, top), (0.5 + hw, hem)] + _arc(0.5, hem, hw, 0.03, 0, 180, 8)[1:-1]
                  + [(0.5 - hw, hem)])
    s.lines.append([(0.5 - ww, top + 0.06), (0.5 + ww, top + 0.06)])
    s.lines += [[(0.5 + f * ww * 0.6, top + 0.07), (0.5 + f * hw * 0.6, hem)] for f in (-1, -0.35, 0.35, 1)]  # folds
    return s


def _legwear(g: Garment) -> _Shape:
    """Trousers and shorts: two legs from a waistband, with fly, pockets and (trousers) creases."""
    s, w = _Shape(), g.width
    short = g.category == "Shorts"
    top = 0.22 if short else 0.05
    hem = top + (0.4 if short else 0.88) * g.length
    ww = 0.2 * w
    crotch = top + (0.24 if short else 0.3)
    out = ww + (0.05 if short else 0.02) * w
    inner = 0.035 if short else 0.03
    s.body.append([(0.5 - ww, top), (0.5 + ww, top), (0.5 + out, hem), (0.5 + inner, hem + 0.02), (0.5, crotch),
                   (0.5 - inner, hem + 0.02), (0.5 - out, hem)])
    pocket = [(0.5 - ww + 0.02, top + 0.06), (0.5 - ww + 0.07, top + 0.16)]
    s.lines += [[(0.5 - ww, top + 0.055), (0.5 + ww, top + 0.055)], [(0.5, top + 0.055), (0.5, crotch - 0.04)],
                pocket, _mirror(pocket)]
    if not short:
        crease = [(0.5 - ww / 2 - 0.01, crotch), (0.5 - (out + inner) / 2, hem - 0.02)]
        s.lines += [crease, _mirror(crease)]
    s.buttons.append((0.5, top + 0.028))
    return s


# Each category's silhouette, one small function per kind of garment.
_SHAPES: dict[str, Callable[[Garment], _Shape]] = {
    "Tee": _tops, "Tank_Top": _tops, "Long_Sleeve_Top": _tops, "Hoodie": _hoodie, "Jacket": _outerwear,
    "Coat": _outerwear, "Dress": _dress, "Skirt": _skirt, "Trousers": _legwear, "Shorts": _legwear,
}


# ---------------------------------------------------------------------------------------------- surfaces


@lru_cache(maxsize=16)
def _fabric_texture(fabric: str, size: int) -> np.ndarray:
    """A (2*size, 2*size) multiplicative texture with mean ~1 (cropped at a per-garment offset)."""
    rng = np.random.default_rng(7 + FABRICS.index(fabric))
    n = 2 * size
    y, x = np.mgrid[0:n, 0:n].astype(np.float32)
    px = SUPERSAMPLE  # one output pixel
    noise = rng.normal(0, 1, (n, n)).astype(np.float32)
    smooth = np.asarray(
        Image.fromarray(((noise * 40) + 128).clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(size / 16)),
        dtype=np.float32,
    )
    smooth = (smooth - smooth.mean()) / (smooth.std() + 1e-6)
    if fabric == "denim":  # diagonal twill, a little mottled
        t = 1 + 0.09 * np.sin(2 * np.pi * (x + y) / (2.5 * px)) + 0.04 * smooth + 0.03 * noise
    elif fabric == "knit":  # vertical rib columns with stitch rows
        rib = np.abs(np.sin(np.pi * x / (2.5 * px)))
        t = 0.9 + 0.16 * rib + 0.04 * np.sin(2 * np.pi * y / (1.6 * px)) * rib + 0.02 * noise
    elif fabric == "leather":  # smooth, slow grain; the shine is added when shading
        t = 1 + 0.05 * smooth + 0.01 * noise
    else:  # cotton: a fine, even weave
        t = 1 + 0.03 * noise + 0.02 * np.sin(2 * np.pi * x / (1.5 * px)) * np.sin(2 * np.pi * y / (1.5 * px))
    return (t / t.mean()).astype(np.float32)


def _axes(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates as a column (y) and a row (x), so 2-D fields are built by broadcasting."""
    r = np.arange(size, dtype=np.float32)
    return r[:, None], r[None, :]


def _pattern(g: Garment, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) float image of the garment's colour with its pattern, in the garment's own frame."""
    base = np.asarray(g.rgb, dtype=np.float32)
    second = np.asarray(g.second_rgb, dtype=np.float32)
    if g.pattern == "floral":
        return _floral(g, size, rng)
    if g.pattern == "solid":
        return np.broadcast_to(base, (size, size, 3)).copy()
    p = g.pattern_size * size
    ph = np.asarray(g.pattern_phase, dtype=np.float32) * p
    y, x = _axes(size)
    if g.pattern == "striped":
        coord = x if g.vertical_stripes else y
        amount = (((coord + ph[0]) % p) < 0.38 * p).astype(np.float32)
    elif g.pattern == "dotted":
        row = np.floor((y + ph[1]) / p)
        u = (x + ph[0] + 0.5 * p * (row % 2)) % p - p / 2
        v = (y + ph[1]) % p - p / 2
        amount = (u * u + v * v < (0.24 * p) ** 2).astype(np.float32)
    else:  # checked (gingham): bands of the second colour crossing at half strength, full where they meet
        bx = ((x + ph[0]) % p) < 0.5 * p
        by = ((y + ph[1]) % p) < 0.5 * p
        amount = 0.5 * (bx.astype(np.float32) + by.astype(np.float32))
    return base + np.broadcast_to(amount, (size, size))[..., None] * (second - base)


def _floral(g: Garment, size: int, rng: np.random.Generator) -> np.ndarray:
    """A repeating print: a tile with two five-petal flowers, tiled like printed fabric."""
    tile = max(8, int(round(2 * g.pattern_size * size)))
    im = Image.new("RGB", (tile, tile), g.rgb)
    draw = ImageDraw.Draw(im)
    petal = np.asarray(g.second_rgb, dtype=np.float64)
    centre_rgb = tuple(int(v) for v in 0.5 * petal + (0 if petal.mean() > 128 else 127))
    for cx, cy in ((0.27, 0.3), (0.75, 0.78)):
        cx, cy = (cx + rng.uniform(-0.05, 0.05)) * tile, (cy + rng.uniform(-0.05, 0.05)) * tile
        r = tile * 0.11
        turn = rng.uniform(0, 2 * math.pi)
        for k in range(5):
            a = turn + 2 * math.pi * k / 5
            px, py = cx + 1.1 * r * math.cos(a), cy + 1.1 * r * math.sin(a)
            draw.ellipse((px - r, py - r, px + r, py + r), fill=g.second_rgb)
        draw.ellipse((cx - 0.6 * r, cy - 0.6 * r, cx + 0.6 * r, cy + 0.6 * r), fill=centre_rgb)
    arr = np.asarray(im, dtype=np.float32)
    reps = size // tile + 2
    tiled = np.tile(arr, (reps, reps, 1))
    ox, oy = (int(v * tile) for v in g.pattern_phase)
    return tiled[oy : oy + size, ox : ox + size].copy()


def _render_flat(g: Garment, size: int, light: float) -> Image.Image:
    """The garment laid flat in its own frame: an RGBA image (alpha = silhouette), shaded and textured."""
    rng = np.random.default_rng(g.detail_seed)
    shape = _SHAPES[g.category](g)
    # Frame the garment as a product shot does: its bounding box centred, its longer side FRAME of the canvas,
    # so the pose's shift and scale are relative to a filled frame whatever the category.
    xs = [x for poly in shape.body + shape.flaps for x, _ in poly]
    ys = [y for poly in shape.body + shape.flaps for _, y in poly]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    k = FRAME / max(max(xs) - min(xs), max(ys) - min(ys))

    def place(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return [((x - cx) * k * size + size / 2, (y - cy) * k * size + size / 2) for x, y in points]

    mask = Image.new("L", (size, size), 0)
    mdraw = ImageDraw.Draw(mask)
    for poly in shape.body + shape.flaps:
        mdraw.polygon(place(poly), fill=255)

    colour = _pattern(g, size, rng)
    tex = _fabric_texture(g.fabric, size)
    tx, ty = rng.integers(0, size, size=2)
    colour *= tex[ty : ty + size, tx : tx + size, None]

    # Shading: darker towards the silhouette's edges, a gentle directional light, two soft folds.
    # (blurred at a third of the size: the same soft edge for a ninth of the work)
    third = mask.reduce(3).filter(ImageFilter.GaussianBlur(size / 90)).resize((size, size), Image.Resampling.BILINEAR)
    edge = np.asarray(third, dtype=np.float32) / 255.0
    yy, xx = (a / size for a in _axes(size))
    leather = g.fabric == "leather"
    across = 1 + 0.07 * light * (xx - 0.5)
    for _ in range(2):
        fx, fw = rng.uniform(0.3, 0.7), rng.uniform(0.02, 0.05)
        across = across * (1 - 0.07 * np.exp(-(((xx - fx) / fw) ** 2)))
    shade = ((0.74 if leather else 0.8) + (0.26 if leather else 0.2) * edge) * ((1 - 0.07 * (yy - 0.5)) * across)
    colour *= shade[..., None]
    if leather:  # a soft diagonal shine
        t = (xx + yy - rng.uniform(0.7, 1.1)) / 0.08
        colour += (np.exp(-t * t) * 0.35 * edge)[..., None] * (255 - colour)

    im = Image.fromarray(np.clip(colour, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    base = np.asarray(g.rgb, dtype=np.float64)
    dark = tuple(int(v) for v in base * 0.55)
    seam = tuple(int(v) for v in (base * 0.72 if base.mean() > 40 else base + 45))
    line_w = max(1, size // 110)
    for poly in shape.inner:
        draw.polygon(place(poly), fill=dark)
        mdraw.polygon(place(poly), fill=255)
    for poly in shape.flaps:
        draw.polygon(place(poly), fill=g.rgb, outline=seam, width=line_w)
    for line in shape.lines:
        draw.line(place(line), fill=seam, width=line_w)
    r = size * 0.012
    for bx, by in shape.buttons:
        cx, cy = place([(bx, by)])[0]
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=seam)
    im.putalpha(mask)
    return im


def draw_garment(garment: Garment, pose: Pose, image_size: int = 64) -> Image.Image:
    """One product shot of a garment: RGB, ``image_size`` square."""
    size = image_size * SUPERSAMPLE
    flat = _render_flat(garment, size, pose.light)
    # PIL's affine transform maps output to input pixels: invert "scale and rotate about the centre, then shift".
    c = size / 2
    a = math.radians(pose.angle)
    cos, sin = math.cos(a) / pose.scale, math.sin(a) / pose.scale
    tx, ty = c + pose.dx * size, c + pose.dy * size
    coeffs = (cos, sin, c - cos * tx - sin * ty, -sin, cos, c + sin * tx - cos * ty)
    posed = flat.transform((size, size), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    small = posed.reduce(SUPERSAMPLE)
    rgba = np.asarray(small, dtype=np.float32)
    alpha = rgba[..., 3:] / 255.0

    rows = np.linspace(0, 1, image_size, dtype=np.float32)[:, None, None]
    top, bottom = np.asarray(pose.background, np.float32), np.asarray(pose.background_bottom, np.float32)
    background = np.broadcast_to(top + rows * (bottom - top), (image_size, image_size, 3))
    shadow_img = small.getchannel("A").filter(ImageFilter.GaussianBlur(image_size / 28))
    down, right = max(1, image_size // 40), max(1, image_size // 80)
    shadow = np.zeros((image_size, image_size), dtype=np.float32)
    shadow[down:, right:] = np.asarray(shadow_img, dtype=np.float32)[:-down, :-right] / 255.0
    background = background * (1 - 0.22 * shadow[..., None])
    out = rgba[..., :3] * alpha + background * (1 - alpha)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")


# ---------------------------------------------------------------------------------------------- the folder


def _rng(seed: int, stream: int, *index: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, *index])


def _write_listing(path: Path, header: str, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(f"{len(rows)}\n{header}\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)


PARALLEL_FROM = 1000  # images; below this, starting worker processes costs more than it saves


def _draw_one(job: tuple[Garment, Pose, int, Path]) -> None:
    garment, pose, image_size, path = job
    _save(draw_garment(garment, pose, image_size), path)


def _draw_all(jobs: list[tuple[Garment, Pose, int, Path]], progress: bool) -> None:
    """Draw and save every image, on every core for a big catalogue (4,700 images: 16 s on one core of this
    2-core machine). Each image depends only on its own garment and pose, so the files are the same however
    the work is split; workers are spawned, not forked, as the parent may already run torch's thread pool."""
    bar = tqdm(total=len(jobs), desc="drawing demo catalogue", unit="img", disable=not progress)
    workers = min(os.cpu_count() or 1, 8)
    with bar:
        if workers < 2 or len(jobs) < PARALLEL_FROM:
            for job in jobs:
                _draw_one(job)
                bar.update()
            return
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for _ in pool.map(_draw_one, jobs, chunksize=64):
                bar.update()


def _save(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # 4:4:4 chroma: at 64 px, 4:2:0 subsampling would smear 2-pixel stripes into a third colour.
    image.save(path, "JPEG", quality=JPEG_QUALITY, subsampling=0)


def _stamp(size: int, image_size: int, seed: int, inshop_garments: int) -> dict:
    return {"draw_version": DRAW_VERSION, "size": size, "image_size": image_size, "seed": seed,
            "inshop_garments": inshop_garments}


def demo_catalogue_matches(root: Path, *, size: int = 4000, image_size: int = 64, seed: int = 0,
                           inshop_garments: int = 0) -> bool:
    """True when ``root`` holds a complete demo catalogue built with these settings by this drawing code."""
    try:
        found = json.loads((Path(root) / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return found == _stamp(size, image_size, seed, inshop_garments)


def build_demo_catalogue(root: Path, *, size: int = 4000, image_size: int = 64, seed: int = 0,
                         inshop_garments: int = 0, progress: bool = True) -> Path:
    """Draw ``size`` garments into ``root`` in DeepFashion's format and return ``root``.

    Writes ``img/<Category>/img_XXXXXXXX.jpg``, the five annotation files, ``Anno/list_attr_type.txt`` and,
    last, ``demo_catalogue.json`` (the settings; see ``demo_catalogue_matches``), so an interrupted build is
    never mistaken for a finished one. Splits are 80% train, 10% val, 10% test. With ``inshop_garments=N``
    it also writes an In-shop partition under ``inshop/`` (N garments, 3-4 photos each, >= 1 query and
    >= 1 gallery photo per garment), read by ``dressup.catalog.load_inshop``. Building into a folder that
    holds a bigger earlier build leaves its extra images on disk; the annotations list only this build's.
    """
    if size < 10:
        raise ValueError(f"size={size} is too small for an 80/10/10 split; use size >= 10")
    if image_size < 16:
        raise ValueError(f"image_size={image_size} is too small to draw a garment; use image_size >= 16")
    root = Path(root)
    (root / STAMP).unlink(missing_ok=True)
    order = _rng(seed, 2).permutation(size)
    split_of = np.empty(size, dtype=object)
    split_of[order[: int(0.8 * size)]] = "train"
    split_of[order[int(0.8 * size) : int(0.9 * size)]] = "val"
    split_of[order[int(0.9 * size) :]] = "test"

    all_attributes = [a for values in ATTRIBUTE_TYPES.values() for a in values]
    category_rows, attr_rows, partition_rows = [], [], []
    label = {c.name: i + 1 for i, c in enumerate(CATEGORIES)}
    inshop = []  # (garment, number of photos), drawn up front so the progress bar knows the total
    for g in range(inshop_garments):
        rng = _rng(seed, 1, g)
        inshop.append((sample_garment(rng), int(rng.integers(3, 5))))
    jobs = []  # (garment, pose, image_size, path): sampled here, drawn by _draw_one (in worker processes)
    for i in range(size):
        garment = sample_garment(_rng(seed, 0, i))
        pose = sample_pose(_rng(seed, 3, i), garment)
        name = f"img/{garment.category}/img_{i + 1:08d}.jpg"
        jobs.append((garment, pose, image_size, root / name))
        present = set(garment.attributes)
        category_rows.append(f"{name}  {label[garment.category]}")
        attr_rows.append(name + "  " + " ".join("1" if a in present else "-1" for a in all_attributes))
        partition_rows.append(f"{name}  {split_of[i]}")
    inshop_rows = []
    for g, (garment, shots) in enumerate(inshop):
        queries = 1 if shots == 3 else 2
        for j in range(shots):
            name = f"img/{garment.category}/id_{g + 1:08d}/{j + 1:02d}.jpg"
            jobs.append((garment, sample_pose(_rng(seed, 4, g, j), garment), image_size, root / "inshop" / name))
            inshop_rows.append(f"{name}  id_{g + 1:08d}  {'query' if j < queries else 'gallery'}")
    _draw_all(jobs, progress)

    _write_listing(root / CATEGORY_CLOTH, "category_name  category_type", [f"{c.name}  {c.category_type}" for c in CATEGORIES])
    _write_listing(root / ATTR_TYPE, "type_id  type_name", [f"{i + 1}  {t}" for i, t in enumerate(ATTRIBUTE_TYPES)])
    _write_listing(
        root / ATTR_CLOTH,
        "attribute_name  attribute_type",
        [f"{a}  {i + 1}" for i, values in enumerate(ATTRIBUTE_TYPES.values()) for a in values],
    )
    _write_listing(root / CATEGORY_IMG, "image_name  category_label", category_rows)
    _write_listing(root / ATTR_IMG, "image_name  attribute_labels", attr_rows)
    _write_listing(root / PARTITION, "image_name  evaluation_status", partition_rows)

    if inshop:
        _write_listing(root / "inshop" / PARTITION, "image_name  item_id  evaluation_status", inshop_rows)
    (root / STAMP).write_text(json.dumps(_stamp(size, image_size, seed, inshop_garments)) + "\n")
    return root
