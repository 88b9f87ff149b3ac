"""``python -m dressup doctor`` can be trusted: exit 0 only when the study would run, a named fault otherwise.

The world is real, only small: a Hugging Face cache laid out by hand (``models--ORG--NAME/snapshots/<commit>`` +
``refs/main``) holding a tiny Stable Diffusion pipeline (with a tiny safety checker) under the real SD1.5 id and a
tiny transformers CLIP under FashionCLIP's id, two trained-encoder folders written by ``Encoder.save``, and a
60-image DeepFashion-format catalogue. Each test copies that world and breaks one thing.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import huggingface_hub
import pytest
import torch

from dressup.cli import main
from tests.tiny_models import write_tiny_config

REV = "0123456789abcdef0123456789abcdef01234567"
SD = "stable-diffusion-v1-5/stable-diffusion-v1-5"
FCLIP = "patrickjohncyh/fashion-clip"
PASSWORD = "quokka-researcher-secret"

STUDY = """
[study]
name = "doctor-test"
profile = "paper"
seed = 7
results_dir = "results"
cache_dir = "cache"
device = "auto"
allow_cpu = {allow_cpu}

[catalogue]
kind = "deepfashion"
root = "catalogue"
split = "test"
subset = {{ train = 20, val = 3, test = 4 }}
caption_category = false

[encoders.fclip]
spec = "transformers:{fclip}"

[encoders.fclip_finetuned]
spec = "local:cache/encoders/fclip_finetuned"

[encoders.fclip_stn]
spec = "local:cache/encoders/fclip_stn"

[train.fclip_finetuned]
init = "fclip"
lock_text = false

[train.fclip_stn]
init = "fclip"
stn = true
lock_text = false

[arms.baseline]
kind = "retrieval"
encoder = "fclip"

[arms.finetuned]
kind = "retrieval"
encoder = "fclip_finetuned"

[arms.stn]
kind = "retrieval"
encoder = "fclip_stn"

[arms.generative]
kind = "generative"
generator = {{ kind = "sd15", model = "{sd}", steps = 2, safety_checker = true }}
{extra}"""


def _snapshot(hub: Path, repo_id: str) -> Path:
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / REV
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REV)
    return snap


def _tiny_clip_config():
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config={"vocab_size": 1000, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 77},
        vision_config={"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 16},
        projection_dim=8)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """The world every test copies (built once: about two seconds)."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessor, CLIPModel

    from dressup.democatalog import build_demo_catalogue
    from dressup.encoders import load_encoder
    from dressup.generators import clip_tokenizer
    from tests.tiny_sd import tiny_sd_pipeline

    root = tmp_path_factory.mktemp("world")
    torch.manual_seed(0)
    tiny_sd_pipeline(safety_checker=StableDiffusionSafetyChecker(_tiny_clip_config())).save_pretrained(
        _snapshot(root / "hub", SD))
    snap = _snapshot(root / "hub", FCLIP)
    CLIPModel(_tiny_clip_config()).save_pretrained(snap)
    clip_tokenizer().save_pretrained(snap)
    CLIPImageProcessor(size=32, crop_size=32).save_pretrained(snap)
    build_demo_catalogue(root / "catalogue", size=60, image_size=32, seed=0, progress=False)
    enc = load_encoder(f"config:{write_tiny_config(root, 'tiny')}")
    for name in ("fclip_finetuned", "fclip_stn"):
        enc.save(root / "cache" / "encoders" / name)
    return root


@pytest.fixture
def world(pristine, tmp_path, monkeypatch) -> Path:
    """A private copy of the world, its cache the one huggingface_hub reads, a researcher password set, and no
    Space, database or token in the environment (whatever the machine running the tests has)."""
    root = tmp_path / "w"
    shutil.copytree(pristine, root, symlinks=True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root / "hub"))
    monkeypatch.setenv("DRESSUP_RESEARCHER_PASSWORD", PASSWORD)
    for name in ("SPACE_ID", "DATABASE_URL", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    write_study(root)
    return root


def write_study(root: Path, *, allow_cpu: bool = True, extra: str = "") -> Path:
    path = root / "study.toml"
    path.write_text(STUDY.format(allow_cpu=str(allow_cpu).lower(), fclip=FCLIP, sd=SD, extra=extra))
    return path


def doctor(root: Path, capsys, *args: str) -> tuple[int, str]:
    code = main(["doctor", "--study", str(root / "study.toml"), *args])
    out = capsys.readouterr().out
    assert "huggingface-cli" not in out and PASSWORD not in out
    return code, out


def line(out: str, what: str) -> str:
    """The report line of check ``what`` (``[LEVEL] arm  what: detail``) and its fix line, if any."""
    lines = out.splitlines()
    for i, text in enumerate(lines):
        if f"  {what}:" in text:
            fix = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].strip().startswith("fix:") else ""
            return text + "\n" + fix
    raise AssertionError(f"no {what!r} line in:\n{out}")


def test_everything_present_is_ready(world, capsys):
    code, out = doctor(world, capsys)
    assert code == 0, out
    assert out.splitlines()[-1].startswith("ready") and "[FAULT]" not in out
    assert "[ok]" in line(out, "generator (sd15)") and "safety_checker" in line(out, "generator (sd15)")
    assert "[ok]" in line(out, "encoder fclip") and "model.safetensors" in line(out, "encoder fclip")
    assert "27 of 27 images present" in line(out, "catalogue")
    assert "[ok]" in line(out, "researcher password") and "push off" in out
    assert "fclip_finetuned <- fclip" in line(out, "train chains")
    if not torch.cuda.is_available():  # allow_cpu = true: the CPU is a warning, not a fault
        assert "[WARN]" in line(out, "device") and "no CUDA GPU" in line(out, "device")


def test_sd_with_only_model_index_cached_is_not_ready(world, capsys):
    snap = world / "hub" / ("models--" + SD.replace("/", "--")) / "snapshots" / REV
    for p in snap.iterdir():
        if p.name != "model_index.json":
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    code, out = doctor(world, capsys)
    assert code == 1
    sd = line(out, "generator (sd15)")
    assert "[FAULT]" in sd and "no weights file for safety_checker, text_encoder, unet, vae" in sd
    assert f"fix: hf download {SD}" in sd
    assert out.splitlines()[-1].startswith("not ready: 1 fault(s)")


def test_truncated_sd_weights_are_not_ready(world, capsys):
    unet = (world / "hub" / ("models--" + SD.replace("/", "--")) / "snapshots" / REV / "unet" /
            "diffusion_pytorch_model.safetensors")
    data = unet.read_bytes()
    unet.write_bytes(data[: len(data) // 2])
    code, out = doctor(world, capsys)
    assert code == 1
    sd = line(out, "generator (sd15)")
    assert "[FAULT]" in sd and "unet/diffusion_pytorch_model.safetensors is truncated" in sd
    assert f"fix: hf download {SD} unet/diffusion_pytorch_model.safetensors --force-download" in sd


def test_a_revision_is_looked_up_and_named_in_the_fix(world, capsys):
    study = world / "study.toml"
    study.write_text(study.read_text().replace("steps = 2,", 'steps = 2, revision = "fp16-branch",'))
    code, out = doctor(world, capsys)
    assert code == 1  # the cache holds refs/main only
    assert f"fix: hf download {SD} --revision fp16-branch" in line(out, "generator (sd15)")


def test_missing_catalogue_images_are_not_ready(world, capsys):
    partition = (world / "catalogue" / "Eval" / "list_eval_partition.txt").read_text().splitlines()[2:]
    test_images = [row.split()[0] for row in partition if row.split()[-1] == "test"]
    for name in test_images:
        (world / "catalogue" / name).unlink()
    code, out = doctor(world, capsys)
    assert code == 1
    cat = line(out, "catalogue")
    assert "[FAULT]" in cat and "23 of 27 images present" in cat and "4 missing from the subset" in cat
    assert "img/" in cat.split("e.g.")[1] and "img.zip" in cat


def test_no_gpu_without_allow_cpu_is_not_ready(world, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    write_study(world, allow_cpu=False)
    code, out = doctor(world, capsys)
    assert code == 1
    assert "[FAULT]" in line(out, "device") and "allow_cpu = true" in line(out, "device")


def test_results_on_a_disk_a_space_wipes_are_not_ready(world, capsys, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/dressup")
    code, out = doctor(world, capsys)
    assert code == 1
    assert "[FAULT]" in line(out, "results") and "wiped at every restart" in line(out, "results")

    monkeypatch.setenv("DATABASE_URL", "postgresql://dressup:hunter2@db.example.org:5432/study")
    code, out = doctor(world, capsys)
    assert code == 0, out
    results = line(out, "results")
    assert "postgresql://***@***/study" in results and "hunter2" not in out and "db.example.org" not in out


def test_missing_researcher_password_is_not_ready(world, capsys, monkeypatch):
    monkeypatch.delenv("DRESSUP_RESEARCHER_PASSWORD")
    code, out = doctor(world, capsys)
    assert code == 1
    assert "[FAULT]" in line(out, "researcher password")
    assert "export DRESSUP_RESEARCHER_PASSWORD=" in line(out, "researcher password")


def test_push_needs_its_token_and_never_prints_it(world, capsys, monkeypatch):
    write_study(world, extra='\n[push]\nrepo_id = "lab/dressup-answers"\n')
    code, out = doctor(world, capsys)
    assert code == 1 and "[FAULT]" in line(out, "push") and "$HF_TOKEN is not set" in line(out, "push")
    monkeypatch.setenv("HF_TOKEN", "hf_quokkatoken")
    code, out = doctor(world, capsys)
    assert code == 0 and "lab/dressup-answers" in line(out, "push") and "hf_quokkatoken" not in out


def test_missing_trained_encoders_get_the_train_commands_in_dependency_order(world, capsys):
    write_study(world, extra='\n[encoders.fclip_stn2]\nspec = "local:cache/encoders/fclip_stn2"\n'
                             '\n[train.fclip_stn2]\ninit = "fclip_stn"\n')
    study = world / "study.toml"
    study.write_text(study.read_text().replace('[arms.stn]\nkind = "retrieval"\nencoder = "fclip_stn"',
                                               '[arms.stn]\nkind = "retrieval"\nencoder = "fclip_stn2"'))
    shutil.rmtree(world / "cache" / "encoders" / "fclip_stn")
    code, out = doctor(world, capsys)
    assert code == 1
    assert f"fix: python -m dressup train fclip_stn fclip_stn2 --study {study}" in line(out, "encoder fclip_stn2")


def test_a_train_chain_cycle_or_unknown_init_is_a_fault(world, capsys):
    write_study(world, extra='\n[encoders.a]\nspec = "local:cache/encoders/a"\n'
                             '[encoders.b]\nspec = "local:cache/encoders/b"\n'
                             '[train.a]\ninit = "b"\n[train.b]\ninit = "a"\n'
                             '[encoders.c]\nspec = "local:cache/encoders/c"\n[train.c]\ninit = "nobody"\n')
    code, out = doctor(world, capsys)
    assert code == 1
    assert "cycle: a <- b <- a" in line(out, "train a")
    assert "'nobody'" in line(out, "train c") and "neither an encoder" in line(out, "train c")


def test_json_lists_every_check(world, capsys, monkeypatch):
    monkeypatch.delenv("DRESSUP_RESEARCHER_PASSWORD")
    code, out = doctor(world, capsys, "--json")
    checks = json.loads(out)
    assert code == 1
    assert {"arm", "what", "ok", "level", "detail", "fix"} <= set(checks[0])
    faults = [c for c in checks if c["level"] == "fault"]
    assert [c["what"] for c in faults] == ["researcher password"] and faults[0]["ok"] is False


def test_fp16_variant_weights_count(world, capsys):
    unet = world / "hub" / ("models--" + SD.replace("/", "--")) / "snapshots" / REV / "unet"
    (unet / "diffusion_pytorch_model.safetensors").rename(unet / "diffusion_pytorch_model.fp16.safetensors")
    code, out = doctor(world, capsys)
    assert code == 0, out
    assert "[ok]" in line(out, "generator (sd15)")


def test_weight_files_are_opened_not_just_found(tmp_path):
    from safetensors.torch import save_file

    from dressup.doctor.weights import inspect_weights

    good = tmp_path / "good.safetensors"
    save_file({"w": torch.ones(4, 4)}, str(good))
    assert inspect_weights(good)[0] is None and "1 tensors" in inspect_weights(good)[1]
    empty = tmp_path / "empty.safetensors"
    save_file({}, str(empty))
    assert "no tensors" in inspect_weights(empty)[0]
    bad_header = tmp_path / "bad.safetensors"
    bad_header.write_bytes((10 ** 9).to_bytes(8, "little") + b"{}")
    assert "truncated or corrupt" in inspect_weights(bad_header)[0]
    torch.save({"w": torch.ones(2)}, tmp_path / "ok.bin")
    assert inspect_weights(tmp_path / "ok.bin")[0] is None
    cut = tmp_path / "cut.bin"
    cut.write_bytes((tmp_path / "ok.bin").read_bytes()[:200])
    assert "not a complete zip" in inspect_weights(cut)[0]
