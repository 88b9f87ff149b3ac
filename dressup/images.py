"""Safe image loading for participant uploads and catalogue images.

Uploads come from strangers' phones and browsers: HEIC photos, PNG screenshots with transparency, 16-bit PNGs,
CMYK JPEGs from design tools, rotated JPEGs that only look upright because of an EXIF tag, text files renamed
to ``.jpg`` and, now and then, a decompression bomb. ``load_image`` turns all of them into one thing the rest of
the library can rely on: an upright 8-bit RGB ``PIL.Image``. Anything it cannot turn into that raises
``ImageError`` whose message says what is wrong and what to upload instead; no other Pillow exception escapes
for bad input.

The pixel limit is checked from the header, before a single pixel is decoded, so a 20000x20000 PNG of a few
kilobytes is refused without allocating 1.2 GB.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

# Formats decoded at all. MPO is what many phone cameras' JPEGs are detected as. AVIF is listed only if this
# Pillow can read it; HEIC is never readable by plain Pillow (it needs the pillow-heif plugin).
_WANTED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "AVIF", "BMP")
_UPLOAD_HINT = "upload a JPEG, PNG, WEBP or GIF photo"
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}

Source = str | Path | bytes | bytearray | BinaryIO


class ImageError(ValueError):
    """An image cannot be used; the message names the problem and what to upload instead."""


def _allowed_formats() -> tuple[str, ...]:
    Image.init()
    return tuple(f for f in _WANTED_FORMATS if f in Image.OPEN)


def _read_bytes(source: Source, max_bytes: int | None) -> bytes:
    """All bytes of the source, refusing more than ``max_bytes`` before reading them where possible."""
    limit = f"{max_bytes / 1e6:.1f} MB" if max_bytes is not None else ""
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"no image file at {path}; check the path")
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise ImageError(f"file is {size / 1e6:.1f} MB, over the limit of {limit}; upload a smaller photo")
        data = path.read_bytes()
    else:
        data = source.read(max_bytes + 1) if max_bytes is not None else source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"load_image needs a binary stream (open the file with 'rb'), got {type(data).__name__}")
        data = bytes(data)
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageError(f"file is over the limit of {limit}; upload a smaller photo")
    if not data:
        raise ImageError(f"file is empty (0 bytes); {_UPLOAD_HINT}")
    return data


def _sniff_failure(data: bytes) -> ImageError:
    """Why bytes that no allowed decoder accepts are not an image, as specifically as the bytes allow."""
    head = data[:1024]
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        name = "HEIC" if brand in _HEIF_BRANDS else "AVIF" if brand in _AVIF_BRANDS else None
        if name:
            return ImageError(f"unsupported format {name}; please upload JPEG/PNG/WEBP (set your phone to 'Most Compatible')")
    if head.lstrip().startswith(b"<") and b"<svg" in data[:4096].lower():
        return ImageError("SVG is not supported (it is a drawing, not a photo); please upload JPEG/PNG/WEBP")
    try:
        with Image.open(io.BytesIO(data)) as other:  # every installed plugin, header only: just to name the format
            return ImageError(f"unsupported format {other.format}; please upload JPEG/PNG/WEBP")
    except Exception:
        pass
    try:
        text = head.decode("utf-8")
        if sum(ch.isprintable() or ch in "\r\n\t" for ch in text) >= 0.95 * len(text):
            return ImageError(f"file is not an image (it looks like text); {_UPLOAD_HINT}")
    except UnicodeDecodeError:
        pass
    return ImageError(f"file is not an image or is damaged (no image format recognised); {_UPLOAD_HINT}")


def _open_header(data: bytes) -> Image.Image:
    """Open lazily (header only) with the allowed decoders; pixel data is not decoded yet."""
    formats = _allowed_formats()
    try:
        return Image.open(io.BytesIO(data), formats=formats)
    except UnidentifiedImageError:
        raise _sniff_failure(data) from None
    except Image.DecompressionBombError:
        # Pillow's own hard cap (2 x MAX_IMAGE_PIXELS) fired before we saw the size: read it with the plugin
        # directly, which parses the header without that check, so the message can give the size.
        for fmt in formats:
            factory, accept = Image.OPEN[fmt]
            if accept is None or accept(data[:16]):
                try:
                    return factory(io.BytesIO(data), "")
                except Exception:
                    continue
        raise ImageError(f"image is far too large to decode safely; {_UPLOAD_HINT} under 40 megapixels") from None
    except Exception as e:  # a damaged header: Pillow raises SyntaxError, struct.error, OSError, ...
        raise ImageError(f"file is damaged or not a valid image ({e}); {_UPLOAD_HINT}") from None


def _check_size(width: int, height: int, max_pixels: int | None) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"image header says {width}x{height} pixels, which is not a picture; {_UPLOAD_HINT}")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"image is {width}x{height} = {width * height / 1e6:.1f} megapixels, over the limit of "
            f"{max_pixels / 1e6:g} megapixels; resize it (e.g. to 2000 pixels on the long side) and upload again"
        )


def image_info(source: Source, *, max_bytes: int | None = None, max_pixels: int | None = None) -> tuple[str, int, int]:
    """(format, width, height) from the header alone, without decoding pixels; ``max_bytes`` and
    ``max_pixels`` refuse as ``load_image`` would, so a batch of photos can be checked before any is decoded."""
    with _open_header(_read_bytes(source, max_bytes)) as im:
        _check_size(im.width, im.height, max_pixels)
        return im.format or "unknown", im.width, im.height


def release_memory() -> None:
    """Hand memory freed by decoding back to the operating system (glibc's ``malloc_trim``).

    Decoded photos are large blocks that glibc keeps in its heaps after they are freed (its mmap threshold
    rises after the first large free), so without this an app's resident memory only ever grows with the
    largest photos it has decoded on its many threads. A no-op where there is no glibc.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _sixteen_bit_to_8(im: Image.Image) -> Image.Image:
    """16-bit greyscale to 8-bit by scaling (Pillow's convert clips everything above 255 to white)."""
    arr = np.asarray(im).astype(np.float64)
    if im.mode == "I" and arr.max(initial=0) <= 255:  # 8-bit data stored in a 32-bit mode
        scaled = arr
    else:
        scaled = arr / 257.0
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def _to_srgb(im: Image.Image) -> Image.Image:
    """Honour an embedded ICC profile (CMYK print files, Display P3 phone photos); fall back to plain convert."""
    icc = im.info.get("icc_profile")
    if icc and im.mode in ("RGB", "CMYK"):
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception:  # a broken profile is common and not the participant's fault: ignore it
            pass
    return im.convert("RGB")


def _flatten(im: Image.Image) -> Image.Image:
    """Any mode to RGB; transparent pixels become white, as on a product page."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        im = _sixteen_bit_to_8(im)
    if "transparency" in im.info or im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return white
    return _to_srgb(im)


def _reduce(im: Image.Image, min_side: int) -> Image.Image:
    """The integer box reduction that keeps the short side at least ``min_side`` (what ``draft`` gives a JPEG),
    for formats without reduced decoding (PNG, WEBP, TIFF): the full-size pixels are freed at once instead of
    being carried, converted and kept for as long as the caller holds the photo. Modes ``reduce`` cannot take
    (palette) stay as they are."""
    scale = min(im.size) // max(1, min_side)
    if scale < 2:
        return im
    try:
        small = im.reduce(scale)
    except ValueError:
        return im
    small.info.update(im.info)  # the ICC profile and transparency that _flatten reads
    return small


def load_image(source: Source, *, max_pixels: int = 40_000_000, max_bytes: int | None = None,
               min_side: int | None = None) -> Image.Image:
    """Decode an image file into an upright 8-bit RGB image, or raise ImageError saying why not.

    ``source`` is a path, the file's bytes, or a binary stream. Animated GIF/WEBP give their first frame;
    EXIF orientation is applied (the returned size is the upright one); alpha is composited on white;
    16-bit images are scaled to 8 bits; embedded ICC profiles are converted to sRGB. ``max_pixels`` is
    checked from the header before decoding; ``max_bytes`` before reading where the source allows.
    ``min_side``: the smallest short side the caller needs; a JPEG is then decoded at the smallest of 1/1,
    1/2, 1/4 or 1/8 scale that keeps it (libjpeg's DCT scaling through Pillow's ``draft``), so a 12-megapixel
    photo needed at 512 pixels never occupies 36 MB of memory; other formats are reduced by the same integer
    factor right after decoding (``_reduce``).
    """
    data = _read_bytes(source, max_bytes)
    im = _open_header(data)
    try:
        width, height = im.size
        _check_size(width, height, max_pixels)
        try:
            im.seek(0)
            if min_side and im.format in ("JPEG", "MPO"):
                scale = max(1, min(width, height) // int(min_side))
                im.draft("RGB", (max(1, width // scale), max(1, height // scale)))
            im.load()
        except Exception as e:  # truncated data, bad chunks, lying headers: Pillow raises many types
            raise ImageError(f"file is truncated or damaged and cannot be decoded ({e}); {_UPLOAD_HINT}") from None
        try:
            upright = ImageOps.exif_transpose(im)
        except Exception:  # malformed EXIF: keep the pixels as stored rather than refuse the photo
            upright = im
        if min_side:
            upright = _reduce(upright, int(min_side))
        try:
            return _flatten(upright).convert("RGB")
        except Exception as e:
            raise ImageError(f"image uses a colour mode that cannot be converted ({im.mode}: {e}); {_UPLOAD_HINT}") from None
    finally:
        im.close()
