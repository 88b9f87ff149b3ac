"""The silhouette of each demo category, drawn in a unit square: one small function per kind of garment.

Shapes are pure geometry (polygons, polylines and button centres, x right and y down); ``dressup.demodraw``
places, fills, shades and outlines them. A garment's proportions and details (width, length, sleeve,
neckline, gender) come from its ``Garment``.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dressup.demogarment import Garment


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
SHAPES: dict[str, Callable[[Garment], _Shape]] = {
    "Tee": _tops, "Tank_Top": _tops, "Long_Sleeve_Top": _tops, "Hoodie": _hoodie, "Jacket": _outerwear,
    "Coat": _outerwear, "Dress": _dress, "Skirt": _skirt, "Trousers": _legwear, "Shorts": _legwear,
}
