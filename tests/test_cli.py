"""The researcher's command line: doctor and clear errors."""
from __future__ import annotations

from pathlib import Path

from dressup.cli import main

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def test_doctor_names_every_gap_of_the_paper_profile_and_its_fix(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    assert main(["doctor", "--study", str(ASSETS / "paper.toml")]) == 1
    out = capsys.readouterr().out
    assert "[FAULT]" in out and "catalogue" in out and "DeepFashion" in out
    assert "hf download patrickjohncyh/fashion-clip" in out and "huggingface-cli" not in out
    assert "python -m dressup train fclip_finetuned" in out
    assert "hf download stable-diffusion-v1-5/stable-diffusion-v1-5" in out
    assert out.splitlines()[-1].startswith("not ready:")


def test_a_missing_study_file_is_one_clear_line(capsys, tmp_path):
    assert main(["doctor", "--study", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_non_image_given_as_a_photo_is_one_clear_line(capsys, tmp_path):
    bad = tmp_path / "photo.jpg"
    bad.write_text("not really a photo")
    assert main(["recommend", "--study", str(ASSETS / "paper.toml"), "--arm", "baseline", "--image", str(bad)]) == 2
    assert "error:" in capsys.readouterr().err
