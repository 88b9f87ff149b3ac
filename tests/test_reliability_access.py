"""Access: the researcher endpoints need the password, results are never served, session ids are unguessable.

Requests are raw HTTP (``http.client`` sends a path exactly as written, so ``..`` and percent-encodings reach
the server un-normalised), as an attacker would send them rather than as gradio_client would.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.app_fixtures import (
    PASSWORD,
    SECRET_WORDS,
    client,
    outputs,
    run_participant,
    shared_app,
    value,
)


def _raw_get(url: str, path: str) -> tuple[int, bytes]:
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _call(url: str, api_name: str, data: list[Any], address: str | None = None) -> str:
    """POST /gradio_api/call/NAME then read its event stream: what anyone can do without gradio_client."""
    headers = {"Content-Type": "application/json", **({"X-Forwarded-For": address} if address else {})}
    req = urllib.request.Request(f"{url}gradio_api/call/{api_name}", data=json.dumps({"data": data}).encode(),
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            event_id = json.loads(r.read())["event_id"]
    except urllib.error.HTTPError as e:  # refused at the HTTP edge (study.http_guard)
        return f"HTTP {e.code}: {e.read().decode()}"
    with urllib.request.urlopen(f"{url}gradio_api/call/{api_name}/{event_id}", timeout=120) as r:
        return r.read().decode()


def test_researcher_endpoints_refuse_every_wrong_password() -> None:
    app = shared_app()
    run_participant(app.url, 5001)  # so there are counts to leak
    attacker = "198.51.100.66"
    for guess in ("", " ", "guess", PASSWORD.upper(), PASSWORD + " ", PASSWORD[:-1], None, "' OR 1=1 --"):
        for api in ("researcher_counts", "researcher_export"):
            answer = _call(app.url, api, [guess], attacker)
            # wrong, and after three wrong guesses the address must wait longer each time (study.limits)
            assert ("event: error" in answer or answer.startswith("HTTP 429")) and \
                ("Wrong password" in answer or "Too many attempts" in answer), (api, guess, answer[:300])
            assert not [w for w in SECRET_WORDS if w in answer.lower()], answer  # no count names an arm
            assert ".csv" not in answer and ".parquet" not in answer
    locked = _call(app.url, "researcher_counts", [PASSWORD], attacker)
    assert "Too many attempts" in locked and "quokkaplain" not in locked  # locked out: even the right one waits
    right = _call(app.url, "researcher_counts", [PASSWORD], "198.51.100.67")
    assert "event: complete" in right and "quokkaplain" in right  # the door does open with the password


def _secrets_on_disk(app) -> dict[str, tuple[Path, bytes]]:
    """The files a participant must never receive, with a byte string that identifies each one's content."""
    study = app.study
    with app.db() as conn:
        upload = Path(conn.execute("SELECT path FROM uploads LIMIT 1").fetchone()[0])
        sha = conn.execute("SELECT image_sha256 FROM shown LIMIT 1").fetchone()[0]
    stimulus = study.results_dir / "stimuli" / f"{sha}.png"
    out = {"database": (study.db_path, b"SQLite format 3"), "upload": (upload, upload.read_bytes()[:64]),
           "stimulus by hash": (stimulus, stimulus.read_bytes()[-64:]),
           "study file": (study.path, study.path.read_bytes()[:40])}
    wal = Path(f"{study.db_path}-wal")
    if wal.exists() and wal.stat().st_size:
        out["database WAL"] = (wal, wal.read_bytes()[:8])
    return out


def _attempts(app, path: Path) -> list[str]:
    """Ways to name ``path`` in a URL: absolute, relative to the app's folder, through Gradio's own temp folder
    (which is served) with ``..``, percent-encoded and double-encoded, and through a served image's URL."""
    rel_cwd = os.path.relpath(path, Path.cwd())
    via_temp = f"{app.temp_dir}/../../../../../../../..{path}"
    enc = urllib.parse.quote(str(path), safe="")
    dots = str(path).replace("/", "/%2e%2e/x/")  # /a/b -> /%2e%2e/x/a/%2e%2e/x/b : the same file once decoded
    return [
        f"/gradio_api/file={path}", f"/file={path}", f"/gradio_api/file={rel_cwd}", f"/file={rel_cwd}",
        f"/gradio_api/file=../{rel_cwd}", f"/gradio_api/file={via_temp}", f"/gradio_api/file={enc}",
        f"/gradio_api/file={urllib.parse.quote(enc, safe='')}", f"/gradio_api/file={dots}",
        f"/gradio_api/file={app.temp_dir}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e{path}",
        f"/gradio_api/file=..%2f..%2f..%2f..%2f..%2f..%2f..%2f..%2f{str(path).lstrip('/')}",
        f"/static/../../../../../../..{path}", f"/assets/..%2f..%2f..%2f..%2f..%2f..%2f{str(path).lstrip('/')}",
        f"/gradio_api/file=file://{path}", f"/{rel_cwd}", f"/{path.name}", f"/results/{path.name}",
        f"/gradio_api/file=results/{path.name}", f"/gradio_api/file=../results/{path.name}",
    ]


def test_uploads_results_and_database_are_never_served() -> None:
    app = shared_app()
    sid, _, done = run_participant(app.url, 5002)
    served = 0
    page = outputs(client(app.url).predict(f"{app.url}?session={sid}", api_name="/resume"))
    image_url = urllib.parse.urlsplit(page["img_A1"]["url"]).path  # /gradio_api/file=<temp>/<hash>/image.png
    status, body = _raw_get(app.url, image_url)
    assert status == 200 and body[:4] == b"\x89PNG"  # served files are served: the attempts below are not
    for what, (path, marker) in _secrets_on_disk(app).items():
        tries = _attempts(app, path) + [
            image_url.rsplit("/", 1)[0] + "/../../../../../../../.." + str(path),
            image_url.rsplit("/", 1)[0] + "/..%2f..%2f..%2f..%2f..%2f..%2f..%2f.." + urllib.parse.quote(str(path))]
        for attempt in tries:
            status, body = _raw_get(app.url, attempt)
            served += 1
            assert marker not in body, f"{what} was served at {attempt} (HTTP {status})"
            assert status != 200 or body.lstrip()[:15].lower().startswith((b"<!doctype", b"<html")), \
                f"{what}: {attempt} answered 200 with {body[:80]!r}"
    assert served >= 80
    for attempt in ("/gradio_api/file=/etc/passwd", "/gradio_api/file=../../../../etc/passwd", "/file=/etc/passwd"):
        assert b"root:" not in _raw_get(app.url, attempt)[1], attempt


def test_session_ids_are_random_128_bit_tokens_and_unknown_ones_are_refused() -> None:
    app = shared_app()
    c = client(app.url)
    ids = []
    for _ in range(40):
        c.reset_session()  # a new browser session each time, as 40 participants would have
        ids.append(value(outputs(c.predict(api_name="/consent"))["link"]))
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", i) for i in ids), ids[:3]  # secrets.token_urlsafe(16)
    raw = [base64.urlsafe_b64decode(i + "==") for i in ids]
    assert all(len(b) == 16 for b in raw)
    bits = "".join(f"{byte:08b}" for b in raw for byte in b)
    assert 0.45 < bits.count("1") / len(bits) < 0.55  # 5120 fair coin flips: 0.5 ± 0.007 (1 sd)
    prefixes = [i[:4] for i in ids]
    assert len(set(prefixes)) == len(prefixes)  # consecutive ids share no prefix: nothing sequential
    as_ints = [int.from_bytes(b, "big") for b in raw]
    steps = {b - a for a, b in zip(as_ints, as_ints[1:])}
    assert len(steps) == len(as_ints) - 1  # no constant (or repeating) step between consecutive ids
    with app.db() as conn:  # the stored ids are those handed out; neither order index nor time is in them
        rows = conn.execute(f"SELECT session_id, order_index FROM sessions WHERE session_id IN "
                            f"({','.join('?' * len(ids))})", ids).fetchall()
    assert len(rows) == len(ids)
    assert not any(str(r["order_index"]) in r["session_id"][:3] for r in rows if r["order_index"] > 99)
    # a guessed id, well-formed or not, opens nothing
    for guess in ("A" * 22, ids[0][:-1] + ("A" if ids[0][-1] != "A" else "B"), "1", "../../etc/passwd"):
        try:
            client(app.url).predict(f"{app.url}?session={guess}", api_name="/resume")
            raise AssertionError(f"session {guess!r} was opened")
        except Exception as e:  # noqa: BLE001 — gradio_client's AppError
            assert "session link" in str(e), str(e)


def _join(url: str, fn_index: int, data: list[Any], address: str) -> int:
    """POST /gradio_api/queue/join as the browser does (the endpoint named only by ``fn_index``): the status."""
    body = json.dumps({"data": data, "fn_index": fn_index, "session_hash": "x" * 11, "event_data": None}).encode()
    req = urllib.request.Request(f"{url}gradio_api/queue/join", data=body,
                                 headers={"Content-Type": "application/json", "X-Forwarded-For": address})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_a_withdrawal_code_guesser_told_to_wait_is_refused_at_the_edge_by_either_route() -> None:
    """After the free guesses an address backs off; while it waits, its guesses get 429 before Gradio's queue
    (by ``/call/withdraw`` and by ``queue/join`` with withdraw's ``fn_index``), and others are still served."""
    app = shared_app()
    guesser = "198.51.100.91"
    answers = [_call(app.url, "withdraw", [f"DU-{i:08X}"], guesser) for i in range(6)]
    assert all("No session has that completion code" in a for a in answers[:3]), answers  # the free guesses
    assert sum(a.startswith("HTTP 429") and "Too many attempts" in a for a in answers) >= 2, answers
    with urllib.request.urlopen(f"{app.url}config", timeout=30) as r:
        config = json.loads(r.read())
    fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "withdraw")
    assert _join(app.url, fn_index, ["DU-00000099"], guesser) == 429
    other = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "rate_A")
    assert _join(app.url, other, [None, 5], guesser) == 200  # only the guessed endpoint waits
    assert "No session has that completion code" in _call(app.url, "withdraw", ["DU-00000042"], "198.51.100.92")
