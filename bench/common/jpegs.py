"""Catalogue inputs for the indexing and encoding benchmarks: many real JPEG files of drawn garments, written
once and reused, and the built demo catalogue's items when it exists.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
JPEG_DIR = Path("/tmp/dressup-bench/jpegs")
DEMO_CATALOGUE = REPO / "cache" / "demo" / "catalogue"


def jpeg_items(n: int, *, folder: Path = JPEG_DIR, size: int = 64, distinct: int | None = None,
               progress: bool = True) -> list:
    """``n`` catalogue items (``dressup.records.Item``) whose images are real JPEG files on disk.

    The images are demo garments drawn by ``dressup.democatalog`` (200 of them), each file a copy with its
    own pixel noise so no two files are identical. Files are written once into ``folder`` and reused by later
    runs. ``distinct`` < n writes only that many files and lists them repeatedly (what matters to a streaming
    indexer is the number of items read, not the number of distinct files).
    """
    from PIL import Image
    from tqdm.auto import tqdm

    from dressup.democatalog import draw_garment, sample_garment, sample_pose
    from dressup.records import Item

    distinct = min(n, distinct or n)
    folder = folder / f"{size}px"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i // 10_000:02d}" / f"img_{i:08d}.jpg" for i in range(distinct)]
    missing = [i for i, p in enumerate(paths) if not p.is_file()]
    if missing:
        rng = np.random.default_rng(0)
        bases = []
        for _ in range(200):
            g = sample_garment(rng)
            bases.append(np.asarray(draw_garment(g, sample_pose(rng, g), size), dtype=np.int16))
        for i in tqdm(missing, desc=f"writing {len(missing):,} JPEGs to {folder}", disable=not progress):
            noise = np.random.default_rng(i).integers(-6, 7, bases[0].shape, dtype=np.int16)
            img = Image.fromarray(np.clip(bases[i % len(bases)] + noise, 0, 255).astype(np.uint8), "RGB")
            paths[i].parent.mkdir(exist_ok=True)
            tmp = paths[i].with_suffix(".tmp")
            img.save(tmp, "JPEG", quality=92, subsampling=0)
            tmp.replace(paths[i])
    return [Item(item_id=f"bench/{i:08d}", image_path=paths[i % distinct], category="bench", category_type=1,
                 attributes=(), attribute_types={}, split="train", caption="") for i in range(n)]


def demo_catalogue_items() -> list:
    """The built demo catalogue's items (all splits), or [] if ``cache/demo/catalogue`` is not built."""
    if not (DEMO_CATALOGUE / "Anno").is_dir():
        return []
    from dressup.catalog import load_catalog

    return load_catalog(DEMO_CATALOGUE, require_images=True).items


