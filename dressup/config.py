"""The study file: every model id, path and threshold lives here, nowhere else.

A study is one TOML file (``assets/demo.toml`` is the demo profile's, ``assets/paper.toml`` the paper's).
Relative paths in it are resolved against the folder the file is in, so a researcher can copy the file
anywhere. ``load_study`` validates it against ``dressup.study_schema`` (every section and key, with its type,
range or choices) and returns the plain dataclasses of ``dressup.study_types`` (re-exported here, where the
rest of the library imports them from); a mistake a researcher can make raises ``StudyFileError`` naming the
file, the key and the fix.

The dataclasses are filled from the file's own values (after validation), not pydantic's copies, so a study
that loaded before loads to exactly the same dataclasses (``lr = 1`` stays an int; the demo build's cache key
is computed from them).
"""
from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dressup.study_errors import study_file_error
from dressup.study_schema import StudyFile, check_references
from dressup.study_types import (ArmSpec, CatalogueSpec, EncoderSpec, PushSpec, QuerySpec, Study, StudyFileError,
                                 TrainSpec, UISpec, local_dir)

__all__ = ["ArmSpec", "CatalogueSpec", "DEFAULT_STUDY", "EncoderSpec", "PushSpec", "QuerySpec", "SPACES_DATA",
           "STUDY_ENV", "Study", "StudyFileError", "TrainSpec", "UISpec", "load_study", "local_dir",
           "read_study_file", "study_path_from_env"]

DEFAULT_STUDY = Path(__file__).resolve().parent.parent / "assets" / "demo.toml"
STUDY_ENV = "DRESSUP_STUDY"
SPACES_DATA = Path("/data")  # a Space's persistent storage, when the Space has the storage upgrade


def study_path_from_env(path: str | os.PathLike | None = None) -> Path:
    """The study file to use: an explicit path, else $DRESSUP_STUDY, else the demo study."""
    return Path(path or os.environ.get(STUDY_ENV) or DEFAULT_STUDY).resolve()


def read_study_file(path: str | os.PathLike | None = None) -> tuple[Path, dict[str, Any], StudyFile]:
    """The study file's path, its TOML as written and its validated model; nothing is fetched or loaded, so a
    command can check its arguments against the study in a fraction of a second."""
    p = study_path_from_env(path)
    if not p.is_file():
        raise StudyFileError(f"study file {p} does not exist; copy assets/demo.toml and point {STUDY_ENV} at it")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise StudyFileError(f"study file {p} is not valid TOML: {e}") from e
    try:
        doc = StudyFile.model_validate(raw)
    except ValidationError as e:
        raise study_file_error(e, p) from None
    check_references(doc, p)
    return p, raw, doc


def load_study(path: str | os.PathLike | None = None) -> Study:
    """Read and validate a study file (see the module docstring for path rules)."""
    p, raw, doc = read_study_file(path)
    base = p.parent
    s = doc.study
    encoders = {name: _pick({**e, "spec": _expand_spec(e["spec"], base)}, EncoderSpec, name=name)
                for name, e in raw.get("encoders", {}).items()}
    return Study(
        name=s.name,
        profile=s.profile,
        path=p,
        seed=s.seed,
        participants_wanted=s.participants_wanted,
        results_dir=_results_dir(base, s.results_dir),
        cache_dir=_resolve(base, s.cache_dir),
        device=s.device,
        catalogue=_catalogue(dict(raw["catalogue"]), p),
        encoders=encoders,
        train={n: _pick(t, TrainSpec, name=n) for n, t in raw.get("train", {}).items()},
        arms=[_arm(name, a, base) for name, a in raw["arms"].items()],
        query=_pick(raw.get("query", {}), QuerySpec, path=p),
        ui=_pick(raw.get("ui", {}), UISpec),
        push=_pick(raw.get("push", {}), PushSpec),
        raw=raw,
        allow_cpu=s.allow_cpu,
        database=s.database,
        allow_data_loss=s.allow_data_loss,
        weights=_resolve(base, s.weights) if s.weights else None,
    )


def _pick(d: dict[str, Any], cls: type, path: Path | None = None, **fixed: Any) -> Any:
    """``cls`` from a validated table (its keys are ``cls``'s fields: the schema forbade any other); a check of
    the dataclass's own (``CatalogueSpec``, ``QuerySpec``) is prefixed with the file it is about."""
    try:
        return cls(**fixed, **d)
    except StudyFileError as e:
        if path is None:
            raise
        raise StudyFileError(f"{path}: {e}") from None


def _catalogue(cat: dict[str, Any], path: Path) -> CatalogueSpec:
    if cat.get("repo"):
        cat["root"] = _hub_catalogue(cat, path)
    elif "root" not in cat:
        raise StudyFileError(f"study file {path}: [catalogue] needs 'root' (a DeepFashion-format folder) or 'repo' "
                             "(a Hub dataset in that layout)")
    else:
        cat["root"] = _resolve(path.parent, cat["root"])
    return _pick(cat, CatalogueSpec, path=path)


def _arm(name: str, a: dict[str, Any], base: Path) -> ArmSpec:
    a = dict(a)
    if isinstance(a.get("generator"), dict) and a["generator"].get("checkpoint"):  # a folder, like the others
        a["generator"] = {**a["generator"], "checkpoint": str(_resolve(base, a["generator"]["checkpoint"]))}
    return _pick(a, ArmSpec, name=name)


def _resolve(base: Path, value: str) -> Path:
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else (base / p).resolve()


def _results_dir(base: Path, value: str) -> Path:
    """On a Hugging Face Space with persistent storage, a relative results folder lives under /data (the
    Space's own disk is wiped at every restart); everywhere else it is relative to the study file."""
    p = Path(os.path.expanduser(value))
    if not p.is_absolute() and os.environ.get("SPACE_ID") and SPACES_DATA.is_dir():
        return SPACES_DATA.joinpath(*[part for part in p.parts if part not in ("..", ".")])
    return _resolve(base, value)


def _hub_catalogue(cat: dict[str, Any], path: Path) -> Path:
    """``[catalogue] repo``: the dataset's snapshot folder in the Hugging Face cache, fetched now if need be, so
    every later reader of ``root`` sees an ordinary folder."""
    # Imported here, not at the top: a study file on disk is read without the catalogue code (and numpy).
    from dressup.catalog import CatalogError, catalogue_from_hub

    repo = cat["repo"]
    if "root" in cat:
        raise StudyFileError(f"{path}: [catalogue] has both root and repo; keep root for a folder on this machine "
                             "or repo for a Hub dataset, not both")
    if repo.count("/") != 1:
        raise StudyFileError(f"{path}: [catalogue] repo = {repo!r} must be a Hub dataset id such as "
                             "\"lab/deepfashion\"")
    if cat.get("kind", "deepfashion") != "deepfashion":
        raise StudyFileError(f"{path}: [catalogue] repo needs kind = \"deepfashion\" (the demo catalogue is drawn "
                             "locally, not downloaded)")
    try:
        return catalogue_from_hub(repo, str(cat.get("revision") or ""))
    except CatalogError as e:
        raise StudyFileError(f"{path}: [catalogue] repo = {repo!r}: {e}") from None


def _expand_spec(spec: str, base: Path) -> str:
    """Make ``local:`` and ``config:`` paths absolute so a spec means the same from any working folder."""
    for scheme in ("local:", "config:"):
        if spec.startswith(scheme):
            return scheme + str(_resolve(base, spec[len(scheme):]))
    return spec
