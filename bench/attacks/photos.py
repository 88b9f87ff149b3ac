"""Photos for the hostile-client benchmark: 12-megapixel JPEGs and PNGs (the largest allowed) and the flat
36-megapixel PNGs of the attack measured before the fix, made once and reused, each file's bytes distinct
(Gradio names uploads by content).
"""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from bench.attacks.target import WORK

PHOTO_DIR = WORK / "photos"
JPEG_SIZE = (4000, 2990)  # 11.96 megapixels, under [ui] max_megapixels = 12
HUGE_SIZE = (7000, 5150)  # 36.05 megapixels: the photos of the attack measured before the fix


def _with_jpeg_comment(data: bytes, text: bytes) -> bytes:
    assert data[:2] == b"\xff\xd8"
    return data[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + data[2:]


def _with_png_text(data: bytes, text: bytes) -> bytes:
    end_ihdr = 8 + 8 + 13 + 4
    body = b"tEXt" + b"Comment\x00" + text
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    return data[:end_ihdr] + chunk + data[end_ihdr:]


def make_photos(kind: str, n: int, bases: int = 6) -> list[Path]:
    """``n`` distinct files of one kind (``jpeg``/``png`` at 12 MP, ``huge`` 36 MP PNG), made once and reused:
    ``bases`` different pictures, each copy with its own comment so every file's bytes differ."""
    folder = PHOTO_DIR / kind
    folder.mkdir(parents=True, exist_ok=True)
    ext = "jpg" if kind == "jpeg" else "png"
    paths = [folder / f"{kind}-{i:03d}.{ext}" for i in range(n)]
    missing = [i for i, p in enumerate(paths) if not p.is_file()]
    if not missing:
        return paths
    w, h = HUGE_SIZE if kind == "huge" else JPEG_SIZE
    encoded: dict[int, bytes] = {}
    for i in missing:
        b = i % bases
        if b not in encoded:
            rng = np.random.default_rng(100 + b)
            buf = io.BytesIO()
            if kind == "huge":  # what the attack before the fix sent: flat, a few kilobytes, 36 megapixels
                Image.new("RGB", (w, h), (255, 255, 255)).save(buf, "PNG")
            else:
                small = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
                pixels = np.asarray(small.resize((w, h), Image.BICUBIC))
                if kind == "jpeg":  # sensor-like noise, so it does not compress to nothing
                    noise = rng.integers(-20, 21, pixels.shape, dtype=np.int16)
                    pixels = np.clip(pixels + noise, 0, 255).astype(np.uint8)
                    Image.fromarray(pixels).save(buf, "JPEG", quality=92)
                else:
                    Image.fromarray(pixels).save(buf, "PNG", compress_level=1)
            encoded[b] = buf.getvalue()
        tag = f"dressup bench hostile {kind} {i}".encode()
        data = _with_jpeg_comment(encoded[b], tag) if kind == "jpeg" else _with_png_text(encoded[b], tag)
        tmp = paths[i].with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(paths[i])
    return paths


