from pathlib import Path

import pytest

from dressup.config import StudyFileError, load_study

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def test_demo_and_paper_study_files_load():
    demo = load_study(ASSETS / "demo.toml")
    assert demo.profile == "demo" and [a.name for a in demo.arms][:3] == ["baseline", "finetuned", "stn"]
    assert demo.encoder("finetuned").spec.startswith("local:/")  # made absolute against the file's folder
    paper = load_study(ASSETS / "paper.toml")
    assert paper.encoder("fclip").spec == "transformers:patrickjohncyh/fashion-clip"
    assert {a.kind for a in paper.arms} == {"retrieval", "generative"}


def test_study_file_mistakes_name_the_key(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('[study]\nname="x"\nprofile="demo"\n[catalogue]\nroot="c"\n[arms.a]\nkind="retrieval"\nencoder="nope"\n')
    with pytest.raises(StudyFileError, match=r"\[arms.a\] encoder 'nope'"):
        load_study(p)
    p.write_text('[study]\nname="x"\nprofile="demo"\n[catalogue]\nroot="c"\ntypo=1\n')
    with pytest.raises(StudyFileError, match="unknown key"):
        load_study(p)
    with pytest.raises(StudyFileError, match="does not exist"):
        load_study(tmp_path / "missing.toml")
