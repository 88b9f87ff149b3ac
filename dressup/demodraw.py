"""Drawing one demo garment as a product shot: its surface (colour, pattern, fabric texture, shading), its
silhouette placed in the frame, and the photo (pose, background, drop shadow).

The pictures imitate product shots so that a participant's phone photo of a garment can land near them: one
garment, centred-ish, on a plain light background (off-white, light grey or beige, sometimes a soft gradient),
with soft shading, fabric texture and a drop shadow. Position (+-15%), scale (0.6-1.0) and rotation (+-20 deg)
vary so a Spatial Transformer has something to undo. Everything is drawn at ``SUPERSAMPLE`` times the output
size and reduced, which antialiases edges and fine patterns. Every random detail comes from the garment's own
``detail_seed``, so a garment and pose always give the same pixels.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from dressup.demogarment import FABRICS, Garment, Pose
from dressup.demoshapes import SHAPES

DRAW_VERSION = 1  # bump when drawing changes, so cached demo catalogues are rebuilt
SUPERSAMPLE = 3
FRAME = 0.8  # the garment's longer side as a share of the image at scale 1.0


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
    shape = SHAPES[g.category](g)
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
