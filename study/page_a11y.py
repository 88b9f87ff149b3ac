"""What the participant page adds to Gradio's components so that everyone can use it (issue 19): names for
the grid pictures and their "Wear it?" questions, a spoken and visible line while the grids are prepared, a
confirmation before anything is deleted, and a theme whose text contrasts enough.

Blinding: every name is built in the browser from the element ids alone ("img-B3" → "Model B, picture 3"),
which carry only a letter and a position; nothing here knows which arm is behind a letter.
"""
from __future__ import annotations

from typing import Any

import gradio as gr

# Runs once when the page loads (launch(js=...)). Gradio renders a grid picture as <img alt=""> inside a button
# with no name and a radio group as a <fieldset> without a legend; each is named here, again whenever Gradio
# re-renders it. The status line mirrors Gradio's queue position when Gradio shows one.
PAGE_JS = """() => {
  const name = (id) => {
    const m = /^(?:img|wear)-([A-D])([1-4])$/.exec(id || "");
    return m && `Model ${m[1]}, picture ${m[2]}`;
  };
  const label = () => {
    document.querySelectorAll(".dressup-cell[id^='img-']").forEach((cell) => {
      const n = name(cell.id);
      cell.querySelectorAll("img").forEach((img) => { if (n && img.alt !== n) img.alt = n; });
    });
    document.querySelectorAll("fieldset[id^='wear-']").forEach((set) => {
      const n = name(set.id) && `${name(set.id)}: would you wear it?`;
      if (n && set.getAttribute("aria-label") !== n) set.setAttribute("aria-label", n);
    });
    const line = document.getElementById("submit-status-line");
    if (line && line.dataset.busy) {
      const q = [...document.querySelectorAll("#page-preference .meta-text, #submit-preference .meta-text")]
        .map((e) => e.textContent.trim()).find((t) => /queue/i.test(t));
      const text = line.dataset.busy + (q ? ` (${q.replace(/\\s+/g, " ")})` : "");
      if (line.textContent !== text) line.textContent = text;
    }
  };
  new MutationObserver(label).observe(document.body, {childList: true, subtree: true, attributes: true,
                                                       attributeFilter: ["src", "alt"]});
  label();
}"""

BUSY = "Preparing your recommendations… This can take up to a minute; please keep this page open."
STATUS_HTML = '<p id="submit-status-line" role="status" aria-live="polite"></p>'
# the status line shows the moment Submit is pressed (no round trip to the server) and empties when it ends
STATUS_ON = f"""() => {{ const l = document.getElementById("submit-status-line");
  if (l) {{ l.dataset.busy = {BUSY!r}; l.textContent = {BUSY!r}; }} }}"""
STATUS_OFF = """() => { const l = document.getElementById("submit-status-line");
  if (l) { delete l.dataset.busy; l.textContent = ""; } }"""

CSS = """
.dressup-confirm:not([data-open]) { display: none !important; }
.dressup-confirm { border: 2px solid var(--error-border-color, #b91c1c); border-radius: 8px; padding: 12px; }
#submit-status-line:empty { display: none; }
#submit-status-line { font-weight: 600; margin: 4px 0; }
"""


def _toggle(elem_id: str, open_: bool, focus: str | None = None, clear: bool = False) -> str:
    """A browser-only handler: open or close the confirmation ``elem_id`` (and move the focus into it)."""
    act = 'c.setAttribute("data-open", "")' if open_ else 'c.removeAttribute("data-open")'
    move = f'const f = document.querySelector("#{focus}"); if (f) f.focus();' if focus else ""
    return f"""() => {{ const c = document.getElementById("{elem_id}"); if (c) {{ {act}; }} {move}
  document.querySelectorAll(".toast-close").forEach((b) => b.click()); {'return "";' if clear else ""} }}"""


def confirm_step(first: gr.Button, elem_id: str, warning: str, yes_label: str,
                 clears: gr.Markdown | None = None) -> gr.Button:
    """Under the button ``first``, a confirmation hidden until ``first`` is pressed: ``warning`` and a "yes"
    button (returned: wire the deletion to it) and Cancel. Opening, cancelling and the closing on "yes" run in
    the browser only (no endpoint is added); "yes" also clears earlier messages: toasts, and ``clears``."""
    with gr.Column(elem_id=elem_id, elem_classes=["dressup-confirm"]):
        gr.Markdown(warning, elem_id=f"{elem_id}-text")
        with gr.Row():
            yes = gr.Button(yes_label, variant="stop", elem_id=f"{elem_id}-yes")
            cancel = gr.Button("Cancel, keep my data", variant="secondary", elem_id=f"{elem_id}-cancel")
    first.click(None, js=_toggle(elem_id, True, focus=f"{elem_id}-cancel"))
    cancel.click(None, js=_toggle(elem_id, False, focus=first.elem_id))
    yes.click(None, None, [clears] if clears else None, js=_toggle(elem_id, False, clear=clears is not None))
    return yes


def theme() -> Any:
    """Gradio's Soft theme with text dark enough for WCAG AA (4.5:1) on its light backgrounds."""
    return gr.themes.Soft().set(
        block_title_text_color="*primary_800",  # Soft's *primary_500 on *primary_100 is 3.6:1
        block_info_text_color="*neutral_700", block_label_text_color="*neutral_700",
        body_text_color_subdued="*neutral_600",
        button_primary_background_fill="*primary_700", button_primary_background_fill_hover="*primary_800",
        button_primary_text_color="white",
    )
