"""Real photos as a participant's only upload: what each arm returns for them, as grids and a table.

Each photo goes through the app's own path (``load_image`` -> ``Preference`` -> ``arm.recommend``), so the
grids are what a participant uploading that photo would see. The photos shipped with the repository are in
``assets/photos`` (``default_photos_dir``). Writes ``photos/`` (one grid per photo and arm, and an overview),
``photos.csv`` and ``photos.md``.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw

from dressup.config import Study
from dressup.eval_report import Evaluation, counts, write_csv
from dressup.grid import grid_image
from dressup.images import load_image
from dressup.protocols import Arm
from dressup.queries import value_of
from dressup.records import Preference, Shown
from dressup.tables import markdown_table

if TYPE_CHECKING:
    from dressup.arms import StudyModels

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
CELL = 220  # pixels of one grid in the overview


def default_photos_dir() -> Path:
    """The real product photos shipped with the repository (``assets/photos``, MIT, see its NOTICE.md)."""
    return Path(__file__).resolve().parents[1] / "assets" / "photos"


def _photo_row(photo: Path, arm_name: str, arm: Arm, shown: list[Shown], out: Path, path: Path) -> dict[str, Any]:
    """One (photo, arm) row of ``Evaluation.photos``: what the returned items are."""
    index = getattr(arm, "index", None)  # a generative arm's images are no catalogue items
    by_id = {it.item_id: it for it in index.items} if index is not None else {}
    got = [by_id.get(s.item_id) for s in shown]
    return {"photo": photo.name, "arm": arm_name,
            "categories": [it.category if it else "generated" for it in got],
            "colours": [(value_of(it, "colour") or "") if it else "?" for it in got],
            "patterns": [(value_of(it, "pattern") or "") if it else "?" for it in got],
            "grid": str(path.relative_to(out))}


def _run_photo(photo: Path, row: int, arms: dict[str, Arm], out: Path, overview: Image.Image,
               draw: ImageDraw.ImageDraw, result: Evaluation) -> None:
    """One photo through every arm: each grid saved, and the photo's row of the overview drawn."""
    folder = out / "photos"
    image = load_image(photo)
    y = 30 + row * (CELL + 30)
    thumb = image.copy()
    thumb.thumbnail((CELL, CELL))
    overview.paste(thumb, (8 + (CELL - thumb.width) // 2, y + (CELL - thumb.height) // 2))
    draw.text((8, y + CELL + 4), photo.name, fill="black", font_size=12)
    for c, (name, arm) in enumerate(arms.items(), start=1):
        shown = arm.recommend(Preference(images=[image]), seed=0)
        grid = grid_image([s.image for s in shown])
        path = folder / f"{photo.stem}-{name}.png"
        grid.save(path)
        result.files.append(path)
        result.photos.append(_photo_row(photo, name, arm, shown, out, path))
        overview.paste(grid.resize((CELL, CELL), Image.Resampling.LANCZOS), (8 + c * (CELL + 8), y))
        summary = ", ".join(f"{n}x {cat}" for cat, n in counts(result.photos[-1]["categories"]))
        draw.text((8 + c * (CELL + 8), y + CELL + 4), summary[:40], fill="black", font_size=11)


def run_photos(arms: dict[str, Arm], photos_dir: Path, out: Path, result: Evaluation) -> None:
    """Each real photo as a participant's only upload, through the app's path (``load_image`` ->
    ``Preference`` -> ``arm.recommend``): what comes back per arm, and each grid as a PNG."""
    photos = sorted(p for p in Path(photos_dir).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES) \
        if Path(photos_dir).is_dir() else []
    if not photos:
        result.notes.append(f"real photos not run: no JPEG/PNG/WEBP photos in {photos_dir} (pass --photos DIR)")
        return
    folder = out / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    overview = Image.new("RGB", ((len(arms) + 1) * (CELL + 8) + 8, len(photos) * (CELL + 30) + 30), "white")
    draw = ImageDraw.Draw(overview)
    for c, name in enumerate(["photo", *arms]):
        draw.text((8 + c * (CELL + 8), 8), name, fill="black", font_size=14)
    for r, photo in enumerate(photos):
        _run_photo(photo, r, arms, out, overview, draw, result)
    overview.save(folder / "overview.png")
    result.files.append(folder / "overview.png")
    rows = [[p["photo"], p["arm"], ", ".join(p["categories"]), ", ".join(p["colours"]), p["grid"]]
            for p in result.photos]
    header = ["photo", "arm", "categories returned", "colours returned", "grid"]
    result.files.append(write_csv(header, rows, out / "photos.csv"))
    (out / "photos.md").write_text(
        f"# Real photos as a participant's upload\n\nEach photo in {photos_dir} given alone (no text) to each arm "
        f"through `dressup.images.load_image` -> `Preference(images=[photo])` -> `arm.recommend`; grids in "
        f"`photos/`, all of them side by side in `photos/overview.png`.\n\n{markdown_table(header, rows)}\n",
        encoding="utf-8")
    result.files.append(out / "photos.md")


def generative_arms(study: Study, models: "StudyModels", result: Evaluation) -> dict[str, Arm]:
    """The study's generative arms, built as the app builds them; one that cannot load is noted, not fatal."""
    from dressup.arms import ARM_KINDS  # torch and the generators: only when arms are built

    arms = {}
    for spec in study.arms:
        if spec.kind == "generative":
            try:
                arms[spec.name] = ARM_KINDS[spec.kind](spec, models)
            except Exception as e:  # noqa: BLE001 — e.g. SD1.5 not downloaded: the retrieval arms still run
                result.notes.append(f"generative arm {spec.name} left out of the real-photo grids: {e}")
    return arms
