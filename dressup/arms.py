"""Arms: each turns a participant's preference into exactly four images with stable item ids.

Arms are created by kind through one small table (timm's registry idea): ``retrieval`` (encoder + index over
the catalogue) and ``generative`` (an image generator). An arm receives its encoder, index or generator; it does
not load them itself (diffusers' pipeline idea) — ``build_arms`` does the loading, once, for a whole study.

How text and photos are combined (``QuerySpec.fusion``):
- ``mean`` (default): the query is the weighted mean of the normalised text embedding (weight
  ``text_weight``) and the mean of the normalised photo embeddings (weight ``1 - text_weight``),
  renormalised. One search; photos and words pull the same vector, so an item matching both wins. This is
  how CLIP-style retrieval composes modalities in the same embedding space, and it needs no tuning beyond one
  weight.
- ``rrf``: one search per modality (text, each photo), merged by reciprocal rank fusion. Robust when the
  modalities disagree in scale, but an item has to rank well in separate lists.
The default was chosen by measurement (``python -m dressup evaluate --parts fusion``; figures in README).

Constraints (menswear/womenswear, colours to avoid) are filters applied inside the faiss search, never a
post-hoc shortening: four items always come back, or ``NotEnoughItems`` says why not.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dressup.config import ArmSpec, QuerySpec, Study, StudyFileError
from dressup.device import resolve_device
from dressup.garments import GarmentLexicon
from dressup.images import load_image
from dressup.index import CatalogueIndex, NotEnoughItems, choose_kind, load_or_build, reciprocal_rank_fusion
from dressup.protocols import GRID, Arm, Encoder, Generator
from dressup.reading import QueryReader
from dressup.records import Preference, Shown

__all__ = ["ARM_KINDS", "GRID", "Arm", "ArmLoadError", "EmptyPreference", "GenerativeArm", "RetrievalArm",
           "StudyModels", "build_arms", "catalogue_reader"]  # Arm and GRID live in dressup.protocols

log = logging.getLogger(__name__)
RRF_DEPTH = 50


class EmptyPreference(ValueError):
    """Neither text nor photos were given."""


def catalogue_reader(items, palette: dict[str, tuple[int, int, int]] | None,
                     garments: GarmentLexicon | None) -> QueryReader:
    """The query reader for a catalogue: its palette, its garment lexicon and, with garment grounding on, its own
    attribute words (kept as the participant wrote them). One for the retrieval and the generative arms alike."""
    words: set[str] = set()
    if garments is not None:
        for it in items:
            words.update(a for a in it.attributes if it.attribute_types.get(a) not in ("colour", "gender"))
    return QueryReader(palette or None, garments, sorted(words))


@dataclass
class RetrievalArm:
    """Encoder + catalogue index. ``palette`` (catalogue colour name -> RGB) switches colour grounding on;
    ``garments`` (a WordNet garment lexicon) switches garment grounding on (see dressup.reading)."""

    name: str
    encoder: Encoder
    index: CatalogueIndex
    query: QuerySpec = field(default_factory=QuerySpec)
    palette: dict[str, tuple[int, int, int]] | None = None
    max_text_chars: int = 2000
    garments: GarmentLexicon | None = None

    @cached_property
    def reader(self) -> QueryReader:
        return catalogue_reader(self.index.items, self.palette, self.garments)

    def prepare_text(self, text: str) -> tuple[str, dict[str, str]]:
        """The text the encoder sees: trimmed, bounded, and (if grounding is on) read into the catalogue's
        vocabulary: colour words by CIELAB distance, garment words by WordNet (see dressup.reading for why)."""
        reading = self.reader.read((text or "").strip()[: self.max_text_chars])
        return reading.text, reading.colours

    def _text_vector(self, text: str) -> np.ndarray | None:
        if not text:
            return None
        return self.encoder.encode_texts([text])[0].cpu().numpy()

    def _image_vectors(self, images) -> np.ndarray | None:
        if not images:
            return None
        batch = torch.stack([self.encoder.preprocess(im) for im in images]).to(self.encoder.device)
        return self.encoder.encode_images(batch).cpu().numpy()

    def allowed(self, pref: Preference) -> np.ndarray | None:
        """Row mask of items that satisfy the preference's constraints (None = everything allowed)."""
        mask = None
        if pref.gender:
            want = pref.gender.lower()
            mask = self.index.rows_where(lambda it: it.attribute_of("gender") in (None, want))
        if pref.avoid_colours:
            avoid = self._avoid_names(pref.avoid_colours)
            if avoid:
                ok = self.index.rows_where(lambda it: it.attribute_of("colour") not in avoid)
                mask = ok if mask is None else mask & ok
        return mask

    def _avoid_names(self, words: list[str]) -> set[str]:
        if self.palette:
            from dressup.colours import ground_colour_list

            return set(ground_colour_list(words, self.palette))
        return {w.strip().lower() for w in words if w.strip()}

    def query_vector(self, pref: Preference) -> np.ndarray:
        """The ``mean`` fusion query (also used by evaluation)."""
        text, _ = self.prepare_text(pref.text)
        t, imgs = self._text_vector(text), self._image_vectors(pref.images)
        if t is None and imgs is None:
            raise EmptyPreference("give a description or at least one photo")
        if imgs is None:
            return t
        photo = imgs.mean(axis=0)
        photo /= np.linalg.norm(photo) + 1e-12
        if t is None:
            return photo
        w = self.query.text_weight
        q = w * t + (1 - w) * photo
        return q / (np.linalg.norm(q) + 1e-12)

    def rank_rows(self, pref: Preference, k: int = GRID) -> tuple[np.ndarray, np.ndarray]:
        mask = self.allowed(pref)
        if self.query.fusion == "rrf":
            text, _ = self.prepare_text(pref.text)
            vectors = [v for v in [self._text_vector(text)] if v is not None]
            imgs = self._image_vectors(pref.images)
            if imgs is not None:
                vectors += list(imgs)
            if not vectors:
                raise EmptyPreference("give a description or at least one photo")
            depth = min(RRF_DEPTH, len(self.index.index) if mask is None else int(mask.sum()))
            lists = [self.index.index.search(v, depth, mask)[0] for v in vectors]
            rows = np.array(reciprocal_rank_fusion(lists)[:k])
            if len(rows) < k:
                raise NotEnoughItems(f"only {len(rows)} items satisfy the constraints; {k} are needed")
            q = np.mean(vectors, axis=0)
            return rows, self.index.index.vectors[rows] @ (q / (np.linalg.norm(q) + 1e-12))
        return self.index.index.search(self.query_vector(pref), k, mask)

    def recommend(self, pref: Preference, seed: int = 0) -> list[Shown]:
        rows, scores = self.rank_rows(pref, GRID)
        out = []
        for row, score in zip(rows, scores):
            item = self.index.items[int(row)]
            out.append(Shown(item_id=item.item_id, image=load_image(item.image_path), caption=item.caption,
                             score=float(score), extra={"category": item.category}))
        return out


@dataclass
class GenerativeArm:
    """Wraps a ``dressup.generators`` generator so the study treats it like any other arm."""

    name: str
    generator: Generator

    def prepare(self, pref: Preference, seed: int = 0) -> None:
        """Start drawing on the words before the photos arrive (see ``dressup.protocols.Generator.prepare``)."""
        self.generator.prepare(pref, seed)

    def recommend(self, pref: Preference, seed: int = 0) -> list[Shown]:
        shown = self.generator.generate(pref, seed)
        if len(shown) != GRID:
            raise RuntimeError(f"generator of arm {self.name} returned {len(shown)} images, not {GRID}")
        return shown


class StudyModels:
    """Loads each encoder, catalogue and index of a study once and shares them between arms."""

    def __init__(self, study: Study, device: str, progress: bool) -> None:
        self.study, self.device, self.progress = study, device, progress
        self._encoders: dict[str, Encoder] = {}
        self._catalog = None

    def encoder(self, name: str) -> Encoder:
        if name not in self._encoders:
            from dressup.encoders import load_encoder

            self._encoders[name] = load_encoder(self.study.encoder(name), device=self.device)
        return self._encoders[name]

    @property
    def catalog(self):
        if self._catalog is None:
            from dressup.subset import study_catalog

            self._catalog = study_catalog(self.study)  # the [catalogue] subset, when the study sets one
        return self._catalog

    def palette(self) -> dict[str, tuple[int, int, int]] | None:
        if not self.study.query.colour_grounding:
            return None
        from dressup.colours import CATALOGUE_COLOURS

        names = set(self.catalog.attribute_values("colour")) or set(CATALOGUE_COLOURS)
        return {n: rgb for n, rgb in CATALOGUE_COLOURS.items() if n in names}

    @cached_property
    def garments(self) -> GarmentLexicon | None:
        """The study's WordNet garment lexicon (built once into the cache), or None when grounding is off."""
        q = self.study.query
        if not q.garment_grounding:
            return None
        known = {it.category for it in self.catalog.items}
        unknown = sorted(set(q.garments) - known)
        if unknown:
            raise StudyFileError(f"[query.garments] names categories the catalogue lacks: {unknown}; "
                                 f"it has {sorted(known)}")
        return GarmentLexicon.load_or_build(q.garments, self.study.cache_dir)

    def index(self, encoder_name: str) -> CatalogueIndex:
        items = self.catalog.split(self.study.catalogue.split)
        kind = choose_kind(self.study.query.index, len(items), self.study.query.approximate_above)
        folder = self.study.cache_dir / "indexes" / f"{encoder_name}-{self.study.catalogue.split}-{kind}"
        return load_or_build(folder, self.encoder(encoder_name), items, self.catalog.hash(), kind=kind,
                             progress=self.progress)


def _retrieval(spec: ArmSpec, models: StudyModels) -> Arm:
    return RetrievalArm(spec.name, models.encoder(spec.encoder), models.index(spec.encoder), models.study.query,
                        models.palette(), models.study.ui.max_text_chars, models.garments)


def _generative(spec: ArmSpec, models: StudyModels) -> Arm:
    from dressup.generators import load_generator

    settings = dict(spec.generator)
    enc_name = settings.get("encoder")
    encoder = models.encoder(enc_name) if enc_name else None
    palette = models.palette()
    reader = None
    if models.garments is not None:  # the DCGAN was trained on catalogue words: read sentences into them first
        reader = catalogue_reader(models.catalog.split(models.study.catalogue.split), palette, models.garments)
    gen = load_generator(settings, device=models.device, encoder=encoder, base_dir=models.study.path.parent,
                         palette=palette, reader=reader)
    return GenerativeArm(spec.name, gen)


ARM_KINDS: dict[str, Callable[[ArmSpec, StudyModels], Arm]] = {"retrieval": _retrieval, "generative": _generative}


class ArmLoadError(RuntimeError):
    """An arm's model could not be loaded; the message names the arm and the fix."""


def build_arms(study: Study, *, progress: bool = True, device: str | None = None) -> dict[str, Arm]:
    """Every arm of a study, ready to recommend, from models that already exist (nothing is trained here).

    A demo-profile study's models come from its build: call ``dressup.demo.ensure_study_models(study)`` first, as
    the app, the CLI and the tests do, so that loading arms never starts minutes of training as a side effect."""
    models = StudyModels(study, resolve_device(device or study.device), progress)
    arms: dict[str, Arm] = {}
    for spec in study.arms:
        try:
            arms[spec.name] = ARM_KINDS[spec.kind](spec, models)
        except Exception as e:  # noqa: BLE001 — re-raised with the arm's name and the fix
            raise ArmLoadError(
                f"arm {spec.name!r} ({spec.kind}) could not be loaded: {e}. "
                f"Run `python -m dressup doctor --study {study.path}` to see what is missing and how to fix it."
            ) from e
    return arms

