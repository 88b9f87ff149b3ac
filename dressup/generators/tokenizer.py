"""The real CLIP tokenizer, built offline: how tiny test and benchmark pipelines count tokens like SD1.5.

Stable Diffusion 1.5 and FashionCLIP read text with OpenAI's 49,408-token BPE. Tests and benchmarks build tiny
random pipelines that must still tokenise (and so fit prompts, ``dressup.prompt_fit``) exactly as the real
ones do, without downloading anything: the BPE file open_clip ships is turned into a transformers
``CLIPTokenizer`` here. Never used to serve participants.
"""
from __future__ import annotations

import copy
import functools
import gzip
import json
import tempfile
from pathlib import Path


def clip_tokenizer():
    """The real CLIP tokenizer (OpenAI's 49,408-token BPE, as Stable Diffusion 1.5 and FashionCLIP use it),
    built offline from the BPE file open_clip ships, so tiny test pipelines count tokens as the real ones do."""
    return copy.deepcopy(_clip_tokenizer())


@functools.lru_cache(maxsize=1)
def _clip_tokenizer():
    from open_clip.tokenizer import default_bpe
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    byte_chars = list(bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "vocab.json").write_text(json.dumps({v: i for i, v in enumerate(vocab)}), encoding="utf-8")
        (Path(d) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
        return CLIPTokenizer(str(Path(d) / "vocab.json"), str(Path(d) / "merges.txt"), model_max_length=77,
                             pad_token="<|endoftext|>")
