"""The app the hostile-client benchmark attacks: its own tiny study, built once under /tmp/dressup-bench/hostile
the way the tests' tiny study is (``study.tiny_study``) but allowing 10 MB uploads, and a fresh ``python app.py``
on a copy of it writing to its own folder.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench.common import REPO, AppProcess, start_app

WORK = Path("/tmp/dressup-bench/hostile")
STUDY_DIR = WORK / "study"
PASSWORD_ENV = "DRESSUP_BENCH_RESEARCHER_PASSWORD"
MAX_UPLOAD_MB = 10


def _study_text(results: str) -> str:
    encoders = "\n".join(
        f'[encoders.{name}]\nspec = "config:tiny-clip.json"\noptions = {{ seed = {seed} }}\n'
        + ("stn = true\n" if name == "enc_stn" else "")
        for name, seed in (("enc_one", 1), ("enc_two", 2), ("enc_stn", 3)))
    return f"""
[study]
name = "bench-hostile"
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
max_upload_mb = {MAX_UPLOAD_MB}
completion_url = "https://app.prolific.com/submissions/complete?cc={{code}}"
researcher_password_env = "{PASSWORD_ENV}"

{encoders}
[arms.plain]
kind = "retrieval"
encoder = "enc_one"

[arms.other]
kind = "retrieval"
encoder = "enc_two"

[arms.stn]
kind = "retrieval"
encoder = "enc_stn"

[arms.gan]
kind = "generative"
generator = {{ kind = "dcgan", checkpoint = "gan", encoder = "enc_one" }}
"""


def tiny_study(say: Callable[[str], None] = print) -> None:
    """Build (once, reused by later runs) the drawn catalogue, the encoder config and the DCGAN checkpoint."""
    done = STUDY_DIR / "built.ok"
    if done.is_file():
        return
    from dressup.catalog import load_catalog
    from dressup.config import load_study
    from dressup.generators.dcgan_train import train_dcgan_on_catalogue
    from dressup.democatalog import build_demo_catalogue
    from dressup.encoders import load_encoder

    say(f"building the tiny study in {STUDY_DIR} (once) ...")
    shutil.rmtree(STUDY_DIR, ignore_errors=True)
    STUDY_DIR.mkdir(parents=True)
    build_demo_catalogue(STUDY_DIR / "catalogue", size=200, image_size=64, seed=3, progress=False)
    shutil.copy(REPO / "assets" / "models" / "dressup-demo-small.json", STUDY_DIR / "tiny-clip.json")
    path = STUDY_DIR / "study.toml"
    path.write_text(_study_text("results"))
    study = load_study(path)
    catalog = load_catalog(study.catalogue.root, require_images=True)
    train_dcgan_on_catalogue(catalog, load_encoder(study.encoder("enc_one")), STUDY_DIR / "gan", steps=4,
                             batch_size=16, checkpoint_every=4, progress=False)
    done.write_text("ok\n")


def study_copy(results: Path) -> Path:
    """The tiny study's file with its answers in ``results`` (catalogue, cache and models shared)."""
    out = STUDY_DIR / f"study-{results.name}.toml"
    out.write_text(_study_text(str(results)))
    return out


@dataclass
class App:
    proc: AppProcess
    folder: Path
    study_path: Path

    @property
    def url(self) -> str:
        return self.proc.url

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.proc.log_tail(1 << 24)

    def stop(self) -> None:
        self.proc.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
        self.study_path.unlink(missing_ok=True)


def launch(tag: str, password: str) -> tuple[App, float]:
    """A fresh app on a copy of the study writing to its own folder; returns it and its start seconds."""
    folder = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=WORK))
    study_path = study_copy(folder / "results")
    os.environ["DRESSUP_BEHIND_PROXY"] = "1"  # start_app passes this process's environment on
    os.environ[PASSWORD_ENV] = password
    os.environ.pop("DRESSUP_STUDY", None)
    t0 = time.perf_counter()
    proc = start_app(study_path, folder, timeout_s=600)
    return App(proc, folder, study_path), time.perf_counter() - t0

