"""The study app as the benchmarks measure it from outside: ``python app.py`` started by ``study.launcher``'s
parts, timed until it serves (with chosen log lines timed too), and the participant photos they upload.

Unlike ``study.launcher.start_app`` (the tests'), this one says what the log shows while a slow start builds
models, records when the app first answered and the CPU it had used by then, and leaves the environment as
the benchmark set it (no proxy trust, no password unless given).
"""
from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from bench.common.memory import process_cpu_s
from study.launcher import OFFLINE_ENV as APP_ENV  # noqa: F401 — re-exported
from study.launcher import app_env as offline_env
from study.launcher import free_port, serves, spawn_app

REPO = Path(__file__).resolve().parents[2]
DEMO_STUDY = REPO / "assets" / "demo.toml"
PHOTOS = REPO / "assets" / "photos"  # real participant photos (MIT, see its NOTICE.md)


@dataclass
class AppProcess:
    """``python app.py`` running in a subprocess on a loopback port (``start_app``)."""

    proc: subprocess.Popen
    url: str
    log_path: Path
    ready_s: float = float("nan")  # from the process start until GET /config first answered 200
    ready_cpu_s: float = float("nan")  # the app's CPU seconds at that moment
    marks: dict[str, float] = field(default_factory=dict)  # log line marker -> seconds after start it appeared

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s; only this process, which this module started."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)

    def __enter__(self) -> "AppProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def note_marks(self, marks: Sequence[str], since_start_s: float) -> None:
        """Record the first time each of ``marks`` shows in the log."""
        if marks and len(self.marks) < len(marks):
            text = self.log_tail(1 << 20)
            for m in marks:
                if m not in self.marks and m in text:
                    self.marks[m] = since_start_s

    def last_log_line(self) -> str:
        last = [ln for ln in re.split(r"[\r\n]+", self.log_tail(2000)) if ln.strip()]
        return last[-1][:160] if last else "(empty)"


def start_app(study: Path, folder: Path, *, timeout_s: float = 3600, marks: Sequence[str] = (),
              poll_s: float = 0.1, heartbeat_s: float = 60, say: Callable[[str], None] = print,
              repo: Path = REPO, env: dict[str, str] | None = None) -> AppProcess:
    """Start ``python app.py --study STUDY`` on a free loopback port, with Gradio's temp files and the log under
    ``folder``, and return once GET /config answers (``ready_s`` says when). ``marks`` are log lines to time
    (the first line containing each). Raises RuntimeError with the log's tail if the app exits or does not
    answer within ``timeout_s``; every ``heartbeat_s`` it says what the log shows last, since a demo study
    whose models are not built yet builds them first (minutes). ``repo``: the project whose app.py runs; ``env``:
    more environment for the app."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = folder / f"app-{port}.log"
    env = offline_env(GRADIO_TEMP_DIR=str(folder / "gradio"), **(env or {}))
    started = time.perf_counter()
    proc = spawn_app(repo / "app.py", study, port, env, log_path, cwd=repo)
    app = AppProcess(proc, f"http://127.0.0.1:{port}/", log_path)
    next_beat = started + heartbeat_s
    try:
        while True:
            now = time.perf_counter()
            app.note_marks(marks, now - started)
            if proc.poll() is not None:
                raise RuntimeError(f"the app exited with {proc.returncode}; its log ({log_path}) ends:\n"
                                   f"{app.log_tail()}")
            if serves(app.url):
                app.ready_s, app.ready_cpu_s = time.perf_counter() - started, process_cpu_s(proc.pid)
                return app
            if now - started > timeout_s:
                raise RuntimeError(f"the app did not answer GET /config within {timeout_s:.0f} s; its log "
                                   f"({log_path}) ends:\n{app.log_tail()}")
            if now > next_beat:
                say(f"  ... app not answering yet after {now - started:.0f} s; log: {app.last_log_line()}")
                next_beat = now + heartbeat_s
            time.sleep(poll_s)
    except BaseException:
        app.stop()
        raise


def photos(n: int = 2, offset: int = 0) -> list[Path]:
    """``n`` of the shared participant photos, starting at ``offset`` (wrapping), so calls can vary them."""
    found = sorted(PHOTOS.glob("*.jpg"))
    if len(found) < n:
        raise FileNotFoundError(f"need {n} JPEG photos in {PHOTOS} (assets/photos)")
    return [found[(offset + i) % len(found)] for i in range(n)]
