"""Stable Diffusion 1.5 as a generator kind (``kind = "sd15"``, the paper profile's generative arm).

Holds the ``sd15`` study-file keys (``SDSettings``), the garment-only product-shot prompt, scheduler choice,
loading the diffusers pipeline (fp16 on a GPU; the safety checker kept on unless the study says otherwise),
``SD15Generator`` (which redraws images the safety checker flags), and ``load_sd15_generator``, the entry
``dressup.generators.registry`` calls. diffusers is imported only when a pipeline is built or a scheduler
looked up, so importing this module stays light.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from dressup.generators.base import (BaseGenerator, CommonSettings, Drawn, GeneratorSettingsError, PreferenceScorer,
                                     Prompt, image_seed, make_scorer, parse_settings, resolve_device)
from dressup.pipeline_worker import worker_for
from dressup.prompt_fit import PromptFitter
from dressup.records import Preference

log = logging.getLogger(__name__)


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


@dataclass
class SDSettings(CommonSettings):
    """The ``sd15`` keys (see the table in ``dressup.generators``' docstring)."""

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


class SD15Generator(BaseGenerator):
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


def load_sd15_generator(settings: dict[str, Any], *, device, encoder, base_dir: Path,
                        palette: dict | None, reader: Any = None) -> SD15Generator:
    """SD1.5 reads whole sentences with its own CLIP text encoder: no palette, no reader."""
    s = parse_settings(settings, SDSettings, "generator (sd15)")
    model_dir = base_dir / s.model
    if not Path(s.model).is_absolute() and model_dir.is_dir():
        s.model = str(model_dir)  # a folder next to the study file
    scorer = make_scorer(s, encoder, "generator (sd15)")  # settings mistakes first, before a 4 GB load
    scheduler_class(s.scheduler)
    return SD15Generator(load_sd15(s, resolve_device(device)), s, scorer)
