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

from bench.common import AppProcess, start_app
from study.tiny_study import build_study, study_text

WORK = Path("/tmp/dressup-bench/hostile")
STUDY_DIR = WORK / "study"
PASSWORD_ENV = "DRESSUP_BENCH_RESEARCHER_PASSWORD"
MAX_UPLOAD_MB = 10


def _study_text(results: str) -> str:
    """The tests' tiny study (``study.tiny_study.study_text``) under the benchmark's names and upload limit."""
    return study_text(name="bench-hostile", results=results, max_upload_mb=MAX_UPLOAD_MB,
                      arms=("plain", "other", "stn", "gan"), encoders=("enc_one", "enc_two", "enc_stn"),
                      model_config="tiny-clip", password_env=PASSWORD_ENV)


def tiny_study(say: Callable[[str], None] = print) -> None:
    """Build (once, reused by later runs) the drawn catalogue, the encoder config and the DCGAN checkpoint."""
    done = STUDY_DIR / "built.ok"
    if done.is_file():
        return
    say(f"building the tiny study in {STUDY_DIR} (once) ...")
    shutil.rmtree(STUDY_DIR, ignore_errors=True)
    STUDY_DIR.mkdir(parents=True)
    build_study(STUDY_DIR, _study_text("results"), model_config="tiny-clip")
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

