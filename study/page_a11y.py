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
    // Gradio's "add more files" is a button holding another button (axe: nested-interactive) and is labelled
    // with an untranslated key: the outer one keeps a name, the keyboard and the click (it opens the file
    // dialog); the inner one is disabled and lets clicks through
    document.querySelectorAll("button.icon-button").forEach((outer) => {
      const inner = outer.querySelector("button.upload-container");
      if (!inner) return;
      if (!inner.disabled) { inner.disabled = true; inner.style.pointerEvents = "none"; }
      if (outer.dataset.dressupUpload) return;
      outer.dataset.dressupUpload = "1";
      outer.setAttribute("aria-label", "Add more photos");
      outer.title = "Add more photos";
      outer.addEventListener("click", () => {
        const input = outer.querySelector("input[type=file]");
        if (input) input.click();
      });
    });
    // one Tab stop per radio group, arrow keys inside (Gradio names each radio alone); the pictures are named
    // for screen readers but are no Tab stop (they do nothing when pressed)
    document.querySelectorAll("#page-preference fieldset[id], #page-grids fieldset[id]").forEach((set) => {
      set.querySelectorAll("input[type=radio]").forEach((r) => { if (r.name !== set.id) r.name = set.id; });
    });
    document.querySelectorAll(".dressup-cell button").forEach((b) => { if (b.tabIndex !== -1) b.tabIndex = -1; });
    const line = document.getElementById("submit-status-line");
    // Submit refused (no description, too few photos): its message takes the line's place, under the button,
    // and stays there until the next Submit (Gradio runs no follow-up step after an error)
    const refused = line && line.dataset.busy &&
      [...document.querySelectorAll(".toast-body.error [data-testid='toast-text']")].filter((t) => !t.dataset.dressupSeen).pop();
    if (refused) {  // moved under the button: the pop-up would cover the fields it is about (phones)
      delete line.dataset.busy;
      line.textContent = refused.textContent.trim();
      line.classList.add("dressup-error");
      const close = refused.closest(".toast-body") && refused.closest(".toast-body").querySelector(".toast-close");
      if (close) close.click();
    }
    if (line && line.dataset.busy) {
      const q = [...document.querySelectorAll("#page-preference [class*='meta-text'], #page-preference .progress-text")]
        .map((e) => /queue:\\s*(\\d+)\\s*\\/\\s*\\d+/i.exec(e.textContent)).find((m) => m);
      const text = line.dataset.busy + (q ? ` You are number ${q[1]} in the queue.` : "");
      if (line.textContent !== text) line.textContent = text;
    }
  };
  // jumps (the section bar, "skip to the next model") move the focus too, not only the view
  document.addEventListener("click", (e) => {
    const a = e.target.closest && e.target.closest("a.dressup-jump");
    const to = a && document.getElementById(a.getAttribute("href").slice(1));
    if (!to) return;
    e.preventDefault();
    to.scrollIntoView({block: "start"});
    const f = to.querySelector("input, textarea, button:not([tabindex='-1'])");
    if (f) f.focus({preventScroll: true});
  });
  // which model is in view, for the section bar ("Model B of 4")
  const where = () => {
    const bar = document.getElementById("grid-nav-where");
    if (!bar) return;
    const grids = [...document.querySelectorAll(".dressup-grid[id^='grid-']")];
    let at = null;
    grids.forEach((g) => { if (g.getBoundingClientRect().top < window.innerHeight / 2) at = g; });
    const rank = document.getElementById("ranking");
    const text = rank && rank.getBoundingClientRect().top < window.innerHeight / 2 ? "Ranking"
      : `Model ${(at || grids[0] || {id: "grid-A"}).id.slice(5)} of ${grids.length}`;
    if (bar.textContent !== text) bar.textContent = text;
    document.querySelectorAll("#grid-nav a").forEach((a) => {
      const on = a.textContent.trim() === text.replace(/ of \\d+$/, "");
      if (on) a.setAttribute("aria-current", "true"); else a.removeAttribute("aria-current");
    });
  };
  window.addEventListener("scroll", () => window.requestAnimationFrame(where), {passive: true});
  document.addEventListener("change", () => {  // the list shrinks as the answers come, once it is shown
    const box = document.getElementById("finish-missing");
    if (box && box.textContent && window.dressupMissing) window.dressupMissing(false);
  });
  window.dressupMissing = (focus) => {
    const box = document.getElementById("finish-missing");
    const grids = document.getElementById("page-grids");
    if (!box) return;
    if (!grids || grids.offsetParent === null) { box.textContent = ""; return; }
    const by = {};
    let first = null;
    const add = (letter, what, el) => { (by[letter] = by[letter] || []).push(what); first = first || el; };
    document.querySelectorAll("#page-grids fieldset[id^='wear-'], #page-grids fieldset[id^='rating-']").forEach((f) => {
      if (f.querySelector("input:checked")) return;
      const m = /^(wear|rating)-([A-D])([1-4])?$/.exec(f.id);
      if (m) add(`Model ${m[2]}`, m[1] === "wear" ? `picture ${m[3]}` : "rating", f.querySelector("input"));
    });
    document.querySelectorAll("#page-grids [id^='rank-'] input").forEach((i) => {
      if (!i.value) add("Ranking", (i.closest("[id]").querySelector("[data-testid='block-info'], label") || {}).textContent
        || "a place", i);
    });
    const parts = Object.entries(by).map(([k, v]) => `${k}: ${v.join(", ")}`);
    box.textContent = parts.length ? `Still to answer: ${parts.join("; ")}.` : "";
    if (focus && first) { first.scrollIntoView({block: "center"}); first.focus({preventScroll: true}); }
  };
  new MutationObserver(label).observe(document.body, {childList: true, subtree: true, attributes: true,
                                                       characterData: true, attributeFilter: ["src", "alt"]});
  label();
}"""

BUSY = "Preparing your recommendations… This can take up to a minute; please keep this page open."
STATUS_HTML = '<p id="submit-status-line" role="status" aria-live="polite"></p>'
# the status line shows the moment Submit is pressed (no round trip to the server) and empties when it ends
# errors shown until then are marked seen: one that comes while the line is busy replaces it (label())
STATUS_ON = f"""() => {{ const l = document.getElementById("submit-status-line");
  document.querySelectorAll("[data-testid='toast-text']").forEach((t) => {{ t.dataset.dressupSeen = "1"; }});
  document.querySelectorAll(".toast-body.error .toast-close").forEach((b) => b.click());  // stale errors go
  if (l) {{ l.dataset.busy = {BUSY!r}; l.textContent = {BUSY!r}; l.classList.remove("dressup-error"); }} }}"""
STATUS_OFF = """() => { const l = document.getElementById("submit-status-line");
  if (l) { delete l.dataset.busy; l.textContent = ""; l.classList.remove("dressup-error"); } }"""

# after Finish: list what is still unanswered next to the button and move the focus to the first of it
FINISH_CHECK = "() => { if (window.dressupMissing) window.dressupMissing(true); }"
MISSING_HTML = '<p id="finish-missing" role="alert"></p>'


def nav_html(letters: list[str]) -> str:
    """The grids page's section bar: a link per model and to the ranking, and where the participant is."""
    links = "".join(f'<a class="dressup-jump" href="#grid-{x}" aria-label="Model {x}">'
                    f'<span class="dressup-wide">Model </span>{x}</a>' for x in letters)
    return (f'<nav id="grid-nav" aria-label="Sections">{links}<a class="dressup-jump" href="#ranking">Ranking</a>'
            f'<span id="grid-nav-where">Model {letters[0]} of {len(letters)}</span></nav>')


def skip_html(letters: list[str], letter: str) -> str:
    """A link shown on focus at the top of a grid: past its questions to the next model (or the ranking)."""
    i = letters.index(letter)
    to, name = (f"grid-{letters[i + 1]}", f"Model {letters[i + 1]}") if i + 1 < len(letters) else ("ranking", "the ranking")
    return f'<a class="dressup-jump dressup-skip" href="#{to}">Skip to {name}</a>'


CSS = """
.dressup-confirm:not([data-open]) { display: none !important; }
.dressup-confirm { border: 2px solid var(--error-border-color, #b91c1c); border-radius: 8px; padding: 12px; }
#submit-status-line:empty { display: none; }
#finish-missing:empty { display: none; }
#finish-missing { color: var(--error-text-color, #b91c1c); font-weight: 600; margin: 4px 0; }
#grid-nav { position: sticky; top: 0; z-index: 20; display: flex; flex-wrap: wrap; gap: 4px 12px; align-items: center;
            padding: 8px 12px; background: var(--background-fill-primary); border-bottom: 1px solid var(--border-color-primary); }
#grid-nav a { color: var(--link-text-color, #3730a3); text-decoration: underline; padding: 6px 8px; min-width: 24px;
             min-height: 24px; display: inline-block; text-align: center; }
#grid-nav a[aria-current] { font-weight: 700; text-decoration: none; }
#grid-nav-where { margin-left: auto; font-weight: 600; }
.dressup-grid, #ranking { scroll-margin-top: 64px; }
.dressup-skip:not(:focus) { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
.dressup-cell button:focus-visible, #page-grids input:focus-visible, #page-preference input:focus-visible {
  outline: 3px solid var(--color-accent, #4338ca); outline-offset: 2px; }
/* the session link's Copy button sat under its wrapped label on phones: keep it on top, the label clear of it */
#session-link .icon-button-wrapper { z-index: 10; }
#session-link [data-testid="block-info"] { display: inline-block; margin-right: 44px; }
@media (max-width: 480px) { .dressup-wide { display: none; } }
#submit-status-line { font-weight: 600; margin: 4px 0; }
#submit-status-line.dressup-error { color: var(--error-text-color, #b91c1c); }
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
        checkbox_label_background_fill_selected="*primary_700",  # white on *primary_500 is 4.46:1
    )
