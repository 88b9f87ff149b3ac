"""The page participants see (Gradio Blocks), assembled and served: every rule lives in ``study.session``.

One page with four sections shown in turn (welcome → preference → recommendations → done); a reload or a
``?session=`` link re-renders the section the session is at, with every answer given so far. The page is
built from parts, each in its own module:

- ``study.page_layout``: the components, section by section (``Page``, ``output_names``);
- ``study.page_events``: the handlers and which event triggers each;
- ``study.page_render``: a session's progress as ``{component: update}``;
- ``study.page_text``, ``study.page_files``, ``study.page_guard``, ``study.page_a11y``: the words, Gradio's
  file folder, the handlers' error handling, and what makes the page usable by everyone;
- ``study.researcher_page``: the researcher page at /researcher.

Blinding: component labels, elem_ids and endpoint names carry only letters A-D and positions 1-4; every
cell is served as ``<content sha256>/image.png``, the very bytes the store recorded; handlers turn every exception
into a participant message (``gr.Error``), so no traceback text (which could name an arm) reaches the browser.
Every endpoint is "undocumented": callable (Gradio cannot prevent that, so the session validates again), but
absent from the API page.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
from starlette.middleware import Middleware

from study import page_a11y as a11y
from study.http_guard import HTTPGuard
from study.page_events import API, LINK_JS, wire_page
from study.page_files import TEMP_FILE_CLEANUP, replace_original, served
from study.page_layout import CSS, build_page, output_names
from study.page_text import OOPS, photos_note, welcome_text
from study.researcher import researcher_password
from study.researcher_page import researcher_page
from study.schema import LETTERS
from study.session import Sessions

__all__ = [  # also importable from here, where they used to live
    "API", "CSS", "GUESSED", "LINK_JS", "OOPS", "QUEUE_SIZE", "TEMP_FILE_CLEANUP", "build_ui",
    "event_body_limit", "launch", "output_names", "photos_note", "replace_original", "served", "welcome_text",
]

# endpoints whose wrong answers back off (study.limits): an address told to wait is refused at the HTTP edge
GUESSED = {"withdraw": "withdraw/address", "withdraw_done": "withdraw/address",
           "researcher_counts": "researcher/address", "researcher_export": "researcher/address"}
# Waiting events of all clients; each address is budgeted (study.limits), so one client cannot fill it
QUEUE_SIZE = 2048


def build_ui(sessions: Sessions) -> gr.Blocks:
    """The participant page (and, when its password env var is set, the researcher page at /researcher)."""
    letters = list(LETTERS[: len(sessions.arm_names)])
    sessions.on_upload_stored = replace_original
    with gr.Blocks(title="Dress-UP study", analytics_enabled=False, delete_cache=TEMP_FILE_CLEANUP) as demo:
        page = build_page(sessions, letters)
        wire_page(demo, page, sessions)
    if researcher_password(sessions.study) is not None:
        researcher_page(demo, sessions)
    return demo


def launch(demo: gr.Blocks, sessions: Sessions, *, host: str | None = None, port: int | None = None,
           prevent_thread_lock: bool = False, max_concurrency: int = 1) -> Any:
    """Serve the study behind ``study.http_guard``. Up to ``SUBMITS_AT_ONCE`` Submits run together (their arm
    work shares one bounded pool, and Stable Diffusion batches their images); answers are cheap and unlimited
    but budgeted per address."""
    study = sessions.study
    demo.queue(default_concurrency_limit=max_concurrency, max_size=QUEUE_SIZE)
    quiet_idle_queue(demo)
    # never serve results (answers, uploads, stimuli by arm-free hash) nor models and catalogue; a folder that
    # holds Gradio's own temp dir cannot be blocked without blocking every image the page shows
    temp = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()
    blocked = [str(p) for p in (study.results_dir, study.cache_dir, study.catalogue.root)
               if not temp.is_relative_to(p.resolve())]
    return demo.launch(
        server_name=host,
        server_port=port,
        show_error=True,
        ssr_mode=False,
        max_file_size=int(study.ui.max_upload_mb * 1024 * 1024),
        blocked_paths=blocked,
        enable_monitoring=False,
        run_history=False,
        footer_links=[],
        prevent_thread_lock=prevent_thread_lock,
        quiet=True,
        css=CSS + a11y.CSS,
        js=a11y.PAGE_JS,
        theme=a11y.theme(),
        state_session_capacity=10000,
        app_kwargs={"middleware": [Middleware(
            HTTPGuard, limiter=sessions.clients.limiter, has_session=sessions.clients.has_session,
            event_limit=event_body_limit(study.ui.max_text_chars, len(sessions.arm_names)),
            upload_limit=int(study.ui.max_photos * (study.ui.max_upload_mb * 1024 * 1024 + 65536)),
            guarded=GUESSED, endpoint_name=lambda i: getattr(demo.fns.get(i), "api_name", None))]},
    )


IDLE_POLL_SECONDS = 0.01


def quiet_idle_queue(demo: gr.Blocks, seconds: float = IDLE_POLL_SECONDS) -> None:
    """Let the queue wait ``seconds`` between looks for work when it has none, instead of Gradio's 1 ms.

    Gradio's queue loop (``gradio.queueing.Queue.start_processing``) polls every ``sleep_when_free`` = 1 ms on
    Linux while idle: about 9% of a core per app doing nothing (measured: bench/RESULTS.md, "Idle app"). A
    Space waiting for participants burns that all day, and on a 2-core machine the CPU it takes slows the work
    that matters, a Submit's model calls. 10 ms is at most 10 ms more before a queued event starts, far below a
    Submit's seconds. Gradio has no public setting for it; if a release renames the attribute, nothing breaks:
    the queue keeps its own value.
    """
    queue = getattr(demo, "_queue", None)
    if queue is not None and isinstance(getattr(queue, "sleep_when_free", None), (int, float)):
        queue.sleep_when_free = max(float(queue.sleep_when_free), float(seconds))


def event_body_limit(max_text_chars: int, letters: int) -> int:
    """The largest body a page event can honestly send: every text box (one per letter, the overall one, the
    description) full of characters JSON escapes to six bytes, plus room for the rest."""
    return 6 * max_text_chars * (letters + 2) + 65536
