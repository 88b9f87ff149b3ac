"""One participant's pass through the study, without Gradio: consent, preference, grids, answers, completion.

``study.ui`` only lays out components and forwards their values here, so every rule a participant meets is
testable as a plain function call. Every method re-validates what it is given: Gradio makes every handler
callable over HTTP by anyone (see shared/notes/stack-2026.md §1), so the UI's own constraints (a ranking
that is a permutation, ratings 1-10, letters A-D) are conveniences, not guarantees.

Blinding lives here too. The arm behind a letter is looked up in the store and never leaves this module:
what goes out is a ``Progress`` (letters, the stored cell files, answers). Every cell is encoded the same way
whichever arm drew it and kept by its hash (``study.stimuli``), so a resumed session is served the very same
bytes; photos are kept as clean copies (``study.uploads``).

Errors a participant can cause raise ``ParticipantError`` (or the store's ``AnswerRefused``), whose message
is written for them and never names an arm.

Also importable from here, where they used to live: the URL entry (``study.entry``), the results-folder
check (``study.results_folder``), the cell encoding (``study.stimuli``) and the researcher functions
(``study.researcher``).
"""
from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dressup.config import Study
from dressup.images import load_image
from dressup.protocols import Arm
from dressup.records import Preference, Shown
from study import drafts
from study.clients import ClientGuard
from study.database import database_url
from study.design import assignment
from study.entry import RESUME_PARAM, SESSION_RE, URL_PARAMS, Visit, parse_entry, session_id_from_link
from study.errors import ParticipantError
from study.researcher import (
    check_researcher,
    dumps_summary,
    researcher_export,
    researcher_password,
    researcher_summary,
)
from study.results_folder import MIN_FREE_MB, ResultsFolderError, check_results_folder, keep_file, local_file
from study.schema import GRID_SIZE, LETTERS
from study.stimuli import CELL_PIXELS, PNG_LEVEL, Stimuli, cell_png, png_bytes
from study.store import AnswerRefused, ShownRow, Store
from study.uploads import Upload, check_count, clean_jpeg, decode_photos, forget_uploads, upload_path

__all__ = [  # the names other modules and tests import from here (several now live in the modules above)
    "ARM_WORKERS", "ASSIGNMENT_SECRET", "AnswerRefused", "CELL_PIXELS", "GENDERS", "LATIN_SQUARE_COUNTER",
    "MIN_FREE_MB", "PNG_LEVEL", "PREPARING_KEEP", "ParticipantError", "Progress", "RESUME_PARAM",
    "ResultsFolderError", "SUBMITS_AT_ONCE", "Sessions", "URL_PARAMS", "Visit", "WEAR", "check_researcher",
    "check_results_folder", "dumps_summary", "parse_entry", "png_bytes", "researcher_export",
    "researcher_password", "researcher_summary", "session_id_from_link",
]

log = logging.getLogger(__name__)

PREPARING_KEEP = 256  # sessions whose early start is remembered until their Submit
SUBMITS_AT_ONCE = 8  # Submits handled together (one session holds at most 3: study.clients)
ARM_WORKERS = 4  # workers per arm: Submits' arm work runs in one pool of this many per arm
LATIN_SQUARE_COUNTER = "latin_square"
ASSIGNMENT_SECRET = "assignment"  # deals the square's rows (study.design); lives in the database only
GENDERS = {"any": None, "menswear": "menswear", "womenswear": "womenswear"}
WEAR = {"Yes": True, "No": False}
_CODE_RE = re.compile(r"^DU-[0-9A-F]{8}$")

@dataclass
class Progress:
    """Everything a participant's page shows for their session; arm names are deliberately absent."""

    session_id: str
    status: str  # see study.schema.STATUSES
    text: str = ""
    gender: str = "any"
    avoid_colours: str = ""
    photos_saved: int = 0
    photos: list[Path] = field(default_factory=list)  # the stored clean copies, in the order given
    grids: dict[str, list[Path]] = field(default_factory=dict)  # letter -> the 4 cells' stored PNG files
    wear: dict[str, dict[int, bool]] = field(default_factory=dict)
    ratings: dict[str, int] = field(default_factory=dict)
    ranking: list[str | None] = field(default_factory=list)  # letters by place, best first (None: not chosen)
    feedback: dict[str, str] = field(default_factory=dict)  # letter ('' = overall) -> text
    completion_code: str | None = None
    completion_url: str = ""



def _colour_list(text: str | None) -> list[str]:
    """"navy, bright green; beige" -> ["navy", "bright green", "beige"] (commas, semicolons or new lines)."""
    return [w.strip() for w in re.split(r"[,;\n]+", text or "") if w.strip()]


def _early_start(arm: Any, pref: Preference, seed: int) -> None:
    """An arm's ``prepare``; a failure is logged (it names the arm, so it never reaches a participant) and
    Submit then does the work itself."""
    try:
        arm.prepare(pref, seed)
    except Exception:  # noqa: BLE001
        log.warning("early start of arm %s failed; Submit computes it instead", getattr(arm, "name", "?"),
                    exc_info=True)


def _after(first: Future | None, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` once ``first`` (an arm's ``prepare``, submitted earlier to the same FIFO pool, so running,
    done or cancelled by now) has ended; whatever became of it, ``fn`` does (or takes up) the work."""
    if first is not None:
        wait([first])
    return fn(*args)




class Sessions:
    """The study's sessions: takes participants from consent to completion code, answer by answer.

    Receives the loaded arms (it never loads models) and the store (the only database writer). Thread-safe
    as far as the store is; the four arms of one preference run concurrently on a small thread pool and
    nothing is returned until all four grids are ready, so no grid can be told apart by when it arrives.
    """

    def __init__(self, study: Study, arms: Mapping[str, Arm], store: Store | None = None) -> None:
        missing = [a.name for a in study.arms if a.name not in arms]
        if missing:
            raise ValueError(f"arms {missing} of study {study.name!r} were not loaded; pass build_arms(study)")
        if not 1 <= len(study.arms) <= len(LETTERS):
            raise ValueError(f"a study shows 1 to {len(LETTERS)} arms, {study.name!r} has {len(study.arms)}")
        self.study = study
        self.arms = dict(arms)
        self.arm_names = [a.name for a in study.arms]
        self.store = store or Store(database_url(study.database, study.db_path), study.name)
        self.stimuli_dir = study.results_dir / "stimuli"
        self.stimuli = Stimuli(self.stimuli_dir, self.store)
        self.uploads_dir = study.results_dir / "uploads"
        self._pool = ThreadPoolExecutor(max_workers=len(self.arm_names) * ARM_WORKERS, thread_name_prefix="arm")
        self.clients = ClientGuard(refusal=ParticipantError)  # per-tab, per-session and per-address budgets
        # called with (uploaded file, its stored clean copy): the page replaces Gradio's original (EXIF, GPS)
        self.on_upload_stored: Callable[[Path, bytes], None] | None = None
        self._preparing: dict[str, dict[str, Future]] = {}  # session -> arm -> its prepare() under way
        self._preparing_lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- consent and resume ---------------------------------------------------------------------
    def consent(self, visit: Visit | None) -> Visit:
        """Record consent: take the next Latin-square row atomically and fix the letters' arms for good."""
        visit = visit or Visit()
        if visit.session_id and self.store.session(visit.session_id):
            return visit  # a double click on "I agree" does not open a second session
        participant = visit.participant or "anon-" + secrets.token_hex(6)
        order_index = self.store.next_counter(LATIN_SQUARE_COUNTER)
        letters = assignment(self.arm_names, order_index, self.store.secret(ASSIGNMENT_SECRET))
        session_id = self.store.create_session(
            participant, order_index=order_index, seed=self.study.seed, assignments=letters, source=visit.source)
        return Visit(participant=participant, source=dict(visit.source), session_id=session_id)

    def resume(self, session_id: str) -> tuple[Visit, Progress]:
        """Open an existing session from its link, exactly where it was."""
        row = self.store.session(session_id) if SESSION_RE.match(session_id or "") else None
        if row is None or row.study != self.study.name:
            raise ParticipantError("This session link is not known here. Please start again from your study link.")
        if row.status == "withdrawn":
            raise ParticipantError("This session was withdrawn and its data deleted.")
        self.store.log_event(session_id, "resume")
        return Visit(participant=row.participant, source=dict(row.source), session_id=session_id), \
            self.progress(session_id)

    def progress(self, session_id: str) -> Progress:
        """What the participant's page shows now: saved preference, the grids as served, answers so far."""
        row = self._row(session_id)
        out = Progress(session_id=session_id, status=row.status, completion_code=row.completion_code)
        pref = self.store.preference(session_id)
        draft = drafts.load(self.store, session_id)
        if pref:
            out.text = pref["text"]
            out.gender = pref["gender"] or "any"
            out.avoid_colours = ", ".join(pref["avoid_colours"])
        if draft and draft.typed and row.status in drafts.EDITABLE:  # the latest typed, even after a failed Submit
            out.text, out.gender, out.avoid_colours = draft.text, draft.gender, draft.avoid
        out.photos = [Path(u["path"]) for u in draft.uploads] if draft else []  # draft: None when none stored
        out.photos_saved = len(out.photos)
        shown = self.store.shown(session_id)
        out.grids = {letter: [self.stimulus_path(r) for r in rows] for letter, rows in sorted(shown.items())}
        a = self.store.answers(session_id)
        out.wear, out.ratings, out.feedback = a["relevance"], a["ratings"], a["feedback"]
        by_place: list[str | None] = [None] * len(self.arm_names)  # a partial ranking keeps its gaps
        for letter, place in a["ranks"].items():
            if 1 <= place <= len(by_place):
                by_place[place - 1] = letter
        while by_place and by_place[-1] is None:
            by_place.pop()
        out.ranking = by_place
        if row.completion_code:
            out.completion_url = self.completion_url(row.completion_code)
        return out

    def _row(self, session_id: str | None):
        row = self.store.session(session_id) if session_id else None
        if row is None:
            raise ParticipantError("Please start the study from your study link (your session was not found).")
        return row

    # --- preference and grids ---------------------------------------------------------------------
    def submit_preference(
        self, session_id: str | None, text: str, photos: Sequence[str | Path | bytes] | None,
        gender: str | None = "any", avoid_colours: str = "",
    ) -> Progress:
        """Validate the preference, save it with its photos, compute all four grids, record and return them.

        Once grids are recorded they are final: submitting again (a double click, a second tab) returns the
        grids already shown instead of recomputing them from a changed preference.
        """
        row = self._row(session_id)
        if row.status in ("completed", "withdrawn"):
            raise AnswerRefused(
                "This session is already complete." if row.status == "completed" else "This session was withdrawn.")
        if self.store.shown(session_id):
            return self.progress(session_id)
        ui = self.study.ui
        text = (text or "").strip()
        if not text:
            raise ParticipantError("Please describe your style in a few words before continuing.")
        if len(text) > ui.max_text_chars:
            raise ParticipantError(
                f"Your description is {len(text)} characters long; please shorten it to {ui.max_text_chars}.")
        gender_key = (gender or "any").strip().lower()
        if gender_key not in GENDERS:
            raise ParticipantError("Please choose menswear, womenswear or any.")
        avoid = _colour_list(avoid_colours)
        if len(avoid) > 20 or any(len(w) > 40 for w in avoid):
            raise ParticipantError("Please list at most 20 colours to avoid, separated by commas.")
        photos = [p for p in (photos or []) if p]
        old = self.store.uploads(session_id)  # saved as they were added, or by an earlier Submit
        if not photos and old:  # stored as they were added (study.drafts), or by an earlier Submit
            check_count(self.study.ui, len(old))
            uploads = [(u["sha256"], u["path"], u["width"], u["height"]) for u in old]
        else:
            uploads = self._keep_or_save(session_id, photos, old)
        # every grid is computed from the stored clean copies: what the database keeps is what was used
        images = [load_image(local_file(self.store, Path(u[1]))) for u in uploads]
        self.store.save_preference(session_id, text, GENDERS[gender_key], avoid, uploads)
        forget_uploads(old, keep={u[1] for u in uploads})
        pref = Preference(text=text, images=images, gender=GENDERS[gender_key], avoid_colours=avoid)
        self._record_grids(session_id, pref)
        return self.progress(session_id)

    def prepare(self, session_id: str | None, text: str, gender: str | None = "any", avoid_colours: str = "") -> None:
        """Start the arms that can start on words alone (``prepare``: generation) while the photos upload.

        The page calls this when the participant leaves the description box or adds photos. Nothing is
        recorded and nothing is refused here: Submit validates and records as always, and takes the prepared
        work only where it matches the submitted preference exactly (see ``Generator.prepare``). Early starts
        are a saving, never a queue: a session has at most one at a time, and none starts while the arms'
        workers already have one per worker waiting, so calling this in a loop cannot delay anyone's Submit.
        """
        row = self.store.session(session_id) if session_id else None
        text = (text or "").strip()
        gender_key = (gender or "any").strip().lower()
        if (row is None or row.status not in ("consented", "preference") or not text
                or len(text) > self.study.ui.max_text_chars or gender_key not in GENDERS
                or self.store.shown(session_id)):
            return
        pref = Preference(text=text, gender=GENDERS[gender_key], avoid_colours=_colour_list(avoid_colours))
        seed = self._seed(session_id)
        arms = [arm for arm in row.assignments.values() if hasattr(self.arms[arm], "prepare")]
        with self._preparing_lock:
            mine = self._preparing.get(session_id, {})
            for fut in mine.values():
                fut.cancel()  # not started yet: the newer words replace it
            busy = sum(not f.done() for started in self._preparing.values() for f in started.values())
            if any(not f.cancelled() and not f.done() for f in mine.values()) or busy >= len(self.arm_names):
                return
            self._preparing.pop(session_id, None)
            self._preparing[session_id] = {arm: self._pool.submit(_early_start, self.arms[arm], pref, seed)
                                           for arm in arms}
            while len(self._preparing) > PREPARING_KEEP:
                self._preparing.pop(next(iter(self._preparing)))

    @staticmethod
    def _seed(session_id: str) -> int:
        return int.from_bytes(hashlib.sha256(session_id.encode()).digest()[:4], "big")

    def save_draft(self, session_id: str | None, field: str, value: str | None) -> None:
        """One field of the style page (``text``, ``gender`` or ``avoid``) as it is typed (``study.drafts``):
        only its length or choice is checked here; Submit validates the whole."""
        sid = self._row(session_id).session_id
        value = value or ""
        if field == "gender":
            value = (value or "any").strip().lower()
        for wrong, message in ((field not in drafts.FIELDS, "There is no such field on the style page."),
                               (field == "text" and len(value) > self.study.ui.max_text_chars,
                                f"Please keep your description under {self.study.ui.max_text_chars} characters."),
                               (field == "avoid" and len(value) > 400,
                                "Please keep the colours to avoid under 400 characters."),
                               (field == "gender" and value not in GENDERS, "Please choose menswear, womenswear or any.")):
            if wrong:
                raise ParticipantError(message)
        if drafts.editable(self.store, sid):
            drafts.save_field(self.store, sid, field, value)

    def save_draft_photos(self, session_id: str | None, photos: Sequence[str | Path] | None,
                          budget: Callable[[], None] | None = None) -> int:
        """The photos now on the style page, stored (clean) the moment they are added or removed; how many.
        ``budget`` is called (and may refuse) before any photo is decoded."""
        sid = self._row(session_id).session_id
        photos = [p for p in (photos or []) if p]
        old = self.store.uploads(sid)
        if not drafts.editable(self.store, sid) or drafts.same_photos(photos, old):
            return len(photos)
        if budget is not None:
            budget()
        uploads = self._keep_or_save(sid, photos, old, counted=False)
        drafts.save_uploads(self.store, sid, uploads)
        forget_uploads(old, keep={u[1] for u in uploads})
        return len(uploads)

    def _keep_or_save(self, session_id: str, photos: Sequence[str | Path | bytes], old: Sequence[Mapping[str, Any]],
                      counted: bool = True) -> list[Upload]:
        """The uploads for ``photos``: one already stored (the same bytes, e.g. the page sending back the
        clean copy it was given) is kept as it is; only new ones are decoded and stored."""
        check_count(self.study.ui, len(photos), counted)
        by_sha = {u["sha256"]: u for u in old}
        shas = [drafts.content_sha(p) for p in photos]
        new = [p for p, h in zip(photos, shas) if h not in by_sha]
        saved = iter(self._save_uploads(session_id, new, counted=False)[1] if new else [])
        return [(h, by_sha[h]["path"], by_sha[h]["width"], by_sha[h]["height"]) if h in by_sha else next(saved)
                for h in shas]

    def _save_uploads(self, session_id: str, photos: Sequence[str | Path | bytes],
                      counted: bool = True) -> tuple[list, list[Upload]]:
        """Decode every photo with the study's limits; keep each as a metadata-free JPEG (EXIF, including
        GPS, is dropped) named by a hash, under results/uploads which is never served (``study.uploads``).
        ``counted``: refuse a number of photos outside the study's range (a draft only refuses too many)."""
        check_count(self.study.ui, len(photos), counted)
        images = decode_photos(photos, self.study.ui)
        saved = []
        for photo, im in zip(photos, images):
            data = clean_jpeg(im)
            path = upload_path(self.uploads_dir, session_id, data)
            keep_file(self.store, path, data)  # every host of the study can read it (a resume elsewhere re-submits)
            saved.append((hashlib.sha256(data).hexdigest(), str(path), im.width, im.height))
            if self.on_upload_stored is not None and isinstance(photo, (str, Path)):
                self.on_upload_stored(Path(photo), data)
        return images, saved

    def _record_grids(self, session_id: str, pref: Preference) -> None:
        row = self._row(session_id)
        seed = self._seed(session_id)
        with self._preparing_lock:
            preparing = self._preparing.pop(session_id, {})
        futures = {letter: self._pool.submit(_after, preparing.get(arm), self.arms[arm].recommend, pref, seed)
                   for letter, arm in row.assignments.items()}
        results: dict[str, list[Shown]] = {}
        failure: BaseException | None = None
        for letter, fut in futures.items():  # wait for every arm, so none is shown before the others
            try:
                results[letter] = fut.result()
            except BaseException as e:  # noqa: BLE001 — reported below without the arm's name
                failure = failure or e
                self.store.log_event(session_id, "error", {"letter": letter, "arm": row.assignments[letter],
                                                           "error": f"{type(e).__name__}: {e}"})
        if failure is not None:
            if type(failure).__name__ == "NotEnoughItems":
                raise ParticipantError(
                    "Too few garments match your choices. Please list fewer colours to avoid, or choose 'any'."
                ) from failure
            raise RuntimeError("an arm failed to recommend; see the events table") from failure
        grids: dict[str, list[ShownRow]] = {}
        for letter, shown in results.items():
            if len(shown) != GRID_SIZE:
                raise RuntimeError(f"an arm returned {len(shown)} images for letter {letter}, not {GRID_SIZE}")
            rows = []
            for pos, s in enumerate(shown, 1):
                sha = self.stimuli.keep(cell_png(s.image))
                rows.append(ShownRow(letter, pos, s.item_id, sha, s.caption, float(s.score)))
            grids[letter] = rows
        self.store.save_shown(session_id, grids)  # False when a concurrent submit recorded first: theirs stand

    def stimulus_path(self, row: ShownRow) -> Path:
        """The stored PNG of a shown cell, named by the sha256 of its bytes (the page serves these very bytes);
        on a host that did not draw it, copied from the shared database first."""
        return self.stimuli.path(row.image_sha256)

    # --- answers ------------------------------------------------------------------------------------
    def _letter(self, letter: str) -> str:
        if letter not in LETTERS[: len(self.arm_names)]:
            raise AnswerRefused(f"There is no grid {letter!r} in this study.")
        return letter

    def answer_wear(self, session_id: str | None, letter: str, marks: Sequence[str | bool | None]) -> None:
        """Per-picture 'would wear' marks of one grid; None means not answered yet (left as it is)."""
        self._row(session_id)
        letter = self._letter(letter)
        if len(marks) != GRID_SIZE:
            raise AnswerRefused(f"A grid has {GRID_SIZE} pictures.")
        values: dict[int, bool] = {}
        for pos, mark in enumerate(marks, 1):  # validate all four before writing any
            if mark is None or mark == "":
                continue
            if isinstance(mark, bool):
                values[pos] = mark
            elif mark in WEAR:
                values[pos] = WEAR[mark]
            else:
                raise AnswerRefused("Please answer Yes or No for each picture.")
        for pos, value in values.items():
            self.store.answer_relevance(session_id, letter, pos, value)

    def answer_rating(self, session_id: str | None, letter: str, rating: int | str | None) -> None:
        self._row(session_id)
        letter = self._letter(letter)
        if rating is None or rating == "":
            return
        try:
            value = int(rating)
        except (TypeError, ValueError):
            raise AnswerRefused(f"A rating must be a whole number from 1 to 10, not {rating!r}.") from None
        if str(value) != str(rating).strip():
            raise AnswerRefused(f"A rating must be a whole number from 1 to 10, not {rating!r}.")
        self.store.answer_rating(session_id, letter, value)

    def answer_feedback(self, session_id: str | None, letter: str, text: str | None) -> None:
        """Free text for one grid (letter) or overall (''), stored verbatim up to the study's length limit."""
        row = self._row(session_id)
        if letter:
            letter = self._letter(letter)
        text = text or ""
        if len(text) > self.study.ui.max_text_chars:
            raise ParticipantError(f"Please keep feedback under {self.study.ui.max_text_chars} characters.")
        stored = self.store.answers(session_id)["feedback"].get(letter)
        if stored == text or (stored is None and not text):
            return  # unchanged (a re-rendered page, a late event after "Finish"): keep the original time
        self.store.answer_feedback(session_id, letter, text)

    def answer_ranking(self, session_id: str | None, order: Sequence[str | None]) -> bool:
        """The ranking, best first (``None`` for a place not chosen yet). Returns False while incomplete (the
        places chosen so far are saved, so a reload shows them); the last place is implied once all but one
        letter are placed. A repeated or unknown letter is refused."""
        self._row(session_id)
        letters = list(LETTERS[: len(self.arm_names)])
        given = [x for x in order if x]
        if any(x not in letters for x in given) or len(set(given)) != len(given):
            raise AnswerRefused("Each model can take only one place in the ranking.")
        if len(given) < len(letters) - 1:
            self.store.answer_ranking(session_id, {x: i for i, x in enumerate(order, 1) if x}, partial=True)
            return False
        given += [x for x in letters if x not in given]
        self.store.answer_ranking(session_id, {letter: i for i, letter in enumerate(given, 1)})
        return True

    def finish(self, session_id: str | None, feedback: Mapping[str, str] | None = None) -> Progress:
        """Save any last feedback, then complete (refused, with what is missing, until everything is given)."""
        row = self._row(session_id)
        if row.status != "completed":
            for letter, text in (feedback or {}).items():
                if text:
                    self.answer_feedback(session_id, letter, text)
            if not self.store.shown(session_id):
                raise ParticipantError("Please first tell us your style and look at the recommendations.")
        self.store.complete(session_id)
        return self.progress(session_id)

    def completion_url(self, code: str) -> str:
        url = self.study.ui.completion_url
        return url.replace("{code}", code) if url else ""

    # --- withdrawal -----------------------------------------------------------------------------
    def withdraw(self, session_id: str) -> None:
        """Delete a session's answers, preference and photo files (the store keeps a 'withdrawn' stub)."""
        self._row(session_id)
        for path in self.store.withdraw(session_id):  # the store deletes their blobs too
            p = Path(path)
            if p.parent.resolve() == self.uploads_dir.resolve():
                p.unlink(missing_ok=True)
        self.store.log_event(session_id, "withdraw")

    def withdraw_by_code(self, code: str) -> None:
        """Withdrawal after completion: the completion code is the participant's proof of identity."""
        code = (code or "").strip().upper()
        row = self.store.session_by_code(code) if _CODE_RE.match(code) else None
        if row is None or row.study != self.study.name:  # counted in memory by study.clients, not written
            raise ParticipantError("No session has that completion code. Please check it (it looks like DU-1A2B3C4D).")
        if row.status == "withdrawn":
            return
        self.withdraw(row.session_id)
