"""The study's HTTP edge: security headers, request-size caps and per-address budgets, before Gradio sees a byte.

Gradio makes every event an endpoint anyone can call and accepts uploads from anyone (``/gradio_api/upload``
knows no session). So the guard, a plain ASGI middleware handed to Gradio's FastAPI app, decides first:

- **Security headers** on every response: ``X-Content-Type-Options: nosniff``; ``X-Frame-Options:
  SAMEORIGIN`` with a ``Content-Security-Policy`` whose ``frame-ancestors`` also admits huggingface.co, which
  shows a Space inside its own page (browsers that know CSP follow it; older ones fall back to the header);
  ``Referrer-Policy: no-referrer`` so a resume link in the address bar is not sent to anyone.
- **Size caps**: an event's JSON body is capped at what the page can legitimately send (every text box full
  of the widest characters), an upload at the study's photos times their size limit; a longer body is cut
  off with 413 before it is read, so a 20 MB value is neither parsed, nor echoed in an error, nor logged.
- **Budgets** (``study.limits``): events and uploads per client address; uploads only from an address that
  holds a consented session (the upload route cannot know the session; the address is the next best thing).
  An address that must wait before its next guess (a withdrawal code, the researcher password: ``guarded``,
  endpoint name -> budget) is answered 429 here for that endpoint, so a flood of guesses costs the app a
  dictionary lookup instead of a trip through Gradio's queue, and participants keep their share of the CPU.

The client address is the socket peer, or, behind a reverse proxy, the last ``X-Forwarded-For`` entry (the
one the proxy wrote, not one a client made up): on Hugging Face Spaces (``SPACE_ID`` set) always, elsewhere
when ``DRESSUP_BEHIND_PROXY=1`` says a proxy (nginx, Caddy) stands in front of the app. Without a proxy the
header is ignored, since anyone can send it.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from study.limits import Limiter, Refused

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
     b"style-src 'self' 'unsafe-inline' https://fonts.googleapis.com; font-src 'self' data: https://fonts.gstatic.com; "
     b"img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; worker-src 'self' blob:; "
     b"object-src 'none'; base-uri 'self'; frame-ancestors 'self' https://huggingface.co https://*.hf.space"),
]
EVENT_PATHS = ("/gradio_api/queue/join", "/gradio_api/run/", "/gradio_api/call/", "/gradio_api/api/")
UPLOAD_PATH = "/gradio_api/upload"
BEHIND_PROXY_ENV = "DRESSUP_BEHIND_PROXY"


def client_address(headers: Mapping[str, str], peer: str | None) -> str:
    """Who is asking (see the module docstring for why the proxy's header is trusted only on Spaces)."""
    if os.environ.get("SPACE_ID") or os.environ.get(BEHIND_PROXY_ENV) == "1":
        forwarded = [h.strip() for h in (headers.get("x-forwarded-for") or "").split(",") if h.strip()]
        if forwarded:
            return forwarded[-1]
    return peer or "unknown"


class HTTPGuard:
    """ASGI middleware (see the module docstring). ``has_session(address)`` says whether an address holds a
    consented session; ``event_limit``/``upload_limit`` are body caps in bytes."""

    def __init__(self, app: Any, *, limiter: Limiter, has_session: Callable[[str], bool], event_limit: int,
                 upload_limit: int, guarded: Mapping[str, str] | None = None,
                 endpoint_name: Callable[[int], str | None] = lambda _i: None) -> None:
        self.app = app
        self.limiter = limiter
        self.has_session = has_session
        self.event_limit = event_limit
        self.upload_limit = upload_limit
        self.guarded = dict(guarded or {})  # endpoint name -> the budget of its guesses
        self.endpoint_name = endpoint_name  # Gradio's fn_index -> endpoint name (queue/join names no endpoint)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        method = scope.get("method", "GET")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        address = client_address(headers, (scope.get("client") or (None,))[0])
        limit = self.upload_limit if method == "POST" and path.endswith(UPLOAD_PATH) else \
            self.event_limit if method == "POST" and any(p in path for p in EVENT_PATHS) else None
        if limit is not None:
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                await _refuse(send, 413, "This request is too large.", receive=receive, drain=limit)
                return
            try:
                if limit == self.upload_limit and path.endswith(UPLOAD_PATH):
                    if not self.has_session(address):
                        await _refuse(send, 403, "Please start the study (press 'I agree, start') before adding "
                                                 "photos.", receive=receive, drain=limit)
                        return
                    self.limiter.check("upload/address", address, "Too many uploads; please wait a moment.")
                else:
                    self.limiter.check("event/address", address)
            except Refused as r:
                await _refuse(send, 429, r.message, retry_after=r.retry_after_s, receive=receive, drain=limit)
                return
            receive = _capped(receive, limit)
            if self.guarded and limit == self.event_limit:
                try:
                    receive, wait = await self._guess_wait(path, receive, address)
                except _TooLarge:
                    await _refuse(send, 413, "This request is too large.")
                    return
                if wait > 0:
                    await _refuse(send, 429, f"Too many attempts (try again in {max(1, round(wait))} s)",
                                  retry_after=wait)
                    return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                existing = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *[(k, v) for k, v in SECURITY_HEADERS if k not in existing]]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except _TooLarge:
            await _refuse(send, 413, "This request is too large.")


    async def _guess_wait(self, path: str, receive: Callable, address: str) -> tuple[Callable, float]:
        """How long ``address`` must wait before guessing at this event's endpoint (0: not a guarded one).
        A queue/join names its endpoint only in the body (``fn_index``), so that body (already capped) is
        read here and handed on unchanged."""
        name = path.rstrip("/").split("/")[-1] if "/gradio_api/call/" in path or "/gradio_api/run/" in path else None
        if name is None and path.endswith("/gradio_api/queue/join"):
            chunks, more = [], True
            while more:
                message = await receive()
                chunks.append(message.get("body", b""))
                more = message["type"] == "http.request" and message.get("more_body", False)
            body = b"".join(chunks)
            try:
                name = self.endpoint_name(int(json.loads(body or b"{}").get("fn_index")))
            except (ValueError, TypeError, AttributeError):
                name = None  # Gradio answers a malformed body itself
            receive = _replay(body, receive)
        kind = self.guarded.get(name or "")
        return receive, (self.limiter.waiting(kind, address) if kind else 0.0)


def _replay(body: bytes, receive: Callable) -> Callable:
    """``receive`` that gives ``body`` once, then whatever the connection says next (a disconnect)."""
    sent = False

    async def replayed() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


class _TooLarge(Exception):
    pass


def _capped(receive: Callable, limit: int) -> Callable:
    """``receive`` that stops a body (chunked or lying about its length) past ``limit`` bytes."""
    seen = 0

    async def wrapped() -> dict:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge()
        return message

    return wrapped


async def _refuse(send: Callable, status: int, text: str, retry_after: float | None = None,
                  receive: Callable | None = None, drain: int = 0) -> None:
    """Answer ``status`` with ``text``. Up to ``drain`` bytes of a body still arriving are read (and dropped)
    first, so an honest client that sent too much hears the answer instead of a reset connection."""
    seen = 0
    while receive is not None and seen <= drain:
        message = await receive()
        seen += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    body = json.dumps({"error": text}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               *SECURITY_HEADERS]
    if retry_after is not None:
        headers.append((b"retry-after", str(max(1, int(retry_after + 0.999))).encode()))
    try:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    except Exception:  # noqa: BLE001 — the response had already started (a body cut off mid-stream): drop it
        pass
