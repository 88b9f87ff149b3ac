"""Start the study app from outside, as a participant's server would run: ``python app.py`` in a subprocess.

The one launcher of the tests and the benchmarks: a free loopback port (``free_port``), the app's offline
environment (``app_env``), the process itself (``spawn_app``), the readiness probe (``serves``: GET /config
answers 200) and, on top of them, ``start_app``, which waits until the app serves and gives a ``RunningApp``
to drive, kill or stop. ``start_in_namespace`` starts it inside a user + mount namespace instead (read-only or
full folders without root). The benchmarks' timed launcher (``bench.common.app``) builds on the same parts.

Apps started here get the researcher password ``PASSWORD`` through ``PASSWORD_ENV`` (the variable the launched
study files name); their logs and Gradio temp folders live under one scratch folder removed at exit.
"""
from __future__ import annotations

import atexit
import os
import shlex
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

from dressup.config import Study, load_study

REPO = Path(__file__).resolve().parents[1]
PASSWORD_ENV = "DRESSUP_TEST_RESEARCHER_PASSWORD"
PASSWORD = "correct horse battery staple"
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
               "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}

_lock = threading.Lock()
_root: Path | None = None


def scratch_root() -> Path:
    """This process's scratch folder (made on first use, removed at exit) for launched apps and built studies."""
    global _root
    with _lock:
        if _root is None:
            _root = Path(tempfile.mkdtemp(prefix="dressup-ui-tests-"))
            atexit.register(shutil.rmtree, _root, ignore_errors=True)
        return _root


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_env(**extra: str) -> dict[str, str]:
    """This process's environment with no network for models and no analytics, plus ``extra``."""
    return {**os.environ, **OFFLINE_ENV, **extra}


def spawn_app(script: Path, study_path: Path, port: int, env: dict[str, str], log_path: Path,
              cwd: Path = REPO) -> subprocess.Popen:
    """``python SCRIPT --study STUDY --host 127.0.0.1 --port PORT``, stdout and stderr to ``log_path``."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, str(script), "--study", str(study_path), "--host", "127.0.0.1", "--port", str(port)],
            cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)


def serves(url: str, timeout: float = 5) -> bool:
    """Whether the app at ``url`` answers GET /config with 200 (False while it is not listening yet)."""
    try:
        with urllib.request.urlopen(url + "config", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


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


def _launch_env(run_dir: Path, password: bool, extra: dict[str, str]) -> dict[str, str]:
    env = app_env(GRADIO_TEMP_DIR=str(run_dir / "gradio"), DRESSUP_BEHIND_PROXY="1")
    env.pop("DRESSUP_STUDY", None)
    env.update(extra)
    if password:
        env[PASSWORD_ENV] = PASSWORD
    else:
        env.pop(PASSWORD_ENV, None)
    return env


def start_app(study_path: Path, *, port: int | None = None, password: bool = True, timeout: float = 240,
              env: dict[str, str] | None = None, script: Path = REPO / "app.py") -> RunningApp:
    """Launch the app and wait until it answers (it loads every arm before serving). ``env`` adds to or overrides
    the app's environment (the paper twin's ``HF_HOME``/``HF_HUB_CACHE``); ``script`` runs instead of app.py (a
    test's wrapper of it, tests/slow_app.py)."""
    port = port or free_port()
    run_dir = Path(tempfile.mkdtemp(prefix="app-", dir=scratch_root()))
    log_path = run_dir / "app.log"
    proc = spawn_app(script, study_path, port, _launch_env(run_dir, password, dict(env or {})), log_path)
    app = RunningApp(proc, f"http://127.0.0.1:{port}/", study_path, log_path, run_dir / "gradio")
    atexit.register(app.stop)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}:\n{app.log()[-4000:]}")
        if serves(app.url):
            return app
        time.sleep(0.5)
    app.stop()
    raise RuntimeError(f"app did not answer within {timeout}s:\n{app.log()[-4000:]}")


def app_answers(app: RunningApp) -> bool:
    """The app process is alive and still serves its page config."""
    return app.proc.poll() is None and serves(app.url, timeout=30)


def can_unshare() -> bool:
    """Whether this machine lets us make a user + mount namespace (to mount read-only folders and tiny tmpfs
    without root); tests that need one skip, saying so, where it does not."""
    if not shutil.which("unshare"):
        return False
    r = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null || "
                        "mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True, timeout=30)
    return r.returncode == 0


def start_in_namespace(setup: str, study: Path) -> subprocess.CompletedProcess:
    """``python app.py`` inside a fresh user + mount namespace after the shell commands ``setup``."""
    app = " ".join(map(shlex.quote, [sys.executable, str(REPO / "app.py"), "--study", str(study), "--port", "1"]))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    return subprocess.run(["unshare", "-rm", "sh", "-c", f"set -e; {setup}; exec {app}"], capture_output=True,
                          text=True, timeout=300, cwd=REPO, env=env)
