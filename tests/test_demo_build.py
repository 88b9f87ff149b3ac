"""What the demo build trains and what its cache key depends on (no training here)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dressup.config import StudyFileError, load_study
from dressup.demo import build_key, train_order

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo.toml"


def test_recipes_outside_the_build_are_neither_trained_nor_in_its_key():
    study = load_study(DEMO)
    assert [t.name for t in train_order(study, build_only=True)] == ["baseline", "finetuned", "stn"]
    everything = [t.name for t in train_order(study)]
    assert set(everything) == set(study.train)
    for name in everything:  # a recipe starting from another recipe's model is trained after it
        init = study.train[name].init
        assert init not in study.train or everything.index(init) < everything.index(name)
    key = build_key(study)
    study.train["swin"] = dataclasses.replace(study.train["swin"], steps=9999)
    assert build_key(study) == key  # a model-selection recipe never forces the arms to be rebuilt
    study.train["finetuned"] = dataclasses.replace(study.train["finetuned"], steps=9999)
    assert build_key(study) != key


def test_how_the_generator_draws_is_not_in_the_key_how_it_is_trained_is():
    """Guidance, sampling steps or candidate scoring change no weights: changing them must not throw the build
    (and the shipped weights) away and retrain for an hour; a training key must."""
    study = load_study(DEMO)
    arm = study.arm("generative")
    key = build_key(study)
    drawing = {"guidance_scale": 9.0, "sampling_steps": 50, "eta": 0.5, "candidates": 16, "encoder": "stn", "text_weight": 1.0}
    arm.generator.update(drawing)
    assert build_key(study) == key
    arm.generator["steps"] = int(arm.generator["steps"]) + 1
    assert build_key(study) != key


def test_a_build_recipe_cannot_start_from_one_the_build_skips():
    study = load_study(DEMO)
    study.train["finetuned"] = dataclasses.replace(study.train["finetuned"], init="swin")
    with pytest.raises(StudyFileError, match=r"build = false"):
        train_order(study, build_only=True)


def test_a_copy_of_the_study_file_pointing_at_the_same_cache_has_the_same_key(tmp_path):
    """Otherwise starting the app on a copy would wipe and retrain the real cache (found by bench/study_latency)."""
    study = load_study(DEMO)
    text = DEMO.read_text()
    for rel in ('"../cache/demo/diffusion"', '"../cache/demo"', '"../cache/demo/catalogue"', '"../results/demo"'):
        text = text.replace(rel, '"' + str((DEMO.parent / rel.strip('"')).resolve()) + '"')
    text = text.replace('"local:../', '"local:' + str(DEMO.parent.parent) + '/')
    text = text.replace('"config:models/', '"config:' + str(DEMO.parent / "models") + '/')
    copy = tmp_path / "copy.toml"
    copy.write_text(text)
    assert build_key(load_study(copy)) == build_key(study)
