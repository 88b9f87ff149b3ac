"""The participants' photos as the study keeps them: counted, decoded within limits, stored as clean JPEGs.

Every photo's header is checked before any is decoded (one bad photo costs no decoding at all), at most two
are decoded at once whatever the number of participants, and each is kept as a metadata-free JPEG (EXIF,
including GPS, is dropped) named by a hash of the session and its bytes, under ``results_dir/uploads``,
which is never served. ``study.session.Sessions`` decides when photos are stored; this says how.
"""
from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from dressup.config import UISpec
from dressup.images import ImageError, image_info, load_image, release_memory
from study.errors import ParticipantError
from study.stimuli import clean_image

UPLOAD_SIDE = 512  # photos are decoded at no less than this short side: well above any encoder's input (224)
_DECODING = threading.BoundedSemaphore(2)  # photos decoded at once, whatever the number of participants

Upload = tuple[str, str, int, int]  # (sha256 of the stored JPEG, its path, width, height), as the store keeps it


def check_count(ui: UISpec, n: int, counted: bool = True) -> None:
    """Refuse a number of photos outside the study's range (``counted`` False: a draft, only too many)."""
    if not (ui.min_photos if counted else 0) <= n <= ui.max_photos:
        raise ParticipantError(
            f"Please add {ui.min_photos} to {ui.max_photos} photos of clothes you like (you added {n}).")


def decode_photos(photos: Sequence[str | Path | bytes], ui: UISpec) -> list[Image.Image]:
    """Every photo decoded with the study's size limits; a photo that cannot be is refused by its number."""
    max_bytes, max_pixels = int(ui.max_upload_mb * 1024 * 1024), int(ui.max_megapixels * 1e6)
    for i, photo in enumerate(photos, 1):  # every header first: one bad photo costs no decoding at all
        try:
            image_info(photo, max_bytes=max_bytes, max_pixels=max_pixels)
        except ImageError as e:
            raise ParticipantError(f"Photo {i}: {e}") from e
    images = []
    for i, photo in enumerate(photos, 1):
        try:
            with _DECODING:
                images.append(load_image(photo, max_bytes=max_bytes, max_pixels=max_pixels, min_side=UPLOAD_SIDE))
        except ImageError as e:
            raise ParticipantError(f"Photo {i}: {e}") from e
    release_memory()
    return images


def clean_jpeg(image: Image.Image) -> bytes:
    """A photo as the study stores it: the pixels only, as JPEG (no EXIF, no GPS)."""
    buf = io.BytesIO()
    clean_image(image).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def upload_path(folder: Path, session_id: str, data: bytes) -> Path:
    """Where a session's photo is kept: named per session, so withdrawing one session never deletes another's
    identical photo."""
    return folder / (hashlib.sha256(session_id.encode() + data).hexdigest() + ".jpg")


def forget_uploads(old: Sequence[Mapping[str, Any]], keep: set[str]) -> None:
    """Photos replaced: delete the files nobody refers to any more."""
    for u in old:
        if u["path"] not in keep:
            Path(u["path"]).unlink(missing_ok=True)
