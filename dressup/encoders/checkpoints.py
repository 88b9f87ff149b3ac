"""The ``local:`` folder format: its file names, its ``encoder.json``, the weights' fingerprint, and how the
base spec is recorded so that a folder does not name one machine's paths.

A folder is ``encoder.json`` (what to rebuild and from what) + ``model.safetensors`` (the state dict) + the
backend's own files (``Encoder._save_backend``). ``Encoder.save`` writes one (``write_folder``), the ``local:``
loader reads one back (``read_meta``), and the shipped demo weights (``dressup.weights``) are such folders.

``base_spec`` (the spec the encoder was first built from) used to be written as given, so a ``config:`` file
of this repository was recorded as an absolute path of the machine that trained it. A ``config:``/``local:``
path inside the repository is now recorded relative to the repository root (``portable_spec``) and made
absolute again on reading (``resolved_spec``); absolute paths written before, or outside the repository, are
read as they are.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from dressup.encoders.errors import EncoderError

ENCODER_JSON = "encoder.json"
WEIGHTS = "model.safetensors"
FORMAT_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parents[2]  # the checkout this package sits in (its assets/ are beside it)
_PATH_SCHEMES = ("config", "local")  # spec schemes whose identifier is a path on this machine


def state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of a state dict, in key order."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _untie(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory; clone the repeats."""
    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else -1
        out[k] = v.clone() if ptr in seen else v
        if ptr != -1:
            seen.add(ptr)
    return out


def portable_spec(spec: str) -> str:
    """``spec`` as ``encoder.json`` records it: a ``config:``/``local:`` path inside the repository relative to
    the repository root (``config:assets/models/dressup-demo-small.json``), any other spec unchanged."""
    scheme, sep, rest = spec.partition(":")
    if not sep or scheme not in _PATH_SCHEMES:
        return spec
    path = Path(rest)
    if path.is_absolute() and path.is_relative_to(REPO_ROOT):
        return f"{scheme}:{path.relative_to(REPO_ROOT).as_posix()}"
    return spec


def resolved_spec(spec: str) -> str:
    """A recorded base spec as the loaded encoder carries it: a repository-relative path that names a file or
    folder of this repository is made absolute again; an absolute path (older folders) is kept as written."""
    scheme, sep, rest = spec.partition(":")
    if not sep or scheme not in _PATH_SCHEMES or not rest or Path(rest).is_absolute():
        return spec
    path = REPO_ROOT / rest
    return f"{scheme}:{path}" if path.exists() else spec


def write_folder(d: Path, meta: dict[str, Any], module_state: dict[str, torch.Tensor]) -> Path:
    """Write ``model.safetensors`` and, last, ``encoder.json`` (``meta`` plus the weights' fingerprint) to ``d``."""
    state = {k: v.detach().cpu().contiguous() for k, v in module_state.items()}
    meta = dict(meta, base_spec=portable_spec(meta["base_spec"]), fingerprint=state_fingerprint(state))
    save_file(_untie(state), str(d / WEIGHTS))
    (d / ENCODER_JSON).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return d


def read_meta(d: Path) -> dict[str, Any]:
    """``encoder.json`` of the folder ``d``, checked to be of this format, its ``base_spec`` resolved."""
    meta_path = d / ENCODER_JSON
    if not meta_path.is_file():
        raise EncoderError(f"{d} is not an encoder folder (no {ENCODER_JSON}); train one with "
                           "`python -m dressup train` or save one with Encoder.save")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT_VERSION:
        raise EncoderError(f"{meta_path} has format {meta.get('format')}, this dressup reads {FORMAT_VERSION}; "
                           "retrain the encoder with this version")
    meta["base_spec"] = resolved_spec(meta["base_spec"])
    return meta
