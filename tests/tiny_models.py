"""Tiny open_clip configurations shared by the model tests: real code paths, seconds on a CPU."""
from __future__ import annotations

import json
from pathlib import Path

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}

# A tiny ModifiedResNet image tower (the demo's kind) with a 16-d space: the generator tests' encoders.
TINY_RESNET_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "patch_size": None},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}


def write_tiny_config(folder: Path, name: str, config: dict = TINY_CLIP) -> Path:
    """A ``config:`` model file named ``name`` (the file's stem is the encoder's name)."""
    path = Path(folder) / f"{name}.json"
    path.write_text(json.dumps(config))
    return path
