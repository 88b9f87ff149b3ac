"""What every page handler shares: errors turned into participant messages, and who is asking.

Handlers raise ``ParticipantError``/``AnswerRefused``/``DatabaseUnavailable`` with messages written for the
participant; any other exception could name an arm, so it is logged in full and the browser gets ``OOPS``
(no traceback text ever reaches it). The request helpers name the client's address (behind a proxy) and the
browser tab, for the per-address and per-tab budgets of ``study.clients``.
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable

import gradio as gr

from study.database import DatabaseUnavailable
from study.errors import AnswerRefused, ParticipantError
from study.http_guard import client_address
from study.page_text import NO_SESSION, OOPS
from study.session import Visit

log = logging.getLogger(__name__)


def guard(fn: Callable) -> Callable:
    """Participant-caused errors become their message; anything else a neutral one (logged in full)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ParticipantError, AnswerRefused, DatabaseUnavailable) as e:
            # stays until the participant closes it (a timed toast vanished before a long list was read)
            raise gr.Error(str(e), duration=None, print_exception=False) from None
        except Exception:  # noqa: BLE001 — the message may name an arm; the participant sees a neutral one
            log.exception("handler %s failed", fn.__name__)
            raise gr.Error(OOPS, print_exception=False) from None

    return wrapper


def address(request: gr.Request | None) -> str | None:
    """The client's address (the proxy's forwarded one where trusted), or None without a request."""
    if request is None:
        return None
    return client_address(dict(request.headers), request.client.host if request.client else None)


def tab(request: gr.Request | None) -> str | None:
    """The browser tab (Gradio's session hash), or None."""
    return getattr(request, "session_hash", None) or None


def session_of(visit: Visit | None) -> str:
    """The page's session id; refused with a participant message before consent."""
    if visit is None or not visit.session_id:
        raise ParticipantError(NO_SESSION)
    return visit.session_id
