"""The researcher page at /researcher (a Gradio route): live counts per arm and the analysts' export.

Built only when the study's password env var is set (``study.researcher``); reached by its URL only (the
page navigation is hidden by the participant page's CSS). Its endpoints are private and every call checks
the password within the guessing budgets of the address and of the page as a whole (``study.clients``).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from study.errors import ParticipantError
from study.page_guard import address, guard
from study.researcher import check_researcher, dumps_summary, researcher_export, researcher_summary
from study.session import Sessions


def researcher_page(demo: gr.Blocks, sessions: Sessions) -> None:
    """Counts per arm and exports, behind the password in the study's env var (the page names arms)."""

    def checked(password: str, request: gr.Request) -> None:
        """The password, within the guessing budgets of the address and of the page as a whole."""
        sessions.clients.guess(("researcher/address", "researcher/all"), (address(request), "page"),
                               lambda: check_researcher(sessions.study, password), ParticipantError)

    @guard
    def counts(password: str, request: gr.Request) -> str:
        checked(password, request)
        return "```json\n" + dumps_summary(researcher_summary(sessions, password)) + "\n```"

    @guard
    def export(password: str, request: gr.Request) -> list[str]:
        checked(password, request)
        out = Path(tempfile.mkdtemp(prefix="dressup-export-"))
        return [str(p) for p in researcher_export(sessions, password, out)]

    with demo.route("Researcher", "researcher", show_in_navbar=False):
        gr.Markdown(f"# Researcher: {sessions.study.name}")
        password = gr.Textbox(label="Password", type="password", elem_id="researcher-password")
        with gr.Row():
            counts_btn = gr.Button("Show live counts")
            export_btn = gr.Button("Export answers")
        counts_md = gr.Markdown(elem_id="researcher-counts")
        files = gr.File(label="Exports", file_count="multiple", interactive=False, elem_id="researcher-exports")
        counts_btn.click(counts, [password], [counts_md], api_name="researcher_counts", api_visibility="private",
                         concurrency_limit=None)
        export_btn.click(export, [password], [files], api_name="researcher_export", api_visibility="private")
