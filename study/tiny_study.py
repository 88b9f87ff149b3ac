"""A tiny but real study to launch: what the app tests and the reliability benchmarks run the app on.

The study is real end to end: a 200-item demo catalogue drawn by ``dressup.democatalog``, three retrieval
arms over untrained ``config:`` encoders (random image tower, the real MiniLM text tower; one with an STN)
and a generative arm (the conditional DCGAN, trained for a handful of steps), loaded by
``build_arms`` exactly as ``app.py`` loads them. Arm and encoder names are deliberately odd words
(``ARM_NAMES``, ``ENCODER_NAMES``, ``MODEL_CONFIG``) so a blinding test can search everything a participant
receives for them.

Built once per process (a module-level cache) under the launcher's scratch folder, removed at exit.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from dressup.config import Study, load_study
from study.launcher import PASSWORD_ENV, REPO, scratch_root

# Names that must never reach a participant. Arms, encoders and the model config's name are chosen so that
# no ordinary page text could contain them by accident.
ARM_NAMES = ["quokkaplain", "quokkaspin", "quokkawarp", "quokkadream"]
ENCODER_NAMES = ["wombatone", "wombattwo", "wombatstn"]
MODEL_CONFIG = "numbatclip-tiny"

_lock = threading.Lock()
_study: "TinyStudy | None" = None


@dataclass
class TinyStudy:
    """The built study file; ``load`` gives a ``Study`` with its own results folder when asked."""

    path: Path

    def load(self, results_dir: Path | None = None) -> Study:
        study = load_study(self.path)
        return dataclasses.replace(study, results_dir=Path(results_dir)) if results_dir else study

    def with_results(self, name: str) -> Path:
        """A copy of the study file writing to its own results folder (the cache, hence the indexes, is shared)."""
        text = self.path.read_text().replace('results_dir = "results"', f'results_dir = "{name}"')
        out = self.path.with_name(f"study-{name}.toml")
        out.write_text(text)
        return out


def study_text(*, name: str = "ui-test", results: str = "results", max_upload_mb: int = 2,
               arms: tuple[str, ...] = tuple(ARM_NAMES), encoders: tuple[str, ...] = tuple(ENCODER_NAMES),
               model_config: str = MODEL_CONFIG, password_env: str = PASSWORD_ENV) -> str:
    """The tiny study's file: three retrieval arms over ``encoders`` (seeds 1-3, the third with an STN) and a
    DCGAN arm conditioned on the first encoder. The names are parameters so the hostile-client benchmark can
    run the same study under its own (``bench.attacks.target``)."""
    enc = "\n".join(
        f'[encoders.{e}]\nspec = "config:{model_config}.json"\noptions = {{ seed = {i + 1} }}\n'
        + ("stn = true\n" if i == 2 else "")
        for i, e in enumerate(encoders))
    return f"""
[study]
name = "{name}"
profile = "paper"
seed = 5
participants_wanted = 24
results_dir = "{results}"
cache_dir = "cache"
device = "cpu"
allow_cpu = true

[catalogue]
kind = "demo"
root = "catalogue"
size = 200
image_size = 64
seed = 3
split = "all"

[query]
colour_grounding = true

[ui]
min_photos = 2
max_photos = 4
max_upload_mb = {max_upload_mb}
completion_url = "https://app.prolific.com/submissions/complete?cc={{code}}"
researcher_password_env = "{password_env}"

{enc}
[arms.{arms[0]}]
kind = "retrieval"
encoder = "{encoders[0]}"

[arms.{arms[1]}]
kind = "retrieval"
encoder = "{encoders[1]}"

[arms.{arms[2]}]
kind = "retrieval"
encoder = "{encoders[2]}"

[arms.{arms[3]}]
kind = "generative"
generator = {{ kind = "dcgan", checkpoint = "gan", encoder = "{encoders[0]}" }}
"""


def build_study(root: Path, text: str, *, model_config: str = MODEL_CONFIG) -> Path:
    """Write ``text`` as ``root/study.toml`` and build what it names: the 200-item drawn catalogue, the model
    config and the DCGAN checkpoint (4 steps, on the first arm's encoder). Returns the study file."""
    from dressup.catalog import load_catalog  # torch and the models: only when a study is built
    from dressup.generators.dcgan_train import train_dcgan_on_catalogue
    from dressup.democatalog import build_demo_catalogue
    from dressup.encoders import load_encoder

    build_demo_catalogue(root / "catalogue", size=200, image_size=64, seed=3, progress=False)
    config = json.loads((REPO / "assets" / "models" / "dressup-demo-small.json").read_text())
    (root / f"{model_config}.json").write_text(json.dumps(config))
    path = root / "study.toml"
    path.write_text(text)
    study = load_study(path)
    catalog = load_catalog(study.catalogue.root, require_images=True)
    gan = next(a for a in study.arms if a.kind == "generative")
    gan_encoder = study.encoder(gan.generator["encoder"])
    train_dcgan_on_catalogue(catalog, load_encoder(gan_encoder), root / "gan", steps=4, batch_size=16,
                             checkpoint_every=4, progress=False)
    return path


def tiny_study() -> TinyStudy:
    """Build (once) the demo catalogue, the encoder config and the DCGAN checkpoint; write the study file."""
    global _study
    with _lock:
        if _study is not None:
            return _study
        root = scratch_root() / "study"
        root.mkdir()
        _study = TinyStudy(build_study(root, study_text()))
        return _study


def study_with_results(tmp_path: Path, results: Path) -> Path:
    """The tiny study with its results folder at ``results`` (models and indexes shared, so no rebuild)."""
    study = tiny_study().path
    text = study.read_text().replace('results_dir = "results"', f'results_dir = "{results}"')
    for key in ("root", "cache_dir"):
        for rel in ('"catalogue"', '"cache"'):
            text = text.replace(f"{key} = {rel}", f'{key} = "{study.parent / rel.strip(chr(34))}"')
    out = tmp_path / "study.toml"
    out.write_text(text)
    shutil.copy(study.parent / f"{MODEL_CONFIG}.json", tmp_path)
    (tmp_path / "gan").symlink_to(study.parent / "gan")
    return out
