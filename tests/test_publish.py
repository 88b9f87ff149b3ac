"""Models and catalogue from the Hub (issue 17, item 7): ``python -m dressup publish`` and ``[catalogue] repo``.

Everything goes through the real ``HfApi`` against the local Hub server (tests/hub_server.py). A published
encoder is then fetched with ``snapshot_download`` into a fresh Hugging Face cache and, with the Hub switched
off, loaded by the spec the command printed through ``dressup.encoders``' own loader: it must embed images and
texts exactly as the ``local:`` folder it came from. One encoder per layout: open_clip with its own text tower,
open_clip with an HF (BERT) text tower and tokenizer (the demo's kind), a transformers CLIPModel, and an STN
encoder (the ``hub-local:`` layout).
"""
from __future__ import annotations

import json
import os
import string
import tomllib
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import huggingface_hub.constants
import pytest
import torch
from huggingface_hub import HfApi, snapshot_download
from PIL import Image

from dressup import cli
from dressup.catalog import load_catalog
from dressup.config import EncoderSpec, StudyFileError, load_study
from dressup.encoders import load_encoder
from dressup.train import train_encoder
from tests.hub_server import TOKEN, hub_server
from tests.test_catalog import BLOUSE, DRESS, SKIRT, make_catalogue
from tests.tiny_models import TINY_CLIP, write_tiny_config

COLOURS = [(200, 30, 30), (30, 60, 200), (30, 160, 60), (230, 200, 40)]
CAPTIONS = ["red dress", "blue shirt", "green skirt", "yellow top"]
PICTURES = [Image.new("RGB", (40 + 6 * i, 32 + 4 * i), c) for i, c in enumerate(COLOURS)]


@pytest.fixture(autouse=True)
def fresh_hf(tmp_path, monkeypatch):
    """An empty Hugging Face cache and no token on this machine (the tests pass theirs explicitly)."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)


def _trained(spec: EncoderSpec, out) -> str:
    """``spec`` trained for two steps by the real loop into ``out``: a ``local:`` folder with its checkpoint."""
    enc = load_encoder(spec)
    train_encoder(enc, PICTURES, CAPTIONS, out_dir=out, steps=2, batch_size=4, lr=1e-2, warmup=1, progress=False,
                  num_workers=0)
    return str(out)


def _tiny_bert(d) -> str:
    """A one-layer BERT config and a word-piece tokenizer (the demo's MiniLM is a BERT), saved like a Hub repo."""
    from transformers import BertConfig, BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *string.ascii_lowercase,
             *("##" + c for c in string.ascii_lowercase), "red", "dress", "blue", "shirt"]
    BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(d)
    BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=37, max_position_embeddings=32).save_pretrained(d)
    return str(d)


def _tiny_clipmodel(d) -> str:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77).save_pretrained(d)
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16)).save_pretrained(d)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                       image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3]).save_pretrained(d)
    return str(d)


def build(kind: str, tmp_path) -> str:
    if kind == "open_clip":
        spec = EncoderSpec("oc", f"config:{write_tiny_config(tmp_path, 'tiny-oc')}")
    elif kind == "open_clip-bert":
        bert = _tiny_bert(tmp_path / "bert")
        cfg = dict(TINY_CLIP, text_cfg={"hf_model_name": bert, "hf_tokenizer_name": bert, "hf_model_pretrained": False,
                                        "hf_pooler_type": "mean_pooler", "hf_proj_type": "linear",
                                        "context_length": 16})
        spec = EncoderSpec("ocbert", f"config:{write_tiny_config(tmp_path, 'tiny-bert', cfg)}")
    elif kind == "transformers":
        # at 48 px, not the model's 32: the printed study lines must carry image_size
        spec = EncoderSpec("fclip", f"transformers:{_tiny_clipmodel(tmp_path / 'clipmodel')}", image_size=48)
    else:
        spec = EncoderSpec("stn", f"config:{write_tiny_config(tmp_path, 'tiny-stn')}", stn=True)
    return _trained(spec, tmp_path / f"trained-{kind}")


LAYOUTS = {  # kind: (scheme, files the repo must hold beside README.md)
    "open_clip": ("hf-hub:", {"open_clip_config.json", "open_clip_model.safetensors"}),
    "open_clip-bert": ("hf-hub:", {"open_clip_config.json", "open_clip_model.safetensors", "config.json",
                                   "tokenizer.json", "tokenizer_config.json"}),
    "transformers": ("transformers:", {"config.json", "model.safetensors", "preprocessor_config.json",
                                       "tokenizer_config.json"}),
    "stn": ("hub-local:", {"encoder.json", "model.safetensors", "train_log.jsonl"}),
}


@pytest.mark.parametrize("kind", list(LAYOUTS))
def test_published_encoder_loads_back_offline_by_its_spec_with_identical_embeddings(kind, tmp_path, monkeypatch,
                                                                                    capsys):
    folder = build(kind, tmp_path)
    repo = f"lab/{kind}-encoder"
    scheme, expected = LAYOUTS[kind]
    monkeypatch.setenv("LAB_TOKEN", TOKEN)
    with hub_server() as hub:
        capsys.readouterr()
        argv = ["publish", folder, "--repo", repo, "--endpoint", hub.endpoint, "--token-env", "LAB_TOKEN"]
        assert cli.main(argv) == 0
        printed = capsys.readouterr().out
        assert "(private," in printed
        table = tomllib.loads(printed.split("name it in the study file:", 1)[1])["encoders"]  # what a researcher pastes
        (name, entry), = table.items()
        spec = entry["spec"]
        assert spec == scheme + repo and entry.get("image_size") == (48 if kind == "transformers" else None)
        assert hub.repos[("model", repo)].private
        files = hub.files("model", repo)
        assert expected <= set(files) and "checkpoint.pt" not in files, sorted(files)
        card = files["README.md"].decode()
        assert card.startswith("---\n") and f'spec = "{spec}"' in card and "| steps | 2 |" in card
        assert "final loss" in card and str(tmp_path) not in card  # no local paths on the Hub
        if scheme == "hf-hub:":
            config = json.loads(files["open_clip_config.json"])
            assert config["preprocess_cfg"]["mean"] and config["model_cfg"]["embed_dim"] == 32
        snapshot_download(repo, endpoint=hub.endpoint, token=TOKEN)  # what `hf download` or preload_from_hub do
    assert huggingface_hub.constants.HF_HUB_OFFLINE  # the Hub is gone: only the cache remains

    back, local = load_encoder(EncoderSpec(name, **entry)), load_encoder(f"local:{folder}")
    assert back.preprocessing == local.preprocessing and back.stn == local.stn
    assert back.fingerprint() == local.fingerprint()  # every weight, under the same names
    texts = ["red dress", "a blue shirt"]
    torch.testing.assert_close(back.encode_pil(PICTURES), local.encode_pil(PICTURES))
    torch.testing.assert_close(back.encode_texts(texts), local.encode_texts(texts))
    if scheme == "hub-local:":  # doctor reads the cached snapshot like a local: folder, and never downloads
        from dressup.doctor.base import OK
        from dressup.doctor.models import _check_hub_local

        assert _check_hub_local("stn", "encoder stn", repo, None).level == OK
        absent = _check_hub_local("stn", "encoder stn", "lab/absent", None)
        assert absent.level != OK and absent.fix == "hf download lab/absent"


def test_republishing_replaces_the_repo_and_a_public_repo_is_not_taken_for_private(tmp_path, monkeypatch, capsys):
    folder = build("stn", tmp_path)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with hub_server() as hub:
        api = HfApi(endpoint=hub.endpoint, token=TOKEN)
        api.create_repo("lab/old", private=True)
        api.upload_file(path_or_fileobj=b"stale", path_in_repo="open_clip_model.safetensors", repo_id="lab/old")
        assert cli.main(["publish", folder, "--repo", "lab/old", "--endpoint", hub.endpoint]) == 0
        assert "open_clip_model.safetensors" not in hub.files("model", "lab/old")  # the repo is this encoder only

        api.create_repo("lab/open", private=False)
        capsys.readouterr()
        assert cli.main(["publish", folder, "--repo", "lab/open", "--endpoint", hub.endpoint]) == 2
        err = capsys.readouterr().err.strip()
        assert "lab/open already exists and is public" in err and "--public" in err and "\n" not in err
        assert set(hub.files("model", "lab/open")) == {".gitattributes"}
        assert cli.main(["publish", folder, "--repo", "lab/open", "--endpoint", hub.endpoint, "--public"]) == 0


def _study(tmp_path, catalogue: str, encoder: str = "openclip:RN50") -> str:
    path = tmp_path / "study.toml"
    path.write_text(f'[study]\nname = "hub"\nprofile = "paper"\n\n[catalogue]\n{catalogue}\n\n'
                    f'[encoders.base]\nspec = "{encoder}"\n\n[arms.a]\nkind = "retrieval"\nencoder = "base"\n')
    return str(path)


@pytest.mark.parametrize("argv, message", [
    (["{tmp}/empty"], "is not an encoder folder (no encoder.json)"),
    (["config:{tmp}/model.json"], "nothing trained to publish"),
    (["base", "--study", "{study}"], "nothing trained to publish"),  # an encoder of the study file, by name
    (["hf-hub:Marqo/marqo-fashionCLIP"], "already on the Hub"),
    (["{tmp}/saved", "--repo", "nouser"], "must be USER/NAME"),
    (["{tmp}/saved"], "no Hugging Face token: set HF_TOKEN"),
])
def test_publish_refuses_with_one_line(argv, message, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    load_encoder(f"config:{write_tiny_config(tmp_path, 'model')}").save(tmp_path / "saved")  # untrained is fine
    study = _study(tmp_path, 'root = "df"', encoder=f"config:{tmp_path / 'model.json'}")
    args = [a.format(tmp=tmp_path, study=study) for a in argv]
    repo = [] if "--repo" in args else ["--repo", "lab/x"]
    capsys.readouterr()
    assert cli.main(["publish", *args, *repo]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err


def test_catalogue_repo_is_read_from_the_hugging_face_cache(tmp_path, monkeypatch):
    root = make_catalogue(tmp_path / "df", [BLOUSE, SKIRT, DRESS])
    for name, *_ in (BLOUSE, SKIRT, DRESS):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (24, 32), (120, 40, 40)).save(root / name)
    study = _study(tmp_path, 'repo = "lab/deepfashion"')
    with hub_server() as hub:
        api = HfApi(endpoint=hub.endpoint, token=TOKEN)
        api.create_repo("lab/deepfashion", repo_type="dataset", private=True)
        api.upload_folder(repo_id="lab/deepfashion", repo_type="dataset", folder_path=root)
        with monkeypatch.context() as m:  # the study file names no endpoint: the library's default is this Hub
            m.setattr(huggingface_hub.constants, "ENDPOINT", hub.endpoint)
            with pytest.raises(StudyFileError, match="set HF_TOKEN"):  # private, and this machine has no token
                load_study(study)
        snapshot = snapshot_download("lab/deepfashion", repo_type="dataset", endpoint=hub.endpoint, token=TOKEN)

    loaded = load_study(study)  # offline: the cache alone
    commit = os.path.basename(snapshot)
    assert load_study(_study(tmp_path, f'repo = "lab/deepfashion"\nrevision = "{commit}"')).catalogue.root == \
        loaded.catalogue.root == Path(snapshot)  # a pinned commit is the same snapshot
    assert loaded.catalogue.repo == "lab/deepfashion" and loaded.catalogue.root.is_dir()
    assert str(loaded.catalogue.root).startswith(huggingface_hub.constants.HF_HUB_CACHE)
    catalog = load_catalog(loaded.catalogue.root, require_images=True)
    want = load_catalog(root, require_images=True)
    assert [(i.item_id, i.caption, i.split) for i in catalog.items] == [(i.item_id, i.caption, i.split)
                                                                       for i in want.items]
    assert catalog.hash() == want.hash() and len(catalog.items) == 3

    missing = _study(tmp_path, 'repo = "lab/not-downloaded"')
    with pytest.raises(StudyFileError) as e:
        load_study(missing)
    assert "lab/not-downloaded" in str(e.value) and "hf download lab/not-downloaded --repo-type dataset" in str(e.value)
    assert "HF_HUB_OFFLINE" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(StudyFileError, match="both root and repo"):
        load_study(_study(tmp_path, 'repo = "lab/deepfashion"\nroot = "df"'))
    with pytest.raises(StudyFileError, match="pins a Hub dataset"):
        load_study(_study(tmp_path, 'root = "df"\nrevision = "v1"'))


def test_hub_local_encoder_missing_from_the_cache_offline_names_the_download():
    from dressup.encoders import EncoderError

    with pytest.raises(EncoderError, match=r"hf download lab/absent\); a private repo needs HF_TOKEN"):
        load_encoder("hub-local:lab/absent")
