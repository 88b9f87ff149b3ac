"""The transformers backend: a transformers ``CLIPModel`` (FashionCLIP 2.0 is one) as an ``Encoder``, and the
adapter that lets a timm image tower stand where its vision transformer stood."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import timm
import torch
from torch import nn

from dressup.encoders.base import Encoder
from dressup.preprocess import ClipProcessorGeometry


class _TimmAsHFVision(nn.Module):
    """A timm image model standing where a transformers ``CLIPVisionTransformer`` stood: it returns an
    object with ``pooler_output`` so ``CLIPModel.get_image_features`` keeps working."""

    def __init__(self, name: str, image_size: int, pretrained: bool):
        super().__init__()
        self.trunk = timm.create_model(name, pretrained=pretrained, num_classes=0)
        self.image_size = image_size

    def forward(self, pixel_values: torch.Tensor, **_: Any) -> Any:
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        return BaseModelOutputWithPooling(pooler_output=self.trunk(pixel_values))


class TransformersEncoder(Encoder):
    """A transformers ``CLIPModel`` (FashionCLIP 2.0 is one), embeddings from ``.pooler_output``."""

    backend = "transformers"

    def __init__(self, name: str, spec: str, model: nn.Module, tokenizer: Any, processor: Any,
                 image_size: int | None = None, options: dict[str, Any] | None = None):
        size = int(image_size or model.config.vision_config.image_size)
        super().__init__(name, spec, model, image_size=size, mean=processor.image_mean, std=processor.image_std,
                         embed_dim=int(model.config.projection_dim), options=options,
                         geometry=ClipProcessorGeometry.from_processor(processor, size))
        self.tokenizer = tokenizer
        self.processor = processor

    def _image_forward(self, pixels: torch.Tensor) -> torch.Tensor:
        interpolate = self.image_size != self.module.config.vision_config.image_size
        return self.module.get_image_features(pixel_values=pixels, interpolate_pos_encoding=interpolate).pooler_output

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.module.config.text_config
                             .max_position_embeddings, return_tensors="pt")
        return {k: enc[k].to(self.device) for k in ("input_ids", "attention_mask")}

    def _text_trunk(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.module.text_model(**tokens).pooler_output

    def _text_head(self, states: torch.Tensor) -> torch.Tensor:
        return self.module.text_projection(states)

    def _text_trunk_modules(self) -> list[nn.Module]:
        return [self.module.text_model]

    def _wrap_image_tower(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        self.module.vision_model = wrap(self.module.vision_model)

    def _replace_image_tower(self, timm_name: str, pretrained: bool) -> None:
        tower = _TimmAsHFVision(timm_name, self.image_size, pretrained)
        self.module.vision_model = tower.to(self.device)
        self.module.visual_projection = nn.Linear(tower.trunk.num_features, self.embed_dim, bias=False).to(self.device)
        if pretrained:
            self._mean = torch.tensor(tower.trunk.pretrained_cfg["mean"], dtype=torch.float32).view(3, 1, 1)
            self._std = torch.tensor(tower.trunk.pretrained_cfg["std"], dtype=torch.float32).view(3, 1, 1)

    def _save_backend(self, d: Path) -> dict[str, Any]:
        hf = d / "transformers"
        self.module.config.save_pretrained(hf)
        self.tokenizer.save_pretrained(hf)
        self.processor.save_pretrained(hf)
        return {"hf_dir": "transformers"}
