"""A text-conditional DCGAN as a generator kind (``kind = "dcgan"``): the model, its checkpoints and
``DCGANGenerator``, the demo profile's generative arm, small enough to train on a laptop CPU (training lives in
``dressup.generators.dcgan_train``).

Architecture (Radford et al. 2016, "Unsupervised Representation Learning with Deep Convolutional GANs"): the
generator is a stack of stride-2 transposed convolutions with BatchNorm and ReLU (tanh at the output), the
discriminator its mirror of stride-2 convolutions with LeakyReLU(0.2) (BatchNorm on all but the first layer),
no pooling, no fully connected hidden layers. ``DCGANConfig`` sizes it for any square ``image_size`` that is
4 or 7 times a power of two: 64x64 RGB (the demo), 256x256 RGB, 28x28 single-channel.

Conditioning follows Reed et al. 2016 ("Generative Adversarial Text to Image Synthesis", GAN-CLS), which put a
text embedding into exactly this DCGAN: the embedding (here an encoder's ``encode_texts`` vector, e.g.
384-d MiniLM for the demo) is projected to ``cond_dim`` by a linear layer + LeakyReLU and **concatenated** to
the noise in the generator. In the discriminator the projected text meets the image features by a
*projection* (Miyato & Koyama 2018, "cGANs with Projection Discriminator"): logit = psi(h) + <W t, h> over the
last 4x4 (or 7x7) feature map. Reed et al. replicated the text over that map and concatenated it in depth
(``conditioning="concat"``, kept for comparison and for older checkpoints); measured on the demo catalogue at
300 steps, the number of a prompt's 4 images carrying the asked colour (``colour_fidelity``, judged from
pixels, 50 prompts) went from 0.76 with concatenation to 2.42-2.82 with the projection; the demo build trains
500 steps (3.18 at 400, 3.50 at 500). The discriminator is
*matching-aware*: besides real/fake it must call a real image with another sample's text "fake", which is
what forces the generator to follow the text (colour, category) rather than just the data.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from dressup.generators.base import (BaseGenerator, CommonSettings, Drawn, GeneratorSettingsError, PreferenceScorer,
                                     Prompt, image_seed, make_scorer, parse_settings, read_words, resolve_device)
from dressup.generators.pixels import to_pixels
from dressup.protocols import Encoder
from dressup.records import Preference


CHECKPOINT = "checkpoint.pt"
FORMAT = "dressup-dcgan/1"
PROBE_TEXT = "a red dress"  # embedded at training time; a generator refuses an encoder that embeds it differently
# The demo's training settings (measured on the demo catalogue; see the module docstring).
DEMO_LR = 5e-4
DEMO_DIVERSITY = 0.1


class DCGANError(ValueError):
    """A DCGAN checkpoint or training request is wrong; the message names the problem and the fix."""


@dataclass
class DCGANConfig:
    """Architecture. ``g_width``/``d_width`` are the channels at the highest resolution (Radford: 64 and 64;
    the demo uses 16 so ~4000 images train in about a minute on two CPU cores); deeper layers double them,
    capped at 8x."""

    image_size: int = 64
    channels: int = 3
    text_dim: int = 384
    noise_dim: int = 100
    cond_dim: int = 128
    g_width: int = 16
    d_width: int = 16
    conditioning: str = "projection"  # discriminator: "projection" (Miyato & Koyama 2018) or "concat" (Reed 2016)


def layout(image_size: int) -> tuple[int, int]:
    """(start size, number of 2x upsamplings): 64 -> (4, 4), 256 -> (4, 6), 28 -> (7, 2)."""
    s, k = int(image_size), 0
    while s > 7 and s % 2 == 0:
        s, k = s // 2, k + 1
    if s not in (4, 7) or k == 0:
        raise DCGANError(f"image_size {image_size} is not 4 or 7 times a power of two (e.g. 28, 32, 64, 128, 256)")
    return s, k


def _widths(base: int, k: int) -> list[int]:
    """Channels at resolutions start, 2*start, ... (k entries): base * 8, 4, 2, 1 for k=4, capped at 8x."""
    return [base * min(2 ** (k - 1 - i), 8) for i in range(k)]


class TextStandardiser(nn.Module):
    """Centres and scales text embeddings by the training set's per-dimension mean and std (buffers, saved
    with the weights). Sentence embeddings of captions share a large common direction ("a garment with ...");
    what tells "red" from "blue" is a small difference on top, which standardising makes as large as the noise
    the generator also receives, so conditioning is learned in hundreds of steps instead of thousands."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, embeddings: torch.Tensor) -> None:
        flat = embeddings.reshape(-1, embeddings.shape[-1]).float()
        self.mean.copy_(flat.mean(0))
        self.std.copy_(flat.std(0).clamp_min(1e-4) if len(flat) > 1 else torch.ones_like(self.std))

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return (text - self.mean) / self.std


class ConditionalGenerator(nn.Module):
    """G(z, t): noise ⊕ projected text -> image in [-1, 1]."""

    def __init__(self, cfg: DCGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        start, k = layout(cfg.image_size)
        w = _widths(cfg.g_width, k)
        self.text_norm = TextStandardiser(cfg.text_dim)
        self.project = nn.Sequential(nn.Linear(cfg.text_dim, cfg.cond_dim), nn.LeakyReLU(0.2, inplace=True))
        layers: list[nn.Module] = [nn.ConvTranspose2d(cfg.noise_dim + cfg.cond_dim, w[0], start, 1, 0, bias=False),
                                   nn.BatchNorm2d(w[0]), nn.ReLU(inplace=True)]
        for a, b in zip(w, w[1:]):
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(w[-1], cfg.channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.project(self.text_norm(text))], dim=1)
        return self.net(h[:, :, None, None])


class ConditionalDiscriminator(nn.Module):
    """D(x, t): a logit, high for a real image that matches its text (Reed et al.'s concat conditioning)."""

    def __init__(self, cfg: DCGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        start, k = layout(cfg.image_size)
        w = _widths(cfg.d_width, k)[::-1]  # highest resolution first
        layers: list[nn.Module] = [nn.Conv2d(cfg.channels, w[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        for a, b in zip(w, w[1:]):
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2, inplace=True)]
        self.features = nn.Sequential(*layers)
        self.start = start
        self.text_norm = TextStandardiser(cfg.text_dim)
        self.project = nn.Sequential(nn.Linear(cfg.text_dim, cfg.cond_dim), nn.LeakyReLU(0.2, inplace=True))
        if cfg.conditioning == "projection":
            self.joint = nn.Conv2d(w[-1], 1, start, 1, 0, bias=True)
            self.embed = nn.Linear(cfg.cond_dim, w[-1] * start * start, bias=False)
        elif cfg.conditioning == "concat":
            self.joint = nn.Sequential(nn.Conv2d(w[-1] + cfg.cond_dim, w[-1], 1, 1, 0, bias=False),
                                       nn.BatchNorm2d(w[-1]), nn.LeakyReLU(0.2, inplace=True),
                                       nn.Conv2d(w[-1], 1, start, 1, 0, bias=False))
        else:
            raise DCGANError(f"conditioning must be 'concat' or 'projection', not {cfg.conditioning!r}")

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        t = self.project(self.text_norm(text))
        if self.cfg.conditioning == "projection":  # logit = psi(h) + <embed(t), h>
            return self.joint(h).flatten() + (self.embed(t) * h.flatten(1)).sum(1)
        c = t[:, :, None, None].expand(-1, -1, self.start, self.start)
        return self.joint(torch.cat([h, c], dim=1)).flatten()


def init_weights(module: nn.Module) -> None:
    """Radford et al.'s initialisation: N(0, 0.02) weights, BatchNorm scale N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A DCGAN checkpoint (``path`` is the training folder or its ``checkpoint.pt``)."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT
    if not p.is_file():
        raise DCGANError(f"no DCGAN checkpoint at {p}; train one with `python -m dressup train-gan` "
                         f"(or dressup.generators.dcgan_train.train_dcgan)")
    ck = torch.load(p, map_location="cpu", weights_only=False)
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise DCGANError(f"{p} is not a {FORMAT} checkpoint; retrain with dressup.generators.dcgan_train.train_dcgan")
    ck["path"] = str(p)
    return ck


@torch.no_grad()
def generator_from_checkpoint(ck: dict[str, Any]) -> ConditionalGenerator:
    """The trained generator of a ``read_checkpoint`` result, in eval mode. Checkpoints written before
    ``DCGANConfig.conditioning`` existed were trained with concatenation and load as such."""
    net = ConditionalGenerator(DCGANConfig(**{"conditioning": "concat", **ck["state"]["config"]}))
    net.load_state_dict(ck["generator"])
    return net.eval()


# ---------------------------------------------------------------------------------------------------------
# The generator the study uses


class DCGANGenerator(BaseGenerator):
    """Four images from a trained conditional DCGAN: the (colour-grounded) preference text is embedded by the
    encoder the GAN was trained with, and each image comes from its own seeded noise.

    With a ``reader`` (``dressup.reading.QueryReader``, the one the retrieval arms use) a participant's
    sentence is first read into the catalogue's words, the form the GAN was trained on ("red striped dress"):
    measured on the 196 participant-language queries, images carrying the meant colour went from 2.51 of 4
    (colour words grounded in place, the sentence kept) to 2.99 of 4. Without one, only colour words are
    grounded (``palette``). With no words but photos, the GAN is conditioned on the normalised mean photo
    embedding (the encoder's shared space). Menswear/womenswear and colours to avoid are not conditions the GAN
    was trained on; they are recorded in ``Shown.extra`` and otherwise ignored.
    """

    kind = "dcgan"

    def __init__(self, net: ConditionalGenerator, encoder: Encoder, *, model_id: str,
                 palette: dict[str, tuple[int, int, int]] | None = None, candidates: int = 4,
                 scorer: PreferenceScorer | None = None, device: str | torch.device = "cpu",
                 reader: Any = None) -> None:
        self.device = resolve_device(device)
        self.net = net.eval().to(self.device)
        self.encoder = encoder
        self.model_id = model_id
        self.palette = palette
        self.reader = reader
        self.candidates = candidates
        self.scorer = scorer

    @classmethod
    def load(cls, path: str | os.PathLike, encoder: Encoder, *, device: str | torch.device = "cpu",
             palette: dict[str, tuple[int, int, int]] | None = None, candidates: int = 4,
             scorer: PreferenceScorer | None = None, reader: Any = None) -> "DCGANGenerator":
        """Load ``checkpoint.pt`` (or the folder holding it) and check the encoder is the one it was trained
        with (same embedding of a probe text)."""
        ck = read_checkpoint(path)
        meta = ck["state"].get("meta", {})
        probe = meta.get("probe_embedding")
        if probe is not None:
            mine = encoder.encode_texts([meta.get("probe_text", PROBE_TEXT)]).float().cpu()[0]
            theirs = torch.tensor(probe)
            if mine.shape != theirs.shape or float(F.cosine_similarity(mine, theirs, dim=0)) < 0.99:
                raise GeneratorSettingsError(
                    f"the DCGAN at {ck['path']} was trained with another text encoder ({meta.get('encoder')}); "
                    f"set the arm's encoder to that one, or retrain with `python -m dressup train-gan`")
        net = generator_from_checkpoint(ck)
        digest = hashlib.sha256(Path(ck["path"]).read_bytes()).hexdigest()[:16]
        return cls(net, encoder, model_id=f"dcgan:{digest}", palette=palette, candidates=candidates, scorer=scorer,
                   device=device, reader=reader)

    def id_settings(self) -> dict[str, Any]:
        return {"image_size": self.net.cfg.image_size, "grounding": bool(self.palette),
                **({"reading": True} if self.reader is not None else {})}

    def prompt(self, pref: Preference) -> Prompt:
        text, extra = read_words(pref, reader=self.reader, palette=self.palette)
        if text:
            condition = self.encoder.encode_texts([text]).float().cpu()[0]
            extra["conditioned_on"] = "text"
        elif pref.images:
            scorer = PreferenceScorer(self.encoder)
            condition = F.normalize(scorer._embed_images(pref.images).mean(0), dim=0)
            text = f"<{len(pref.images)} photos>"
            extra["conditioned_on"] = "photos"
        else:
            raise ValueError("give a description or at least one photo")
        return Prompt(text, "", extra, condition)

    @torch.no_grad()
    def draw(self, prompt: Prompt, seed: int, n: int) -> list[Drawn]:
        seeds = [image_seed(seed, i) for i in range(n)]
        z = torch.stack([torch.randn(self.net.cfg.noise_dim, generator=torch.Generator().manual_seed(s))
                         for s in seeds]).to(self.device)
        t = prompt.condition[None].expand(n, -1).to(self.device)
        x = to_pixels(self.net(z, t))
        arr = x.permute(0, 2, 3, 1).numpy()
        mode = "RGB" if arr.shape[-1] == 3 else "L"
        return [Drawn(Image.fromarray(a if mode == "RGB" else a[..., 0], mode).convert("RGB"), s)
                for a, s in zip(arr, seeds)]


@dataclass
class DCGANSettings(CommonSettings):
    """The ``dcgan`` keys (see the table in ``dressup.generators``' docstring)."""

    checkpoint: str = ""
    colour_grounding: bool = True
    steps: int = 0  # training keys, read by dressup.demo; ignored at generation
    batch_size: int = 0
    image_size: int = 0


def load_dcgan_generator(settings: dict[str, Any], *, device, encoder, base_dir: Path,
                         palette: dict | None, reader: Any = None) -> DCGANGenerator:
    """``[arms.NAME.generator] kind = "dcgan"``: ``checkpoint`` (``train_dcgan``'s folder or its
    ``checkpoint.pt``, relative to the study file), the encoder it was trained with, and ``colour_grounding``."""
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
                               candidates=int(s.candidates), scorer=make_scorer(s, encoder, "generator (dcgan)"),
                               reader=reader if s.colour_grounding else None)
