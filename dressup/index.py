"""The catalogue's image embeddings under one encoder, in faiss, saved with a manifest.

Why faiss: it is the well-kept standard for exact and approximate inner-product search, supports filtered
search through ID selectors (so constraints such as "menswear only" are applied inside the search, never by
shortening a result list afterwards), and reads/writes its own index files.

An index folder holds ``index.faiss``, ``vectors.npy`` (the normalised embeddings, so fusion and evaluation
can reuse them) and ``manifest.json`` (encoder spec, encoder fingerprint, the encoder's preprocessing,
catalogue hash, item ids, kind). ``load_or_build`` rebuilds when any of those no longer match: a stale index
is never served.

Manifests written before they recorded preprocessing come from indexes whose images were all squash-resized
(bicubic) to the tower's size. Such an index is kept only when the encoder's own pipeline gives exactly those
pixels on every catalogue image (read from the image headers: square images, or an STN's squash), as on the
demo's square catalogue; its manifest then gains the field. Otherwise it is rebuilt.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import faiss
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from dressup.files import atomic_write
from dressup.images import load_image
from dressup.protocols import Encoder
from dressup.records import Item

INDEX_KINDS = ("exact", "hnsw")
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 256


class NotEnoughItems(ValueError):
    """Fewer catalogue items satisfy the constraints than a grid needs."""


@dataclass
class Manifest:
    encoder_spec: str
    encoder_fingerprint: str
    catalogue_hash: str
    kind: str
    dim: int
    item_ids: list[str] = field(default_factory=list)
    built_at: float = 0.0
    preprocessing: str = ""  # Encoder.preprocessing; "" in manifests written before it was recorded

    def matches(self, other: "Manifest") -> bool:
        return (self.encoder_fingerprint, self.preprocessing, self.catalogue_hash, self.kind, self.item_ids) == (
            other.encoder_fingerprint, other.preprocessing, other.catalogue_hash, other.kind, other.item_ids)

    def save(self, path: Path) -> None:
        atomic_write(path, json.dumps(asdict(self)))  # a crash mid-write leaves the old manifest (or none)


def _squashed_alike(encoder: Encoder, items: Sequence[Item]) -> bool:
    """Whether ``encoder``'s preprocessing gives every item the pixels the old squash-only preprocessing gave
    (see the module docstring), judged from the image headers; an unreadable image means no."""
    geometry = encoder.geometry
    try:
        for it in items:
            with Image.open(it.image_path) as im:
                if not geometry.same_as_squash(*im.size):
                    return False
    except (OSError, ValueError):
        return False
    return True


def choose_kind(requested: str, n_items: int, approximate_above: int) -> str:
    """"auto" picks exact search for catalogues up to ``approximate_above`` items, HNSW above (see bench/)."""
    if requested == "auto":
        return "hnsw" if n_items > approximate_above else "exact"
    if requested not in INDEX_KINDS:
        raise ValueError(f"index kind must be 'auto' or one of {INDEX_KINDS}, not {requested!r}")
    return requested


class VectorIndex:
    """Normalised vectors + a faiss index over them; search returns row numbers and cosine scores."""

    def __init__(self, vectors: np.ndarray, kind: str = "exact") -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        faiss.normalize_L2(vectors)
        self.vectors = vectors
        self.kind = kind
        d = vectors.shape[1]
        if kind == "exact":
            self.faiss = faiss.IndexFlatIP(d)
        elif kind == "hnsw":
            self.faiss = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            self.faiss.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        else:
            raise ValueError(f"unknown index kind {kind!r}; use one of {INDEX_KINDS}")
        self.faiss.add(vectors)

    def __len__(self) -> int:
        return self.vectors.shape[0]

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows for one query vector. ``allowed`` (bool mask over rows) restricts the search itself.

        Raises ``NotEnoughItems`` when fewer than k rows are allowed, so a caller never silently gets a
        short list.
        """
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        faiss.normalize_L2(q)
        params = None
        if allowed is not None:
            ids = np.flatnonzero(allowed).astype(np.int64)
            if len(ids) < k:
                raise NotEnoughItems(f"only {len(ids)} catalogue items satisfy the constraints; {k} are needed")
            sel = faiss.IDSelectorBatch(ids)
            if self.kind == "hnsw":
                params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(HNSW_EF_SEARCH, k))
            else:
                params = faiss.SearchParameters(sel=sel)
        elif self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(HNSW_EF_SEARCH, k))
        scores, rows = self.faiss.search(q, k, params=params)
        rows, scores = rows[0], scores[0]
        keep = rows >= 0
        if keep.sum() < k and allowed is not None:
            # HNSW under a very selective filter can miss; fall back to exact search over the allowed rows.
            ids = np.flatnonzero(allowed)
            s = self.vectors[ids] @ q[0]
            top = np.argsort(-s, kind="stable")[:k]
            return ids[top], s[top]
        return rows[keep], scores[keep]

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "vectors.npy", self.vectors)
        faiss.write_index(self.faiss, str(folder / "index.faiss"))

    @classmethod
    def load(cls, folder: Path, kind: str) -> "VectorIndex":
        self = cls.__new__(cls)
        self.vectors = np.load(folder / "vectors.npy")
        self.kind = kind
        self.faiss = faiss.read_index(str(folder / "index.faiss"))
        return self


class _ImageDataset(Dataset):
    def __init__(self, items: Sequence[Item], preprocess) -> None:
        self.items, self.preprocess = items, preprocess

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.preprocess(load_image(self.items[i].image_path))


def embed_items(encoder: Encoder, items: Sequence[Item], *, batch_size: int = 256, num_workers: int | None = None,
                progress: bool = True) -> np.ndarray:
    """Image embeddings of catalogue items, streamed through a DataLoader so decoding (in worker processes
    for large catalogues) keeps the model fed and memory stays flat whatever the catalogue size."""
    if num_workers is None:
        num_workers = 0 if len(items) < 20_000 else 2
    loader = DataLoader(_ImageDataset(items, encoder.preprocess), batch_size=batch_size,
                        num_workers=num_workers, persistent_workers=False)
    out = np.zeros((len(items), encoder.embed_dim), dtype=np.float32)
    i = 0
    for batch in tqdm(loader, desc=f"index {encoder.name}", disable=not progress, unit="batch"):
        emb = encoder.encode_images(batch.to(encoder.device)).cpu().numpy()
        out[i:i + len(emb)] = emb
        i += len(emb)
    return out


@dataclass
class CatalogueIndex:
    """A VectorIndex whose rows are catalogue items."""

    index: VectorIndex
    items: list[Item]
    manifest: Manifest

    def rows_where(self, predicate) -> np.ndarray:
        return np.fromiter((bool(predicate(it)) for it in self.items), dtype=bool, count=len(self.items))


def load_or_build(folder: Path, encoder: Encoder, items: Sequence[Item], catalogue_hash: str, *, kind: str = "exact",
                  progress: bool = True) -> CatalogueIndex:
    """The index for (encoder, catalogue) from ``folder``, rebuilt if missing or stale."""
    folder = Path(folder)
    want = Manifest(
        encoder_spec=encoder.spec, encoder_fingerprint=encoder.fingerprint(), catalogue_hash=catalogue_hash,
        kind=kind, dim=encoder.embed_dim, item_ids=[it.item_id for it in items], preprocessing=encoder.preprocessing,
    )
    mpath = folder / "manifest.json"
    if mpath.is_file():
        try:
            have = Manifest(**json.loads(mpath.read_text()))
            if not have.preprocessing and Manifest(**dict(asdict(have), preprocessing=want.preprocessing)).matches(want) \
                    and _squashed_alike(encoder, items):
                have.preprocessing = want.preprocessing
                have.save(mpath)
            if have.matches(want):
                return CatalogueIndex(VectorIndex.load(folder, kind), list(items), have)
        except (ValueError, TypeError, RuntimeError, OSError):
            pass  # unreadable or old manifest: rebuild below
    vectors = embed_items(encoder, items, progress=progress)
    index = VectorIndex(vectors, kind)
    index.save(folder)
    want.built_at = time.time()
    want.save(mpath)  # the manifest is written last: a crash mid-build means "stale"
    return CatalogueIndex(index, list(items), want)


def reciprocal_rank_fusion(rankings: Iterable[Sequence[int]], k: int = 60) -> list[int]:
    """Merge ranked lists of row numbers (Cormack et al. 2009): score = sum 1/(k + rank)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for r, row in enumerate(ranking):
            scores[int(row)] = scores.get(int(row), 0.0) + 1.0 / (k + r + 1)
    return sorted(scores, key=lambda row: (-scores[row], row))
