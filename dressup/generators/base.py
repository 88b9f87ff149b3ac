"""What every generator kind shares: ids and seeds, prompts and drawn candidates, preference scoring, the
settings every kind accepts, and ``BaseGenerator``, the one ``generate`` all kinds run.

Each kind (``dressup.generators.sd15``, ``.dcgan``, ``.diffusion``) subclasses ``BaseGenerator`` and says only
how a preference becomes a prompt and how candidates are drawn; this module holds the rest, so the guarantees
below hold for every kind alike. Kind modules import from here; this module imports no kind.

What the study can rely on, whatever the kind:

- **Four images, stable ids.** ``Shown.item_id`` is ``"gen:"`` + the first 16 hex digits of a sha256 over the
  model id, prompt, negative prompt, request seed, settings, candidate index and the seed the image was
  actually drawn from, so a stored response names exactly what was shown and the same request always gets
  the same ids.
- **Deterministic.** Each image is drawn from its own ``torch.Generator`` (on the CPU, so the same seed gives
  the same starting noise on any device), seeded from the request seed and the image's index.
- **Traceable.** ``Shown.extra`` records the request seed, the image seed, the prompt and everything else a
  researcher needs to regenerate the image; ``Shown.caption`` holds the prompt. Neither must reach a
  participant.
- **Can start early.** ``prepare(pref, seed)`` draws the candidates for a preference's words before its photos
  arrive (the study calls it as soon as a participant's text is given); ``generate`` with the same prompt and
  seed then takes those candidates instead of drawing again. Only the drawing is done ahead, keyed by
  everything it depends on, so a prepared request and an unprepared one return the same images.
- **Preference-scored selection** (Kang et al. 2017, "Visually-Aware Fashion Recommendation and Design with
  Generative Image Models"): with ``candidates = N > 4``, N images are drawn and the four that score highest
  under an encoder against the participant's preference are kept, best first; every candidate's score is
  recorded. Off by default (``candidates = 4``), so the paper's arm stays the paper's.
"""
from __future__ import annotations

import hashlib
import json
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from dressup.device import resolve_device as _resolve_device
from dressup.protocols import GRID, Encoder
from dressup.records import Preference, Shown

ITEM_PREFIX = "gen:"
PREPARED_KEEP = 64  # drawn-ahead candidate sets a generator keeps (one per participant between text and Submit)
_PREPARED_LOCK = threading.Lock()


class GeneratorSettingsError(ValueError):
    """A generator's settings in the study file are wrong; the message names the key and the fix."""


# ---------------------------------------------------------------------------------------------------------
# Ids and seeds


def image_seed(seed: int, index: int, attempt: int = 0) -> int:
    """The seed of candidate ``index`` of a request, redraw ``attempt`` (0 = first draw).

    A hash rather than ``seed + index``, so request 0's second image is not request 1's first.
    """
    digest = hashlib.sha256(f"dressup-image-seed/{int(seed)}/{int(index)}/{int(attempt)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def generated_item_id(model_id: str, prompt: str, negative_prompt: str, seed: int, settings: dict[str, Any],
                      index: int, drawn_seed: int | None) -> str:
    """``"gen:"`` + 16 hex digits naming one generated image (``drawn_seed`` None = placeholder)."""
    payload = json.dumps(
        {"model": model_id, "prompt": prompt, "negative_prompt": negative_prompt, "seed": int(seed),
         "settings": settings, "index": int(index), "drawn_seed": drawn_seed},
        sort_keys=True, default=str,
    )
    return ITEM_PREFIX + hashlib.sha256(payload.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------
# Preference scoring (Kang et al. 2017)


@dataclass
class PreferenceScorer:
    """Scores images against a preference: ``text_weight`` x cosine to the text embedding plus the rest x
    cosine to the normalised mean photo embedding (only the part that was given counts when one is missing).
    """

    encoder: Encoder
    text_weight: float = 0.5

    def _device(self) -> torch.device:
        return torch.device(getattr(self.encoder, "device", "cpu"))

    @torch.no_grad()
    def _embed_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        batch = torch.stack([self.encoder.preprocess(im.convert("RGB")) for im in images]).to(self._device())
        return torch.nn.functional.normalize(self.encoder.encode_images(batch).float().cpu(), dim=-1)

    @torch.no_grad()
    def score(self, pref: Preference, images: Sequence[Image.Image]) -> np.ndarray:
        """One score per image, higher = closer to the preference; zeros when the preference is empty."""
        emb = self._embed_images(images)
        total = torch.zeros(len(images))
        weight_sum = 0.0
        text = (pref.text or "").strip()
        if text:
            t = torch.nn.functional.normalize(self.encoder.encode_texts([text]).float().cpu(), dim=-1)[0]
            total += self.text_weight * (emb @ t)
            weight_sum += self.text_weight
        if pref.images:
            photo = torch.nn.functional.normalize(self._embed_images(pref.images).mean(0), dim=-1)
            total += (1 - self.text_weight) * (emb @ photo)
            weight_sum += 1 - self.text_weight
        return (total / weight_sum).numpy() if weight_sum > 0 else total.numpy()


# ---------------------------------------------------------------------------------------------------------
# The interface


@dataclass
class Prompt:
    """What a generator conditions on for one preference; ``extra`` goes into every ``Shown.extra``;
    ``condition`` is the kind's own conditioning (e.g. the DCGAN's text embedding), never recorded."""

    text: str
    negative: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    condition: Any = field(default=None, repr=False)


@dataclass
class Drawn:
    """One drawn candidate. ``drawn_seed`` is None for a placeholder; ``extra`` holds e.g. safety flags."""

    image: Image.Image
    drawn_seed: int | None
    extra: dict[str, Any] = field(default_factory=dict)


def read_words(pref: Preference, *, reader: Any = None,
               palette: dict[str, tuple[int, int, int]] | None = None) -> tuple[str, dict[str, Any]]:
    """A preference's words as a generator trained on the catalogue's words should see them, and the record.

    With a ``reader`` (``dressup.reading.QueryReader``) the sentence is read into the catalogue's words; else,
    with a ``palette``, colour words are grounded in place. The record (for ``Prompt.extra``) holds the colour
    mapping and what the preference asked that such a generator cannot condition on (gender, colours to
    avoid). The text is "" when the preference has no words.
    """
    text = " ".join((pref.text or "").split())[:2000]
    extra: dict[str, Any] = {"ignored": {k: v for k, v in (("gender", pref.gender),
                                                            ("avoid_colours", pref.avoid_colours)) if v}}
    if text and reader is not None:
        reading = reader.read(text)
        text = reading.text or text
        extra["colour_mapping"] = reading.colours
    elif text and palette:
        from dressup.colours import ground_colours

        text, extra["colour_mapping"] = ground_colours(text, palette)
    return text, extra


def _draw_key(prompt: Prompt, seed: int, n: int) -> str:
    """Everything a draw depends on: the prompt's words, its conditioning (e.g. an embedding), seed and count."""
    h = hashlib.sha256(json.dumps([prompt.text, prompt.negative, int(seed), int(n)]).encode())
    c = prompt.condition
    if isinstance(c, torch.Tensor):
        h.update(c.detach().float().cpu().numpy().tobytes())
    elif c is not None:
        h.update(repr(c).encode())
    return h.hexdigest()


class BaseGenerator(ABC):
    """A preference in, four images out (see the module docstring for the guarantees); implements
    ``dressup.protocols.Generator`` for every kind.

    A subclass says how a preference becomes a prompt (``prompt``) and how candidates are drawn (``draw``);
    ``generate`` does the rest the same way for every kind: seeds, optional scoring, ids, records.
    """

    kind: str = ""
    model_id: str = ""
    candidates: int = GRID
    scorer: PreferenceScorer | None = None

    @abstractmethod
    def prompt(self, pref: Preference) -> Prompt:
        """The conditioning for one preference."""

    @abstractmethod
    def draw(self, prompt: Prompt, seed: int, n: int) -> list[Drawn]:
        """``n`` candidates; candidate ``i`` is drawn from ``image_seed(seed, i)`` (redraws: later attempts)."""

    def id_settings(self) -> dict[str, Any]:
        """The settings that shape the pixels (part of every item id)."""
        return {}

    def prepare(self, pref: Preference, seed: int) -> None:
        """Draw ``pref``'s candidates now, for a later ``generate`` with the same prompt and seed.

        The study calls this with the participant's words as soon as they are given, while the photos upload:
        Stable Diffusion takes seconds a batch, and those seconds then pass before Submit instead of after it.
        """
        prompt = self.prompt(pref)
        n = self.draw_count
        key = _draw_key(prompt, seed, n)
        prepared = self._prepared()
        with _PREPARED_LOCK:
            if key in prepared:
                return
        drawn = self.draw(prompt, seed, n)
        with _PREPARED_LOCK:
            prepared[key] = drawn
            while len(prepared) > PREPARED_KEEP:
                prepared.pop(next(iter(prepared)))

    def _prepared(self) -> dict[str, list[Drawn]]:
        with _PREPARED_LOCK:
            return self.__dict__.setdefault("_prepared_draws", {})

    def _draw(self, prompt: Prompt, seed: int, n: int) -> list[Drawn]:
        """``draw``, or the candidates ``prepare`` drew for exactly this prompt, seed and count."""
        prepared = self._prepared()
        with _PREPARED_LOCK:
            drawn = prepared.pop(_draw_key(prompt, seed, n), None)
        return drawn if drawn is not None else self.draw(prompt, seed, n)

    @property
    def draw_count(self) -> int:
        """How many candidates a grid draws: ``candidates``, and never fewer than the grid's cells."""
        return max(GRID, int(self.candidates))

    def rank(self, pref: Preference, images: Sequence[Image.Image]) -> tuple[list[int], np.ndarray | None]:
        """The candidates shown, best first, and every candidate's score: the ``GRID`` the scorer puts closest
        to ``pref`` when there are more candidates than cells, else the first ``GRID`` (and no scores)."""
        if self.scorer is None or len(images) <= GRID:
            return list(range(GRID)), None
        scores = self.scorer.score(pref, images)
        return [int(i) for i in np.argsort(-scores, kind="stable")[:GRID]], scores

    def generate(self, pref: Preference, seed: int) -> list[Shown]:
        """Four images for one preference, deterministic for a given seed."""
        prompt = self.prompt(pref)
        n = self.draw_count
        drawn = self._draw(prompt, seed, n)
        if len(drawn) != n:
            raise RuntimeError(f"{type(self).__name__}.draw returned {len(drawn)} images, not {n}")
        settings = self.id_settings()
        ids = [generated_item_id(self.model_id, prompt.text, prompt.negative, seed, settings, i, d.drawn_seed)
               for i, d in enumerate(drawn)]
        order, scores = self.rank(pref, [d.image for d in drawn])
        scored = scores is not None
        record = [{"candidate": i, "item_id": ids[i], "drawn_seed": d.drawn_seed, "score": float(scores[i])}
                  for i, d in enumerate(drawn)] if scored else None
        out = []
        for i in order:
            d = drawn[i]
            extra = {"generator": self.kind, "model": self.model_id, "seed": int(seed), "candidate": i,
                     "image_seed": d.drawn_seed, "prompt": prompt.text, "negative_prompt": prompt.negative,
                     "settings": settings, **prompt.extra, **d.extra}
            if scored:
                extra["candidate_scores"] = record
                extra["preference_score"] = float(scores[i])
            out.append(Shown(item_id=ids[i], image=d.image, caption=prompt.text,
                             score=float(scores[i]) if scored else 0.0, extra=extra))
        return out


# ---------------------------------------------------------------------------------------------------------
# Settings


@dataclass
class CommonSettings:
    """Keys every generator kind accepts."""

    kind: str = ""
    encoder: str = ""  # read by dressup.arms (which encoder to pass in)
    candidates: int = GRID
    text_weight: float = 0.5


def parse_settings(settings: dict[str, Any], cls: type, where: str = "generator") -> Any:
    """A settings dataclass from a study file's dict; unknown keys and bad values name the fix."""
    allowed = {f.name for f in fields(cls)}
    unknown = set(settings) - allowed
    if unknown:
        raise GeneratorSettingsError(
            f"[{where}] has unknown key(s) {sorted(unknown)} for kind {settings.get('kind')!r}; allowed: {sorted(allowed)}")
    s = cls(**settings)
    if int(s.candidates) < GRID:
        raise GeneratorSettingsError(f"[{where}] candidates = {s.candidates}: must be >= {GRID} (4 = no scoring)")
    if not 0.0 <= float(s.text_weight) <= 1.0:
        raise GeneratorSettingsError(f"[{where}] text_weight = {s.text_weight}: must be between 0 and 1")
    return s


def make_scorer(s: CommonSettings, encoder: Encoder | None, where: str) -> PreferenceScorer | None:
    """The scorer ``candidates > 4`` asks for (None at 4); an encoder is then required."""
    if int(s.candidates) <= GRID:
        return None
    if encoder is None:
        raise GeneratorSettingsError(
            f"[{where}] candidates = {s.candidates} keeps the 4 images closest to the preference and needs an "
            f"encoder to score them: add encoder = '<a name under [encoders]>'")
    return PreferenceScorer(encoder, float(s.text_weight))


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``dressup.device.resolve_device`` as a ``torch.device``."""
    return torch.device(_resolve_device(None if device is None else str(device)))


