"""Writing a file so that no reader ever sees half of it: the one atomic write every module uses.

Readers of our files run concurrently with their writers (a render reading a grid while another participant's
is written; a restart after a crash; several processes building one cache), so a file is written beside its
final name under a name no other writer can pick, then moved into place with ``os.replace``, which POSIX makes
atomic within a folder.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Callable


def temporary_sibling(path: Path) -> Path:
    """A hidden name beside ``path`` that no concurrent writer (thread or process) also picks."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[Path], object], *,
                 durable: bool = False, keep_existing: bool = False, encoding: str = "utf-8") -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``.

    ``data`` is bytes, text, or a function that writes a given temporary path (``lambda p: torch.save(obj, p)``).
    ``durable`` flushes the file to disk before the rename (answers need it; a cache does not).
    ``keep_existing`` leaves an existing file alone (content-addressed files: the same name is the same bytes).
    """
    path = Path(path)
    if keep_existing and path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        if callable(data):
            data(tmp)
        else:
            with open(tmp, "wb") as f:
                f.write(data.encode(encoding) if isinstance(data, str) else data)
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink(missing_ok=True)
    return path
