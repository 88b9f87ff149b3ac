"""What one doctor check reports, and how its fix commands are spelled."""
from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

OK, WARN, FAULT = "ok", "warn", "fault"


@dataclass
class Check:
    """One line of the doctor's report.

    ``level`` is ``"ok"``, ``"warn"`` (shown, but the study still runs) or ``"fault"`` (the study would not start,
    or would lose answers): only faults make the doctor say "not ready", so a warning must never hide one.
    """

    arm: str  # the arm it concerns, or "*" for the whole study, "train" for recipes
    what: str
    level: str
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.level != FAULT

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def quote(value: str | Path) -> str:
    """A path or id as a shell word: DeepFashion's folder name has spaces, and fixes are meant to be pasted."""
    return shlex.quote(str(value))


def dressup_command(study_path: Path, *words: str) -> str:
    """``python -m dressup WORDS --study FILE``, the form every fix the researcher runs takes."""
    return " ".join(["python -m dressup", *words, "--study", quote(study_path)])


def hf_download(repo_id: str, revision: str = "", cache_dir: str | Path | None = None, files: tuple[str, ...] = (),
                force: bool = False) -> str:
    """The command that fetches a Hub repository (or some of its ``files``) into the cache the loaders read
    (huggingface_hub >= 1.0 ships ``hf``; the older ``huggingface-cli`` is gone). ``force``: a cached file that is
    damaged must be fetched again, and ``hf download`` keeps a file it already has unless told otherwise."""
    parts = ["hf download", quote(repo_id), *(quote(f) for f in files)]
    if revision:
        parts += ["--revision", quote(revision)]
    if cache_dir:
        parts += ["--cache-dir", quote(cache_dir)]
    if force:
        parts.append("--force-download")
    return " ".join(parts) + "   # needs the network once"
