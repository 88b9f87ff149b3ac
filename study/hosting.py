"""Where a hosted study keeps what it must not lose, decided before the first participant arrives.

A Hugging Face Space's own disk is wiped at every restart, rebuild and sleep. A study there keeps its answers
either in a database server (``DATABASE_URL`` or ``[study] database``) or under ``/data``, the Space's
persistent storage; anything else loses the database, the uploads, the resume links and the Latin-square
counter at the first restart, so the app refuses to start on it unless the study file says that losing data
is fine (``allow_data_loss = true``, for a demo). Models are cached under ``/data`` too when it exists, so a
restart does not download them again.
"""
from __future__ import annotations

import os
from pathlib import Path

from dressup.config import SPACES_DATA, Study
from study.database import DATABASE_ENV

HF_HOME_ON_DATA = SPACES_DATA / ".huggingface"


class HostingError(RuntimeError):
    """The study would lose its answers where it is hosted; the message names both fixes."""


def on_space() -> bool:
    return bool(os.environ.get("SPACE_ID"))


def use_persistent_model_cache() -> None:
    """On a Space with persistent storage, keep the Hugging Face cache there (set before any model loads)."""
    if on_space() and SPACES_DATA.is_dir():
        os.environ.setdefault("HF_HOME", str(HF_HOME_ON_DATA))


def check_hosting(study: Study) -> str | None:
    """Refuse (``HostingError``) a study whose answers a Space restart would wipe; a warning when the study
    file accepts it. None elsewhere, or when the answers are safe."""
    if not on_space() or os.environ.get(DATABASE_ENV) or study.database:
        return None
    results = Path(study.results_dir).resolve()
    if results.is_relative_to(SPACES_DATA) and SPACES_DATA.is_dir():
        return None
    problem = (f"this Space's disk is wiped at every restart, and the answers of study {study.name!r} would be "
               f"stored on it ({results})")
    if study.allow_data_loss:
        return f"{problem}; the study file says allow_data_loss = true, so they will be lost at the next restart"
    raise HostingError(
        f"{problem}. Fix one of: (1) add persistent storage to the Space (Settings -> Persistent storage) so "
        f"answers live under /data, or (2) set a DATABASE_URL secret pointing at a PostgreSQL server. "
        f"(A throw-away demo may set allow_data_loss = true under [study] in {study.path}.)")
