"""The participant page's events: which handler each component triggers, and the handlers themselves.

Every answer is sent the moment it is given (``.input`` events, so re-rendering saved values never writes
them back); navigation handlers return ``study.page_render.render``'s ``{component: update}``. Every endpoint
is "undocumented": callable (Gradio cannot prevent that, so ``study.session`` validates again), but absent
from the API page; every handler is wrapped in ``study.page_guard.guard`` so no traceback text reaches the
browser. Events are registered in page order, section by section.
"""
from __future__ import annotations

from typing import Any

import gradio as gr

from study import page_a11y as a11y
from study.errors import AnswerRefused, ParticipantError
from study.page_guard import address, guard, session_of, tab
from study.page_layout import Page
from study.page_render import Updates, page_for, rank_updates, render
from study.page_text import DELETED, DELETED_NOW, photos_note
from study.schema import GRID_SIZE
from study.session import SUBMITS_AT_ONCE, Sessions, Visit, parse_entry, session_id_from_link

API = "undocumented"
# every answer: never dropped while one is being saved, never shown as a spinner
QUIET = dict(api_visibility=API, concurrency_limit=None, show_progress="hidden", trigger_mode="always_last")

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


def wire_page(demo: gr.Blocks, page: Page, sessions: Sessions) -> None:
    """Every event of the participant page, in page order."""
    wire_entry(demo, page, sessions)
    wire_style(page, sessions)
    wire_finish(page, sessions)
    wire_grid_answers(page, sessions)
    wire_ranking(page, sessions)
    wire_withdrawal(page, sessions)


def wire_entry(demo: gr.Blocks, page: Page, sessions: Sessions) -> None:
    """Arriving: the page's load (a ``?session=`` link resumes), consent, and a pasted resume link."""
    clients, outputs = sessions.clients, page.outputs()
    link = page.link

    @guard
    def on_load(current: Visit | None, request: gr.Request) -> Updates:
        if current is not None and current.session_id:  # "I agree" was pressed before the page finished loading
            p = sessions.progress(current.session_id)
            return render(page, current, p, page_for(p))
        visit, resume_id = parse_entry(dict(request.query_params) if request else {})
        if resume_id:
            try:
                visit, p = sessions.resume(resume_id)
            except ParticipantError as e:
                gr.Warning(str(e))
                return render(page, visit, None, "welcome")
            clients.holds_session(address(request))
            return render(page, visit, p, page_for(p))
        return render(page, visit, None, "welcome")

    @guard
    def consent(visit: Visit | None, request: gr.Request) -> Updates:
        if visit is None:  # pressed before the page's load event ran: read the URL's ids here
            visit = parse_entry(dict(request.query_params) if request else {})[0]
        given = visit
        visit = clients.consent(tab(request), address(request), lambda: sessions.consent(given))
        p = sessions.progress(visit.session_id)
        return render(page, visit, p, page_for(p))

    @guard
    def resume(resume_link: str, request: gr.Request) -> Updates:
        visit, p = sessions.resume(session_id_from_link(resume_link))
        clients.holds_session(address(request))
        return render(page, visit, p, page_for(p))

    w = page.welcome
    demo.load(on_load, [page.visit], outputs, api_name="load", api_visibility=API, concurrency_limit=None) \
        .then(None, [link], [link], js=LINK_JS)
    w.consent.click(consent, [page.visit], outputs, api_name="consent", api_visibility=API,
                    concurrency_limit=None, show_progress_on=[w.consent]).then(None, [link], [link], js=LINK_JS)
    w.resume.click(resume, [w.resume_link], outputs, api_name="resume", api_visibility=API,
                   concurrency_limit=None, show_progress_on=[w.resume]).then(None, [link], [link], js=LINK_JS)


def wire_style(page: Page, sessions: Sessions) -> None:
    """The style page: Submit, the early start on the words, and the draft kept as it is given."""
    clients, s = sessions.clients, page.style

    @guard
    def submit_preference(visit: Visit | None, text: str, files: list[str] | None, cam: str | None,
                          gender_value: str, avoid_value: str, request: gr.Request,
                          progress=gr.Progress()) -> Updates:
        sid = session_of(visit)
        progress(0.05, desc="Finding your recommendations…")
        with clients.submitting(sid, address(request)):
            p = sessions.submit_preference(sid, text, list(files or []) + ([cam] if cam else []), gender_value,
                                           avoid_value)
        return render(page, visit, p, page_for(p))

    @guard
    def prepare(visit: Visit | None, text: str, gender_value: str, avoid_value: str) -> None:
        sessions.prepare(visit.session_id if visit else None, text, gender_value, avoid_value)

    @guard
    def draft_photos(visit: Visit | None, files: list[str] | None, request: gr.Request) -> str:
        if visit is None or not visit.session_id:  # the page's own first render, before consent
            return ""
        sid = visit.session_id
        n = sessions.save_draft_photos(sid, files, budget=lambda: clients.photos(sid, address(request)))
        return photos_note(n)

    # Gradio's tracker (with the queue position, mirrored into the status line) sits on the note
    show_progress = dict(show_progress="full", show_progress_on=[s.submit, s.note])
    s.submit.click(None, js=a11y.STATUS_ON)  # shown in the browser at once, before the round trip
    s.submit.click(submit_preference, [page.visit, s.text, s.photos, s.camera, s.gender, s.avoid], page.outputs(),
                   api_name="submit_preference", api_visibility=API, concurrency_id="recommend",
                   concurrency_limit=SUBMITS_AT_ONCE, **show_progress) \
        .then(None, [page.link], [page.link], js=LINK_JS).then(None, js=a11y.STATUS_OFF)
    # generation starts on the words while the photos upload (Sessions.prepare); Submit takes it up
    gr.on([s.text.blur, s.photos.upload], prepare, [page.visit, s.text, s.gender, s.avoid], None,
          api_name="prepare", **QUIET)
    # the style page is kept as it is given (study.drafts), so a reload or the session link finds it again
    for name, box in (("text", s.text), ("gender", s.gender), ("avoid", s.avoid)):
        def draft(visit: Visit | None, value: str | None, _name: str = name) -> None:
            if visit is not None and visit.session_id:  # before consent there is nothing to keep it under
                sessions.save_draft(visit.session_id, _name, value)

        box.change(guard(draft), [page.visit, box], None, api_name=f"draft_{name}", **QUIET)
    gr.on([s.photos.change], draft_photos, [page.visit, s.photos], [s.note], api_name="draft_photos", **QUIET)


def wire_finish(page: Page, sessions: Sessions) -> None:
    """Finish: the ranking and last feedback saved, then completion (or what is still missing)."""
    g, letters = page.grids, page.letters

    @guard
    def finish(visit: Visit | None, *values: Any) -> Updates:
        sid = session_of(visit)
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
        return render(page, visit, p, "done")

    g.finish.click(finish, [page.visit, *g.feedbacks, *g.ranks, g.overall], page.outputs(), api_name="finish",
                   api_visibility=API, concurrency_limit=None, show_progress_on=[g.finish])
    g.finish.click(None, js=a11y.FINISH_CHECK)  # in the browser at once: what is missing, and the focus


def wire_grid_answers(page: Page, sessions: Sessions) -> None:
    """Each grid's "Wear it?" marks, rating and comments, and the overall comments: saved as given."""
    g = page.grids
    for letter_index, letter in enumerate(page.letters):
        cells = g.wears[letter_index * GRID_SIZE:(letter_index + 1) * GRID_SIZE]

        def wear_fn(visit: Visit | None, *marks: str | None, _letter: str = letter) -> None:
            sessions.answer_wear(session_of(visit), _letter, list(marks))

        def rate_fn(visit: Visit | None, value: int | None, _letter: str = letter) -> None:
            sessions.answer_rating(session_of(visit), _letter, value)

        def feedback_fn(visit: Visit | None, text: str, _letter: str = letter) -> None:
            if text or (visit and visit.session_id):  # an emptied box re-rendered before consent: nothing to save
                sessions.answer_feedback(session_of(visit), _letter, text)

        # "always_last": quick clicks on a grid's four pictures are never dropped while one is being saved;
        # every call carries all four marks, so the last one leaves the database as the page shows it
        gr.on([c.input for c in cells], guard(wear_fn), [page.visit, *cells], None, api_name=f"wear_{letter}",
              **QUIET)
        g.ratings[letter_index].input(guard(rate_fn), [page.visit, g.ratings[letter_index]], None,
                                      api_name=f"rate_{letter}", **QUIET)
        g.feedbacks[letter_index].change(guard(feedback_fn), [page.visit, g.feedbacks[letter_index]], None,
                                         api_name=f"feedback_{letter}", **QUIET)

    def overall_fn(visit: Visit | None, text: str) -> None:
        if text or (visit and visit.session_id):
            sessions.answer_feedback(session_of(visit), "", text)

    g.overall.change(guard(overall_fn), [page.visit, g.overall], None, api_name="feedback_overall", **QUIET)


def wire_ranking(page: Page, sessions: Sessions) -> None:
    """The ranking: each place offers only the letters still free, saved (partially) as it is chosen."""
    g = page.grids

    @guard
    def rank(visit: Visit | None, *order: str | None) -> Updates:
        ups = rank_updates(page, list(order))
        sessions.answer_ranking(session_of(visit), [ups[dd]["value"] for dd in g.ranks])
        return ups

    gr.on([d.input for d in g.ranks], rank, [page.visit, *g.ranks], [*g.ranks, g.last], api_name="rank", **QUIET)


def wire_withdrawal(page: Page, sessions: Sessions) -> None:
    """Withdrawing: by completion code (on the welcome and the done section) or now, from the grids."""
    clients = sessions.clients

    @guard
    def withdraw_code(code: str, request: gr.Request) -> str:
        clients.guess(("withdraw/address",), (address(request),), lambda: sessions.withdraw_by_code(code),
                      ParticipantError)
        return DELETED

    @guard
    def withdraw_now(visit: Visit | None, request: gr.Request) -> Updates:
        sessions.withdraw(session_of(visit))
        clients.forget_tab(tab(request))
        gr.Info(DELETED_NOW)
        return render(page, Visit(), None, "welcome")

    w, d, g = page.welcome, page.done, page.grids
    w.confirm.click(withdraw_code, [w.code], [w.message], api_name="withdraw", api_visibility=API,
                    concurrency_limit=None)
    d.confirm.click(withdraw_code, [d.code], [d.withdraw_message], api_name="withdraw_done",
                    api_visibility=API, concurrency_limit=None)
    g.stop_confirm.click(withdraw_now, [page.visit], page.outputs(), api_name="withdraw_now", api_visibility=API,
                         concurrency_limit=None, show_progress_on=[g.stop_confirm])
