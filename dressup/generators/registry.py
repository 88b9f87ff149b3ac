"""From a study file's ``[arms.NAME.generator]`` table to a generator: ``load_generator`` and the kind table.

``GENERATOR_KINDS`` maps each ``kind`` to the module and function that load it (timm's registry idea). The
table names modules rather than holding functions so that a study pays only for the kind it uses: the DCGAN
and diffusion kinds bring their training code's and checkpoints' dependencies, none of which a Stable
Diffusion study needs. Kind modules import ``dressup.generators.base`` and never this module, so there is no
cycle to break; ``importlib`` here is how a registry defers a choice made at run time, not a hidden import.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from dressup.generators.base import BaseGenerator, GeneratorSettingsError
from dressup.protocols import Encoder

# kind -> (module, loader). Every loader takes (settings, *, device, encoder, base_dir, palette, reader).
GENERATOR_KINDS: dict[str, tuple[str, str]] = {
    "sd15": ("dressup.generators.sd15", "load_sd15_generator"),
    "dcgan": ("dressup.generators.dcgan", "load_dcgan_generator"),
    "diffusion": ("dressup.generators.diffusion", "load_diffusion_generator"),
}


def load_generator(settings: dict[str, Any], *, device: str | torch.device | None = "auto",
                   encoder: Encoder | None = None, base_dir: str | Path = ".",
                   palette: dict[str, tuple[int, int, int]] | None = None, reader: Any = None) -> BaseGenerator:
    """The generator a study file's ``[arms.NAME.generator]`` describes, picked by ``kind``.

    ``encoder`` scores candidates (``candidates > 4``) and conditions the DCGAN; ``base_dir`` (the study
    file's folder) resolves relative paths; ``palette`` (catalogue colour name -> RGB) grounds colour words
    for the DCGAN, and ``reader`` (``dressup.reading.QueryReader``) reads a whole sentence into the
    catalogue's words for it.
    """
    kind = settings.get("kind")
    if kind not in GENERATOR_KINDS:
        raise GeneratorSettingsError(f"generator kind {kind!r} is unknown; set kind = one of {sorted(GENERATOR_KINDS)}")
    module, loader = GENERATOR_KINDS[kind]
    load = getattr(importlib.import_module(module), loader)
    return load(dict(settings), device=device, encoder=encoder, base_dir=Path(base_dir), palette=palette,
                reader=reader)
