"""load_image turns every reasonable upload into upright RGB and refuses hostile ones with ImageError."""
from __future__ import annotations

import io
import random
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from dressup.images import ImageError, image_info, load_image
from tests.crafted_images import huge_png

PHOTOS = sorted((Path(__file__).resolve().parents[1] / "assets" / "photos").glob("*.jpg"))


def _png_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **kw)
    return buf.getvalue()


def _jpeg_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


def test_real_phone_photos_load_as_rgb() -> None:
    assert len(PHOTOS) >= 4
    for path in PHOTOS:
        im = load_image(path)
        with Image.open(path) as raw:
            assert im.size == raw.size
        assert im.mode == "RGB"
        assert np.asarray(im).std() > 5  # real content, not a blank canvas


def test_bytes_and_streams_are_accepted() -> None:
    data = PHOTOS[0].read_bytes()
    assert load_image(data).size == load_image(io.BytesIO(data)).size == load_image(str(PHOTOS[0])).size


def test_image_info_reads_the_header_only() -> None:
    fmt, w, h = image_info(PHOTOS[0])
    assert fmt == "JPEG" and (w, h) == (255, 341)
    assert image_info(huge_png(20000, 20000)) == ("PNG", 20000, 20000)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(empty)


def test_text_named_jpg_is_refused_as_text(tmp_path: Path) -> None:
    fake = tmp_path / "holiday.jpg"
    fake.write_text("Dear participant,\nthis is not a photo.\n" * 20)
    with pytest.raises(ImageError, match="looks like text"):
        load_image(fake)


def test_svg_is_refused_by_name() -> None:
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
    with pytest.raises(ImageError, match="SVG is not supported"):
        load_image(svg)


def test_heic_is_refused_with_a_fix() -> None:
    heic = struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    with pytest.raises(ImageError, match="unsupported format HEIC; please upload JPEG/PNG/WEBP"):
        load_image(heic)


def test_other_formats_are_named() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, "TIFF")
    with pytest.raises(ImageError, match="unsupported format TIFF"):
        load_image(buf.getvalue())


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow has no AVIF codec")
def test_avif_is_read_when_pillow_can() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), (200, 30, 30)).save(buf, "AVIF")
    im = load_image(buf.getvalue())
    assert im.size == (16, 12) and im.getpixel((8, 6))[0] > 150


def test_truncated_jpeg_is_refused() -> None:
    data = PHOTOS[-1].read_bytes()  # the 1000x1334 dress
    with pytest.raises(ImageError, match="truncated or damaged"):
        load_image(data[: len(data) // 2])


def test_lying_png_header_is_refused() -> None:
    good = _png_bytes(Image.new("RGB", (32, 32), "blue"))
    lying = good[:33] + bytes(random.Random(0).randrange(256) for _ in range(200))
    with pytest.raises(ImageError):
        load_image(lying)


def test_huge_image_is_refused_from_its_header_with_size_and_limit() -> None:
    data = huge_png(20000, 20000)
    assert len(data) < 200_000
    with pytest.raises(ImageError, match=r"20000x20000 = 400\.0 megapixels, over the limit of 40 megapixels"):
        load_image(data)


def test_max_pixels_below_pillows_own_cap_is_ours() -> None:
    with pytest.raises(ImageError, match=r"9000x6000 = 54\.0 megapixels"):
        load_image(huge_png(9000, 6000))
    small = _png_bytes(Image.new("RGB", (100, 100)))
    with pytest.raises(ImageError, match="over the limit of 0.005 megapixels"):
        load_image(small, max_pixels=5000)


def test_max_bytes_is_enforced_for_paths_bytes_and_streams(tmp_path: Path) -> None:
    data = PHOTOS[0].read_bytes()
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    for source in (path, data, io.BytesIO(data)):
        with pytest.raises(ImageError, match="over the limit"):
            load_image(source, max_bytes=1000)
    assert load_image(data, max_bytes=len(data)).mode == "RGB"


def test_missing_path_is_an_image_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no image file"):
        load_image(tmp_path / "nope.jpg")


def test_alpha_png_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (0, 0, 5, 10))
    im = load_image(_png_bytes(rgba))
    assert im.mode == "RGB"
    assert im.getpixel((8, 5)) == (255, 255, 255)
    assert im.getpixel((2, 5)) == (255, 0, 0)


def test_palette_png_with_transparency_is_composited_on_white() -> None:
    pal = Image.new("P", (10, 10), 0)
    pal.putpalette([0, 0, 0, 0, 128, 0] + [0] * 762)
    pal.paste(1, (0, 0, 5, 10))
    im = load_image(_png_bytes(pal, transparency=0))
    assert im.getpixel((8, 5)) == (255, 255, 255)
    assert im.getpixel((2, 5)) == (0, 128, 0)


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (4, 1))
    im = load_image(_png_bytes(Image.fromarray(ramp)))
    values = np.asarray(im)[0, :, 0].astype(int)
    assert values[0] == 0 and values[-1] == 255
    assert abs(values[128] - 128) <= 1  # Pillow's plain convert would make this 255
    assert np.all(np.diff(values) >= 0)


def test_cmyk_jpeg_becomes_rgb() -> None:
    cyan = Image.new("CMYK", (8, 8), (255, 0, 0, 0))
    r, g, b = load_image(_jpeg_bytes(cyan)).getpixel((4, 4))
    assert r < 40 and g > 200 and b > 200


def test_greyscale_becomes_rgb() -> None:
    im = load_image(_png_bytes(Image.new("L", (5, 5), 77)))
    assert im.mode == "RGB" and im.getpixel((2, 2)) == (77, 77, 77)


def test_exif_rotated_jpeg_comes_back_upright() -> None:
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))  # red on the left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im = load_image(_jpeg_bytes(stored, exif=exif.tobytes()))
    assert im.size == (20, 40)
    top, bottom = im.getpixel((10, 5)), im.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # the stored left edge is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (12, 12), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    r, g, b = load_image(buf.getvalue()).getpixel((6, 6))
    assert r > 200 and g < 50 and b < 50


def test_animated_webp_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (12, 12), c) for c in ((0, 0, 255), (255, 0, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    assert load_image(buf.getvalue()).getpixel((6, 6)) == (0, 0, 255)


def test_damaged_files_never_raise_anything_but_image_error() -> None:
    """Random byte damage to real files: each either decodes to RGB or raises ImageError, nothing else."""
    rng = random.Random(1234)
    originals = [PHOTOS[0].read_bytes(), _png_bytes(Image.new("RGBA", (20, 20), (9, 9, 9, 100)))]
    buf = io.BytesIO()
    Image.new("RGB", (12, 12), "red").save(buf, "GIF")
    originals.append(buf.getvalue())
    refused = 0
    for trial in range(60):
        data = bytearray(originals[trial % len(originals)])
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(min(len(data), 300))] = rng.randrange(256)
        if trial % 5 == 0:
            data = data[: rng.randrange(1, len(data))]
        try:
            assert load_image(bytes(data)).mode == "RGB"
        except ImageError:
            refused += 1
    assert refused > 0


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "JPEG"])
def test_a_large_photo_needed_small_is_decoded_small_and_upright(fmt):
    """``min_side``: a 2400x1600 photo needed at 512 px comes back at 800x533 (JPEG through ``draft``, the
    others reduced right after decoding), EXIF orientation applied first, colours kept."""
    im = Image.new("RGB", (2400, 1600), (200, 30, 40))
    im.paste((20, 40, 220), (0, 0, 1200, 1600))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: shown turned 90 degrees clockwise
    buf = io.BytesIO()
    im.save(buf, format=fmt, exif=exif.tobytes(), **({"quality": 95} if fmt != "PNG" else {}))
    out = load_image(buf.getvalue(), min_side=512)
    assert out.mode == "RGB" and min(out.size) >= 512
    assert out.size[1] > out.size[0], "orientation lost"  # upright: portrait
    assert max(out.size) <= 1200, f"decoded at {out.size}: not reduced"
    top, bottom = np.asarray(out)[5, out.size[0] // 2], np.asarray(out)[-5, out.size[0] // 2]
    assert top[2] > 150 and bottom[0] > 150  # blue on top after the turn, red below
    assert load_image(buf.getvalue()).size == (1600, 2400)  # without min_side: full size
