"""Generative arms: a preference in, four generated images with stable ids out.

Every generator implements one method, ``generate(pref, seed) -> list[Shown]``, and is made by
``load_generator(settings)`` from a small table keyed by the study file's ``kind`` (timm's registry idea):

- ``sd15``: Stable Diffusion 1.5 through diffusers (the paper profile).
- ``dcgan``: the conditional DCGAN of ``dressup.dcgan`` (the demo profile).
- ``diffusion``: the miniature text-conditioned diffusion model of ``dressup.diffusion`` (SD1.5's algorithm at
  the demo's scale; keys in ``dressup.diffusion.load_diffusion_generator``).

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

Study-file keys (``[arms.NAME.generator]``), with defaults:

==================  ================================================  ==========================================
key                 default                                           meaning
==================  ================================================  ==========================================
kind                (required)                                        ``"sd15"``, ``"dcgan"`` or ``"diffusion"``
encoder             ``""``                                            encoder name (``[encoders]``) for scoring
                                                                      and, for ``dcgan``, conditioning
candidates          4                                                 N > 4 switches preference scoring on
text_weight         0.5                                               share of the text in the score
sd15: model         ``stable-diffusion-v1-5/stable-diffusion-v1-5``   Hub id or a ``save_pretrained`` folder
sd15: revision      ``""``                                            Hub revision (branch, tag or commit)
sd15: scheduler     ``"DPMSolverMultistep"``                          a key of ``SCHEDULERS``
sd15: steps         25                                                denoising steps
sd15: guidance_scale 7.5                                              classifier-free guidance
sd15: width/height  512 / 512                                         pixels (multiples of 8)
sd15: prompt_template  ``PROMPT_TEMPLATE``                            must contain ``{text}``
sd15: negative_prompt  ``NEGATIVE_PROMPT``                            colours to avoid are appended
sd15: fallback_text ``"a stylish everyday garment"``                  used when the participant gave no words
sd15: safety_checker true                                             false only with the ethics board's say-so
sd15: safety_retries 2                                                redraws of a flagged image before a
                                                                      neutral placeholder is shown
sd15: batch_size    8                                                 images per pipeline call (several
                                                                      participants' images share one call)
sd15: progress      false                                             diffusers' progress bar (per call)
dcgan: checkpoint   (required)                                        ``train_dcgan``'s folder or its
                                                                      ``checkpoint.pt``
dcgan: colour_grounding true                                          map colour words to catalogue colours
dcgan: steps, batch_size, image_size                                  training keys (read by the demo build)
==================  ================================================  ==========================================
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
from PIL import Image

from dressup.device import resolve_device as _resolve_device
from dressup.pipeline_worker import worker_for
from dressup.prompt_fit import PromptFitter
from dressup.records import Preference, Shown

log = logging.getLogger(__name__)

GRID = 4
ITEM_PREFIX = "gen:"

# The original runwayml/stable-diffusion-v1-5 repository was deleted in 2024; this is its current home
# (same weights, maintained by the community; diffusers' own docstrings point here).
SD15_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"

# The study's participants found generated faces "terrifying": ask for a garment-only product shot and push
# people, faces and text away through the negative prompt.
PROMPT_TEMPLATE = (
    "a product photo of {text}, a single garment on a plain white background, studio lighting, "
    "no person, no model, no face"
)
NEGATIVE_PROMPT = (
    "person, people, face, head, model, mannequin, body, hands, skin, text, letters, logo, watermark, "
    "signature, blurry, lowres, deformed, collage, multiple garments"
)
PLACEHOLDER_RGB = (236, 236, 236)  # a neutral light grey, shown only when every redraw was flagged
PREPARED_KEEP = 64  # drawn-ahead candidate sets a generator keeps (one per participant between text and Submit)
_PREPARED_LOCK = threading.Lock()


class GeneratorSettingsError(ValueError):
    """A generator's settings in the study file are wrong; the message names the key and the fix."""


class TextImageEncoder(Protocol):
    """What a generator needs of ``dressup.encoders``' encoders (normalised outputs in one space)."""

    def preprocess(self, image: Image.Image) -> torch.Tensor: ...

    def encode_images(self, batch: torch.Tensor) -> torch.Tensor: ...

    def encode_texts(self, texts: list[str]) -> torch.Tensor: ...


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

    encoder: TextImageEncoder
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


class Generator(ABC):
    """A preference in, four images out (see the module docstring for the guarantees).

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
        n = max(GRID, int(self.candidates))
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

    def generate(self, pref: Preference, seed: int) -> list[Shown]:
        """Four images for one preference, deterministic for a given seed."""
        prompt = self.prompt(pref)
        n = max(GRID, int(self.candidates))
        drawn = self._draw(prompt, seed, n)
        if len(drawn) != n:
            raise RuntimeError(f"{type(self).__name__}.draw returned {len(drawn)} images, not {n}")
        settings = self.id_settings()
        ids = [generated_item_id(self.model_id, prompt.text, prompt.negative, seed, settings, i, d.drawn_seed)
               for i, d in enumerate(drawn)]
        scores = np.zeros(n)
        scored = self.scorer is not None and n > GRID
        if scored:
            scores = self.scorer.score(pref, [d.image for d in drawn])
            order = [int(i) for i in np.argsort(-scores, kind="stable")[:GRID]]
        else:
            order = list(range(GRID))
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
            out.append(Shown(item_id=ids[i], image=d.image, caption=prompt.text, score=float(scores[i]),
                             extra=extra))
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


def _scorer(s: CommonSettings, encoder: TextImageEncoder | None, where: str) -> PreferenceScorer | None:
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


# ---------------------------------------------------------------------------------------------------------
# Stable Diffusion 1.5


@dataclass
class SDSettings(CommonSettings):
    """The ``sd15`` keys (see the module docstring's table)."""

    model: str = SD15_MODEL
    revision: str = ""
    scheduler: str = "DPMSolverMultistep"
    steps: int = 25
    guidance_scale: float = 7.5
    width: int = 512
    height: int = 512
    prompt_template: str = PROMPT_TEMPLATE
    negative_prompt: str = NEGATIVE_PROMPT
    fallback_text: str = "a stylish everyday garment"
    safety_checker: bool = True
    safety_retries: int = 2
    batch_size: int = 8
    progress: bool = False  # one bar per call floods a served app's log; the CLI turns it on


def _scheduler_table() -> dict[str, type]:
    from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                           EulerDiscreteScheduler, LMSDiscreteScheduler, PNDMScheduler, UniPCMultistepScheduler)

    return {"dpmsolvermultistep": DPMSolverMultistepScheduler, "ddim": DDIMScheduler, "euler": EulerDiscreteScheduler,
            "eulerancestral": EulerAncestralDiscreteScheduler, "pndm": PNDMScheduler, "lms": LMSDiscreteScheduler,
            "unipc": UniPCMultistepScheduler}


SCHEDULERS = ("DPMSolverMultistep", "DDIM", "Euler", "EulerAncestral", "PNDM", "LMS", "UniPC")


def scheduler_class(name: str) -> type:
    """A diffusers scheduler class by name: "DPMSolverMultistep", "DDIM", "Euler", ... (case-insensitive;
    a trailing "Scheduler" and "Discrete" are ignored, so diffusers' class names work too)."""
    key = name.lower().replace("_", "").replace("-", "").removesuffix("scheduler").removesuffix("discrete")
    table = _scheduler_table()
    if key not in table:
        raise GeneratorSettingsError(f"scheduler {name!r} is unknown; use one of {list(SCHEDULERS)}")
    return table[key]


def sd_dtype(device: torch.device) -> torch.dtype:
    """fp16 on a GPU (half the memory, about twice the speed), fp32 on the CPU (fp16 is slow or unsupported)."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32


class SD15Generator(Generator):
    """Stable Diffusion 1.5: the participant's words in a garment-only product-photo prompt, four images in one
    batch, each from its own seeded ``torch.Generator``.

    The pipeline is passed in (built by ``load_sd15`` or, in tests, from tiny random components). With the
    safety checker on, an image it flags is redrawn from the next attempt's seed up to ``safety_retries``
    times, then replaced by a plain light-grey placeholder; ``Shown.extra["safety_flagged"]`` records that the
    first draw was flagged, ``safety_attempts`` how many draws it took and ``placeholder`` whether all were.
    Redrawing (rather than showing diffusers' black square) keeps the grid a grid of garments, which is what
    the study compares; the flag keeps the event visible to the researcher.
    """

    kind = "sd15"

    def __init__(self, pipe, settings: SDSettings, scorer: PreferenceScorer | None = None, model_id: str = "") -> None:
        if "{text}" not in settings.prompt_template:
            raise GeneratorSettingsError(
                f"prompt_template {settings.prompt_template!r} has no '{{text}}' where the participant's words go")
        if settings.width % 8 or settings.height % 8:
            raise GeneratorSettingsError(f"width/height {settings.width}x{settings.height} must be multiples of 8")
        self.pipe = pipe
        self._fit = PromptFitter(pipe.tokenizer)  # counts tokens on callers' threads; the pipeline's own is the worker's
        self.settings = settings
        self.scorer = scorer
        self.candidates = int(settings.candidates)
        self.model_id = model_id or (settings.model + (f"@{settings.revision}" if settings.revision else ""))
        self.pipe.scheduler = scheduler_class(settings.scheduler).from_config(self.pipe.scheduler.config)
        self.pipe.set_progress_bar_config(disable=not settings.progress)

    def id_settings(self) -> dict[str, Any]:
        s = self.settings
        return {"scheduler": s.scheduler, "steps": s.steps, "guidance_scale": s.guidance_scale,
                "width": s.width, "height": s.height, "safety_checker": s.safety_checker,
                "dtype": str(self.pipe.unet.dtype)}

    def prompt(self, pref: Preference) -> Prompt:
        """Participant's words (+ menswear/womenswear) into the template; colours to avoid into the negative.

        Both are fitted to the text encoder's token budget (``dressup.prompt_fit``): the participant's words
        are trimmed, the template's instructions and the fixed negative prompt never are.
        """
        words = " ".join((pref.text or "").split())[:500] or self.settings.fallback_text
        template = self.settings.prompt_template
        if pref.gender:
            template = template.replace("{text}", "{text}, " + pref.gender.replace("{", "").replace("}", ""), 1)
        avoid = [" ".join(c.split())[:40] for c in pref.avoid_colours if c and c.strip()]
        return Prompt(self._fit.words(template, words), self._fit.items(self.settings.negative_prompt, avoid))

    def _run(self, prompt: Prompt, seeds: list[int]) -> tuple[list[Image.Image], list[bool]]:
        """Drawn by the pipeline's one worker thread, batched with other participants' waiting images."""
        s = self.settings
        kwargs = {"num_inference_steps": int(s.steps), "guidance_scale": float(s.guidance_scale),
                  "height": int(s.height), "width": int(s.width), "output_type": "pil"}
        return worker_for(self.pipe).run(prompt.text, prompt.negative, seeds, kwargs, int(s.batch_size))

    def draw(self, prompt: Prompt, seed: int, n: int) -> list[Drawn]:
        seeds = [image_seed(seed, i) for i in range(n)]
        images, flags = self._run(prompt, seeds)
        drawn = [Drawn(im, s, {"safety_flagged": f, "safety_attempts": 1, "placeholder": False})
                 for im, s, f in zip(images, seeds, flags)]
        pending = [i for i, f in enumerate(flags) if f]
        for attempt in range(1, int(self.settings.safety_retries) + 1):
            if not pending:
                break
            retry = [image_seed(seed, i, attempt) for i in pending]
            log.warning("safety checker flagged %d image(s); redrawing (attempt %d)", len(pending), attempt)
            images, flags = self._run(prompt, retry)
            still = []
            for i, s, im, f in zip(pending, retry, images, flags):
                drawn[i].extra["safety_attempts"] = attempt + 1
                if f:
                    still.append(i)
                else:
                    drawn[i].image, drawn[i].drawn_seed = im, s
            pending = still
        for i in pending:
            drawn[i].image = Image.new("RGB", (int(self.settings.width), int(self.settings.height)), PLACEHOLDER_RGB)
            drawn[i].drawn_seed = None
            drawn[i].extra["placeholder"] = True
        return drawn


def load_sd15(settings: SDSettings, device: torch.device) -> Any:
    """The diffusers pipeline for ``settings.model`` on ``device``: fp16 on a GPU, fp32 (with a warning) on CPU.

    ``model`` is a Hub id (default ``SD15_MODEL``; the runwayml repository it was first published under was
    deleted in 2024) or a folder written by ``save_pretrained``. The safety checker is loaded with the model
    and kept on unless ``safety_checker = false``.
    """
    from diffusers import StableDiffusionPipeline

    if device.type != "cuda":
        warnings.warn(
            "Stable Diffusion on the CPU is slow (minutes per grid of four at 512 px); serve the paper profile "
            "from a GPU machine", RuntimeWarning, stacklevel=3)
    kwargs: dict[str, Any] = {"dtype": sd_dtype(device)}
    if settings.revision:
        kwargs["revision"] = settings.revision
    if not settings.safety_checker:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        pipe = _from_pretrained(StableDiffusionPipeline, settings.model, kwargs, fp16=device.type == "cuda")
    except (OSError, ValueError) as e:
        raise GeneratorSettingsError(
            f"could not load Stable Diffusion model {settings.model!r}: {e}. It is a Hub id (downloaded once, "
            f"about 4 GB, needs network) or a folder written by save_pretrained; check the name, or download it "
            f"with `hf download {settings.model}` on a machine with network") from e
    if settings.safety_checker and pipe.safety_checker is None:
        raise GeneratorSettingsError(
            f"model {settings.model!r} has no safety checker, and participants must not see unfiltered images; "
            f"use a model that has one, or set safety_checker = false only if your ethics approval allows it")
    if not settings.safety_checker:
        log.warning("the Stable Diffusion safety checker is OFF: participants may see unfiltered images")
    return pipe.to(device)


def _from_pretrained(cls: Any, model: str, kwargs: dict[str, Any], *, fp16: bool) -> Any:
    """On a GPU, the repository's fp16 files (half the download and load time) when it has them; otherwise,
    or on the CPU, the full-precision files."""
    if fp16:
        try:
            return cls.from_pretrained(model, variant="fp16", **kwargs)
        except (OSError, ValueError) as e:
            log.info("no fp16 variant of %s (%s); loading the full-precision files", model, e)
    return cls.from_pretrained(model, **kwargs)


def _load_sd15_generator(settings: dict[str, Any], *, device, encoder, base_dir: Path,
                         palette: dict | None, reader: Any = None) -> Generator:
    """SD1.5 reads whole sentences with its own CLIP text encoder: no palette, no reader."""
    s = parse_settings(settings, SDSettings, "generator (sd15)")
    model_dir = base_dir / s.model
    if not Path(s.model).is_absolute() and model_dir.is_dir():
        s.model = str(model_dir)  # a folder next to the study file
    scorer = _scorer(s, encoder, "generator (sd15)")  # settings mistakes first, before a 4 GB load
    scheduler_class(s.scheduler)
    return SD15Generator(load_sd15(s, resolve_device(device)), s, scorer)


# ---------------------------------------------------------------------------------------------------------
# The conditional DCGAN (model and training in dressup.dcgan)


@dataclass
class DCGANSettings(CommonSettings):
    """The ``dcgan`` keys (see the module docstring's table)."""

    checkpoint: str = ""
    colour_grounding: bool = True
    steps: int = 0  # training keys, read by dressup.demo; ignored at generation
    batch_size: int = 0
    image_size: int = 0


def _load_dcgan_generator(settings: dict[str, Any], *, device, encoder, base_dir: Path,
                          palette: dict | None, reader: Any = None) -> Generator:
    from dressup.dcgan import DCGANGenerator

    s = parse_settings(settings, DCGANSettings, "generator (dcgan)")
    if not s.checkpoint:
        raise GeneratorSettingsError("[generator (dcgan)] needs checkpoint = '<folder written by train-gan>'")
    if encoder is None:
        raise GeneratorSettingsError(
            "[generator (dcgan)] the DCGAN is conditioned on text embeddings and needs the encoder it was "
            "trained with: add encoder = '<a name under [encoders]>'")
    path = Path(os.path.expanduser(s.checkpoint))
    path = path if path.is_absolute() else base_dir / path
    if s.colour_grounding and palette is None:
        from dressup.colours import CATALOGUE_COLOURS

        palette = CATALOGUE_COLOURS
    return DCGANGenerator.load(path, encoder, device=resolve_device(device),
                               palette=palette if s.colour_grounding else None,
                               candidates=int(s.candidates), scorer=_scorer(s, encoder, "generator (dcgan)"),
                               reader=reader if s.colour_grounding else None)


def _load_diffusion_generator(settings: dict[str, Any], **kwargs: Any) -> Generator:
    from dressup.diffusion import load_diffusion_generator

    return load_diffusion_generator(settings, **kwargs)


GENERATOR_KINDS: dict[str, Callable[..., Generator]] = {"sd15": _load_sd15_generator, "dcgan": _load_dcgan_generator,
                                                        "diffusion": _load_diffusion_generator}


def load_generator(settings: dict[str, Any], *, device: str | torch.device | None = "auto",
                   encoder: TextImageEncoder | None = None, base_dir: str | Path = ".",
                   palette: dict[str, tuple[int, int, int]] | None = None, reader: Any = None) -> Generator:
    """The generator a study file's ``[arms.NAME.generator]`` describes, picked by ``kind``.

    ``encoder`` scores candidates (``candidates > 4``) and conditions the DCGAN; ``base_dir`` (the study
    file's folder) resolves relative paths; ``palette`` (catalogue colour name -> RGB) grounds colour words
    for the DCGAN, and ``reader`` (``dressup.reading.QueryReader``) reads a whole sentence into the
    catalogue's words for it.
    """
    kind = settings.get("kind")
    if kind not in GENERATOR_KINDS:
        raise GeneratorSettingsError(f"generator kind {kind!r} is unknown; set kind = one of {sorted(GENERATOR_KINDS)}")
    return GENERATOR_KINDS[kind](dict(settings), device=device, encoder=encoder, base_dir=Path(base_dir),
                                 palette=palette, reader=reader)


# ---------------------------------------------------------------------------------------------------------
# Tiny random pipelines (tests and benchmarks only; never shown to participants)


def clip_tokenizer():
    """The real CLIP tokenizer (OpenAI's 49,408-token BPE, as Stable Diffusion 1.5 and FashionCLIP use it),
    built offline from the BPE file open_clip ships, so tiny test pipelines count tokens as the real ones do."""
    import copy

    return copy.deepcopy(_clip_tokenizer())


@functools.lru_cache(maxsize=1)
def _clip_tokenizer():
    import gzip
    import tempfile

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


def tiny_sd_pipeline(seed: int = 0, safety_checker: torch.nn.Module | None = None):
    """A Stable Diffusion pipeline with SD1.5's structure but tiny random components (diffusers' own test
    recipe): runs on the CPU in a fraction of a second, makes 64x64 noise-like images, downloads nothing."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPImageProcessor, CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=8, norm_num_groups=2)
    vae = AutoencoderKL(
        block_out_channels=[4, 8], in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, norm_num_groups=2)
    tokenizer = clip_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, hidden_size=8, intermediate_size=37, layer_norm_eps=1e-5,
        num_attention_heads=2, num_hidden_layers=2, vocab_size=len(tokenizer)))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=safety_checker, feature_extractor=CLIPImageProcessor(size=32, crop_size=32),
        requires_safety_checker=False)


# ---------------------------------------------------------------------------------------------------------
# Measuring a generator without the generator: does it draw the colour that was asked for?


def is_background_like(lab: np.ndarray) -> np.ndarray:
    """Pixels a product photo's backdrop is made of: near-white, light grey or beige (L* > 78, chroma < 28)."""
    return (lab[..., 0] > 78) & (np.hypot(lab[..., 1], lab[..., 2]) < 28)


def garment_colour(image: Image.Image, palette: dict[str, tuple[int, int, int]] | None = None, *,
                   background_delta: float = 12.0, min_share: float = 0.02, quantum: int = 8) -> str | None:
    """The dominant colour of a garment photo's garment pixels, named by the nearest palette colour.

    Garment pixels are those that differ from the background: farther than ``background_delta`` (CIELAB)
    from the median colour of the image's border, and not near-white / light grey / beige. Each garment pixel
    is named with ``dressup.colours.name_rgb`` (nearest palette exemplar in CIELAB by CIEDE2000, the rule the
    demo catalogue's colours are named by) and the name with most pixels wins, so a striped or dotted garment
    is named by its main colour. None when under ``min_share`` of the image is garment. A white garment on a
    white backdrop is therefore not measurable; leave white out of colour prompts.
    """
    from dressup.colours import CATALOGUE_COLOURS, name_rgb, rgb_to_lab

    palette = palette or CATALOGUE_COLOURS
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    lab = rgb_to_lab(rgb)
    border = np.concatenate([lab[:2].reshape(-1, 3), lab[-2:].reshape(-1, 3), lab[:, :2].reshape(-1, 3),
                             lab[:, -2:].reshape(-1, 3)])
    background = np.median(border, axis=0)
    garment = (np.linalg.norm(lab - background, axis=-1) > background_delta) & ~is_background_like(lab)
    if garment.mean() < min_share:
        return None
    q = (np.round(rgb[garment] / quantum) * quantum).clip(0, 255)
    colours, counts = np.unique(q, axis=0, return_counts=True)
    votes: dict[str, int] = {}
    for c, n in zip(colours, counts):
        name = name_rgb(c, palette)
        votes[name] = votes.get(name, 0) + int(n)
    return max(votes, key=votes.get)


def garment_phrase(colour: str, category: str) -> str:
    """How a participant asks for a colour and a category: "a red dress", "an orange tee", "red trousers"."""
    noun = category.replace("_", " ").lower()
    if noun.endswith("s") and not noun.endswith("ss"):
        return f"{colour} {noun}"
    return f"{'an' if colour[:1] in 'aeiou' else 'a'} {colour} {noun}"


def colour_prompts(colours: Sequence[str], categories: Sequence[str], n: int = 50, seed: int = 0,
                   exclude: Sequence[str] = ("white",)) -> list[tuple[str, str]]:
    """``n`` (colour, ``garment_phrase``) prompts, every colour x category pair once (shuffled by ``seed``)
    before any repeats. White is excluded by default: on a white backdrop it cannot be measured."""
    cols = [c for c in colours if c not in set(exclude)]
    pairs = [(c, k) for c in cols for k in categories]
    if not pairs:
        raise ValueError("colour_prompts needs at least one colour (besides the excluded) and one category")
    rng = np.random.default_rng(seed)
    out: list[tuple[str, str]] = []
    while len(out) < n:
        out += [pairs[i] for i in rng.permutation(len(pairs))]
    return [(c, garment_phrase(c, k)) for c, k in out[:n]]


@dataclass
class ColourFidelity:
    """How often a generator drew the asked colour: ``mean_hits`` of 4 images per prompt (the done-when
    figure), ``share_3_of_4`` the share of prompts with at least 3 hits, and every prompt's detail."""

    mean_hits: float
    share_3_of_4: float
    prompts: int
    per_prompt: list[dict[str, Any]]


def measure_colour_fidelity(generator: Generator, prompts: Sequence[tuple[str, str]], *, seed: int = 0,
                            palette: dict[str, tuple[int, int, int]] | None = None,
                            progress: bool = False) -> ColourFidelity:
    """Ask ``generator`` for each (colour, text) prompt (request seed ``seed + i``) and count the images whose
    ``garment_colour`` is the asked colour. The check never looks inside the generator."""
    from tqdm.auto import tqdm

    rows = []
    for i, (colour, text) in enumerate(tqdm(prompts, desc="colour fidelity", disable=not progress)):
        shown = generator.generate(Preference(text=text), seed + i)
        found = [garment_colour(s.image, palette) for s in shown]
        rows.append({"colour": colour, "text": text, "found": found, "hits": sum(f == colour for f in found)})
    hits = np.array([r["hits"] for r in rows], dtype=float)
    return ColourFidelity(float(hits.mean()) if len(rows) else 0.0, float((hits >= 3).mean()) if len(rows) else 0.0,
                          len(rows), rows)
