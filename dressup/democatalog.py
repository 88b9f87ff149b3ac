"""The demo profile's synthetic catalogue, written in DeepFashion's format.

No garment photographs can be downloaded on the demo's machine, yet the demo must run the paper's code path
(catalogue reader, training, index, arms). So this module draws a catalogue whose annotations are true by
construction: every item's colour, pattern, sleeve, neckline, fabric and gender is what the picture shows,
and the folder it writes is read by ``dressup.catalog.load_catalog`` exactly like DeepFashion.

What a garment is and how one is picked is ``dressup.demogarment``; its silhouettes ``dressup.demoshapes``;
drawing it as a product shot ``dressup.demodraw`` (their public names are re-exported here). This module
writes the folder: images, annotation files, the In-shop partition and the stamp that says a build is
complete. Every random choice comes from ``numpy.random.default_rng([seed, stream, index])``: the same seed
gives the same bytes, whatever the order or process that draws an item.
"""
from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from dressup.catalog import ATTR_CLOTH, ATTR_IMG, ATTR_TYPE, CATEGORY_CLOTH, CATEGORY_IMG, PARTITION
from dressup.demodraw import DRAW_VERSION, FRAME, SUPERSAMPLE, draw_garment
from dressup.demogarment import (ATTRIBUTE_TYPES, BACKGROUNDS, CATEGORIES, FABRICS, GENDERS, NECKLINES, PATTERNS,
                                 SLEEVES, Category, Garment, Pose, sample_garment, sample_pose)
from dressup.files import atomic_write

__all__ = ["ATTRIBUTE_TYPES", "BACKGROUNDS", "CATEGORIES", "FABRICS", "GENDERS", "NECKLINES", "PATTERNS", "SLEEVES",
           "Category", "Garment", "Pose", "sample_garment", "sample_pose", "DRAW_VERSION", "FRAME", "SUPERSAMPLE",
           "draw_garment", "JPEG_QUALITY", "STAMP", "PARALLEL_FROM", "demo_catalogue_matches", "build_demo_catalogue"]

JPEG_QUALITY = 92
STAMP = "demo_catalogue.json"


def _rng(seed: int, stream: int, *index: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, *index])


def _write_listing(path: Path, header: str, rows: list[str]) -> None:
    """One DeepFashion annotation file: the row count, the header, then the rows."""
    atomic_write(path, f"{len(rows)}\n{header}\n" + "".join(r + "\n" for r in rows))


PARALLEL_FROM = 1000  # images; below this, starting worker processes costs more than it saves


def _draw_one(job: tuple[Garment, Pose, int, Path]) -> None:
    garment, pose, image_size, path = job
    _save(draw_garment(garment, pose, image_size), path)


def _draw_all(jobs: list[tuple[Garment, Pose, int, Path]], progress: bool) -> None:
    """Draw and save every image, on every core for a big catalogue (4,700 images: 16 s on one core of this
    2-core machine). Each image depends only on its own garment and pose, so the files are the same however
    the work is split; workers are spawned, not forked, as the parent may already run torch's thread pool."""
    bar = tqdm(total=len(jobs), desc="drawing demo catalogue", unit="img", disable=not progress)
    workers = min(os.cpu_count() or 1, 8)
    with bar:
        if workers < 2 or len(jobs) < PARALLEL_FROM:
            for job in jobs:
                _draw_one(job)
                bar.update()
            return
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for _ in pool.map(_draw_one, jobs, chunksize=64):
                bar.update()


def _save(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # 4:4:4 chroma: at 64 px, 4:2:0 subsampling would smear 2-pixel stripes into a third colour.
    image.save(path, "JPEG", quality=JPEG_QUALITY, subsampling=0)


def _stamp(size: int, image_size: int, seed: int, inshop_garments: int) -> dict:
    return {"draw_version": DRAW_VERSION, "size": size, "image_size": image_size, "seed": seed,
            "inshop_garments": inshop_garments}


def demo_catalogue_matches(root: Path, *, size: int = 4000, image_size: int = 64, seed: int = 0,
                           inshop_garments: int = 0) -> bool:
    """True when ``root`` holds a complete demo catalogue built with these settings by this drawing code."""
    try:
        found = json.loads((Path(root) / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return found == _stamp(size, image_size, seed, inshop_garments)


def build_demo_catalogue(root: Path, *, size: int = 4000, image_size: int = 64, seed: int = 0,
                         inshop_garments: int = 0, progress: bool = True) -> Path:
    """Draw ``size`` garments into ``root`` in DeepFashion's format and return ``root``.

    Writes ``img/<Category>/img_XXXXXXXX.jpg``, the five annotation files, ``Anno/list_attr_type.txt`` and,
    last, ``demo_catalogue.json`` (the settings; see ``demo_catalogue_matches``), so an interrupted build is
    never mistaken for a finished one. Splits are 80% train, 10% val, 10% test. With ``inshop_garments=N``
    it also writes an In-shop partition under ``inshop/`` (N garments, 3-4 photos each, >= 1 query and
    >= 1 gallery photo per garment), read by ``dressup.catalog.load_inshop``. Building into a folder that
    holds a bigger earlier build leaves its extra images on disk; the annotations list only this build's.
    """
    if size < 10:
        raise ValueError(f"size={size} is too small for an 80/10/10 split; use size >= 10")
    if image_size < 16:
        raise ValueError(f"image_size={image_size} is too small to draw a garment; use image_size >= 16")
    root = Path(root)
    (root / STAMP).unlink(missing_ok=True)
    order = _rng(seed, 2).permutation(size)
    split_of = np.empty(size, dtype=object)
    split_of[order[: int(0.8 * size)]] = "train"
    split_of[order[int(0.8 * size) : int(0.9 * size)]] = "val"
    split_of[order[int(0.9 * size) :]] = "test"

    all_attributes = [a for values in ATTRIBUTE_TYPES.values() for a in values]
    category_rows, attr_rows, partition_rows = [], [], []
    label = {c.name: i + 1 for i, c in enumerate(CATEGORIES)}
    inshop = []  # (garment, number of photos), drawn up front so the progress bar knows the total
    for g in range(inshop_garments):
        rng = _rng(seed, 1, g)
        inshop.append((sample_garment(rng), int(rng.integers(3, 5))))
    jobs = []  # (garment, pose, image_size, path): sampled here, drawn by _draw_one (in worker processes)
    for i in range(size):
        garment = sample_garment(_rng(seed, 0, i))
        pose = sample_pose(_rng(seed, 3, i), garment)
        name = f"img/{garment.category}/img_{i + 1:08d}.jpg"
        jobs.append((garment, pose, image_size, root / name))
        present = set(garment.attributes)
        category_rows.append(f"{name}  {label[garment.category]}")
        attr_rows.append(name + "  " + " ".join("1" if a in present else "-1" for a in all_attributes))
        partition_rows.append(f"{name}  {split_of[i]}")
    inshop_rows = []
    for g, (garment, shots) in enumerate(inshop):
        queries = 1 if shots == 3 else 2
        for j in range(shots):
            name = f"img/{garment.category}/id_{g + 1:08d}/{j + 1:02d}.jpg"
            jobs.append((garment, sample_pose(_rng(seed, 4, g, j), garment), image_size, root / "inshop" / name))
            inshop_rows.append(f"{name}  id_{g + 1:08d}  {'query' if j < queries else 'gallery'}")
    _draw_all(jobs, progress)

    _write_listing(root / CATEGORY_CLOTH, "category_name  category_type", [f"{c.name}  {c.category_type}" for c in CATEGORIES])
    _write_listing(root / ATTR_TYPE, "type_id  type_name", [f"{i + 1}  {t}" for i, t in enumerate(ATTRIBUTE_TYPES)])
    _write_listing(
        root / ATTR_CLOTH,
        "attribute_name  attribute_type",
        [f"{a}  {i + 1}" for i, values in enumerate(ATTRIBUTE_TYPES.values()) for a in values],
    )
    _write_listing(root / CATEGORY_IMG, "image_name  category_label", category_rows)
    _write_listing(root / ATTR_IMG, "image_name  attribute_labels", attr_rows)
    _write_listing(root / PARTITION, "image_name  evaluation_status", partition_rows)

    if inshop:
        _write_listing(root / "inshop" / PARTITION, "image_name  item_id  evaluation_status", inshop_rows)
    (root / STAMP).write_text(json.dumps(_stamp(size, image_size, seed, inshop_garments)) + "\n")
    return root
