"""Blinding: nothing a participant can see or fetch names an arm, an encoder or a model.

Scans the page HTML, ``/config``, the API description, every API response of a whole session (including
error messages) and every image served: its URL and file name, its pixel size, format and PNG chunks, and
its bytes against the hash the database recorded. The researcher endpoint is scanned too, with the right
password, to show the scanner does find the names when they are there. The session tests run on the tiny
demo-like study and on the paper twin (tests/paper_twin.py), each with its own secret words: the twin's include
the real Hub ids' distinctive parts ("fashion-clip", "stable-diffusion", "patrickjohncyh", "marqo") and its
arms' names.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import struct
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest
from gradio_client import handle_file
from PIL import Image

from study.session import CELL_PIXELS, Sessions
from study.store import Store
from tests.app_fixtures import (
    LETTERS4,
    PASSWORD,
    PASSWORD_ENV,
    Answers,
    answer_grids,
    client,
    finish,
    give_preference,
    outputs,
    photos,
    tiny_arms,
    tiny_study,
    value,
)


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _post_call(base: str, api_name: str, data: list[Any]) -> str:
    """A raw HTTP call, as anyone could make without gradio_client (which refuses private endpoints)."""
    req = urllib.request.Request(f"{base}gradio_api/call/{api_name}", data=json.dumps({"data": data}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        event_id = json.loads(r.read())["event_id"]
    with urllib.request.urlopen(f"{base}gradio_api/call/{api_name}/{event_id}", timeout=60) as r:
        return r.read().decode()


def leaks(text: str, words: list[str]) -> list[str]:
    low = text.lower()
    return [w for w in words if w.lower() in low]


def png_chunks(data: bytes) -> list[str]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "served image is not a PNG"
    pos, names = 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        names.append(kind.decode("latin-1"))
        pos += 12 + length
    return names


@pytest.fixture(scope="module")
def session_transcript(served):
    """One whole participant session through the API, keeping every response."""
    app = served.app()
    c = client(app.url)
    a = Answers.make(3, tag="-blind")
    responses: list[Any] = []
    first = outputs(c.predict(api_name="/consent"))
    responses.append(first)
    sid = value(first["link"])
    try:  # an error message is a response too
        give_preference(c, "anything", files=[])
    except Exception as e:  # noqa: BLE001 — gradio_client's AppError
        responses.append(str(e))
        assert "2 to 4 photos" in str(e)
    # every colour avoided: where the catalogue names colours (the tiny study), the catalogue arms cannot fill a
    # grid, and the message must not say whose grid failed; DeepFashion's attributes name no colours (the twin),
    # so nothing is excluded, the generator is told to avoid them, and the grids are shown and scanned
    every_colour = "red, orange, yellow, green, blue, purple, pink, brown, black, white, grey"

    def avoiding():
        return c.predict("a shirt", [handle_file(str(p)) for p in photos(2)], None, "any", every_colour,
                         api_name="/submit_preference")

    if served.colour_grounding:
        with pytest.raises(Exception, match="Too few garments match") as refused:
            avoiding()
        responses.append(str(refused.value))
    else:
        grids = outputs(avoiding())
        assert all(grids[f"img_{x}{i}"] for x in LETTERS4 for i in range(1, 5))
        responses.append(grids)
    shown = give_preference(c, a.text)
    responses.append(shown)
    answer_grids(c, a)
    done = finish(c, a)
    responses.append(done)
    responses.append(outputs(c.predict(f"{app.url}?session={sid}", api_name="/resume")))
    return app, sid, shown, responses, served


def test_no_response_of_a_whole_session_names_an_arm(session_transcript):
    _, _, _, responses, served = session_transcript
    text = json.dumps(responses, default=str)
    assert leaks(text, served.secret_words) == []
    assert "img/" not in text  # no catalogue item id (they name folders like img/Red_Dress/...)


def test_page_config_and_api_description_name_no_arm(session_transcript):
    app, served = session_transcript[0], session_transcript[-1]
    for path in ("", "config", "gradio_api/info", "gradio_api/openapi.json", "researcher"):
        status, body = _get(app.url + path)
        assert leaks(body.decode("utf-8", "replace"), served.secret_words) == [], path
    status, body = _get(app.url + "gradio_api/info")
    assert json.loads(body)["named_endpoints"] == {}  # every endpoint is undocumented
    assert _get(app.url + "monitoring")[0] != 200


def test_served_images_are_neutral_identical_pngs_with_the_recorded_bytes(session_transcript):
    app, sid, shown, _, _ = session_transcript
    with app.db() as conn:
        recorded = {(r["letter"], r["position"]): r["image_sha256"] for r in conn.execute(
            "SELECT letter, position, image_sha256 FROM shown WHERE session_id = ?", (sid,))}
    assert len(recorded) == 16
    for letter in LETTERS4:
        for pos in range(1, 5):
            f = shown[f"img_{letter}{pos}"]
            assert f["orig_name"] == "image.png"
            assert re.fullmatch(r".*/gradio_api/file=.*/[0-9a-f]{64}/image\.png", f["url"]), f["url"]
            status, data = _get(f["url"])
            assert status == 200
            assert hashlib.sha256(data).hexdigest() == recorded[(letter, pos)]
            assert set(png_chunks(data)) == {"IHDR", "IDAT", "IEND"}  # no text, time, EXIF or colour chunks
            im = Image.open(io.BytesIO(data))
            assert (im.format, im.mode, im.size) == ("PNG", "RGB", (CELL_PIXELS, CELL_PIXELS))
            assert im.info == {}


def test_results_and_models_are_never_served(session_transcript):
    app, sid, _, _, served = session_transcript
    study = app.study
    with app.db() as conn:
        sha = conn.execute("SELECT image_sha256 FROM shown WHERE session_id = ?", (sid,)).fetchone()[0]
        upload = conn.execute("SELECT path FROM uploads WHERE session_id = ?", (sid,)).fetchone()[0]
    for path in (study.results_dir / "stimuli" / f"{sha}.png", upload, study.db_path, study.path,
                 study.catalogue.root / "Anno" / "list_category_img.txt", *served.private_paths()):
        assert _get(f"{app.url}gradio_api/file={urllib.parse.quote(str(path))}")[0] in (403, 404), path


def test_researcher_endpoint_refuses_wrong_passwords_and_names_arms_only_behind_the_right_one(session_transcript):
    """Gradio runs even "private" handlers for a raw HTTP call, so the handler itself must refuse."""
    app, served = session_transcript[0], session_transcript[-1]
    wrong = _post_call(app.url, "researcher_counts", ["guess"])
    assert "Wrong password" in wrong and leaks(wrong, served.secret_words) == []
    right = _post_call(app.url, "researcher_counts", [PASSWORD])
    # the scanner finds names when they are there (the first retrieval arm and the generative arm)
    assert set(leaks(right, served.secret_words)) >= {served.arm_names[0], served.arm_names[-1]}


def test_researcher_page_is_not_built_without_its_env_var(monkeypatch, tmp_path):
    from study.ui import build_ui

    study = tiny_study().load(results_dir=tmp_path)
    sessions = Sessions(study, tiny_arms(), Store(study.db_path, study.name))
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    off = build_ui(sessions)
    assert [p[0] for p in off.pages] == [""]
    assert not any(d.api_name and "researcher" in d.api_name for d in off.fns.values())
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    assert "researcher" in [p[0] for p in build_ui(sessions).pages]
