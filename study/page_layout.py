"""The participant page's components, section by section (welcome → preference → recommendations → done).

Each builder lays out one section inside the open ``gr.Blocks`` and returns the components the handlers need,
named, in a small dataclass; ``Page`` gathers them and lists the components every navigation endpoint
updates (``Page.outputs``, mirrored by ``output_names`` for API clients). Components are created in the
order they appear on the page, which is also the order Gradio numbers them in.

Blinding: labels and elem_ids carry only letters A-D and positions 1-4.
"""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from dressup.config import UISpec
from study import page_a11y as a11y
from study.page_text import CONFIRM_CODE, CONFIRM_NOW, GENDER_CHOICES, RANKS, WEAR_CHOICES, welcome_text
from study.schema import GRID_SIZE
from study.session import Sessions

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


@dataclass
class Welcome:
    """1. welcome and consent, with resuming a session and withdrawing by completion code."""

    column: gr.Column
    consent: gr.Button
    resume_link: gr.Textbox
    resume: gr.Button
    code: gr.Textbox
    message: gr.Markdown
    confirm: gr.Button


@dataclass
class Style:
    """2. the preference: description, photos (or a camera photo), gender and colours to avoid."""

    column: gr.Column
    text: gr.Textbox
    photos: gr.File
    camera: gr.Image
    note: gr.Markdown
    gender: gr.Radio
    avoid: gr.Textbox
    submit: gr.Button


@dataclass
class Grids:
    """3. the grids and their answers, the ranking, the overall feedback, Finish and withdrawing now."""

    column: gr.Column
    images: list[gr.Image]
    wears: list[gr.Radio]
    ratings: list[gr.Radio]
    feedbacks: list[gr.Textbox]
    ranks: list[gr.Dropdown]
    last: gr.Markdown
    overall: gr.Textbox
    finish: gr.Button
    stop_confirm: gr.Button


@dataclass
class Done:
    """4. done: the completion code, and withdrawing with it."""

    column: gr.Column
    message: gr.Markdown
    code: gr.Textbox
    withdraw_message: gr.Markdown
    confirm: gr.Button


@dataclass
class Page:
    """The whole participant page; ``visit`` is the ``gr.State`` holding the ``study.session.Visit``."""

    letters: list[str]
    visit: gr.State
    welcome: Welcome
    link: gr.Textbox
    style: Style
    grids: Grids
    done: Done

    @property
    def sections(self) -> dict[str, gr.Column]:
        return {"welcome": self.welcome.column, "preference": self.style.column, "grids": self.grids.column,
                "done": self.done.column}

    def outputs(self) -> list[gr.components.Component | gr.Column]:
        """What every navigation endpoint updates, in order (``output_names`` names the API's part of it)."""
        s, g = self.style, self.grids
        return [self.visit, *self.sections.values(), self.link, s.text, s.gender, s.avoid, s.note, s.photos,
                *g.images, *g.wears, *g.ratings, *g.feedbacks, *g.ranks, g.last, g.overall, self.done.message]


def output_names(letters: list[str]) -> list[str]:
    """Names of the page values every navigation endpoint returns, in the order an API client receives them
    (``gr.State`` and layout columns are not part of the API's outputs)."""
    cells = [f"{x}{i}" for x in letters for i in range(1, GRID_SIZE + 1)]
    return (["link", "text", "gender", "avoid", "note", "photos"] + [f"img_{c}" for c in cells] + [f"wear_{c}" for c in cells]
            + [f"rating_{x}" for x in letters] + [f"feedback_{x}" for x in letters]
            + [f"rank_{i + 1}" for i in range(max(1, len(letters) - 1))] + ["rank_last", "overall", "done"])


def build_page(sessions: Sessions, letters: list[str]) -> Page:
    """Every section of the participant page, in order, inside the open ``gr.Blocks``."""
    ui = sessions.study.ui
    visit = gr.State(None)
    welcome = build_welcome(sessions)
    link = gr.Textbox(label="Your personal link: save it to continue later", interactive=False,
                      visible=False, buttons=["copy"], elem_id="session-link")
    style = build_style(ui)
    grids = build_grids(ui, letters)
    done = build_done()
    page = Page(letters, visit, welcome, link, style, grids, done)
    assert len(page.outputs()) == 5 + len(output_names(letters)), "output_names() must mirror the outputs"
    return page


def build_welcome(sessions: Sessions) -> Welcome:
    with gr.Column(visible=True, elem_id="page-welcome") as column:
        gr.Markdown(welcome_text(sessions))
        consent = gr.Button("I agree, start", variant="primary", elem_id="consent")
        with gr.Accordion("Continue a session you started earlier", open=False):
            resume_link = gr.Textbox(label="Your session link", placeholder="https://...?session=...",
                                     elem_id="resume-link")
            resume = gr.Button("Continue", elem_id="resume")
        with gr.Accordion("Withdraw: delete your data", open=False, elem_id="withdraw-welcome"):
            gr.Markdown("Enter the completion code you received at the end of the study.")
            code = gr.Textbox(label="Completion code", placeholder="DU-1A2B3C4D", elem_id="withdraw-code-1")
            withdraw = gr.Button("Withdraw and delete my data", variant="stop", elem_id="withdraw-1")
            message = gr.Markdown()
            confirm = a11y.confirm_step(withdraw, "withdraw-1-confirm", CONFIRM_CODE, "Yes, delete my data",
                                        clears=message)
    return Welcome(column, consent, resume_link, resume, code, message, confirm)


def build_style(ui: UISpec) -> Style:
    with gr.Column(visible=False, elem_id="page-preference") as column:
        gr.Markdown("# Your style\nTell us what you like to wear, then add photos of clothes you like.")
        text = gr.Textbox(label="Describe your style in your own words", lines=4,
                          max_length=ui.max_text_chars, elem_id="pref-text",
                          placeholder="e.g. relaxed, earthy colours, linen shirts, nothing too tight")
        photos = gr.File(label=f"{ui.min_photos} to {ui.max_photos} photos of clothes you like",
                         file_count="multiple", file_types=["image"], type="filepath", elem_id="pref-photos")
        with gr.Accordion("Or take a photo with your camera", open=False):
            camera = gr.Image(label="Camera photo (counts as one photo)", sources=["webcam"], type="filepath",
                              elem_id="pref-camera")
        note = gr.Markdown(elem_id="pref-note")
        with gr.Row():
            gender = gr.Radio(GENDER_CHOICES, value="any", label="Show me", elem_id="pref-gender", min_width=300)
            avoid = gr.Textbox(label="Colours to avoid (optional, separated by commas)", max_length=400,
                               elem_id="pref-avoid", min_width=300)
        submit = gr.Button("Show me recommendations", variant="primary", elem_id="submit-preference")
        gr.HTML(a11y.STATUS_HTML, elem_id="submit-status", padding=False)
    return Style(column, text, photos, camera, note, gender, avoid, submit)


def build_grids(ui: UISpec, letters: list[str]) -> Grids:
    images: list[gr.Image] = []
    wears: list[gr.Radio] = []
    ratings: list[gr.Radio] = []
    feedbacks: list[gr.Textbox] = []
    with gr.Column(visible=False, elem_id="page-grids") as column:
        gr.Markdown(
            "# Recommendations\nFor each model: would you wear each garment, how well does the model "
            "match your style, and anything you want to tell us. Answers are saved as you give them.")
        gr.HTML(a11y.nav_html(letters), padding=False)
        for pair_start in range(0, len(letters), 2):
            with gr.Row(equal_height=False):
                for letter in letters[pair_start:pair_start + 2]:
                    _model_grid(ui, letters, letter, images, wears, ratings, feedbacks)
        gr.Markdown("## Ranking\nWhich model suited you best? Each model can take one place.", elem_id="ranking")
        with gr.Row():
            letter_choices = [(f"Model {x}", x) for x in letters]
            ranks = [gr.Dropdown(letter_choices, value=None, label=name, elem_id=f"rank-{i + 1}")
                     for i, name in enumerate(RANKS[: max(1, len(letters) - 1)])]
        last = gr.Markdown(elem_id="rank-last")
        overall = gr.Textbox(label="Anything else you want to tell us? (optional)", lines=3,
                             max_length=ui.max_text_chars, elem_id="feedback-overall")
        gr.HTML(a11y.MISSING_HTML, padding=False)
        finish = gr.Button("Finish", variant="primary", elem_id="finish")
        with gr.Accordion("Stop and delete my answers", open=False):
            stop = gr.Button("Withdraw now and delete everything I gave", variant="stop", elem_id="withdraw-now")
            stop_confirm = a11y.confirm_step(stop, "withdraw-now-confirm", CONFIRM_NOW, "Yes, delete everything")
    return Grids(column, images, wears, ratings, feedbacks, ranks, last, overall, finish, stop_confirm)


def _model_grid(ui: UISpec, letters: list[str], letter: str, images: list[gr.Image], wears: list[gr.Radio],
                ratings: list[gr.Radio], feedbacks: list[gr.Textbox]) -> None:
    """One model's box: its four pictures with "Wear it?" under each, its rating and its comments (appended
    to the lists given, in page order)."""
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
                        wears.append(gr.Radio(WEAR_CHOICES, label=f"{pos}. Wear it?", elem_id=f"wear-{letter}{pos}"))
        ratings.append(gr.Radio(
            list(range(1, 11)), label=f"Rate Model {letter}: 1 = not my style at all, "
            "10 = exactly my style", elem_id=f"rating-{letter}"))
        feedbacks.append(gr.Textbox(label=f"Comments on Model {letter} (optional)", lines=2,
                                    max_length=ui.max_text_chars, elem_id=f"feedback-{letter}"))


def build_done() -> Done:
    with gr.Column(visible=False, elem_id="page-done") as column:
        message = gr.Markdown(elem_id="done")
        with gr.Accordion("Withdraw: delete your data", open=False, elem_id="withdraw-done"):
            code = gr.Textbox(label="Completion code", placeholder="DU-1A2B3C4D", elem_id="withdraw-code-2")
            withdraw = gr.Button("Withdraw and delete my data", variant="stop", elem_id="withdraw-2")
            withdraw_message = gr.Markdown()
            confirm = a11y.confirm_step(withdraw, "withdraw-2-confirm", CONFIRM_CODE, "Yes, delete my data",
                                        clears=withdraw_message)
    return Done(column, message, code, withdraw_message, confirm)
