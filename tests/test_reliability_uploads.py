"""Hostile uploads through the real request path: gradio_client against the launched app, not ``load_image``.

``tests/test_images.py`` proves ``dressup.images.load_image`` on each kind of bad file; this module proves the
same files, uploaded as a participant's browser would (multipart upload to ``/gradio_api/upload``, then the
``/submit_preference`` event), get a clear message that names the problem, leave the app up and the database
exactly as it was, and write no file. The corpus is made here, by the test, so nothing is downloaded.
"""
from __future__ import annotations

import io
import random
import struct
import urllib.error
import urllib.request
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from study.ui import OOPS
from tests.crafted_images import huge_png, png_chunk
from tests.app_fixtures import (
    SECRET_WORDS,
    app_answers,
    client,
    db_rows,
    give_preference,
    integrity_check,
    lost_rows,
    outputs,
    photos,
    run_participant,
    shared_app,
    value,
)


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


@dataclass(frozen=True)
class Bad:
    """One hostile file and the words its refusal must contain (what is wrong, in the participant's terms)."""

    name: str
    data: bytes
    expect: str


def hostile_files() -> list[Bad]:
    """Files that must be refused, each with the phrase its message must carry."""
    real = photos(4)[-1].read_bytes()  # the 1000x1334 dress photo
    png = _save(Image.new("RGB", (32, 32), "blue"), "PNG")
    lying = png[:33] + bytes(random.Random(0).randrange(256) for _ in range(400))  # valid IHDR, garbage after
    big_claim = png[:16] + struct.pack(">II", 4000, 3000) + png[24:]  # IHDR says 4000x3000 (CRC now wrong)
    text_bomb = png[:33] + png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"A" * (64 << 20), 9)) + png[33:]
    heic = struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    svg = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
           b'<script>alert(document.cookie)</script><rect width="100" height="100" fill="red"/></svg>')
    corpus = [
        Bad("empty.jpg", b"", "file is empty"),
        Bad("truncated.jpg", real[: len(real) // 2], "truncated or damaged"),
        Bad("lying-header.png", lying, "damaged"),
        Bad("lying-size.png", big_claim, "damaged"),
        Bad("bomb-64000x64000.png", huge_png(64000, 64000), "64000x64000 = 4096.0 megapixels, over the limit"),
        Bad("bomb-text-chunk.png", text_bomb, "damaged"),
        Bad("huge-20000x20000.png", huge_png(20000, 20000), "20000x20000 = 400.0 megapixels"),
        Bad("photo.heic", heic, "unsupported format HEIC"),
        Bad("drawing.svg", svg, "SVG is not supported"),
        Bad("holiday.jpg", b"Dear participant,\nthis is my holiday photo.\n" * 40, "looks like text"),
        Bad("notes.txt", b"just some notes\n", "Invalid file type"),  # refused by Gradio's file_types check
    ]
    # an AVIF this Pillow cannot decode (a phone's HDR or 10-bit one, here a bare header); a readable AVIF is
    # accepted (awkward_but_valid_files)
    avif = struct.pack(">I", 24) + b"ftypavif" + b"\x00\x00\x00\x00mif1avif" + b"\x00" * 64
    corpus.append(Bad("unreadable.avif", avif, "unsupported format AVIF"))
    return corpus


def awkward_but_valid_files() -> list[tuple[str, bytes]]:
    """Real photos in unusual encodings a phone or design tool produces: each must be accepted as RGB."""
    frames = [Image.new("RGB", (60, 80), c) for c in ((200, 30, 30), (30, 200, 30), (30, 30, 200))]
    gif = _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    ramp = np.tile(np.linspace(0, 65535, 90).astype(np.uint16), (70, 1))
    sixteen = _save(Image.fromarray(ramp), "PNG")
    cmyk = _save(Image.new("CMYK", (50, 40), (255, 0, 0, 0)), "JPEG", quality=90)
    out = [("animated.gif", gif), ("sixteen-bit.png", sixteen), ("cmyk.jpg", cmyk)]
    if features.check("avif"):
        out.append(("photo.avif", _save(Image.new("RGB", (64, 48), (10, 120, 200)), "AVIF")))
    else:  # this Pillow cannot read AVIF at all: the fourth photo is a plain JPEG
        out.append(("real.jpg", photos(1)[0].read_bytes()))
    return out


def _write(folder: Path, name: str, data: bytes) -> Path:
    sub = folder / uuid.uuid4().hex[:8]  # each file its own folder: same names never collide
    sub.mkdir()
    path = sub / name
    path.write_bytes(data)
    return path


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def _assert_participant_message(message: str) -> None:
    """A refusal a participant can act on: not the neutral 'our side' message, and blind to the arms."""
    assert OOPS not in message, message
    low = message.lower()
    assert not [w for w in SECRET_WORDS if w.lower() in low], message


def test_every_hostile_upload_is_refused_clearly_and_loses_nothing(tmp_path: Path) -> None:
    app = shared_app()
    study = app.study
    earlier_sid, _, _ = run_participant(app.url, 4001)  # answers that must survive everything below
    before = db_rows(study.db_path)
    assert any(r[0] == earlier_sid for r in before["ratings"])
    uploads_before = _files_under(study.results_dir / "uploads")

    c = client(app.url)
    sid = value(outputs(c.predict(api_name="/consent"))["link"])
    good = photos(1)[0]
    tried = 0
    for bad in hostile_files():
        path = _write(tmp_path, bad.name, bad.data)
        with pytest.raises(Exception) as refused:
            give_preference(c, "linen shirts", [good, path])
        message = str(refused.value)
        tried += 1
        assert bad.expect in message, f"{bad.name}: {message}"
        if bad.expect != "Invalid file type":
            assert message.startswith("Photo 2: "), f"{bad.name}: the message says which photo: {message}"
        _assert_participant_message(message)
        assert app_answers(app), f"the app died on {bad.name}:\n{app.log()[-3000:]}"
    assert tried >= 12

    with app.db() as conn:
        row = conn.execute("SELECT status FROM sessions WHERE session_id = ?", (sid,)).fetchone()
        assert row["status"] == "consented"  # no refused file got as far as a saved preference
        assert conn.execute("SELECT COUNT(*) FROM uploads WHERE session_id = ?", (sid,)).fetchone()[0] == 0
    assert _files_under(study.results_dir / "uploads") == uploads_before  # nothing half-written
    assert not lost_rows(before, db_rows(study.db_path))
    assert integrity_check(study.db_path) == "ok"

    # the same session still works: the refusals left it usable
    page = give_preference(c, "linen shirts", photos(2))
    assert page["img_A1"] is not None


def test_photo_count_outside_the_limits_is_refused_with_the_limits(tmp_path: Path) -> None:
    app = shared_app()
    c = client(app.url)
    sid = value(outputs(c.predict(api_name="/consent"))["link"])
    five = [_write(tmp_path, f"p{i}.jpg", p.read_bytes()) for i, p in enumerate(photos(4) + photos(1))]
    for files, given in ((five, 5), (photos(1), 1), ([], 0)):
        with pytest.raises(Exception, match=f"Please add 2 to 4 photos.*you added {given}") as refused:
            give_preference(c, "pleated skirts", files)
        _assert_participant_message(str(refused.value))
    with app.db() as conn:
        assert conn.execute("SELECT COUNT(*) FROM uploads WHERE session_id = ?", (sid,)).fetchone()[0] == 0
    assert app_answers(app)


def test_awkward_but_real_photos_are_accepted_as_rgb(tmp_path: Path) -> None:
    """Animated GIF (first frame), 16-bit PNG, CMYK JPEG and AVIF (or a JPEG where Pillow has no AVIF)."""
    app = shared_app()
    c = client(app.url)
    sid = value(outputs(c.predict(api_name="/consent"))["link"])
    files = awkward_but_valid_files()
    page = give_preference(c, "bright colourful tops", [_write(tmp_path, n, d) for n, d in files])
    assert page["img_D4"] is not None
    with app.db() as conn:
        rows = conn.execute("SELECT idx, path, width, height FROM uploads WHERE session_id = ? ORDER BY idx",
                            (sid,)).fetchall()
    assert len(rows) == len(files) == 4
    for (name, data), row in zip(files, rows):
        with Image.open(io.BytesIO(data)) as original, Image.open(row["path"]) as kept:
            assert (row["width"], row["height"]) == original.size == kept.size, name
            assert kept.format == "JPEG" and kept.mode == "RGB", name
            assert not kept.info.get("exif"), name
    with Image.open(rows[0]["path"]) as first:  # the GIF's first frame is the red one
        r, g, b = first.getpixel((30, 40))
        assert r > 150 and g < 80 and b < 80
    with Image.open(rows[2]["path"]) as cyan:  # CMYK cyan became RGB cyan, not inverted
        r, g, b = cyan.getpixel((25, 20))
        assert r < 60 and g > 180 and b > 180


def test_upload_over_the_size_limit_is_refused_by_the_server() -> None:
    """gradio_client refuses a too-large file before sending it; a hand-made request must meet the server's own
    limit (``launch(max_file_size=...)``, the study's max_upload_mb): HTTP 413, nothing stored."""
    app = shared_app()
    address = "198.51.100.90"
    client(app.url, address).predict(api_name="/consent")  # uploads are taken only from a participant
    limit = int(app.study.ui.max_upload_mb * 1024 * 1024)
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + b"\xff\xd8" + b"\0" * (limit + 1024) + \
        f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(app.url + "gradio_api/upload", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                                          "X-Forwarded-For": address})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=60)
    assert refused.value.code == 413
    assert app_answers(app)
