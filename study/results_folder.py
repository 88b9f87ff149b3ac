"""The results folder on disk: checked writable at start, and the files kept in it (stimuli, photos).

Answers are committed one by one while participants work, so a folder that cannot take them must stop the
app at start, not fail in front of a participant. Files written into it are written once, atomically and
durably (``dressup.files.atomic_write``); when several hosts share one database, each file also goes in as a
blob named by its file's stem, so a host that did not write it can fetch it back (a resume elsewhere).
The folder itself is never served.
"""
from __future__ import annotations

import errno
import os
import secrets
import shutil
import sqlite3
from pathlib import Path

from dressup.config import Study
from dressup.files import atomic_write
from study.schema import connect
from study.store import Store

# Free space the results folder must have at start: a session keeps up to 4 JPEG uploads and 16 PNG cells
# (about 3.5 MB), so this is room for a few hundred sessions before anything can fail for want of disk.
MIN_FREE_MB = 1024


class ResultsFolderError(RuntimeError):
    """The results folder cannot take answers (read-only, full, not a folder); the message names the fix."""


def check_results_folder(study: Study, min_free_mb: float = MIN_FREE_MB) -> None:
    """Refuse to start unless every folder answers are written to can be written now and has room.

    Answers are committed one by one while participants work; a folder that cannot take them would turn
    every answer into an error in front of a participant (or, worse, a study that looks fine and records
    nothing). So the database, uploads and stimuli folders are each created and probed with a real
    write + fsync at start, the database is opened for writing, and free space is checked.
    """
    fix = f"make it writable (or set results_dir in {study.path.name} to a writable folder) and start again"
    root = study.results_dir
    for folder in (root, root / "uploads", root / "stimuli"):
        _probe(folder, fix)
    free_mb = shutil.disk_usage(root).free / 2 ** 20
    if free_mb < min_free_mb:
        raise ResultsFolderError(
            f"the results folder {root} has only {free_mb:.1f} MB free, under the {min_free_mb:g} MB a study needs "
            "to record answers and photos; free some disk space or set results_dir to a larger disk")
    try:
        conn = connect(study.db_path)  # as the store opens it: WAL, schema created if new
        try:  # a real page write, rolled back: SQLite opens a read-only file without complaint until then
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE meta SET value = value WHERE key = 'schema_version'")
            conn.execute("ROLLBACK")
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise ResultsFolderError(f"the study database {study.db_path} cannot be written ({e}); {fix}") from e


def _probe(folder: Path, fix: str) -> None:
    """Create ``folder`` and write, flush and delete a file in it; refuse (naming the fix) if that fails."""
    probe = folder / f".write-probe-{secrets.token_hex(4)}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"probe")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        why = "free some disk space or set results_dir to a larger disk" if e.errno == errno.ENOSPC else fix
        raise ResultsFolderError(f"the results folder {folder} cannot be written ({e.strerror or e}); {why}") from e
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass


def keep_file(store: Store, path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` once (durably; an existing file is the same bytes and stays), and on a shared
    database also as the blob named by the file's stem, so every host of the study can read it."""
    atomic_write(path, data, durable=True, keep_existing=True)
    if store.shared:
        store.put_blob(path.stem, data)


def local_file(store: Store, path: Path) -> Path:
    """``path``, fetched from the database's blobs (named by the file's stem) when this host lacks it."""
    if not path.exists() and store.shared:
        data = store.blob(path.stem)
        if data is not None:
            atomic_write(path, data, durable=True, keep_existing=True)
    return path
