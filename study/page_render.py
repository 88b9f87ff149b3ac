"""A session's state as the page shows it: ``{component: update}`` for every navigation endpoint.

A reload, a ``?session=`` link and every step re-render the section the session is at, with every answer
given so far; ``render`` is that one mapping from a ``study.session.Progress`` to the page. Returning a dict
keyed by components (Gradio fills the outputs left out with "no change") means no value has to line up with
a position in a long output list. Cells are served as the very bytes the store recorded (``served``).
"""
from __future__ import annotations

from typing import Any

import gradio as gr

from study.page_files import served
from study.page_layout import Page
from study.page_text import done_text, last_place_text, photos_note
from study.schema import GRID_SIZE
from study.session import Progress, Visit

Updates = dict[Any, Any]  # component -> its new value or gr.update(...)


def page_for(p: Progress) -> str:
    """The section a session is at."""
    if p.status == "completed":
        return "done"
    return "grids" if p.grids else "preference"


def rank_choices(letters: list[str], order: list[str | None]) -> tuple[list[tuple[list, str | None]], str]:
    """Each place offers only the letters not taken by the places above it: per place (choices, value kept),
    and the implied last place's text."""
    letter_choices = [(f"Model {x}", x) for x in letters]
    places, taken = [], []
    for value in order:
        free = [c for c in letter_choices if c[1] not in taken]
        value = value if value in [c[1] for c in free] else None
        places.append((free, value))
        if value:
            taken.append(value)
    return places, last_place_text(letters, [x for x in letters if x not in taken])


def rank_updates(page: Page, order: list[str | None]) -> Updates:
    """The ranking's dropdowns and last-place line for the places chosen in ``order``."""
    places, last = rank_choices(page.letters, order)
    ups: Updates = {dd: gr.update(choices=free, value=value) for dd, (free, value) in zip(page.grids.ranks, places)}
    ups[page.grids.last] = last
    return ups


def render(page: Page, visit: Visit | None, p: Progress | None, section: str) -> Updates:
    """The page for ``visit`` showing ``section``; without progress only the sections and the link change."""
    out: Updates = {page.visit: visit}
    out.update({column: gr.update(visible=section == name) for name, column in page.sections.items()})
    out[page.link] = gr.update(value=p.session_id if p else "", visible=section in ("preference", "grids"))
    if p is None:
        return out
    out.update(_style(page, p, section))
    out.update(_grids(page, p))
    order = (p.ranking + [None] * len(page.grids.ranks))[: len(page.grids.ranks)]
    out.update(rank_updates(page, order))
    out[page.grids.overall] = p.feedback.get("", "")
    out[page.done.message] = done_text(p)
    return out


def _style(page: Page, p: Progress, section: str) -> Updates:
    s = page.style
    note = photos_note(p.photos_saved) if not p.grids else ""
    kept = [served(f, f"photo-{i}.jpg") for i, f in enumerate(p.photos, 1)] if section == "preference" else []
    return {s.text: p.text, s.gender: p.gender, s.avoid: p.avoid_colours, s.note: note, s.photos: kept or None}


def _grids(page: Page, p: Progress) -> Updates:
    g, letters = page.grids, page.letters
    cells = [(x, i) for x in letters for i in range(GRID_SIZE)]
    out: Updates = {image: served(p.grids[x][i]) if p.grids else None for image, (x, i) in zip(g.images, cells)}
    out.update({wear: {True: "Yes", False: "No"}.get(p.wear.get(x, {}).get(i + 1))
                for wear, (x, i) in zip(g.wears, cells)})
    out.update({rating: p.ratings.get(x) for rating, x in zip(g.ratings, letters)})
    out.update({box: p.feedback.get(x, "") for box, x in zip(g.feedbacks, letters)})
    return out
