"""The product-shot instructions reach Stable Diffusion's text encoder however much a participant writes."""
from __future__ import annotations

import torch

from dressup.generators import NEGATIVE_PROMPT, PROMPT_TEMPLATE, SD15Generator, SDSettings, clip_tokenizer
from dressup.prompt_fit import fit_list, fit_words, token_count
from dressup.records import Preference
from tests.tiny_sd import tiny_sd_pipeline

LONG = ("I love relaxed linen shirts in muted earth tones, something I can wear to the office and then out to "
        "dinner, with a soft collar and sleeves I can roll up, nothing too fitted, and I always avoid shiny "
        "fabrics. ") * 8  # about 1,500 characters, far past CLIP's 77 tokens


def test_a_long_description_is_trimmed_and_the_instructions_stay_whole():
    tok = clip_tokenizer()
    assert len(LONG) >= 1500
    prompt = fit_words(PROMPT_TEMPLATE, LONG, tok)
    assert token_count(tok, prompt) <= 77
    head, tail = PROMPT_TEMPLATE.split("{text}")
    assert prompt.startswith(head) and prompt.endswith(tail)  # the instructions, whole
    kept = prompt[len(head):len(prompt) - len(tail)]
    assert LONG.startswith(kept) and len(kept.split()) > 5  # a prefix of the participant's own words
    assert fit_words(PROMPT_TEMPLATE, "a red dress", tok) == PROMPT_TEMPLATE.format(text="a red dress")


def test_one_overlong_word_is_cut_by_characters_and_many_colours_to_avoid_keep_the_fixed_negative():
    tok = clip_tokenizer()
    prompt = fit_words(PROMPT_TEMPLATE, "x" * 3000, tok)
    assert token_count(tok, prompt) <= 77 and "xxxx" in prompt and prompt.endswith("no face")
    negative = fit_list(NEGATIVE_PROMPT, [f"colour{i}" for i in range(200)], tok)
    assert negative.startswith(NEGATIVE_PROMPT) and token_count(tok, negative) <= 77


def test_the_text_encoder_receives_the_instruction_tokens_of_a_1500_character_description():
    """Hooked on the real pipeline's text encoder: what it is given, not what we meant to give it."""
    gen = SD15Generator(tiny_sd_pipeline(), SDSettings(kind="sd15", width=32, height=32, steps=2,
                                                       safety_checker=False), model_id="tiny")
    seen: list[torch.Tensor] = []
    handle = gen.pipe.text_encoder.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append((kwargs.get("input_ids") if "input_ids" in kwargs else args[0]).clone()),
        with_kwargs=True)
    try:
        gen.generate(Preference(text=LONG, gender="menswear", avoid_colours=["orange"]), seed=7)
    finally:
        handle.remove()
    tok = gen.pipe.tokenizer
    instruction = tok(", no person, no model, no face", add_special_tokens=False)["input_ids"]
    conditional = seen[0][0].tolist()  # the first call encodes the prompts, then the negative prompts
    end = conditional.index(tok.eos_token_id)
    assert conditional[end - len(instruction):end] == instruction  # the last words before the end token
    assert tok("menswear", add_special_tokens=False)["input_ids"][0] in conditional[:end]
    negatives = seen[1][0].tolist() if len(seen) > 1 else seen[0][1].tolist()
    assert tok("orange", add_special_tokens=False)["input_ids"][0] in negatives
