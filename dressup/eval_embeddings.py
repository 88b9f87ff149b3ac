"""Embedding what the evaluation measures: a split's images and unique captions, with text embeddings shared.

The evaluation asks for the same texts many times (every caption under every encoder; every query under each
fusion mode and grounding setting), and encoders often share a text tower (the demo's encoders all use one
locked MiniLM tower). ``text_tower_key`` says when two encoders embed every text identically, and
``RememberedTexts`` remembers an encoder's text embeddings, so each text is encoded once per tower.
torch and the model code are imported when first needed, so the metrics stay importable without them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from dressup.metrics import Table1Row, table1_from_embeddings, unique_captions
from dressup.protocols import Encoder
from dressup.records import Item

if TYPE_CHECKING:
    import torch

    from dressup.encoders import Encoder as ModelEncoder  # the concrete encoder: its weights are read here


def encode_captions(encoder: Encoder, captions: Sequence[str], *, batch_size: int = 512, progress: bool = False
                    ) -> np.ndarray:
    """L2-normalised text embeddings [len(captions), D], in batches with a progress bar."""
    from tqdm.auto import tqdm

    out = np.zeros((len(captions), encoder.embed_dim), np.float32)
    for start in tqdm(range(0, len(captions), batch_size), desc=f"captions {encoder.name}", disable=not progress,
                      unit="batch"):
        out[start:start + batch_size] = encoder.encode_texts(list(captions[start:start + batch_size])).numpy()
    return out


@dataclass
class SplitEmbeddings:
    """One encoder's embeddings of a split: images [N, D], unique captions [U, D], and each image's caption row."""

    encoder: str
    image: np.ndarray
    captions: np.ndarray
    own: np.ndarray


def embed_split(encoder: "ModelEncoder", items: Sequence[Item], *, progress: bool = False,
                caption_cache: dict[str, np.ndarray] | None = None) -> SplitEmbeddings:
    """Image embeddings of ``items`` and text embeddings of their unique captions (each caption encoded once).

    ``caption_cache`` (keyed by ``text_tower_key``) lets encoders that share a text tower share the captions'
    embeddings too.
    """
    from dressup.index import embed_items  # faiss and torch: only when something is embedded

    unique, own = unique_captions([it.caption for it in items])
    image = embed_items(encoder, items, progress=progress)
    if caption_cache is None:
        captions = encode_captions(encoder, unique, progress=progress)
    else:
        key = f"{text_tower_key(encoder)}|{hash(tuple(unique))}"
        if key not in caption_cache:
            caption_cache[key] = encode_captions(encoder, unique, progress=progress)
        captions = caption_cache[key]
    return SplitEmbeddings(encoder.name, image, captions, own)


def table1(emb: SplitEmbeddings, items: Sequence[Item], split: str) -> Table1Row:
    """Table 1 row of one encoder from its split embeddings."""
    return table1_from_embeddings(emb.encoder, split, emb.image, emb.captions, emb.own,
                                  [frozenset(it.attributes) for it in items])


# State-dict entries that cannot change a text embedding: the image tower (open_clip ``visual``; transformers
# ``vision_model`` / ``visual_projection``) and the contrastive temperature.
_NOT_TEXT = ("visual.", "vision_model.", "visual_projection.", "logit_scale", "logit_bias")


def text_tower_key(encoder: "ModelEncoder") -> str:
    """A hash of everything that shapes an encoder's text embeddings: every weight outside the image tower, and
    the tokenizer's kind and context length. Encoders with equal keys embed every text identically (the demo's
    encoders share the locked MiniLM tower), so their caption embeddings are computed once.
    """
    from dressup.encoders import state_fingerprint  # open_clip and torch: only when an encoder exists

    state = {k: v for k, v in encoder.module.state_dict().items() if not k.startswith(_NOT_TEXT)}
    tok = getattr(encoder, "tokenizer", None)
    extra = f"{type(encoder).__name__}|{type(tok).__name__}|{getattr(tok, 'context_length', '')}"
    return hashlib.sha256((state_fingerprint(state) + extra).encode()).hexdigest()


class RememberedTexts:
    """An encoder whose text embeddings are remembered: the evaluation asks for the same texts many times (each
    query under every fusion mode and grounding setting), and a text embedding depends on nothing else.

    Everything else is the encoder's own (``__getattr__``), so arms run exactly as in the app.
    """

    def __init__(self, encoder: "ModelEncoder", memo: "dict[str, torch.Tensor] | None" = None) -> None:
        self.encoder = encoder
        self._memo: dict[str, torch.Tensor] = {} if memo is None else memo  # shared by encoders with one text tower

    def __getattr__(self, name: str) -> Any:
        return getattr(self.encoder, name)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> "torch.Tensor":
        import torch

        if isinstance(texts, str):
            raise TypeError("encode_texts takes a list of strings; wrap a single text in a list")
        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if missing:
            self._memo.update(zip(missing, self.encoder.encode_texts(missing, batch_size)))
        if not texts:
            return torch.zeros(0, self.encoder.embed_dim)
        return torch.stack([self._memo[t] for t in texts])

    def remember(self, texts: Sequence[str]) -> None:
        """Encode many texts in batches now (much faster than one by one)."""
        self.encode_texts([t for t in texts if t])
