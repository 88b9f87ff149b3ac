"""A simulated participant driving a launched app through its API (gradio_client), as a browser tab would.

Consent, a preference with real photos, every grid's answers, the ranking and finish, each one endpoint call;
``Answers.make`` gives each participant distinct answers so a misattributed one is detectable, and
``run_participant`` plays a whole session. Every client arrives from its own address (``client_address``)
through ``X-Forwarded-For``, which an app started behind a proxy (``study.launcher``) trusts, so per-address
budgets see many participants rather than one. Used by the app tests and the load and fault benchmarks.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study.launcher import REPO

PHOTOS = REPO / "assets" / "photos"
LETTERS4 = ["A", "B", "C", "D"]

_lock = threading.Lock()
_addresses = iter(range(1, 10**9))


def photos(n: int = 2) -> list[Path]:
    """Real product photos (MIT, see assets/photos/NOTICE.md), as a participant would upload them."""
    found = sorted(PHOTOS.glob("*.jpg"))
    assert len(found) >= n, f"need {n} photos in {PHOTOS} (assets/photos)"
    return found[:n]


def client_address() -> str:
    """A distinct address for each simulated participant, from 198.18.0.0/15 (RFC 2544's benchmarking range,
    never routed): only written in a header, never connected to."""
    with _lock:
        n = next(_addresses)
    return f"198.18.{n // 254 % 256}.{n % 254 + 1}"


def client(url: str, address: str | None = None):
    """A participant's browser through the API, arriving from its own address (the app trusts the caller's
    X-Forwarded-For as it would a reverse proxy's, so per-address budgets see many participants, not one)."""
    from gradio_client import Client  # gradio_client only where a participant is simulated

    return Client(url, verbose=False, analytics_enabled=False, download_files=False,
                  headers={"X-Forwarded-For": address or client_address()})


def outputs(values: tuple | list, letters: list[str] = LETTERS4) -> dict[str, Any]:
    """An endpoint's returned values by the page's output names (``study.ui.output_names``)."""
    from study.ui import output_names  # the page module loads gradio: only when an answer is read

    names = output_names(letters)
    assert len(values) == len(names), f"endpoint returned {len(values)} values, expected {len(names)}"
    return dict(zip(names, values))


def value(v: Any) -> Any:
    """A component's value from an API output (an update dict or the value itself)."""
    return v.get("value") if isinstance(v, dict) and v.get("__type__") == "update" else v


@dataclass
class Answers:
    """What one simulated participant gives; ``wear[letter]`` is four 'Yes'/'No'."""

    text: str
    wear: dict[str, list[str]]
    ratings: dict[str, int]
    feedback: dict[str, str]
    ranking: list[str]  # best first, all letters
    overall: str

    @classmethod
    def make(cls, k: int, tag: str = "") -> "Answers":
        """Distinct answers per participant k, so a misattributed answer is detectable."""
        rot = LETTERS4[k % 4:] + LETTERS4[: k % 4]
        return cls(
            text=f"participant {k}{tag}: relaxed blue striped shirts and dark trousers",
            wear={x: ["Yes" if (k + i + j) % 3 == 0 else "No" for j in range(4)] for i, x in enumerate(LETTERS4)},
            ratings={x: (k + i) % 10 + 1 for i, x in enumerate(LETTERS4)},
            feedback={x: f"p{k}{tag} on {x}" for x in LETTERS4},
            ranking=rot,
            overall=f"overall from p{k}{tag}",
        )


def give_preference(c, text: str, files: list[Path] | None = None) -> dict[str, Any]:
    from gradio_client import handle_file

    files = files if files is not None else photos(2)
    return outputs(c.predict(text, [handle_file(str(p)) for p in files], None, "any", "",
                             api_name="/submit_preference"))


def answer_grids(c, a: Answers, letters: list[str] = LETTERS4) -> None:
    for x in letters:
        c.predict(*a.wear[x], api_name=f"/wear_{x}")
        c.predict(a.ratings[x], api_name=f"/rate_{x}")
        c.predict(a.feedback[x], api_name=f"/feedback_{x}")
    c.predict(*a.ranking[:3], api_name="/rank")
    c.predict(a.overall, api_name="/feedback_overall")


def finish(c, a: Answers) -> dict[str, Any]:
    return outputs(c.predict(*[a.feedback[x] for x in LETTERS4], *a.ranking[:3], a.overall, api_name="/finish"))


def run_participant(url: str, k: int) -> tuple[str, Answers, dict[str, Any]]:
    """A whole session through the API: consent, preference, every answer, finish. Returns the session id,
    the answers given and the final page values."""
    c = client(url)
    a = Answers.make(k)
    sid = value(outputs(c.predict(api_name="/consent"))["link"])
    give_preference(c, a.text)
    answer_grids(c, a)
    done = finish(c, a)
    return sid, a, done
