"""The generator interface and Stable Diffusion 1.5, run for real on tiny random pipelines (diffusers' own
test recipe): nothing is downloaded, each generation takes a fraction of a second on the CPU."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from PIL import Image, ImageDraw
from torch import nn
from transformers import CLIPConfig

from dressup.colours import CATALOGUE_COLOURS, garment_colour
from dressup.config import EncoderSpec
from dressup.generators import (NEGATIVE_PROMPT, PLACEHOLDER_RGB, PROMPT_TEMPLATE, SD15_MODEL, GeneratorSettingsError,
                                PreferenceScorer, SD15Generator, SDSettings, colour_prompts, image_seed,
                                load_generator, scheduler_class, sd_dtype)
from dressup.records import Preference
from tests.tiny_models import TINY_RESNET_CLIP, write_tiny_config
from tests.tiny_sd import tiny_sd_pipeline

TINY = dict(kind="sd15", width=64, height=64, steps=2, scheduler="DDIM", progress=False)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def direct(pipe, prompt: str, negative: str, seeds: list[int]) -> list[Image.Image]:
    """The pipeline called by hand, as a researcher would, to check what the generator passed it."""
    out = pipe(prompt=[prompt] * len(seeds), negative_prompt=[negative] * len(seeds), num_inference_steps=2,
               guidance_scale=7.5, height=64, width=64,
               generator=[torch.Generator("cpu").manual_seed(s) for s in seeds], output_type="pil")
    return out.images


class FlagsIndex(nn.Module):
    """Stand-in with StableDiffusionSafetyChecker's call signature: flags one batch position on its first
    ``times`` calls and blacks it out, as the real checker does."""

    def __init__(self, index: int, times: int = 1) -> None:
        super().__init__()
        self.index, self.times, self.calls = index, times, 0
        self.dummy = nn.Parameter(torch.zeros(1))

    @property
    def device(self) -> torch.device:  # diffusers asks every component for its device, as PreTrainedModel has
        return self.dummy.device

    @property
    def dtype(self) -> torch.dtype:
        return self.dummy.dtype

    def forward(self, clip_input, images):
        self.calls += 1
        flags = [False] * len(images)
        if self.calls <= self.times and self.index < len(images):
            flags[self.index] = True
            images[self.index] = torch.zeros_like(images[self.index])
        return images, flags


def tiny_safety_checker() -> StableDiffusionSafetyChecker:
    cfg = CLIPConfig(
        text_config=dict(hidden_size=8, intermediate_size=37, num_attention_heads=2, num_hidden_layers=1),
        vision_config=dict(hidden_size=8, intermediate_size=37, num_attention_heads=2, num_hidden_layers=1,
                           image_size=32, patch_size=8),
        projection_dim=8)
    torch.manual_seed(0)
    return StableDiffusionSafetyChecker(cfg)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    """A real open_clip encoder with a tiny random config (dressup.encoders' config: door)."""
    from dressup.encoders import load_encoder

    path = write_tiny_config(tmp_path_factory.mktemp("enc"), "dressup-test-tiny-gen", TINY_RESNET_CLIP)
    return load_encoder(EncoderSpec(name="tiny", spec=f"config:{path}"))


def make(settings: dict | None = None, safety_checker=None, scorer=None) -> SD15Generator:
    s = SDSettings(**{**TINY, **(settings or {})})
    return SD15Generator(tiny_sd_pipeline(safety_checker=safety_checker), s, scorer, model_id="tiny")


def test_prompt_template_and_negative_prompt_reach_the_pipeline():
    gen = make()
    shown = gen.generate(Preference(text="a  red dress"), seed=3)
    prompt = PROMPT_TEMPLATE.format(text="a red dress")
    assert all(s.extra["prompt"] == prompt and s.extra["negative_prompt"] == NEGATIVE_PROMPT for s in shown)
    seeds = [image_seed(3, i) for i in range(4)]
    by_hand = direct(gen.pipe, prompt, NEGATIVE_PROMPT, seeds)
    assert all(np.array_equal(pixels(s.image), pixels(h)) for s, h in zip(shown, by_hand))
    other_negative = direct(gen.pipe, prompt, "blurry", seeds)
    assert not np.array_equal(pixels(shown[0].image), pixels(other_negative[0]))


def test_colours_to_avoid_and_gender_shape_the_prompts():
    p = make().prompt(Preference(text="", gender="menswear", avoid_colours=["Navy ", "crimson"]))
    assert p.text == PROMPT_TEMPLATE.format(text="a stylish everyday garment, menswear")
    assert p.negative == NEGATIVE_PROMPT + ", Navy, crimson"


def test_same_seed_same_pixels_different_seed_different_four_images():
    a = make().generate(Preference(text="a blue shirt"), seed=7)
    b = make().generate(Preference(text="a blue shirt"), seed=7)
    c = make().generate(Preference(text="a blue shirt"), seed=8)
    assert len(a) == 4 and all(s.image.size == (64, 64) for s in a)
    assert [s.item_id for s in a] == [s.item_id for s in b]
    assert all(np.array_equal(pixels(x.image), pixels(y.image)) for x, y in zip(a, b))
    assert not any(np.array_equal(pixels(x.image), pixels(y.image)) for x, y in zip(a, c))
    assert not np.array_equal(pixels(a[0].image), pixels(a[1].image))  # each image has its own seed
    assert [s.extra["seed"] for s in c] == [8] * 4
    assert [s.extra["image_seed"] for s in c] == [image_seed(8, i) for i in range(4)]


def test_item_ids_name_model_prompt_seed_and_settings():
    base = [s.item_id for s in make().generate(Preference(text="a dress"), 1)]
    assert all(i.startswith("gen:") and len(i) == 20 for i in base) and len(set(base)) == 4
    other_text = [s.item_id for s in make().generate(Preference(text="a skirt"), 1)]
    other_steps = [s.item_id for s in make({"steps": 3}).generate(Preference(text="a dress"), 1)]
    assert not set(base) & set(other_text) and not set(base) & set(other_steps)


def test_flagged_image_is_redrawn_from_the_next_seed_and_flagged():
    clean = make().generate(Preference(text="a coat"), seed=5)
    checker = FlagsIndex(2)
    gen = make(safety_checker=checker)
    shown = gen.generate(Preference(text="a coat"), seed=5)
    assert checker.calls == 2  # the batch of four, then the redraw of image 2 alone
    assert [s.extra["safety_flagged"] for s in shown] == [False, False, True, False]
    assert shown[2].extra["safety_attempts"] == 2 and not shown[2].extra["placeholder"]
    assert shown[2].extra["image_seed"] == image_seed(5, 2, 1)
    for i in (0, 1, 3):
        assert np.array_equal(pixels(shown[i].image), pixels(clean[i].image))
    assert not np.array_equal(pixels(shown[2].image), pixels(clean[2].image))
    assert pixels(shown[2].image).max() > 0  # not the checker's black square
    redraw = direct(make().pipe, shown[2].extra["prompt"], NEGATIVE_PROMPT, [image_seed(5, 2, 1)])[0]
    assert np.array_equal(pixels(shown[2].image), pixels(redraw))
    assert shown[2].item_id != clean[2].item_id


def test_image_flagged_on_every_redraw_becomes_a_neutral_placeholder():
    gen = make({"safety_retries": 2}, safety_checker=FlagsIndex(0, times=99))
    shown = gen.generate(Preference(text="a coat"), seed=5)
    s = shown[0]
    assert s.extra["placeholder"] and s.extra["safety_flagged"] and s.extra["safety_attempts"] == 3
    assert s.extra["image_seed"] is None
    assert set(map(tuple, np.asarray(s.image).reshape(-1, 3))) == {PLACEHOLDER_RGB}
    assert not shown[1].extra["placeholder"]


def test_load_generator_from_a_saved_pipeline_keeps_the_safety_checker(tmp_path):
    from transformers import CLIPImageProcessor

    pipe = tiny_sd_pipeline(safety_checker=tiny_safety_checker())
    pipe.feature_extractor = CLIPImageProcessor(size=32, crop_size=32)
    pipe.save_pretrained(tmp_path / "sd")
    with pytest.warns(RuntimeWarning, match="CPU is slow"):
        gen = load_generator({**TINY, "model": "sd", "scheduler": "Euler"}, device="cpu", base_dir=tmp_path)
    assert isinstance(gen.pipe.safety_checker, StableDiffusionSafetyChecker)
    assert gen.pipe.unet.dtype == torch.float32
    assert isinstance(gen.pipe.scheduler, EulerDiscreteScheduler)
    shown = gen.generate(Preference(text="a red dress"), seed=0)
    assert len(shown) == 4 and all(s.extra["safety_attempts"] >= 1 for s in shown)


def test_a_model_without_safety_checker_is_refused_unless_switched_off(tmp_path):
    tiny_sd_pipeline().save_pretrained(tmp_path / "sd")
    with pytest.warns(RuntimeWarning), pytest.raises(GeneratorSettingsError, match="safety_checker = false"):
        load_generator({**TINY, "model": str(tmp_path / "sd")}, device="cpu")
    with pytest.warns(RuntimeWarning):
        gen = load_generator({**TINY, "model": str(tmp_path / "sd"), "safety_checker": False}, device="cpu")
    assert gen.pipe.safety_checker is None


def test_fp16_only_on_cuda():
    assert sd_dtype(torch.device("cuda")) is torch.float16
    assert sd_dtype(torch.device("cuda:1")) is torch.float16
    assert sd_dtype(torch.device("cpu")) is torch.float32
    assert SDSettings().model == SD15_MODEL == "stable-diffusion-v1-5/stable-diffusion-v1-5"


def test_scheduler_is_chosen_by_name():
    assert scheduler_class("DDIM") is DDIMScheduler
    assert scheduler_class("DPMSolverMultistepScheduler") is DPMSolverMultistepScheduler
    assert scheduler_class("euler") is EulerDiscreteScheduler
    with pytest.raises(GeneratorSettingsError, match="DPMSolverMultistep"):
        scheduler_class("warp-drive")
    assert isinstance(make({"scheduler": "DPMSolverMultistep"}).pipe.scheduler, DPMSolverMultistepScheduler)


def test_settings_mistakes_name_the_fix():
    with pytest.raises(GeneratorSettingsError, match="unknown key.*'stpes'"):
        load_generator({"kind": "sd15", "stpes": 20}, device="cpu")
    with pytest.raises(GeneratorSettingsError, match="kind"):
        load_generator({"kind": "vae"}, device="cpu")
    with pytest.raises(GeneratorSettingsError, match="needs an encoder"):
        load_generator({"kind": "sd15", "candidates": 8, "model": "nowhere"}, device="cpu")
    with pytest.raises(GeneratorSettingsError, match=r"\{text\}"):
        make({"prompt_template": "a photo"})
    with pytest.warns(RuntimeWarning), pytest.raises(GeneratorSettingsError, match="save_pretrained"):
        load_generator({"kind": "sd15", "model": "/nonexistent/sd-folder"}, device="cpu")


def test_preference_scoring_keeps_the_top_four_candidates_in_descending_order(tiny_encoder):
    photos = [Image.new("RGB", (40, 40), (200, 30, 30)), Image.new("RGB", (40, 40), (180, 60, 40))]
    pref = Preference(text="a red dress", images=photos)
    gen = make({"candidates": 8}, scorer=PreferenceScorer(tiny_encoder, 0.5))
    shown = gen.generate(pref, seed=11)
    record = shown[0].extra["candidate_scores"]
    assert len(shown) == 4 and len(record) == 8
    assert all(s.extra["candidate_scores"] == record for s in shown)

    # Independently: draw all eight candidates by hand and score them here.
    seeds = [image_seed(11, i) for i in range(8)]
    assert [r["drawn_seed"] for r in record] == seeds
    images = direct(gen.pipe, shown[0].extra["prompt"], NEGATIVE_PROMPT, seeds)
    emb = tiny_encoder.encode_images(torch.stack([tiny_encoder.preprocess(im) for im in images]))
    text = tiny_encoder.encode_texts(["a red dress"])[0]
    photo = torch.nn.functional.normalize(
        tiny_encoder.encode_images(torch.stack([tiny_encoder.preprocess(p) for p in photos])).mean(0), dim=0)
    scores = (0.5 * emb @ text + 0.5 * emb @ photo).numpy()
    top = list(np.argsort(-scores)[:4])
    assert [s.extra["candidate"] for s in shown] == top
    assert [s.score for s in shown] == sorted([s.score for s in shown], reverse=True)
    np.testing.assert_allclose([s.score for s in shown], scores[top], atol=1e-4)
    np.testing.assert_allclose([r["score"] for r in record], scores, atol=1e-4)
    for s, i in zip(shown, top):
        assert np.array_equal(pixels(s.image), pixels(images[i]))
    order, ranked = gen.rank(pref, images)  # the ranking generate used, on its own (bench diffusion_ranking)
    assert order == top
    np.testing.assert_allclose(ranked, scores, atol=1e-4)


def test_scoring_is_off_by_default():
    gen = make()
    shown = gen.generate(Preference(text="a red dress"), seed=0)
    assert gen.scorer is None and [s.extra["candidate"] for s in shown] == [0, 1, 2, 3]
    assert "candidate_scores" not in shown[0].extra


def test_candidate_verdicts_separate_the_generator_the_ranking_and_its_ceiling():
    from dressup.judge import CandidateVerdict

    v = CandidateVerdict("a red dress", colour_hits=[False, True, False, False, True, True, True, False],
                         category_hits=[True, True, True, False, True, False, True, True], shown=[1, 5, 0, 2])
    assert v.hits("first") == (3, 1)  # candidates 0-3: the generator alone
    assert v.hits("shown") == (3, 2)  # 1, 5, 0, 2: what the ranking chose
    assert v.hits("best") == (4, 4)  # four of the eight carry the colour, and six the category
    assert CandidateVerdict("x", [True, False] * 4, [False] * 8, [0, 1, 2, 3]).hits("best") == (0, 4)
    assert CandidateVerdict("x", [True] + [False] * 7, [True] * 8, [0, 1, 2, 3]).hits("best") == (4, 1)


def _garment(rgb, stripes=None, background=(245, 245, 245)) -> Image.Image:
    im = Image.new("RGB", (64, 64), background)
    d = ImageDraw.Draw(im)
    d.polygon([(24, 8), (40, 8), (52, 58), (12, 58)], fill=rgb)
    if stripes:
        for y in range(10, 58, 8):
            d.line([(0, y), (64, y)], fill=stripes, width=2)
        d.rectangle([0, 0, 63, 6], fill=background)
        d.rectangle([0, 59, 63, 63], fill=background)
    return im


def test_garment_colour_names_the_garment_not_the_background():
    assert garment_colour(_garment(CATALOGUE_COLOURS["red"])) == "red"
    assert garment_colour(_garment((30, 60, 200))) == "blue"  # a blue that is no palette value
    assert garment_colour(_garment(CATALOGUE_COLOURS["green"], stripes=(250, 250, 250))) == "green"
    assert garment_colour(_garment(CATALOGUE_COLOURS["purple"], background=(240, 230, 205))) == "purple"  # beige
    assert garment_colour(Image.new("RGB", (64, 64), (250, 250, 250))) is None


def test_colour_prompts_cover_pairs_and_leave_out_white():
    prompts = colour_prompts(list(CATALOGUE_COLOURS), ["dress", "long_sleeve_top", "trousers"], n=50, seed=0)
    assert len(prompts) == 50
    assert prompts == colour_prompts(list(CATALOGUE_COLOURS), ["dress", "long_sleeve_top", "trousers"])
    assert all(c != "white" and c in t for c, t in prompts)
    assert len(set(prompts[:30])) == 30  # all 10 x 3 pairs before any repeat
    assert {("red", "a red long sleeve top"), ("orange", "an orange dress"), ("blue", "blue trousers")} <= set(prompts)


def test_prepare_draws_ahead_and_generate_takes_exactly_those_images(monkeypatch):
    """Issue 7: generation starts on the words before the photos arrive, and changes nothing it returns."""
    gen = make()
    calls = []
    real_draw = gen.draw
    monkeypatch.setattr(gen, "draw", lambda prompt, seed, n: calls.append(prompt.text) or real_draw(prompt, seed, n))
    gen.prepare(Preference(text="a blue shirt"), seed=7)
    assert len(calls) == 1
    prepared = gen.generate(Preference(text="a blue shirt", images=[Image.new("RGB", (8, 8))]), seed=7)
    assert len(calls) == 1  # Submit took the prepared draw instead of drawing again
    fresh = make().generate(Preference(text="a blue shirt"), seed=7)
    assert [s.item_id for s in prepared] == [s.item_id for s in fresh]
    assert all(np.array_equal(pixels(x.image), pixels(y.image)) for x, y in zip(prepared, fresh))
    # anything the drawing depends on that changed after the early start means drawing again
    gen.prepare(Preference(text="a blue shirt"), seed=7)
    gen.generate(Preference(text="a blue shirt", avoid_colours=["navy"]), seed=7)
    gen.generate(Preference(text="a blue shirt"), seed=8)
    assert len(calls) == 4
