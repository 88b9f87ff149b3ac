"""The study file: loading, and the schema's messages for the mistakes a researcher makes."""
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


# --- the schema: one test per mistake a researcher makes, each naming the file, the key, what is allowed and the fix
DEMO_TEXT = (ASSETS / "demo.toml").read_text(encoding="utf-8")


def _mistake(tmp_path, old: str, new: str) -> str:
    """The message of loading demo.toml with ``old`` replaced by ``new`` (once, outside comments)."""
    assert f"\n{old}" in DEMO_TEXT, old
    p = tmp_path / "mistake.toml"
    p.write_text(DEMO_TEXT.replace(f"\n{old}", f"\n{new}", 1), encoding="utf-8")
    with pytest.raises(StudyFileError) as e:
        load_study(p)
    message = str(e.value)
    assert str(p) in message, message  # the file
    return message


def test_an_unknown_key_suggests_the_known_one(tmp_path):
    m = _mistake(tmp_path, 'results_dir = "../results/demo"', 'result_dir = "../results/demo"')
    assert "[study] has unknown key 'result_dir'" in m and "did you mean results_dir?" in m
    assert "'participants_wanted'" in m  # the allowed keys


def test_an_unknown_section_suggests_the_known_one(tmp_path):
    m = _mistake(tmp_path, "[query]\n", "[querry]\n")
    assert "unknown section [querry]" in m and "did you mean [query]?" in m and "[push]" in m


def test_a_count_written_as_a_word_is_refused(tmp_path):
    m = _mistake(tmp_path, "min_photos = 2", 'min_photos = "two"')
    assert '[ui] min_photos = "two" must be a whole number' in m and "min_photos = 2" in m  # the fix


def test_a_misspelt_fusion_is_refused_not_read_as_mean(tmp_path):
    m = _mistake(tmp_path, 'fusion = "mean"', 'fusion = "mena"')
    assert '[query] fusion = "mena" must be "mean" or "rrf"' in m and 'fusion = "mean"' in m.split(";", 1)[1]


def test_a_device_that_is_not_one_is_refused_with_the_choices(tmp_path):
    m = _mistake(tmp_path, 'device = "cpu"', 'device = "gpu"')
    assert '[study] device = "gpu" must be one of "auto", "cpu" or "cuda"' in m


def test_a_share_outside_zero_to_one_is_refused(tmp_path):
    m = _mistake(tmp_path, "text_weight = 0.75", "text_weight = 5")
    assert "[query] text_weight = 5 is out of range: must be a share in [0, 1]" in m and "text_weight = 0.75" in m


def test_a_seed_that_is_not_a_number_is_a_study_file_error_not_a_traceback(tmp_path):
    m = _mistake(tmp_path, "seed = 2026", 'seed = "x"')
    assert '[study] seed = "x" must be a whole number (without quotes)' in m and "seed = 0" in m


def test_every_mistake_of_a_file_is_named_at_once(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('[study]\nname = "x"\nprofile = "demo"\nseed = -1\n[catalogue]\nroot = "c"\n'
                 'subset = { tran = 3, val = 1.5 }\n[arms.a]\nkind = "retreival"\n')
    with pytest.raises(StudyFileError) as e:
        load_study(p)
    m = str(e.value)
    assert m.startswith(f"study file {p} has 4 mistakes:")
    assert "[study] seed = -1 is out of range: must be >= 0" in m
    assert "[catalogue.subset] has key 'tran', which is not one of train, val, test; did you mean train?" in m
    assert "[catalogue.subset] val = 1.5 must be a whole number" in m
    assert '[arms.a] kind = "retreival" must be "retrieval" or "generative"; did you mean "retrieval"?' in m


def test_generator_common_keys_are_checked_and_kind_keys_pass_through(tmp_path):
    generator = DEMO_TEXT.split("\ngenerator = ", 1)[1].splitlines()[0]
    fewer = generator.replace("candidates = 12", "candidates = 2")
    m = _mistake(tmp_path, f"generator = {generator}", f"generator = {fewer}")
    assert "[arms.generative.generator] candidates = 2 is out of range: must be >= 4" in m
    m = _mistake(tmp_path, f"generator = {generator}", 'generator = { kind = "sd16" }')
    assert 'must be one of "sd15", "dcgan" or "diffusion"; did you mean "sd15"?' in m
    m = _mistake(tmp_path, f"generator = {generator}", 'generator = { kind = "sd15", encoder = "nope" }')
    assert "[arms.generative.generator] encoder 'nope' is not defined under [encoders]" in m
    p = tmp_path / "extra.toml"  # a key only sd15 reads is the generator's to check, when it loads
    p.write_text(DEMO_TEXT.replace(f"\ngenerator = {generator}", '\ngenerator = { kind = "sd15", width = 256 }'))
    assert load_study(p).arm("generative").generator == {"kind": "sd15", "width": 256}


def test_cross_section_mistakes_name_the_fix(tmp_path):
    m = _mistake(tmp_path, "max_photos = 4", "max_photos = 1")
    assert "[ui] min_photos = 2 is more than max_photos = 1" in m
    m = _mistake(tmp_path, "[arms.generative]\nkind = \"generative\"", "[arms.generative]\nkind = \"retrieval\"")
    assert "[arms.generative] encoder None is not defined under [encoders]" in m


def test_values_keep_the_type_the_file_gave_them():
    """The dataclasses hold the file's own values (an int lr stays an int), so the demo build's key is unchanged."""
    paper = load_study(ASSETS / "paper.toml")
    assert paper.train["fclip_finetuned"].epochs == 5 and isinstance(paper.train["fclip_finetuned"].epochs, int)
    assert paper.device == "auto" and paper.seed == 2024 and paper.weights is None


def test_the_committed_json_schema_is_the_generated_one():
    from dressup.study_schema import SCHEMA_PATH, json_schema_text

    assert SCHEMA_PATH == ASSETS / "study.schema.json"
    assert SCHEMA_PATH.read_text(encoding="utf-8") == json_schema_text(), \
        "assets/study.schema.json is out of date: run `python -m dressup schema`"
    for name in ("demo.toml", "paper.toml"):  # editors find the schema from the file's first line
        assert (ASSETS / name).read_text(encoding="utf-8").startswith("#:schema ./study.schema.json\n")


def test_the_schema_defaults_are_the_loaders():
    from dressup.config import QuerySpec, TrainSpec, UISpec
    from dressup.device import DEVICES
    from dressup.study_schema import QuerySection, StudySection, TrainSection, UISection

    pairs = ((QuerySection(), QuerySpec()), (UISection(), UISpec()), (TrainSection(init="i"), TrainSpec("n", "i")))
    for section, spec in pairs:
        for name, value in section.model_dump().items():
            assert getattr(spec, name) == value, (type(section).__name__, name)
    assert StudySection.model_json_schema()["properties"]["device"]["enum"] == list(DEVICES)


def test_the_schema_offers_the_generator_kinds_the_library_registers():
    from dressup.generators import GENERATOR_KINDS
    from dressup.study_schema import GENERATOR_KINDS as IN_SCHEMA

    assert set(IN_SCHEMA) == set(GENERATOR_KINDS)
