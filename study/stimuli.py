"""The grid cells as files: every cell is encoded identically, whichever arm drew it, and kept by its hash.

Each cell is letterboxed by ``dressup.grid.fit_cell`` to the same 256-pixel square and encoded as PNG with
no metadata; those exact bytes are kept under ``results_dir/stimuli/<sha256>.png`` and their hash recorded,
so a resumed session is served the very same pixels, and the page serves that file as it is.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image, PngImagePlugin

from dressup.grid import fit_cell
from study.results_folder import keep_file, local_file
from study.store import Store

CELL_PIXELS = 256
_PNG = PngImagePlugin.PngInfo()  # empty: no text, time or colour chunks
# zlib level of the stored (and served) cells. Level 0 ("stored" deflate blocks) makes every 256x256 RGB cell
# exactly the same number of bytes (196,993), whatever it shows: compressed, a generated picture was 92-117 KB
# against 21-79 KB for a catalogue photo, so the largest grid gave the generative arm away. Padding to a fixed
# size would not do: a padding chunk's length field states the real size. The price is bandwidth (3.2 MB a page).
PNG_LEVEL = 0


def png_bytes(image: Image.Image) -> bytes:
    """A cell as the PNG file that is stored and served byte for byte: no metadata chunks, and uncompressed, so
    every cell of the same size has the same length (see ``PNG_LEVEL``)."""
    buf = io.BytesIO()
    image.save(buf, format="png", pnginfo=_PNG, compress_level=PNG_LEVEL)
    return buf.getvalue()


def clean_image(image: Image.Image) -> Image.Image:
    """A fresh RGB image with the same pixels and an empty ``info``, so no metadata can be re-emitted."""
    out = Image.new("RGB", image.size)
    out.paste(image.convert("RGB"))
    return out


def cell_png(image: Image.Image) -> bytes:
    """An arm's picture as the cell every participant is shown: letterboxed, cleaned, PNG-encoded."""
    return png_bytes(clean_image(fit_cell(image, CELL_PIXELS)))


class Stimuli:
    """The stored cells of one study: ``folder/<sha256>.png`` (and blobs of the same name on a shared
    database, so a host that did not draw a grid can still serve it)."""

    def __init__(self, folder: Path, store: Store) -> None:
        self.folder = folder
        self.store = store

    def keep(self, data: bytes) -> str:
        """Store a cell's bytes; returns their sha256, the name it is kept and served under."""
        sha = hashlib.sha256(data).hexdigest()
        keep_file(self.store, self.folder / f"{sha}.png", data)
        return sha

    def path(self, sha256: str) -> Path:
        """The stored PNG of a cell by its hash; on a host that did not draw it, copied from the database first."""
        return local_file(self.store, self.folder / f"{sha256}.png")
