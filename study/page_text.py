"""The participant page's words: the welcome and consent text, choices, confirmations and short notes.

Kept apart from the layout so the wording can be read (and reviewed by an ethics board) in one place. Every
text names models only by letter (blinding): nothing here knows which arm is behind a letter.
"""
from __future__ import annotations

from study.schema import LETTERS
from study.session import Progress, Sessions

OOPS = "Something went wrong on our side. Please try again in a moment; your answers so far are saved."
GENDER_CHOICES = [("Any", "any"), ("Menswear", "menswear"), ("Womenswear", "womenswear")]
WEAR_CHOICES = ["Yes", "No"]
RANKS = ("Best", "Second", "Third")
CONFIRM_NOW = ("**This deletes everything you gave in this session: your description, your photos and your "
               "answers; this cannot be undone.** Delete it?")
CONFIRM_CODE = ("**This deletes everything stored under this completion code: the description, the photos and "
                "the answers; this cannot be undone.** Delete it?")
NO_SESSION = "Please start the study first (press 'I agree, start'), or open your session link."
DELETED = "Your data has been deleted. Thank you for your time."
DELETED_NOW = "Your data has been deleted. You may close this page."


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


def photos_note(n: int) -> str:
    """The style page's note on the photos stored so far ("" when none)."""
    return f"Your {n} photo{'s' * (n != 1)} {'are' if n != 1 else 'is'} saved." if n else ""


def done_text(p: Progress) -> str:
    """The last section: the completion code (and the way back to Prolific), or "" before completion."""
    if not p.completion_code:
        return ""
    text = (f"# Thank you!\nYour completion code is **{p.completion_code}**. Keep it: with it you can "
            "withdraw and delete your data later.")
    if p.completion_url:
        text += f"\n\n[Return to Prolific to confirm your participation]({p.completion_url})"
    return text


def last_place_text(letters: list[str], remaining: list[str]) -> str:
    """The ranking's implied last place, shown once every other place is chosen ("" until then)."""
    return f"**{'Fourth' if len(letters) == 4 else 'Last'}:** Model {remaining[0]}" if len(remaining) == 1 else ""
