"""The open_clip backend: open_clip's ``CLIP`` / ``CustomTextCLIP`` as an ``Encoder``, and building one from a
model config without open_clip's global registry.

It also registers ``dressup_swin_demo`` with timm, the demo's small Swin image tower that open_clip configs
name (``dressup-demo-swin.json``): importing ``dressup.encoders`` imports this module, so the name is known
before any config is built.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import timm
import torch
from open_clip.hf_model import HFTextEncoder
from open_clip.model import CLIP, CustomTextCLIP, set_model_preprocess_cfg
from open_clip.timm_model import TimmModel
from open_clip.tokenizer import HFTokenizer, SimpleTokenizer
from open_clip.transform import PreprocessCfg
from torch import nn

from dressup.encoders.base import Encoder
from dressup.encoders.errors import EncoderError
from dressup.preprocess import OpenClipGeometry


@timm.models.register_model
def dressup_swin_demo(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """A three-stage Swin for 64 px images (the demo's Swin tower; ``dressup-demo-swin.json``).

    open_clip's ``TimmModel`` passes no architecture arguments to timm, so a small Swin needs a timm name
    of its own. Patch 4 gives a 16x16 token grid, window 4 tiles it; stages run at 16, 8 and 4 tokens.
    There are no pretrained weights for it.
    """
    if pretrained:
        raise EncoderError("dressup_swin_demo has no pretrained weights; set timm_model_pretrained to false")
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    args = dict(img_size=64, patch_size=4, window_size=4, embed_dim=32, depths=(2, 2, 2), num_heads=(2, 4, 8))
    args.update(kwargs)
    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, **args)


class OpenClipEncoder(Encoder):
    """An open_clip ``CLIP`` / ``CustomTextCLIP``; ``model_cfg`` is kept so ``save`` can rebuild it offline."""

    backend = "open_clip"

    def __init__(self, name: str, spec: str, model: nn.Module, tokenizer: Any, model_cfg: dict[str, Any],
                 options: dict[str, Any] | None = None):
        pp = model.visual.preprocess_cfg
        geometry = OpenClipGeometry.from_cfg(pp, model.visual.image_size)
        super().__init__(name, spec, model, image_size=geometry.size, mean=pp["mean"], std=pp["std"],
                         embed_dim=int(model_cfg["embed_dim"]), options=options, geometry=geometry)
        self.tokenizer = tokenizer
        self.model_cfg = copy.deepcopy(model_cfg)

    @property
    def _hf_text(self) -> HFTextEncoder | None:
        text = getattr(self.module, "text", None)
        return text if isinstance(text, HFTextEncoder) else None

    def _image_forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.module.encode_image(pixels)

    def _tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts).to(self.device)

    def _text_trunk(self, tokens: torch.Tensor) -> torch.Tensor:
        hf = self._hf_text
        if hf is None:  # native text transformer: locking freezes all of it, projection included
            return self.module.encode_text(tokens)
        mask = (tokens != hf.config.pad_token_id).long()
        # Padding is masked out, so the columns after the batch's longest text change nothing; dropping them
        # makes MiniLM 3-8x faster on short captions and queries than the tokenizer's fixed 77 tokens.
        used = mask.any(dim=0).nonzero()
        width = int(used.max()) + 1 if len(used) else 1
        tokens, mask = tokens[:, :width], mask[:, :width]
        return hf.pooler(hf.transformer(input_ids=tokens, attention_mask=mask), mask)

    def _text_head(self, states: torch.Tensor) -> torch.Tensor:
        hf = self._hf_text
        return states if hf is None else hf.proj(states)

    def _text_trunk_modules(self) -> list[nn.Module]:
        hf = self._hf_text
        if hf is not None:
            return [hf.transformer]
        if isinstance(self.module, CustomTextCLIP):
            return [self.module.text]
        m = self.module
        return [x for x in (m.token_embedding, m.transformer, m.ln_final, m.text_projection) if isinstance(x, nn.Module)]

    def _text_trunk_params(self) -> list[nn.Parameter]:
        params = super()._text_trunk_params()
        if self._hf_text is None and not isinstance(self.module, CustomTextCLIP):
            # open_clip's CLIP keeps two text parameters outside any module
            params += [p for p in (self.module.positional_embedding, self.module.text_projection)
                       if isinstance(p, nn.Parameter)]
        return params

    def _wrap_image_tower(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        self.module.visual = wrap(self.module.visual)

    def _replace_image_tower(self, timm_name: str, pretrained: bool) -> None:
        old = self.module.visual
        tower = TimmModel(timm_name, embed_dim=self.embed_dim, image_size=self.image_size, pool="avg",
                          proj="linear", pretrained=pretrained)
        cfg = copy.deepcopy(old.preprocess_cfg)
        if pretrained:  # ImageNet weights expect ImageNet statistics
            cfg["mean"], cfg["std"] = tower.trunk.pretrained_cfg["mean"], tower.trunk.pretrained_cfg["std"]
        self.module.visual = tower.to(self.device)
        set_model_preprocess_cfg(self.module, cfg)
        self._mean = torch.tensor(cfg["mean"], dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(cfg["std"], dtype=torch.float32).view(3, 1, 1)

    def _save_backend(self, d: Path) -> dict[str, Any]:
        model_cfg = copy.deepcopy(self.model_cfg)
        tok: dict[str, Any]
        hf = self._hf_text
        if hf is not None:  # the text tower's config and tokenizer travel with the weights
            hf.config.save_pretrained(d / "text_tower")
            model_cfg["text_cfg"]["hf_model_name"] = "text_tower"
            model_cfg["text_cfg"]["hf_tokenizer_name"] = "text_tower"
        if isinstance(self.tokenizer, HFTokenizer):
            self.tokenizer.tokenizer.save_pretrained(d / "text_tower")
            tok = {"kind": "hf", "path": "text_tower", "context_length": self.tokenizer.context_length,
                   "strip_sep_token": self.tokenizer.strip_sep_token}
        elif isinstance(self.tokenizer, SimpleTokenizer):
            tok = {"kind": "simple", "context_length": self.tokenizer.context_length}
        else:  # e.g. SigLipTokenizer: rebuilt by name (may need the Hub cache)
            tok = {"kind": "open_clip", "model": self.options.get("base_spec", self.spec).split(":", 1)[-1]}
        pp = json.loads(json.dumps(self.module.visual.preprocess_cfg, default=list))  # tuples -> JSON lists
        return {"model_cfg": model_cfg, "preprocess_cfg": pp, "tokenizer": tok}


def openclip_tokenizer(text_cfg: dict[str, Any]) -> Any:
    ctx = int(text_cfg.get("context_length", 77))
    if text_cfg.get("hf_tokenizer_name"):
        return HFTokenizer(text_cfg["hf_tokenizer_name"], context_length=ctx, **text_cfg.get("tokenizer_kwargs", {}))
    return SimpleTokenizer(context_length=ctx)


def build_openclip(cfg: dict[str, Any], preprocess_cfg: dict[str, Any] | None, *, from_checkpoint: bool,
                    where: Path) -> nn.Module:
    """open_clip's ``CLIP`` / ``CustomTextCLIP`` from a config dict, as ``open_clip.create_model`` builds a
    registered name, but without its global registry: that is keyed by file stem, so two studies' configs
    of the same file name would silently swap architectures.

    ``from_checkpoint`` skips pretrained tower weights (a ``local:`` folder's weights replace them anyway). A
    config may carry the model's ``preprocess_cfg`` (as open_clip's ``open_clip_config.json`` does beside it).
    """
    build = copy.deepcopy(cfg)
    pp = asdict(PreprocessCfg())
    pp.update(build.pop("preprocess_cfg", None) or {})
    pp.update(preprocess_cfg or {})
    if "multimodal_cfg" in build:
        raise EncoderError(f"{where}: CoCa-style models (multimodal_cfg) are not supported as encoders")
    text_cfg, vision_cfg = build["text_cfg"], build["vision_cfg"]
    is_hf = bool(text_cfg.get("hf_model_name"))
    if is_hf:
        text_cfg["hf_model_pretrained"] = bool(text_cfg.get("hf_model_pretrained", True)) and not from_checkpoint
    if vision_cfg.get("timm_model_name"):
        vision_cfg["timm_model_pretrained"] = bool(vision_cfg.get("timm_model_pretrained")) and not from_checkpoint
    cls = CustomTextCLIP if (build.pop("custom_text", False) or is_hf) else CLIP
    model = cls(**build)
    pp["size"] = model.visual.image_size
    set_model_preprocess_cfg(model, pp)
    return model
