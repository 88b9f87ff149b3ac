"""SIGKILL mid-study: every acknowledged answer survives and the participant resumes with their link."""
from __future__ import annotations

import hashlib
import threading
import urllib.request

from tests.app_fixtures import (
    LETTERS4,
    Answers,
    client,
    finish,
    give_preference,
    outputs,
    value,
)


def _image_hashes(page: dict) -> list[str]:
    out = []
    for x in LETTERS4:
        for i in range(1, 5):
            with urllib.request.urlopen(page[f"img_{x}{i}"]["url"], timeout=30) as r:
                out.append(hashlib.sha256(r.read()).hexdigest())
    return out


def test_killed_app_keeps_every_answer_and_the_session_resumes(served):
    app = served.start("kill")
    c = client(app.url)
    sid = value(outputs(c.predict(api_name="/consent"))["link"])
    before = _image_hashes(give_preference(c, "oversized knit jumpers"))
    a = Answers.make(11)

    # Answers keep arriving from the participant while the server is killed; only acknowledged ones count.
    acknowledged: list[tuple[str, str]] = []
    stop = threading.Event()

    def participant() -> None:
        try:
            for x in LETTERS4:
                for what in ("wear", "rate", "feedback"):
                    if stop.is_set():
                        return
                    if what == "wear":
                        c.predict(*a.wear[x], api_name=f"/wear_{x}")
                    elif what == "rate":
                        c.predict(a.ratings[x], api_name=f"/rate_{x}")
                    else:
                        c.predict(a.feedback[x], api_name=f"/feedback_{x}")
                    acknowledged.append((what, x))
        except Exception:  # noqa: BLE001 — the server died under it, as intended
            return

    t = threading.Thread(target=participant)
    t.start()
    while len(acknowledged) < 5 and t.is_alive():
        t.join(0.01)
    app.kill()
    stop.set()
    t.join(60)
    assert len(acknowledged) >= 5

    with app.db() as conn:  # straight after the kill, before any restart
        wear = {r[0]: r[1] for r in conn.execute(
            "SELECT letter, COUNT(*) FROM relevance WHERE session_id = ? GROUP BY letter", (sid,))}
        ratings = dict(conn.execute("SELECT letter, rating FROM ratings WHERE session_id = ?", (sid,)).fetchall())
        feedback = dict(conn.execute("SELECT letter, text FROM feedback WHERE session_id = ?", (sid,)).fetchall())
    for what, x in acknowledged:
        if what == "wear":
            assert wear.get(x) == 4
        elif what == "rate":
            assert ratings[x] == a.ratings[x]
        else:
            assert feedback[x] == a.feedback[x]

    again = served.start("kill")
    try:
        c2 = client(again.url)
        page = outputs(c2.predict(f"{again.url}?session={sid}", api_name="/resume"))
        assert _image_hashes(page) == before  # the very same pictures
        for what, x in acknowledged:
            if what == "wear":
                assert [page[f"wear_{x}{i}"] for i in range(1, 5)] == a.wear[x]
            elif what == "rate":
                assert page[f"rating_{x}"] == a.ratings[x]
            else:
                assert page[f"feedback_{x}"] == a.feedback[x]
        for x in LETTERS4:  # finish the study after the restart
            c2.predict(*a.wear[x], api_name=f"/wear_{x}")
            c2.predict(a.ratings[x], api_name=f"/rate_{x}")
        c2.predict(*a.ranking[:3], api_name="/rank")
        done = finish(c2, a)
        assert "DU-" in value(done["done"])
    finally:
        again.stop()
