"""Generative arms: a preference in, four generated images with stable ids out.

Every generator implements ``dressup.protocols.Generator`` (``generate(pref, seed) -> list[Shown]``, through
``BaseGenerator``) and is made by ``load_generator(settings)`` from a small table keyed by the study file's
``kind`` (``dressup.generators.registry``):

- ``sd15``: Stable Diffusion 1.5 through diffusers (the paper profile): ``dressup.generators.sd15``.
- ``dcgan``: the conditional DCGAN (the demo profile): ``dressup.generators.dcgan``, trained by
  ``dressup.generators.dcgan_train``.
- ``diffusion``: the miniature text-conditioned diffusion model (SD1.5's algorithm at the demo's scale; keys in
  ``dressup.generators.diffusion.load_diffusion_generator``): ``dressup.generators.diffusion``, trained by
  ``dressup.generators.diffusion_train``.

The guarantees every kind gives (four images, stable ids, deterministic, traceable, can start early,
preference-scored selection) are in ``dressup.generators.base``. This package re-exports what the rest of the
library uses; the DCGAN and diffusion modules are imported only by whoever needs them, so importing this
package costs what it always did (torch, not diffusers).

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

from dressup.generators.base import (ITEM_PREFIX, PREPARED_KEEP, BaseGenerator, CommonSettings, Drawn,
                                     GeneratorSettingsError, PreferenceScorer, Prompt, generated_item_id, image_seed,
                                     make_scorer, parse_settings, read_words, resolve_device)
from dressup.generators.garment_texts import colour_prompts, garment_phrase
from dressup.generators.registry import GENERATOR_KINDS, load_generator
from dressup.generators.sd15 import (NEGATIVE_PROMPT, PLACEHOLDER_RGB, PROMPT_TEMPLATE, SCHEDULERS, SD15_MODEL,
                                     SD15Generator, SDSettings, load_sd15, scheduler_class, sd_dtype)
from dressup.generators.tokenizer import clip_tokenizer

__all__ = [
    "BaseGenerator", "CommonSettings", "Drawn", "GENERATOR_KINDS", "GeneratorSettingsError", "ITEM_PREFIX",
    "NEGATIVE_PROMPT", "PLACEHOLDER_RGB", "PREPARED_KEEP", "PROMPT_TEMPLATE", "PreferenceScorer", "Prompt",
    "SCHEDULERS", "SD15Generator", "SD15_MODEL", "SDSettings", "clip_tokenizer", "colour_prompts", "garment_phrase",
    "generated_item_id", "image_seed", "load_generator", "load_sd15", "make_scorer", "parse_settings", "read_words",
    "resolve_device", "scheduler_class", "sd_dtype",
]
