"""Publish a trained encoder to the Hugging Face Hub: ``python -m dressup publish ENCODER --repo USER/NAME``.

A study hosted away from the machine that trained its encoders (a Space, a second lab) needs exactly those weights,
and the Hub is where its other models already come from, cached and readable offline. The repo gets the layout
of the library the encoder is built on, so anyone can load it, with or without Dress-UP:

- open_clip, plain: open_clip's Hub layout (``open_clip_config.json`` with the image preprocessing, and
  ``open_clip_model.safetensors``); an HF tokenizer or text tower goes to the repo root and the config names the
  repo itself, as open_clip's ``push_pretrained_to_hf_hub(hf_tokenizer_self=True)`` does. Spec ``hf-hub:USER/NAME``.
- transformers, plain: ``CLIPModel.save_pretrained`` and ``CLIPProcessor.save_pretrained``. Spec
  ``transformers:USER/NAME``.
- an STN in front of the image tower, a swapped timm tower (``image_tower``), or a tokenizer only open_clip's
  registry can name: no library's layout holds these, so the ``local:`` folder itself goes up (without the
  optimizer checkpoint) and ``dressup.encoders`` loads it back as ``hub-local:USER/NAME``.

open_clip's own ``push_to_hf_hub`` is not used: it takes no endpoint or token object and swaps a plain CLIP
tokenizer for one it downloads. The repo is private unless ``--public``; everything lands in one commit that
also removes files an earlier publish left, so the repo holds exactly this encoder. Its README is a model card:
the base model, the training recipe read from the folder (``encoder.json``, ``checkpoint.pt``'s settings,
``train_log.jsonl``) and the study-file lines that name it.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dressup.encoders import ENCODER_JSON, WEIGHTS, _untie, load_encoder

CHECKPOINT = "checkpoint.pt"  # as dressup.train writes them (not imported: publishing needs no training code)
TRAIN_LOG = "train_log.jsonl"
HUB_SCHEMES = ("hf-hub:", "transformers:", "openclip:", "hub-local:")


class PublishError(ValueError):
    """The encoder, repo or token given to ``publish`` is wrong; the message names the problem and the fix."""


@dataclass
class Published:
    repo_id: str
    spec: str  # what [encoders.NAME] spec names
    layout: str  # "open_clip" | "transformers" | "dressup"
    url: str
    private: bool
    study_lines: list[str]  # the [encoders.NAME] table to paste into a study file


def encoder_folder(encoder: str, study_path: str | None = None) -> Path:
    """The ``local:`` folder ENCODER names: a path, ``local:PATH``, or an encoder of the study file."""
    for scheme in HUB_SCHEMES:
        if encoder.startswith(scheme):
            raise PublishError(f"{encoder} is already on the Hub (or in open_clip's registry): name it in the study "
                               "file as it is; publish takes the local: folder of a trained encoder")
    if encoder.startswith("config:"):
        raise PublishError(f"{encoder} is an untrained model config (random weights): nothing trained to publish; "
                           "train it first (python -m dressup train) and publish the local: folder it writes")
    folder = Path(encoder[len("local:"):] if encoder.startswith("local:") else encoder).expanduser()
    if not folder.exists() and not encoder.startswith("local:") and "/" not in encoder:
        from dressup.config import load_study

        study = load_study(study_path)
        if encoder not in study.encoders:
            raise PublishError(f"{encoder} is neither a folder nor an encoder of {study.path} "
                               f"(it has {sorted(study.encoders)})")
        return encoder_folder(study.encoders[encoder].spec)
    if not (folder / ENCODER_JSON).is_file():
        raise PublishError(f"{folder} is not an encoder folder (no {ENCODER_JSON}); give the local: folder that "
                           "`python -m dressup train` wrote")
    return folder.resolve()


def check_repo_id(repo_id: str) -> None:
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise PublishError(f"--repo {repo_id!r} must be USER/NAME (or ORG/NAME)")


def find_token(token_env: str = "HF_TOKEN") -> str:
    """The write token: ``$token_env``, else this machine's saved login (``hf auth login``)."""
    from huggingface_hub import get_token

    token = os.environ.get(token_env) or get_token()
    if not token:
        raise PublishError(f"no Hugging Face token: set {token_env} to a token with write access "
                           "(https://huggingface.co/settings/tokens) or run `hf auth login`")
    return token


def _hub_id(spec: str) -> str:
    """The Hub repo id a Hub spec names; "" for a folder (``transformers:`` takes both) or another scheme."""
    scheme, _, ident = spec.partition(":")
    if scheme not in ("hf-hub", "transformers", "hub-local") or ident.startswith(("/", ".", "~")) or \
            ident.count("/") != 1:
        return ""
    return ident


def _public_spec(spec: str) -> str:
    """A spec as a card may show it: a local path reduced to its last part (no home folders on the Hub)."""
    scheme, sep, ident = spec.partition(":")
    if not sep or _hub_id(spec) or scheme == "openclip":
        return spec
    return f"{scheme}:{Path(ident).name}"


def layout_of(meta: dict[str, Any]) -> str:
    """Which repo layout can hold this encoder (see the module docstring)."""
    tok = (meta.get("tokenizer") or {}).get("kind")
    if meta.get("stn") or (meta.get("options") or {}).get("image_tower") or tok == "open_clip":
        return "dressup"
    return meta["backend"]


def _stage_open_clip(enc: Any, meta: dict[str, Any], folder: Path, out: Path, repo_id: str) -> None:
    from open_clip.constants import HF_CONFIG_NAME, HF_SAFE_WEIGHTS_NAME
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save_file

    cfg = copy.deepcopy(meta["model_cfg"])
    text, tok = cfg["text_cfg"], meta["tokenizer"]
    if text.get("hf_model_name") or tok["kind"] == "hf":  # open_clip reads them from the repo it loads
        for f in sorted((folder / "text_tower").iterdir()):
            if f.is_file():
                shutil.copy2(f, out / f.name)
    if text.get("hf_model_name"):
        text["hf_model_name"] = repo_id
    if tok["kind"] == "hf":
        text["hf_tokenizer_name"] = repo_id
        if tok.get("strip_sep_token"):
            text.setdefault("tokenizer_kwargs", {})["strip_sep_token"] = True
    else:
        text.pop("hf_tokenizer_name", None)  # open_clip's SimpleTokenizer, from context_length alone
    save_config_for_hf(enc.module, out / HF_CONFIG_NAME, cfg)
    fill = int(enc.module.visual.preprocess_cfg.get("fill_color") or 0)
    if fill:  # save_config_for_hf leaves out the colour a "longest" resize pads with
        written = json.loads((out / HF_CONFIG_NAME).read_text(encoding="utf-8"))
        written["preprocess_cfg"]["fill_color"] = fill
        (out / HF_CONFIG_NAME).write_text(json.dumps(written, indent=2), encoding="utf-8")
    state = {k: v.detach().cpu().contiguous() for k, v in enc.module.state_dict().items()}
    save_file(_untie(state), str(out / HF_SAFE_WEIGHTS_NAME), metadata={"format": "pt"})


def _stage_transformers(enc: Any, out: Path) -> list[str]:
    enc.module.save_pretrained(out)
    enc.processor.image_mean, enc.processor.image_std = list(enc.mean), list(enc.std)
    # the image processor and the tokenizer each by their own save_pretrained, as FashionCLIP's repo holds them:
    # preprocessor_config.json is what every transformers version (and `dressup doctor`) reads, where
    # CLIPProcessor.save_pretrained would write processor_config.json instead
    enc.processor.save_pretrained(out)
    enc.tokenizer.save_pretrained(out)
    native = int(enc.module.config.vision_config.image_size)
    return [] if enc.image_size == native else [f"image_size = {enc.image_size}"]


def _stage_dressup(meta: dict[str, Any], folder: Path, out: Path) -> None:
    """The files ``local:`` loading reads, and the training log; never the optimizer checkpoint."""
    for name in (ENCODER_JSON, WEIGHTS, TRAIN_LOG):
        if (folder / name).is_file():
            shutil.copy2(folder / name, out / name)
    dirs = {meta.get("hf_dir"), (meta.get("tokenizer") or {}).get("path"), "text_tower"}
    for d in sorted(x for x in dirs if x and (folder / x).is_dir()):
        shutil.copytree(folder / d, out / d)


def training_record(folder: Path) -> dict[str, Any]:
    """What ``dressup.train`` left in the folder: its settings (from ``checkpoint.pt``, read without loading its
    tensors) and the last logged loss; {} for a folder saved without training."""
    import torch

    record: dict[str, Any] = {}
    if (folder / CHECKPOINT).is_file():
        try:
            ckpt = torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=True, mmap=True)
            record.update(ckpt.get("settings") or {})
        except (OSError, RuntimeError, ValueError, AttributeError) as e:
            record["checkpoint"] = f"unreadable ({type(e).__name__})"
    if (folder / TRAIN_LOG).is_file():
        lines = [ln for ln in (folder / TRAIN_LOG).read_text(encoding="utf-8").splitlines() if ln.strip()]
        if lines:
            record["final_loss"] = round(float(json.loads(lines[-1])["loss"]), 4)
    return record


def model_card(meta: dict[str, Any], record: dict[str, Any], result: Published) -> str:
    """The repo's README.md: Hub metadata, where the encoder came from, how it was trained, how to use it."""
    base = _public_spec(str(meta.get("base_spec", "")))
    front = ["---", "tags:", "- dress-up", "- clip", "- fashion", "- image-text retrieval"]
    if result.layout != "dressup":
        front.append(f"library_name: {result.layout}")
    if _hub_id(base):
        front.append(f"base_model: {_hub_id(base)}")
    front.append("---")
    rows = [("base model", f"`{base}`"), ("backend", meta["backend"]), ("STN in front of the image tower",
            "yes" if meta.get("stn") else "no"), ("text transformer frozen", "yes" if meta.get("lock_text") else "no"),
            ("image size", meta["image_size"]), ("embedding size", meta["embed_dim"]),
            ("normalisation mean / std", " / ".join(str([round(x, 4) for x in meta[k]]) for k in ("mean", "std")))]
    rows += [(f"option {k}", f"`{v}`") for k, v in sorted((meta.get("options") or {}).items())]
    settings = ("steps", "batch_size", "lr", "weight_decay", "warmup", "duplicates", "seed", "n_images",
                "captions_sha256", "final_loss", "checkpoint")
    rows += [(k.replace("_", " "), _public_spec(str(record[k]))) for k in settings if k in record]
    rows.append(("weights fingerprint (sha256 of the state dict)", f"`{meta.get('fingerprint', '')}`"))
    if not record:
        rows.append(("training record", "none in the folder (saved without `python -m dressup train`)"))
    where = {"open_clip": f'open_clip.create_model_from_pretrained("hf-hub:{result.repo_id}")',
             "transformers": f'CLIPModel.from_pretrained("{result.repo_id}"), CLIPProcessor.from_pretrained('
                             f'"{result.repo_id}")',
             "dressup": f'dressup.encoders.load_encoder("hub-local:{result.repo_id}")'}[result.layout]
    body = [
        f"# {result.repo_id.split('/')[-1]}", "",
        f"A fashion image-text encoder trained with Dress-UP from `{base}` ({meta['backend']} backend), "
        f"published by `python -m dressup publish`.", "",
        "## Use it in a study", "", "```toml", *result.study_lines, "```", "",
        ("The repo is private: the host needs `HF_TOKEN` (read access). " if result.private else "")
        + f"A Space can fetch it when it is built with `preload_from_hub: [{result.repo_id}]` in its README; a host "
        f"without network reads the Hugging Face cache once `hf download {result.repo_id}` has filled it.", "",
        "## Training", "", "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows], "",
        "## Loading it elsewhere", "", f"`{where}`" + (" (the STN or swapped image tower needs Dress-UP's "
                                                       "code)" if result.layout == "dressup" else ""), "",
    ]
    return "\n".join(front + [""] + body)


def publish(encoder: str, repo_id: str, *, token: str, private: bool = True, endpoint: str | None = None,
            study_path: str | None = None) -> Published:
    """Convert the ``local:`` folder ENCODER names to its repo layout and upload it to ``repo_id`` in one commit."""
    import httpx2
    from huggingface_hub import HfApi, constants

    check_repo_id(repo_id)
    folder = encoder_folder(encoder, study_path)
    try:
        meta = json.loads((folder / ENCODER_JSON).read_text(encoding="utf-8"))
    except ValueError as e:
        raise PublishError(f"{folder / ENCODER_JSON} is not valid JSON ({e}); retrain or restore the folder") from None
    if constants.HF_HUB_OFFLINE:
        raise PublishError("HF_HUB_OFFLINE is set: publishing needs the Hub; unset it for this command")
    enc = load_encoder(f"local:{folder}")  # checks the weights against the folder's fingerprint first
    layout = layout_of(meta)
    scheme = {"open_clip": "hf-hub:", "transformers": "transformers:", "dressup": "hub-local:"}[layout]
    result = Published(repo_id, scheme + repo_id, layout, "", private,
                       [f"[encoders.{meta.get('name') or 'NAME'}]", f'spec = "{scheme}{repo_id}"'])
    api = HfApi(endpoint=endpoint, token=token)
    with tempfile.TemporaryDirectory(prefix="dressup-publish-") as tmp:
        out = Path(tmp)
        if layout == "open_clip":
            _stage_open_clip(enc, meta, folder, out, repo_id)
        elif layout == "transformers":
            result.study_lines += _stage_transformers(enc, out)
        else:
            _stage_dressup(meta, folder, out)
        (out / "README.md").write_text(model_card(meta, training_record(folder), result), encoding="utf-8")
        try:
            result.url = str(api.create_repo(repo_id, private=private, exist_ok=True))
            if private and not api.repo_info(repo_id, revision="main").private:
                raise PublishError(f"{repo_id} already exists and is public; pass --public to publish there, or "
                                   "make the repo private in its settings first")
            api.upload_folder(repo_id=repo_id, folder_path=out, delete_patterns="*",
                              commit_message=f"Publish encoder {meta.get('name', '')} ({layout} layout) from Dress-UP")
        except (httpx2.HTTPError, OSError) as e:
            text = str(e).strip()
            raise PublishError(f"the Hub at {api.endpoint} refused or could not be reached: "
                               f"{text.splitlines()[0] if text else type(e).__name__}") from None
    return result
