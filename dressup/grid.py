"""The 2x2 grid picture: the one way every arm's four images are shown, so grids look alike whatever made them.

Every cell is letterboxed to the same square size on the same background, so neither the pixel size nor the
aspect ratio of a cell says whether it came from a 64 px catalogue photo or a 512 px generated image.
"""
from __future__ import annotations

from PIL import Image, ImageDraw, ImageOps

BACKGROUND = (255, 255, 255)


def fit_cell(image: Image.Image, cell: int = 256) -> Image.Image:
    """One image resized (aspect kept) and centred on a ``cell``-square white canvas, RGB, no metadata."""
    im = ImageOps.contain(image.convert("RGB"), (cell, cell), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (cell, cell), BACKGROUND)
    canvas.paste(im, ((cell - im.width) // 2, (cell - im.height) // 2))
    return canvas


def grid_image(images: list[Image.Image], cell: int = 256, gap: int = 6, numbers: bool = True) -> Image.Image:
    """Four images as a 2x2 grid, positions 1-4 row-major, each numbered in its top-left corner."""
    if len(images) != 4:
        raise ValueError(f"a grid needs 4 images, got {len(images)}")
    size = 2 * cell + gap
    out = Image.new("RGB", (size, size), (230, 230, 230))
    draw = ImageDraw.Draw(out)
    for i, im in enumerate(images):
        x, y = (i % 2) * (cell + gap), (i // 2) * (cell + gap)
        out.paste(fit_cell(im, cell), (x, y))
        if numbers:
            r = max(12, cell // 12)
            draw.ellipse((x + 6, y + 6, x + 6 + 2 * r, y + 6 + 2 * r), fill=(30, 30, 30))
            draw.text((x + 6 + r, y + 6 + r), str(i + 1), fill=(255, 255, 255), anchor="mm",
                      font_size=int(r * 1.3))
    return out
