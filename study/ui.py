"""The page participants see (Gradio Blocks): layout and wiring only; every rule lives in ``study.session``.

One page with four sections shown in turn (welcome → preference → recommendations → done); a reload or a
``?session=`` link re-renders the section the session is at, with every answer given so far. Each answer is
sent the moment it is given (``.input`` events, so re-rendering saved values never writes them back).

Blinding: component labels, elem_ids and endpoint names carry only letters A-D and positions 1-4; every
cell is served as ``<content sha256>/image.png``, the very bytes the store recorded; handlers turn every exception
into a participant message (``gr.Error``), so no traceback text (which could name an arm) reaches the browser.
Every endpoint is "undocumented": callable (Gradio cannot prevent that, so the session validates again), but
absent from the API page.
"""
from __future__ import annotations

import functools
import logging
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any, Callable

import gradio as gr
from starlette.middleware import Middleware

from study.schema import GRID_SIZE, LETTERS
from study.session import (
    ParticipantError,
    Progress,
    Sessions,
    Visit,
    atomic_write,
    dumps_summary,
    parse_entry,
    SUBMITS_AT_ONCE,
    check_researcher,
    researcher_export,
    researcher_password,
    researcher_summary,
    session_id_from_link,
)
from study.database import DatabaseUnavailable
from study.http_guard import HTTPGuard, client_address
from study import page_a11y as a11y
from study.store import AnswerRefused

log = logging.getLogger(__name__)

API = "undocumented"
# endpoints whose wrong answers back off (study.limits): an address told to wait is refused at the HTTP edge
GUESSED = {"withdraw": "withdraw/address", "withdraw_done": "withdraw/address",
           "researcher_counts": "researcher/address", "researcher_export": "researcher/address"}
OOPS = "Something went wrong on our side. Please try again in a moment; your answers so far are saved."
GENDER_CHOICES = [("Any", "any"), ("Menswear", "menswear"), ("Womenswear", "womenswear")]
WEAR_CHOICES = ["Yes", "No"]
RANKS = ("Best", "Second", "Third")
CONFIRM_NOW = ("**This deletes everything you gave in this session: your description, your photos and your "
               "answers; this cannot be undone.** Delete it?")
CONFIRM_CODE = ("**This deletes everything stored under this completion code: the description, the photos and "
                "the answers; this cannot be undone.** Delete it?")

# Builds the resume link from the session id in the browser (the server cannot know its public URL behind
# Spaces' proxy) and puts it in the address bar, so a reload resumes the session.
LINK_JS = """(sid) => {
  if (!sid) { return ""; }
  if (sid.startsWith("http")) { return sid; }
  const u = new URL(window.location.href);
  u.searchParams.set("session", sid);
  window.history.replaceState(null, "", u.toString());
  return u.toString();
}"""

# The researcher page is reached by its URL only: hide the page navigation Gradio adds for routes.
# Grid cells are square at every screen width (the served PNGs are square), without a toolbar.
CSS = """
.nav-holder { display: none !important; }
.dressup-cell { aspect-ratio: 1 / 1; height: auto !important; padding: 0 !important; }
.dressup-cell .image-container, .dressup-cell button, .dressup-cell .image-frame { width: 100%; height: 100%; }
.dressup-cell img { width: 100%; height: 100%; object-fit: contain; }
.dressup-cell .icon-button-wrapper { display: none !important; }
.dressup-grid { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px; }
.dressup-grid .gr-group { gap: 4px; }
"""


def welcome_text(sessions: Sessions) -> str:
    ui = sessions.study.ui
    n = len(sessions.arm_names)
    letters = ", ".join(LETTERS[:n])
    return f"""# {ui.title}

**What this study is.** You describe your clothing style in your own words and add {ui.min_photos}–{ui.max_photos}
photos of clothes you like. {n} recommendation systems each suggest four garments; they are shown under the
neutral names Model {letters}, in an order that differs between participants. You tell us which garments you
would wear, rate and rank the systems, and may leave comments. It takes about 10 minutes.

**What is stored.** Your description, your photos (stored privately, with camera data such as location removed,
never shown to anyone else), your answers, and a random participant id (or your Prolific ID if you came from
Prolific). No names, e-mail addresses or IP addresses are stored. Answers are used for research on fashion
recommendation and reported only in aggregate.

**How to withdraw.** You may stop at any time. At the end you receive a completion code; with it you can delete
all your data later from this page (section *Withdraw*). Taking part is voluntary.

By pressing **I agree, start** you confirm you are 18 or older and agree to take part.
"""


def output_names(letters: list[str]) -> list[str]:
    """Names of the page values every navigation endpoint returns, in the order an API client receives them
    (``gr.State`` and layout columns are not part of the API's outputs)."""
    cells = [f"{x}{i}" for x in letters for i in range(1, GRID_SIZE + 1)]
    return (["link", "text", "gender", "avoid", "note", "photos"] + [f"img_{c}" for c in cells] + [f"wear_{c}" for c in cells]
            + [f"rating_{x}" for x in letters] + [f"feedback_{x}" for x in letters]
            + [f"rank_{i + 1}" for i in range(max(1, len(letters) - 1))] + ["rank_last", "overall", "done"])


def photos_note(n: int) -> str:
    """The style page's note on the photos stored so far ("" when none)."""
    return f"Your {n} photo{'s' * (n != 1)} {'are' if n != 1 else 'is'} saved." if n else ""


def served(stimulus: Path, name: str = "image.png") -> str:
    """A stored cell as the page serves it: a copy in Gradio's cache folder at ``<sha256>/image.png``.

    Gradio serves a path inside its cache folder as it is, so the participant gets the stored bytes without
    the decode and PNG re-encode a PIL output costs (about 10 ms a cell, 16 cells a Submit), and every cell has
    the same file name. Gradio ages these copies out with its own (``delete_cache``); a later page view makes
    the copy again from the results folder, which is never served itself.
    """
    target = Path(gr.utils.get_upload_folder()) / stimulus.stem / name
    try:
        os.utime(target)  # handed out again: restart its clock, as Gradio does for its own cached copies
    except FileNotFoundError:
        atomic_write(target, stimulus.read_bytes(), durable=False)  # the results folder keeps the durable one
    return str(target)


def _guard(fn: Callable) -> Callable:
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


def _address(request: gr.Request | None) -> str | None:
    if request is None:
        return None
    return client_address(dict(request.headers), request.client.host if request.client else None)


def replace_original(uploaded: Path, clean: bytes) -> None:
    """Overwrite Gradio's copy of an uploaded photo (as uploaded: EXIF, GPS) with the study's clean copy, the
    moment that copy is stored. Overwritten, not deleted: Gradio names uploads by content, so another
    participant who uploaded the same bytes holds the same path and still needs a picture there."""
    folder = Path(gr.utils.get_upload_folder()).resolve()
    path = uploaded.resolve()
    if path.is_relative_to(folder) and path.is_file():
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.clean")  # two participants may race here
        try:
            tmp.write_bytes(clean)
            os.replace(tmp, path)
        except OSError:  # the participant's answers are stored; Gradio's hourly cleanup still removes it
            log.warning("could not replace an uploaded original in Gradio's folder", exc_info=True)
            tmp.unlink(missing_ok=True)


def _tab(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None) or None


def _session_of(visit: Visit | None) -> str:
    if visit is None or not visit.session_id:
        raise ParticipantError("Please start the study first (press 'I agree, start'), or open your session link.")
    return visit.session_id


# Gradio keeps every uploaded original (EXIF and GPS included) and every served picture in its temp folder,
# reachable by anyone holding the URL. The study keeps its own cleaned copies under results/, so Gradio's are
# only needed while a page shows them: delete them hourly once an hour old (and all of them at restart).
TEMP_FILE_CLEANUP = (3600, 3600)
# Waiting events of all clients; each address is budgeted (study.limits), so one client cannot fill it
QUEUE_SIZE = 2048  # (every seconds, older than seconds): gr.Blocks(delete_cache=...)


def build_ui(sessions: Sessions) -> gr.Blocks:
    """The participant page (and, when its password env var is set, the researcher page at /researcher)."""
    study = sessions.study
    ui = study.ui
    letters = list(LETTERS[: len(sessions.arm_names)])
    letter_choices = [(f"Model {x}", x) for x in letters]
    clients = sessions.clients
    sessions.on_upload_stored = replace_original

    with gr.Blocks(title="Dress-UP study", analytics_enabled=False, delete_cache=TEMP_FILE_CLEANUP) as demo:
        visit_state = gr.State(None)

        # --- 1. welcome and consent -----------------------------------------------------------------
        with gr.Column(visible=True, elem_id="page-welcome") as page_welcome:
            gr.Markdown(welcome_text(sessions))
            consent_btn = gr.Button("I agree, start", variant="primary", elem_id="consent")
            with gr.Accordion("Continue a session you started earlier", open=False):
                resume_box = gr.Textbox(label="Your session link", placeholder="https://...?session=...",
                                        elem_id="resume-link")
                resume_btn = gr.Button("Continue", elem_id="resume")
            with gr.Accordion("Withdraw: delete your data", open=False, elem_id="withdraw-welcome"):
                gr.Markdown("Enter the completion code you received at the end of the study.")
                code_box1 = gr.Textbox(label="Completion code", placeholder="DU-1A2B3C4D", elem_id="withdraw-code-1")
                withdraw_btn1 = gr.Button("Withdraw and delete my data", variant="stop", elem_id="withdraw-1")
                withdraw_msg1 = gr.Markdown()
                withdraw_yes1 = a11y.confirm_step(withdraw_btn1, "withdraw-1-confirm", CONFIRM_CODE,
                                                  "Yes, delete my data", clears=withdraw_msg1)

        # --- shared: the session link ------------------------------------------------------------------
        link_box = gr.Textbox(label="Your personal link: save it to continue later", interactive=False,
                              visible=False, buttons=["copy"], elem_id="session-link")

        # --- 2. preference ----------------------------------------------------------------------------
        with gr.Column(visible=False, elem_id="page-preference") as page_pref:
            gr.Markdown("# Your style\nTell us what you like to wear, then add photos of clothes you like.")
            pref_text = gr.Textbox(label="Describe your style in your own words", lines=4,
                                   max_length=ui.max_text_chars, elem_id="pref-text",
                                   placeholder="e.g. relaxed, earthy colours, linen shirts, nothing too tight")
            photos = gr.File(label=f"{ui.min_photos} to {ui.max_photos} photos of clothes you like",
                             file_count="multiple", file_types=["image"], type="filepath", elem_id="pref-photos")
            with gr.Accordion("Or take a photo with your camera", open=False):
                camera = gr.Image(label="Camera photo (counts as one photo)", sources=["webcam"], type="filepath",
                                  elem_id="pref-camera")
            pref_note = gr.Markdown(elem_id="pref-note")
            with gr.Row():
                gender = gr.Radio(GENDER_CHOICES, value="any", label="Show me", elem_id="pref-gender", min_width=300)
                avoid = gr.Textbox(label="Colours to avoid (optional, separated by commas)", max_length=400,
                                   elem_id="pref-avoid", min_width=300)
            submit_btn = gr.Button("Show me recommendations", variant="primary", elem_id="submit-preference")
            gr.HTML(a11y.STATUS_HTML, elem_id="submit-status", padding=False)

        # --- 3. the grids and the answers ------------------------------------------------------------
        images: list[gr.Image] = []
        wears: list[gr.Radio] = []
        ratings: list[gr.Radio] = []
        feedbacks: list[gr.Textbox] = []
        with gr.Column(visible=False, elem_id="page-grids") as page_grids:
            gr.Markdown(
                "# Recommendations\nFor each model: would you wear each garment, how well does the model "
                "match your style, and anything you want to tell us. Answers are saved as you give them.")
            gr.HTML(a11y.nav_html(letters), padding=False)
            for pair_start in range(0, len(letters), 2):
                with gr.Row(equal_height=False):
                    for letter in letters[pair_start:pair_start + 2]:
                        with gr.Column(elem_classes=["dressup-grid"], elem_id=f"grid-{letter}", min_width=340):
                            gr.HTML(a11y.skip_html(letters, letter), padding=False)
                            gr.Markdown(f"## Model {letter}")
                            for row in range(GRID_SIZE // 2):
                                with gr.Row(equal_height=True):
                                    for col in range(2):
                                        pos = row * 2 + col + 1
                                        with gr.Column(min_width=140):
                                            images.append(gr.Image(
                                                label=f"Model {letter}, picture {pos}", show_label=False,
                                                type="filepath", format="png", interactive=False, buttons=[],
                                                elem_id=f"img-{letter}{pos}",
                                                elem_classes=["dressup-cell"]))
                                            wears.append(gr.Radio(WEAR_CHOICES, label=f"{pos}. Wear it?",
                                                                  elem_id=f"wear-{letter}{pos}"))
                            ratings.append(gr.Radio(
                                list(range(1, 11)), label=f"Rate Model {letter}: 1 = not my style at all, "
                                "10 = exactly my style", elem_id=f"rating-{letter}"))
                            feedbacks.append(gr.Textbox(label=f"Comments on Model {letter} (optional)", lines=2,
                                                        max_length=ui.max_text_chars, elem_id=f"feedback-{letter}"))
            gr.Markdown("## Ranking\nWhich model suited you best? Each model can take one place.", elem_id="ranking")
            with gr.Row():
                rank_dd = [gr.Dropdown(letter_choices, value=None, label=name, elem_id=f"rank-{i + 1}")
                           for i, name in enumerate(RANKS[: max(1, len(letters) - 1)])]
            last_md = gr.Markdown(elem_id="rank-last")
            overall = gr.Textbox(label="Anything else you want to tell us? (optional)", lines=3,
                                 max_length=ui.max_text_chars, elem_id="feedback-overall")
            gr.HTML(a11y.MISSING_HTML, padding=False)
            finish_btn = gr.Button("Finish", variant="primary", elem_id="finish")
            with gr.Accordion("Stop and delete my answers", open=False):
                stop_btn = gr.Button("Withdraw now and delete everything I gave", variant="stop",
                                     elem_id="withdraw-now")
                stop_yes = a11y.confirm_step(stop_btn, "withdraw-now-confirm", CONFIRM_NOW, "Yes, delete everything")

        # --- 4. done ------------------------------------------------------------------------------------
        with gr.Column(visible=False, elem_id="page-done") as page_done:
            done_md = gr.Markdown(elem_id="done")
            with gr.Accordion("Withdraw: delete your data", open=False, elem_id="withdraw-done"):
                code_box2 = gr.Textbox(label="Completion code", placeholder="DU-1A2B3C4D", elem_id="withdraw-code-2")
                withdraw_btn2 = gr.Button("Withdraw and delete my data", variant="stop", elem_id="withdraw-2")
                withdraw_msg2 = gr.Markdown()
                withdraw_yes2 = a11y.confirm_step(withdraw_btn2, "withdraw-2-confirm", CONFIRM_CODE,
                                                  "Yes, delete my data", clears=withdraw_msg2)

        # --- rendering ----------------------------------------------------------------------------------
        outputs = [visit_state, page_welcome, page_pref, page_grids, page_done, link_box, pref_text, gender, avoid,
                   pref_note, photos, *images, *wears, *ratings, *feedbacks, *rank_dd, last_md, overall, done_md]

        assert len(outputs) == 5 + len(output_names(letters)), "output_names() must mirror the outputs"

        def rank_updates(order: list[str | None]) -> list[Any]:
            """Each place offers only the letters not taken by the places above it."""
            ups, taken = [], []
            for value in order:
                free = [c for c in letter_choices if c[1] not in taken]
                value = value if value in [c[1] for c in free] else None
                ups.append(gr.update(choices=free, value=value))
                if value:
                    taken.append(value)
            remaining = [x for x in letters if x not in taken]
            last = f"**{'Fourth' if len(letters) == 4 else 'Last'}:** Model {remaining[0]}" \
                if len(remaining) == 1 else ""
            return ups + [last]

        def render(visit: Visit | None, p: Progress | None, page: str) -> list[Any]:
            shown = p is not None and bool(p.grids)
            pages = [gr.update(visible=page == name) for name in ("welcome", "preference", "grids", "done")]
            head = [visit, *pages, gr.update(value=p.session_id if p else "", visible=page in ("preference", "grids"))]
            if p is None:
                return head + [gr.update()] * (len(outputs) - len(head))
            note = photos_note(p.photos_saved) if not shown else ""
            kept = [served(f, f"photo-{i}.jpg") for i, f in enumerate(p.photos, 1)] if page == "preference" else []
            out = head + [p.text, p.gender, p.avoid_colours, note, kept or None]
            out += [served(p.grids[x][i]) if shown else None for x in letters for i in range(GRID_SIZE)]
            out += [({True: "Yes", False: "No"}.get(p.wear.get(x, {}).get(i + 1))) for x in letters
                    for i in range(GRID_SIZE)]
            out += [p.ratings.get(x) for x in letters]
            out += [p.feedback.get(x, "") for x in letters]
            order = (p.ranking + [None] * len(rank_dd))[: len(rank_dd)]
            out += rank_updates(order)
            out += [p.feedback.get("", ""), done_text(p)]
            return out

        def done_text(p: Progress) -> str:
            if not p.completion_code:
                return ""
            text = (f"# Thank you!\nYour completion code is **{p.completion_code}**. Keep it: with it you can "
                    "withdraw and delete your data later.")
            if p.completion_url:
                text += f"\n\n[Return to Prolific to confirm your participation]({p.completion_url})"
            return text

        def page_for(p: Progress) -> str:
            if p.status == "completed":
                return "done"
            return "grids" if p.grids else "preference"

        # --- handlers -------------------------------------------------------------------------------------
        @_guard
        def on_load(current: Visit | None, request: gr.Request) -> list[Any]:
            if current is not None and current.session_id:  # "I agree" was pressed before the page finished loading
                p = sessions.progress(current.session_id)
                return render(current, p, page_for(p))
            visit, resume_id = parse_entry(dict(request.query_params) if request else {})
            if resume_id:
                try:
                    visit, p = sessions.resume(resume_id)
                except ParticipantError as e:
                    gr.Warning(str(e))
                    return render(visit, None, "welcome")
                clients.holds_session(_address(request))
                return render(visit, p, page_for(p))
            return render(visit, None, "welcome")

        @_guard
        def consent(visit: Visit | None, request: gr.Request) -> list[Any]:
            if visit is None:  # pressed before the page's load event ran: read the URL's ids here
                visit = parse_entry(dict(request.query_params) if request else {})[0]
            given = visit
            visit = clients.consent(_tab(request), _address(request), lambda: sessions.consent(given))
            p = sessions.progress(visit.session_id)
            return render(visit, p, page_for(p))

        @_guard
        def resume(link: str, request: gr.Request) -> list[Any]:
            visit, p = sessions.resume(session_id_from_link(link))
            clients.holds_session(_address(request))
            return render(visit, p, page_for(p))

        @_guard
        def submit_preference(visit: Visit | None, text: str, files: list[str] | None, cam: str | None,
                              gender_value: str, avoid_value: str, request: gr.Request,
                              progress=gr.Progress()) -> list[Any]:
            sid = _session_of(visit)
            progress(0.05, desc="Finding your recommendations…")
            with clients.submitting(sid, _address(request)):
                p = sessions.submit_preference(sid, text, list(files or []) + ([cam] if cam else []), gender_value,
                                               avoid_value)
            return render(visit, p, page_for(p))

        @_guard
        def prepare(visit: Visit | None, text: str, gender_value: str, avoid_value: str) -> None:
            sessions.prepare(visit.session_id if visit else None, text, gender_value, avoid_value)

        @_guard
        def finish(visit: Visit | None, *values: Any) -> list[Any]:
            sid = _session_of(visit)
            fbs, order, overall_text = values[: len(letters)], values[len(letters):-1], values[-1]
            if sessions.store.session(sid).status != "completed":
                try:
                    ranked = sessions.answer_ranking(sid, list(order))
                except AnswerRefused:
                    if sessions.store.session(sid).status != "completed":
                        raise
                    ranked = True  # a concurrent Finish (a double click, a second tab) completed it first
                if not ranked:  # name everything still missing, not only the ranking
                    missing = sessions.store.missing_answers(sid)
                    raise ParticipantError("Please still give " + "; ".join(missing) + "." if missing else
                                           "Please rank the models: choose the best, then the second, and so on.")
            p = sessions.finish(sid, {**dict(zip(letters, fbs)), "": overall_text})
            return render(visit, p, "done")

        @_guard
        def rank(visit: Visit | None, *order: str | None) -> list[Any]:
            ups = rank_updates(list(order))
            sessions.answer_ranking(_session_of(visit), [u["value"] for u in ups[:-1]])
            return ups


        @_guard
        def draft_photos(visit: Visit | None, files: list[str] | None, request: gr.Request) -> str:
            if visit is None or not visit.session_id:  # the page's own first render, before consent
                return ""
            sid = visit.session_id
            n = sessions.save_draft_photos(sid, files, budget=lambda: clients.photos(sid, _address(request)))
            return photos_note(n)

        @_guard
        def withdraw_code(code: str, request: gr.Request) -> str:
            clients.guess(("withdraw/address",), (_address(request),), lambda: sessions.withdraw_by_code(code),
                          ParticipantError)
            return "Your data has been deleted. Thank you for your time."

        @_guard
        def withdraw_now(visit: Visit | None, request: gr.Request) -> list[Any]:
            sessions.withdraw(_session_of(visit))
            clients.forget_tab(_tab(request))
            gr.Info("Your data has been deleted. You may close this page.")
            return render(Visit(), None, "welcome")

        # Gradio's tracker (with the queue position, mirrored into the status line) sits on the note
        show_progress = dict(show_progress="full", show_progress_on=[submit_btn, pref_note])
        demo.load(on_load, [visit_state], outputs, api_name="load", api_visibility=API, concurrency_limit=None) \
            .then(None, [link_box], [link_box], js=LINK_JS)
        consent_btn.click(consent, [visit_state], outputs, api_name="consent", api_visibility=API,
                          concurrency_limit=None, show_progress_on=[consent_btn]).then(None, [link_box], [link_box], js=LINK_JS)
        resume_btn.click(resume, [resume_box], outputs, api_name="resume", api_visibility=API,
                         concurrency_limit=None, show_progress_on=[resume_btn]).then(None, [link_box], [link_box], js=LINK_JS)
        submit_btn.click(None, js=a11y.STATUS_ON)  # shown in the browser at once, before the round trip
        submit_btn.click(submit_preference, [visit_state, pref_text, photos, camera, gender, avoid], outputs,
                         api_name="submit_preference", api_visibility=API, concurrency_id="recommend",
                         concurrency_limit=SUBMITS_AT_ONCE, **show_progress) \
            .then(None, [link_box], [link_box], js=LINK_JS).then(None, js=a11y.STATUS_OFF)
        # generation starts on the words while the photos upload (Sessions.prepare); Submit takes it up
        gr.on([pref_text.blur, photos.upload], prepare, [visit_state, pref_text, gender, avoid], None,
              api_name="prepare", api_visibility=API, concurrency_limit=None, show_progress="hidden",
              trigger_mode="always_last")
        # the style page is kept as it is given (study.drafts), so a reload or the session link finds it again
        for name, box in (("text", pref_text), ("gender", gender), ("avoid", avoid)):
            def draft(visit: Visit | None, value: str | None, _name: str = name) -> None:
                if visit is not None and visit.session_id:  # before consent there is nothing to keep it under
                    sessions.save_draft(visit.session_id, _name, value)

            box.change(_guard(draft), [visit_state, box], None, api_name=f"draft_{name}", api_visibility=API,
                       concurrency_limit=None, show_progress="hidden", trigger_mode="always_last")
        gr.on([photos.change], draft_photos, [visit_state, photos], [pref_note],
              api_name="draft_photos", api_visibility=API, concurrency_limit=None, show_progress="hidden",
              trigger_mode="always_last")
        finish_btn.click(finish, [visit_state, *feedbacks, *rank_dd, overall], outputs, api_name="finish",
                         api_visibility=API, concurrency_limit=None, show_progress_on=[finish_btn])
        finish_btn.click(None, js=a11y.FINISH_CHECK)  # in the browser at once: what is missing, and the focus
        for letter_index, letter in enumerate(letters):
            cells = wears[letter_index * GRID_SIZE:(letter_index + 1) * GRID_SIZE]

            def wear_fn(visit: Visit | None, *marks: str | None, _letter: str = letter) -> None:
                sessions.answer_wear(_session_of(visit), _letter, list(marks))

            def rate_fn(visit: Visit | None, value: int | None, _letter: str = letter) -> None:
                sessions.answer_rating(_session_of(visit), _letter, value)

            def feedback_fn(visit: Visit | None, text: str, _letter: str = letter) -> None:
                if text or (visit and visit.session_id):  # an emptied box re-rendered before consent: nothing to save
                    sessions.answer_feedback(_session_of(visit), _letter, text)

            # "always_last": quick clicks on a grid's four pictures are never dropped while one is being saved;
            # every call carries all four marks, so the last one leaves the database as the page shows it
            gr.on([c.input for c in cells], _guard(wear_fn), [visit_state, *cells], None,
                  api_name=f"wear_{letter}", api_visibility=API, concurrency_limit=None, show_progress="hidden",
                  trigger_mode="always_last")
            ratings[letter_index].input(_guard(rate_fn), [visit_state, ratings[letter_index]], None,
                                        api_name=f"rate_{letter}", api_visibility=API, concurrency_limit=None,
                                        show_progress="hidden", trigger_mode="always_last")
            feedbacks[letter_index].change(_guard(feedback_fn), [visit_state, feedbacks[letter_index]], None,
                                           api_name=f"feedback_{letter}", api_visibility=API,
                                           concurrency_limit=None, show_progress="hidden",
                                           trigger_mode="always_last")

        def overall_fn(visit: Visit | None, text: str) -> None:
            if text or (visit and visit.session_id):
                sessions.answer_feedback(_session_of(visit), "", text)

        overall.change(_guard(overall_fn), [visit_state, overall], None, api_name="feedback_overall",
                      api_visibility=API, concurrency_limit=None, show_progress="hidden", trigger_mode="always_last")
        gr.on([d.input for d in rank_dd], rank, [visit_state, *rank_dd], [*rank_dd, last_md], api_name="rank",
              api_visibility=API, concurrency_limit=None, show_progress="hidden", trigger_mode="always_last")
        withdraw_yes1.click(withdraw_code, [code_box1], [withdraw_msg1], api_name="withdraw", api_visibility=API,
                            concurrency_limit=None)
        withdraw_yes2.click(withdraw_code, [code_box2], [withdraw_msg2], api_name="withdraw_done",
                            api_visibility=API, concurrency_limit=None)
        stop_yes.click(withdraw_now, [visit_state], outputs, api_name="withdraw_now", api_visibility=API,
                       concurrency_limit=None, show_progress_on=[stop_yes])

    if researcher_password(study) is not None:
        _researcher_page(demo, sessions)
    return demo


def _researcher_page(demo: gr.Blocks, sessions: Sessions) -> None:
    """Counts per arm and exports, behind the password in the study's env var (the page names arms)."""

    def checked(password: str, request: gr.Request) -> None:
        """The password, within the guessing budgets of the address and of the page as a whole."""
        sessions.clients.guess(("researcher/address", "researcher/all"), (_address(request), "page"),
                               lambda: check_researcher(sessions.study, password), ParticipantError)

    @_guard
    def counts(password: str, request: gr.Request) -> str:
        checked(password, request)
        return "```json\n" + dumps_summary(researcher_summary(sessions, password)) + "\n```"

    @_guard
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


def launch(demo: gr.Blocks, sessions: Sessions, *, host: str | None = None, port: int | None = None,
           prevent_thread_lock: bool = False, max_concurrency: int = 1) -> Any:
    """Serve the study behind ``study.http_guard``. Up to ``SUBMITS_AT_ONCE`` Submits run together (their arm
    work shares one bounded pool, and Stable Diffusion batches their images); answers are cheap and unlimited
    but budgeted per address."""
    study = sessions.study
    demo.queue(default_concurrency_limit=max_concurrency, max_size=QUEUE_SIZE)
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


def event_body_limit(max_text_chars: int, letters: int) -> int:
    """The largest body a page event can honestly send: every text box (one per letter, the overall one, the
    description) full of characters JSON escapes to six bytes, plus room for the rest."""
    return 6 * max_text_chars * (letters + 2) + 65536
