"""The page's files in Gradio's own folder: stored cells and photos served from there, uploads cleaned there.

Gradio keeps every uploaded original (EXIF and GPS included) and every served picture in its temp folder,
reachable by anyone holding the URL. The study keeps its own cleaned copies under results/ (never served), so
Gradio's copies are only needed while a page shows them: the page serves copies of the stored files, replaces
an uploaded original by the clean copy the moment it is stored, and lets Gradio delete its folder's files
hourly (``TEMP_FILE_CLEANUP``).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import gradio as gr

from dressup.files import atomic_write

log = logging.getLogger(__name__)

# (every seconds, older than seconds): gr.Blocks(delete_cache=...); delete them hourly once an hour old (and all
# of them at restart)
TEMP_FILE_CLEANUP = (3600, 3600)


def served(stimulus: Path, name: str = "image.png") -> str:
    """A stored cell as the page serves it: a copy in Gradio's cache folder at ``<sha256>/image.png``.

    Gradio serves a path inside its cache folder as it is, so the participant gets the stored bytes without
    the decode and PNG re-encode a PIL output costs (about 10 ms a cell, 16 cells a Submit), and every cell has
    the same file name. Gradio ages these copies out with its own (``delete_cache``); a later page view makes
    the copy again from the results folder, which is never served itself.
    """
    target = Path(gr.utils.get_upload_folder()) / stimulus.stem / name
    try:
        os.utime(target)  # handed out again: restart its clock, as Gradio does for its own cached copies
    except FileNotFoundError:  # the results folder keeps the durable one
        atomic_write(target, stimulus.read_bytes(), durable=False, keep_existing=True)
    return str(target)


def replace_original(uploaded: Path, clean: bytes) -> None:
    """Overwrite Gradio's copy of an uploaded photo (as uploaded: EXIF, GPS) with the study's clean copy, the
    moment that copy is stored. Overwritten, not deleted: Gradio names uploads by content, so another
    participant who uploaded the same bytes holds the same path and still needs a picture there."""
    folder = Path(gr.utils.get_upload_folder()).resolve()
    path = uploaded.resolve()
    if path.is_relative_to(folder) and path.is_file():
        try:  # two participants may race here: each writes its own temporary file
            atomic_write(path, clean)
        except OSError:  # the participant's answers are stored; Gradio's hourly cleanup still removes it
            log.warning("could not replace an uploaded original in Gradio's folder", exc_info=True)
