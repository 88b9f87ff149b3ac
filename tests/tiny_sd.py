"""A tiny random Stable Diffusion pipeline for tests: SD1.5's structure, nothing downloaded, never shown to anyone.

Only tests build it (the library serves real pipelines, ``dressup.generators.sd15.load_sd15``); its tokenizer is
the real CLIP tokenizer (``dressup.generators.clip_tokenizer``), so prompts are fitted as SD1.5's would be.
"""
from __future__ import annotations

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPImageProcessor, CLIPTextConfig, CLIPTextModel

from dressup.generators import clip_tokenizer


def tiny_sd_pipeline(seed: int = 0, safety_checker: torch.nn.Module | None = None):
    """A Stable Diffusion pipeline with SD1.5's structure but tiny random components (diffusers' own test
    recipe): runs on the CPU in a fraction of a second, makes 64x64 noise-like images, downloads nothing."""
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

