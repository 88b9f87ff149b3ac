"""The paper profile's twin: ``assets/paper.toml`` served by the real app, with tiny models and a tiny DeepFashion.

The paper profile cannot download its weights here, so the twin keeps the paper's study structure and swaps only
the sizes:

- a temporary Hugging Face cache (``HF_HOME``) holding tiny random models saved under the **real** Hub ids, in
  the hub cache's own layout (``hub/models--ORG--NAME/{refs/main,snapshots/<rev>/...}``): a transformers
  ``CLIPModel`` under ``patrickjohncyh/fashion-clip``, a diffusers ``StableDiffusionPipeline`` (SD1.5's
  component layout, PNDM scheduler config and a ``StableDiffusionSafetyChecker``) under
  ``stable-diffusion-v1-5/stable-diffusion-v1-5``, an open_clip model under ``Marqo/marqo-fashionCLIP``; the
  two CLIP text towers read with OpenAI CLIP's real tokenizer (``clip_tokenizer``), so prompts are fitted to
  SD1.5's 77 tokens exactly as with the real weights;
- a 300-item catalogue in the real "Category and Attribute Prediction Benchmark" layout: DeepFashion's 50
  categories, the 26-attribute release's attributes and types (no ``list_attr_type.txt``, which only our demo
  writes), images under ``img/<Garment_Folder_Name>/img_00000001.jpg`` numbered per folder, non-square;
- the study file read from ``assets/paper.toml`` with tomllib and changed only where a twin must (``TWIN_CHANGES``
  says what); it sits in a copy of the repository's folder layout (``<root>/assets``, ``<root>/data/DeepFashion``,
  ``<root>/cache/paper``, ``<root>/results``), so every relative path of the paper file means the same here;
- the finetuned and STN encoders trained from the Hub-cached FashionCLIP by the real CLI in a subprocess.

Built once per test process (module-level caches, as in ``tests/app_fixtures.py``) under a temporary folder
removed at exit. ``served(kind)`` gives the tests one face for the tiny demo-like study and the twin.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from study.launcher import scratch_root
from tests.app_fixtures import (
    ARM_NAMES,
    PASSWORD_ENV,
    REPO,
    SECRET_WORDS,
    RunningApp,
    shared_app,
    start_app,
    tiny_study,
)

PAPER = REPO / "assets" / "paper.toml"
FCLIP_REPO = "patrickjohncyh/fashion-clip"
SD_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"
MARQO_REPO = "Marqo/marqo-fashionCLIP"
TWIN_ITEMS = 300
TRAIN_STEPS = 3
SD_PIXELS = 64

# The paper's arm names (baseline, finetuned, stn, generative) are ordinary English words that page text and
# Gradio's own CSS/JS may contain legitimately, so the twin prefixes them with an odd word the blinding scan can
# search for; every other key of paper.toml is kept.
TWIN_ARMS = {name: f"kakapo{name}" for name in ("baseline", "finetuned", "stn", "generative")}
TWIN_SECRET_WORDS = list(TWIN_ARMS.values()) + [
    "kakapo", "fclip", "fashion-clip", "fashionclip", "patrickjohncyh", "marqo", "stable-diffusion",
    "stable diffusion", "diffusion", "sd15", "dpmsolver", "safety_checker", "laion", "vit-b-32", "open_clip",
    "openclip", "transformers:", "hf-hub", "local:", "faiss", "retrieval", "generative", "deepfashion",
    "models--", "product photo", "studio lighting", "gen:", "img_0",
]

# DeepFashion's 50 categories (Anno/list_category_cloth.txt: 1 upper body, 2 lower body, 3 full body).
DEEPFASHION_CATEGORIES = (
    [(c, 1) for c in ("Anorak", "Blazer", "Blouse", "Bomber", "Button-Down", "Cardigan", "Flannel", "Halter",
                      "Henley", "Hoodie", "Jacket", "Jersey", "Parka", "Peacoat", "Poncho", "Sweater", "Tank",
                      "Tee", "Top", "Turtleneck")]
    + [(c, 2) for c in ("Capris", "Chinos", "Culottes", "Cutoffs", "Gauchos", "Jeans", "Jeggings", "Jodhpurs",
                        "Joggers", "Leggings", "Sarong", "Shorts", "Skirt", "Sweatpants", "Sweatshorts", "Trunks")]
    + [(c, 3) for c in ("Caftan", "Cape", "Coat", "Coverup", "Dress", "Jumpsuit", "Kaftan", "Kimono", "Nightdress",
                        "Onesie", "Robe", "Romper", "Shirtdress", "Sundress")]
)
# The 26-attribute release (the paper's captions: "garment with solid pattern, long sleeve, v-shaped neckline,
# chiffon fabric, conventional fit"); types 1 texture, 2 sleeve, 3 length, 4 neckline, 5 fabric, 6 fit.
FINE_ATTRIBUTES = (
    [(a, 1) for a in ("floral", "graphic", "striped", "embroidered", "pleated", "solid", "lattice")]
    + [(a, 2) for a in ("long_sleeve", "short_sleeve", "sleeveless")]
    + [(a, 3) for a in ("maxi_length", "mini_length", "no_dress")]
    + [(a, 4) for a in ("crew_neckline", "v_neckline", "square_neckline", "no_neckline")]
    + [(a, 5) for a in ("denim", "chiffon", "cotton", "leather", "faux", "knit")]
    + [(a, 6) for a in ("tight", "loose", "conventional")]
)
# The demo's drawings, named in DeepFashion's words.
_CATEGORY = {"Tee": "Tee", "Tank_Top": "Tank", "Long_Sleeve_Top": "Top", "Hoodie": "Hoodie", "Jacket": "Jacket",
             "Coat": "Coat", "Dress": "Dress", "Skirt": "Skirt", "Trousers": "Jeans", "Shorts": "Shorts"}
_TEXTURE = {"solid": "solid", "striped": "striped", "dotted": "graphic", "checked": "lattice", "floral": "floral"}
_FOLDER_WORD = {"solid": "Classic", "striped": "Striped", "dotted": "Dotted", "checked": "Plaid",
                "floral": "Floral_Print"}
_NECKLINE = {"crew_neckline": "crew_neckline", "v_neckline": "v_neckline", "collar": "square_neckline",
             None: "no_neckline"}
_SIZES = ((64, 96), (64, 96), (72, 96), (96, 64))  # (width, height): mostly portrait, as DeepFashion's shots

# What the twin changes in paper.toml (everything else is kept as written there).
TWIN_CHANGES = {
    "study": "device = 'cpu', allow_cpu = true (no CUDA here), results_dir per launched app",
    "train.*": f"steps = {TRAIN_STEPS}, batch_size = 16",
    "arms": "renamed kakapo<name> (blinding scan); the generative arm's width/height = 64",
    "ui": f"researcher_password_env = {PASSWORD_ENV!r}",
    "catalogue.subset": "scaled to the twin's size (scaled_subset) when paper.toml has one",
}

_lock = threading.RLock()
_twin: "PaperTwin | None" = None
_app: RunningApp | None = None


def _tmp_root() -> Path:
    """The twin's folder inside the launcher's per-process scratch folder (removed at exit with it)."""
    root = scratch_root() / "paper-twin"
    root.mkdir(exist_ok=True)
    return root


# --- a Hugging Face cache with tiny models under the real ids ------------------------------------------------
def hub_snapshot(hub: Path, repo_id: str) -> Path:
    """An empty snapshot folder of ``repo_id`` in the hub cache's layout, ``refs/main`` pointing at it."""
    rev = hashlib.sha1(f"paper-twin/{repo_id}".encode()).hexdigest()  # 40 hex digits, like a commit
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    return snap


def clip_tokenizer():
    """OpenAI CLIP's own BPE tokenizer (FashionCLIP's and SD1.5's), built from the vocabulary open_clip ships
    (the same 49408 tokens and merges as the Hub's ``tokenizer.json``), so prompts count the real tokens: SD1.5
    reads 77 of them and the generator fits the participant's words to that (dressup.prompt_fit). A
    one-token-per-character tokenizer would make the product-shot template alone overflow the 77."""
    import gzip

    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    merges = [tuple(line.split()) for line in lines]
    pieces = list(bytes_to_unicode().values())
    vocab = pieces + [p + "</w>" for p in pieces] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={v: i for i, v in enumerate(vocab)}, merges=merges, model_max_length=77)


def save_fashion_clip(snap: Path, tokenizer) -> None:
    """FashionCLIP 2.0's structure (a transformers CLIPModel + tokenizer + image processor), tiny and random."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    cfg = CLIPConfig(  # token ids as FashionCLIP's (OpenAI CLIP's) config has them
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=2,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(snap)
    tokenizer.save_pretrained(snap)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(snap)


def save_stable_diffusion(snap: Path, tokenizer) -> None:
    """SD1.5's repository layout (model_index.json, unet, vae, text_encoder, tokenizer, scheduler with SD1.5's
    PNDM config, safety_checker, feature_extractor), every model tiny and random (``tiny_sd_pipeline``'s UNet
    and VAE; its text encoder with CLIP's real vocabulary)."""
    import torch
    from diffusers import PNDMScheduler, StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPTextConfig, CLIPTextModel

    from tests.tiny_sd import tiny_sd_pipeline

    base = tiny_sd_pipeline(seed=0)
    torch.manual_seed(1)
    text_encoder = CLIPTextModel(CLIPTextConfig(  # SD1.5's text encoder config has bos 0, eos 2, pad 1 too
        bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=8, intermediate_size=37, layer_norm_eps=1e-5,
        num_attention_heads=2, num_hidden_layers=2, vocab_size=len(tokenizer), max_position_embeddings=77))
    checker = StableDiffusionSafetyChecker(CLIPConfig(
        text_config=dict(hidden_size=8, intermediate_size=37, num_attention_heads=2, num_hidden_layers=1),
        vision_config=dict(hidden_size=8, intermediate_size=37, num_attention_heads=2, num_hidden_layers=1,
                           image_size=32, patch_size=8),
        projection_dim=8))
    pipe = StableDiffusionPipeline(
        vae=base.vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=base.unet,
        scheduler=PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                num_train_timesteps=1000, set_alpha_to_one=False, skip_prk_steps=True,
                                steps_offset=1),
        safety_checker=checker,
        feature_extractor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        requires_safety_checker=True)
    pipe.save_pretrained(snap)


def save_marqo(snap: Path) -> None:
    """Marqo-FashionCLIP's open_clip Hub layout (open_clip_config.json + open_clip_model.safetensors), tiny."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    from tests.tiny_models import TINY_CLIP

    torch.manual_seed(2)
    model = open_clip.CLIP(**TINY_CLIP)
    pp = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}
    (snap / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP, "preprocess_cfg": pp}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(snap / "open_clip_model.safetensors"))


def build_hub(hf_home: Path) -> None:
    hub = hf_home / "hub"
    tokenizer = clip_tokenizer()
    save_fashion_clip(hub_snapshot(hub, FCLIP_REPO), tokenizer)
    save_stable_diffusion(hub_snapshot(hub, SD_REPO), tokenizer)
    save_marqo(hub_snapshot(hub, MARQO_REPO))


# --- a tiny DeepFashion in the real layout ------------------------------------------------------------------
def _listing(path: Path, header: str, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{len(rows)}\n{header}\n" + "".join(r + "\n" for r in rows), encoding="utf-8")


def build_deepfashion(root: Path, n: int = TWIN_ITEMS, seed: int = 11) -> Path:
    """``n`` garments drawn by ``dressup.democatalog`` into "Category and Attribute Prediction Benchmark"'s real
    layout and vocabulary (see the module docstring); 70/10/20 train/val/test, as the paper's 14k/2k/4k."""
    import numpy as np
    from PIL import Image

    from dressup.democatalog import draw_garment, sample_garment, sample_pose

    rng = np.random.default_rng(seed)
    label = {name: i + 1 for i, (name, _) in enumerate(DEEPFASHION_CATEGORIES)}
    attributes = [a for a, _ in FINE_ATTRIBUTES]
    order = rng.permutation(n)
    split = np.full(n, "test", dtype=object)
    split[order[: int(0.7 * n)]] = "train"
    split[order[int(0.7 * n): int(0.8 * n)]] = "val"
    per_folder: dict[str, int] = {}
    category_rows, attr_rows, partition_rows = [], [], []
    for i in range(n):
        g = sample_garment(np.random.default_rng([seed, 0, i]))
        pose = sample_pose(np.random.default_rng([seed, 1, i]), g)
        category = _CATEGORY[g.category]
        folder = f"{_FOLDER_WORD[g.pattern]}_{g.fabric.title()}_{category}"
        per_folder[folder] = per_folder.get(folder, 0) + 1
        name = f"img/{folder}/img_{per_folder[folder]:08d}.jpg"
        width, height = _SIZES[i % len(_SIZES)]
        side = min(width, height)
        canvas = Image.new("RGB", (width, height), pose.background)
        canvas.paste(draw_garment(g, pose, side), ((width - side) // 2, (height - side) // 2))
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        canvas.save(root / name, "JPEG", quality=90)
        present = {_TEXTURE[g.pattern], g.sleeve or "sleeveless", _NECKLINE[g.neckline], g.fabric,
                   ("maxi_length", "mini_length")[i % 2] if category == "Dress" else "no_dress",
                   ("tight", "loose", "conventional")[int(rng.integers(3))]}
        category_rows.append(f"{name}{' ' * 8}{label[category]}")
        attr_rows.append(f"{name}{' ' * 8}" + " ".join("1" if a in present else "-1" for a in attributes))
        partition_rows.append(f"{name}{' ' * 8}{split[i]}")
    _listing(root / "Anno" / "list_category_cloth.txt", "category_name  category_type",
             [f"{c:<20}{t}" for c, t in DEEPFASHION_CATEGORIES])
    _listing(root / "Anno" / "list_attr_cloth.txt", "attribute_name  attribute_type",
             [f"{a:<20}{t}" for a, t in FINE_ATTRIBUTES])
    _listing(root / "Anno" / "list_category_img.txt", "image_name  category_label", category_rows)
    _listing(root / "Anno" / "list_attr_img.txt", "image_name  attribute_labels", attr_rows)
    _listing(root / "Eval" / "list_eval_partition.txt", "image_name  evaluation_status", partition_rows)
    return root


# --- the study file from assets/paper.toml ------------------------------------------------------------------
def _toml_key(key: str) -> str:
    return key if key and all(c.isalnum() or c in "_-" for c in key) else json.dumps(key)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML for {type(v).__name__}")


def dump_toml(data: dict[str, Any]) -> str:
    """A study file's TOML as paper.toml writes it: sections ``[a]``, ``[a.b]`` for sections made only of tables
    (``[arms.x]``), anything else inline (``generator = { ... }``, ``subset = { ... }``). Checked by reading it
    back: what is written is exactly ``data``."""
    lines: list[str] = []

    def table(path: list[str], d: dict[str, Any]) -> None:
        headers = not path or (len(path) == 1 and all(isinstance(v, dict) for v in d.values()))  # [arms.x]
        scalars = {k: v for k, v in d.items() if not (isinstance(v, dict) and headers)}
        subtables = {k: v for k, v in d.items() if k not in scalars}
        if path and (scalars or not subtables):
            lines.extend(["", "[" + ".".join(_toml_key(p) for p in path) + "]"])
        lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in scalars.items())
        for k, v in subtables.items():
            table(path + [k], v)

    table([], data)
    text = "\n".join(lines).lstrip() + "\n"
    assert tomllib.loads(text) == data, "the TOML writer changed the study"
    return text


def scaled_subset(counts: dict[str, int]) -> dict[str, int]:
    """paper.toml's ``[catalogue] subset`` (the paper's 14k/2k/4k per partition) at the twin's size: the same
    proportions, 80% of the twin's items, so the stratified draw (dressup.subset) still leaves items out."""
    total = sum(counts.values())
    return {split: max(4, int(n * 0.8 * TWIN_ITEMS / total)) for split, n in counts.items()}


def twin_study_data(results_dir: str = "../results/paper") -> dict[str, Any]:
    """paper.toml as a dict, with only ``TWIN_CHANGES`` applied."""
    raw = tomllib.loads(PAPER.read_text(encoding="utf-8"))
    raw["study"].update(device="cpu", allow_cpu=True, results_dir=results_dir)
    if "subset" in raw["catalogue"]:
        raw["catalogue"]["subset"] = scaled_subset(raw["catalogue"]["subset"])
    for recipe in raw.get("train", {}).values():
        recipe.update(steps=TRAIN_STEPS, batch_size=16)
    raw["ui"]["researcher_password_env"] = PASSWORD_ENV
    arms = {}
    for name, arm in raw["arms"].items():
        arm = dict(arm)
        if arm["kind"] == "generative":
            arm["generator"] = {**arm["generator"], "width": SD_PIXELS, "height": SD_PIXELS}
        arms[TWIN_ARMS[name]] = arm
    raw["arms"] = arms
    return raw


# --- the twin -----------------------------------------------------------------------------------------------
@dataclass
class PaperTwin:
    """The built twin: ``root`` mirrors the repository's layout; ``env`` points a process at its HF cache."""

    root: Path
    hf_home: Path
    path: Path  # the study file, <root>/assets/paper.toml
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {"HF_HOME": str(self.hf_home), "HF_HUB_CACHE": str(self.hf_home / "hub"), "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1"}

    def with_results(self, name: str) -> Path:
        """A copy of the study file writing to its own results folder (models, catalogue, indexes shared)."""
        out = self.path.with_name(f"paper-{name}.toml")
        out.write_text(dump_toml(twin_study_data(f"../results/{name}")), encoding="utf-8")
        return out

    @property
    def generator_settings(self) -> dict[str, Any]:
        return dict(twin_study_data()["arms"][TWIN_ARMS["generative"]]["generator"])


def paper_twin() -> PaperTwin:
    """Build (once) the HF cache, the catalogue and the study file; train the two encoders with the CLI."""
    global _twin
    with _lock:
        if _twin is not None:
            return _twin
        root = _tmp_root() / "repo"
        t0 = time.perf_counter()
        twin = PaperTwin(root, _tmp_root() / "hf-home", root / "assets" / "paper.toml")
        build_hub(twin.hf_home)
        t1 = time.perf_counter()
        study = twin_study_data()
        (root / "assets").mkdir(parents=True)
        twin.path.write_text(dump_toml(study), encoding="utf-8")
        from dressup.config import load_study

        build_deepfashion(load_study(twin.path).catalogue.root)
        t2 = time.perf_counter()
        env = {**os.environ, **twin.env, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
        env.pop("DRESSUP_STUDY", None)
        r = subprocess.run([sys.executable, "-m", "dressup", "train", *study["train"], "--study", str(twin.path),
                            "--steps", str(TRAIN_STEPS)], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"`python -m dressup train` failed on the paper twin ({r.returncode}):\n"
                               f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        twin.timings = {"hub": t1 - t0, "catalogue": t2 - t1, "train": time.perf_counter() - t2}
        _twin = twin
        return _twin


def twin_app() -> RunningApp:
    """One app on the twin for every test module that only reads or adds sessions."""
    global _app
    with _lock:
        if _app is None or _app.proc.poll() is not None:
            twin = paper_twin()
            _app = start_app(twin.with_results("shared"), env=twin.env)
        return _app


# --- one face for the tiny study and the twin ---------------------------------------------------------------
@dataclass
class Served:
    """What an app-level test needs of the study it runs on: ``kind`` is "tiny" (the demo-like study of
    tests/app_fixtures.py) or "twin" (the paper twin)."""

    kind: str
    app: Callable[[], RunningApp]  # the shared running app
    start: Callable[[str], RunningApp]  # a new app on a results folder of its own
    arm_names: list[str]  # in study order; the last is the generative arm
    secret_words: list[str]
    colour_grounding: bool  # False on the twin: DeepFashion has no colour attributes, so none can be avoided
    private_paths: Callable[[], list[Path]] = lambda: []  # files of models that must never be served


def _tiny_start(name: str) -> RunningApp:
    return start_app(tiny_study().with_results(name))


def _twin_start(name: str) -> RunningApp:
    twin = paper_twin()
    return start_app(twin.with_results(name), env=twin.env)


def _twin_private() -> list[Path]:
    hub = paper_twin().hf_home / "hub"
    return sorted(hub.glob("models--*/snapshots/*/unet/*")) + sorted(hub.glob("models--*/snapshots/*/*.safetensors"))


def served(kind: str) -> Served:
    if kind == "tiny":
        return Served("tiny", shared_app, _tiny_start, list(ARM_NAMES), list(SECRET_WORDS), True)
    if kind == "twin":
        return Served("twin", twin_app, _twin_start, list(TWIN_ARMS.values()), TWIN_SECRET_WORDS, False,
                      _twin_private)
    raise ValueError(f"no study kind {kind!r}")
