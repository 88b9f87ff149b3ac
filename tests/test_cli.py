"""The researcher's command line: doctor and clear errors."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from dressup.cli import build_parser, main
from study.__main__ import main as study_main

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "assets"


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


def _run(*argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DRESSUP_STUDY"}
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**env, "PYTHONPATH": str(REPO)})


def test_an_unknown_arm_is_refused_before_any_model_is_loaded(tmp_path):
    code = ("import sys; from dressup.cli import main; "
            "rc = main(['generate', '--study', sys.argv[1], '--arm', 'nosuch', '--json']); "
            "print('heavy' if {'torch', 'dressup.arms'} & set(sys.modules) else 'light'); raise SystemExit(rc)")
    r = _run("-c", code, str(ASSETS / "paper.toml"))
    assert r.returncode == 2, r.stderr
    assert "no arm 'nosuch'" in r.stderr and "['baseline', 'finetuned', 'generative', 'stn']" in r.stderr
    error, loaded = r.stdout.rsplit("\n", 2)[:2]
    assert json.loads(error)["error"].startswith("no arm 'nosuch'") and loaded == "light"


def test_names_the_study_file_does_not_define_are_refused(capsys):
    paper = str(ASSETS / "paper.toml")
    assert main(["train", "nosuch", "--study", paper]) == 2
    assert "no [train.nosuch]" in capsys.readouterr().err
    assert main(["evaluate", "--encoders", "clip", "nope", "--study", paper]) == 2
    assert "no encoder 'nope'" in capsys.readouterr().err
    assert main(["train-gan", "--study", paper]) == 2  # paper's generative arm is Stable Diffusion
    assert 'generator kind = "dcgan"' in capsys.readouterr().err


def test_every_command_takes_json():
    def commands(parser, path=()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from commands(sub, path + (name,))
        if path and not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
            yield path, parser

    found = list(commands(build_parser()))
    assert {" ".join(p) for p, _ in found} >= {"demo build", "recommend", "generate", "evaluate", "schema"}
    for path, parser in found:
        assert any("--json" in a.option_strings for a in parser._actions), path


def test_json_output_is_one_json_value_on_stdout(tmp_path, capsys):
    out = tmp_path / "schema.json"
    assert main(["schema", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"schema": str(out), "changed": True}
    assert out.read_text() == (ASSETS / "study.schema.json").read_text()  # what `schema` writes is what is committed
    assert main(["schema", "--check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["up_to_date"] is True


def test_version_is_the_projects():
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for module in ("dressup", "study"):
        r = _run("-m", module, "--version")
        assert r.returncode == 0 and r.stdout.strip() == f"dressup {version}", (module, r.stdout, r.stderr)


def test_an_unknown_study_command_is_named_and_the_commands_listed(capsys):
    assert study_main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'frobnicate'" in err and all(c in err for c in ("export", "analyze", "simulate"))
    assert study_main([]) == 2 and "required: COMMAND" in capsys.readouterr().err


def test_a_demo_study_is_built_before_its_arms_are_loaded(monkeypatch, tmp_path, capsys):
    from PIL import Image

    import dressup.arms
    import dressup.demo
    from dressup.records import Shown

    calls = []

    class Arm:
        def recommend(self, pref, seed):
            return [Shown(f"item{i}", Image.new("RGB", (8, 8)), caption="c", score=0.5) for i in range(4)]

    monkeypatch.setattr(dressup.demo, "ensure_demo_build", lambda study, progress: calls.append(("build", progress)))
    monkeypatch.setattr(dressup.arms, "build_arms",
                        lambda study, progress: calls.append(("arms", progress)) or {"baseline": Arm()})
    argv = ["recommend", "--study", str(ASSETS / "demo.toml"), "--arm", "baseline", "--json",
            "--out", str(tmp_path / "grid.png")]
    assert main(argv) == 0
    assert calls == [("build", False), ("arms", False)]
    assert [r["item_id"] for r in json.loads(capsys.readouterr().out)] == ["item0", "item1", "item2", "item3"]


def test_every_study_command_answers_in_json(tmp_path, capsys):
    """`python -m study simulate | export | analyze --json`: one JSON value on stdout, errors too."""
    db = tmp_path / "sim.sqlite"
    assert study_main(["simulate", "--n", "4", "--out", str(db), "--json"]) == 0
    wrote = json.loads(capsys.readouterr().out)
    assert wrote["sessions"] == 4 and wrote["path"] == str(db)
    assert study_main(["export", "--db", str(db), "--out", str(tmp_path / "export"), "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["sessions"] == 4 and any(f.endswith("long.csv") for f in exported["files"])
    assert study_main(["analyze", str(db), "--out", str(tmp_path / "report"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)
    assert study_main(["export", "--db", str(tmp_path / "none.sqlite"), "--json"]) == 2
    assert "no study database" in json.loads(capsys.readouterr().out)["error"]
    assert study_main(["simulate", "--n", "4", "--json"]) == 2
    assert "--out" in json.loads(capsys.readouterr().out)["error"]
