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
    assert set(everything) == set(study.train) and everything.index("swin") < everything.index("stn_swin")
    key = build_key(study)
    study.train["swin"] = dataclasses.replace(study.train["swin"], steps=9999)
    assert build_key(study) == key  # a model-selection recipe never forces the arms to be rebuilt
    study.train["finetuned"] = dataclasses.replace(study.train["finetuned"], steps=9999)
    assert build_key(study) != key


def test_a_build_recipe_cannot_start_from_one_the_build_skips():
    study = load_study(DEMO)
    study.train["finetuned"] = dataclasses.replace(study.train["finetuned"], init="swin")
    with pytest.raises(StudyFileError, match=r"build = false"):
        train_order(study, build_only=True)
