"""Participants and attackers of the hostile-client benchmark, each from its own address.

Addresses come from 198.18.0.0/15 (RFC 2544's benchmarking range) and are only written in X-Forwarded-For,
which the app started behind a proxy trusts; every connection goes to 127.0.0.1. A participant goes through
gradio_client (``study.participant_client.client``); an attacker may use raw HTTP (``raw_call``), as anyone
can without gradio_client. ``classify`` names what an answer or error was.
"""
from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import percentile
from study.participant_client import client, value  # noqa: F401 — client: re-exported for the measurements

GRID_CELLS = 16


class Addresses:
    """Distinct client addresses from 198.18.0.0/15, written only in X-Forwarded-For."""

    def __init__(self, block: int) -> None:
        self.block, self.n, self.lock = block, 0, threading.Lock()

    def next(self) -> str:
        with self.lock:
            self.n += 1
            return f"198.{18 + self.block // 256}.{self.block % 256}.{self.n}"


def _is_image(v: Any) -> bool:
    v = value(v)
    if isinstance(v, dict):
        v = v.get("path") or v.get("url") or ""
    return isinstance(v, str) and v.lower().rsplit(".", 1)[-1] in ("png", "jpg", "jpeg", "webp")


def consent(c) -> str:
    """Consent; returns the session link (the first page value every navigation endpoint returns)."""
    return value(c.predict(api_name="/consent")[0])


def submit(c, text: str, files: list[Path]) -> int:
    """A Submit; returns how many grid images came back."""
    from gradio_client import handle_file

    out = c.predict(text, [handle_file(str(p)) for p in files], None, "any", "", api_name="/submit_preference")
    return sum(_is_image(v) for v in out)


def raw_call(url: str, api: str, data: list[Any], address: str, timeout: float = 60) -> str:
    """POST /gradio_api/call/API, then read its event stream: what anyone can do without gradio_client. An HTTP
    refusal comes back as ``HTTP <status>: <body>``."""
    headers = {"Content-Type": "application/json", "X-Forwarded-For": address}
    req = urllib.request.Request(f"{url}gradio_api/call/{api}", data=json.dumps({"data": data}).encode(),
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            event_id = json.loads(r.read())["event_id"]
        with urllib.request.urlopen(f"{url}gradio_api/call/{api}/{event_id}", timeout=timeout) as r:
            return r.read().decode()
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}: {e.read().decode(errors='replace')[:200]}"


WAIT_RE = re.compile(r"try again in (\d+) s")


def classify(answer: str) -> str:
    if answer.startswith("HTTP 429") and "Too many attempts" in answer:  # a guess refused at the HTTP edge
        return "too many attempts"
    if answer.startswith("HTTP "):
        return answer.split(":", 1)[0]
    if "429 Too Many Requests" in answer:  # gradio_client's upload refused by the HTTP guard
        return "HTTP 429"
    for key, name in (("Wrong password", "wrong password"), ("No session has that completion code", "wrong code"),
                      ("Too many attempts", "too many attempts"), ("Too many", "too many (other)"),
                      ("already being prepared", "already being prepared"), ("Photo ", "photo refused"),
                      ("Please add", "photo count refused"), ("Queue is full", "queue full")):
        if key in answer:
            return name
    if "event: complete" in answer:
        return "answered"
    return "other: " + answer[:80].replace("\n", " ")


def p50_p95_max(samples: list[float]) -> tuple[float, float, float]:
    return percentile(samples, 50), percentile(samples, 95), max(samples, default=float("nan"))
