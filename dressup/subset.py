"""The paper's 14k/2k/4k subset of DeepFashion: a seeded, stratified draw written beside the cache.

The paper trained on 14 000, validated on 2 000 and retrieved from 4 000 images of DeepFashion's Category and
Attribute benchmark (209k/40k/40k), without publishing which. A study file asks for such a subset with
``[catalogue] subset = { train = 14000, val = 2000, test = 4000 }``; this module draws it so that anyone with the
same annotation files, seed and counts gets the same images:

* each of DeepFashion's own partitions (train/val/test) is drawn from separately, so no test image ever
  trains an encoder;
* within a partition, each category gets its proportional share of the count (largest-remainder rounding,
  ties to the larger category, then by name), so category proportions stay within one item of the
  partition's and a rare category is not lost to chance;
* within a category, items are taken in the order of a permutation seeded by (study seed, partition,
  category) over their sorted image names: the draw depends neither on the files' row order nor on the
  other categories, nor on Python's string hashing;
* the draw uses the annotation files only (not which images happen to be on disk), so a partial download
  cannot silently change it; a chosen image missing on disk is an error.

The chosen names are written to ``<cache_dir>/subset/<study name>-<key>.txt`` (``key``: the annotation
hash, seed and counts), with a header saying how they were made: the record a paper's reader can check.
``study_catalog`` is how every part of the library loads a study's catalogue; it reads that file, or draws
and writes it when it is missing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from dressup.catalog import SPLITS, Catalog, load_catalog
from dressup.config import Study
from dressup.files import atomic_write
from dressup.records import Item

SUBSET_VERSION = 1  # bump when the drawing rule changes: the key, and so the file name, changes with it


class SubsetError(ValueError):
    """A subset cannot be drawn or read as the study file asks; the message names the counts and the fix."""


@dataclass
class SubsetInfo:
    """What ``write_study_subset`` wrote: the file, its key and the chosen counts by split and category."""

    path: Path
    key: str
    counts: dict[str, int]
    categories: dict[str, dict[str, int]]


def allocate(sizes: Mapping[str, int], total: int) -> dict[str, int]:
    """``total`` shared over groups in proportion to ``sizes`` (Hamilton's largest-remainder method).

    Every share is the floor or the ceiling of its exact quota ``total * size / sum(sizes)``, so it is within
    one of it; the units left after the floors go to the largest remainders (ties: larger group, then name).
    """
    whole = sum(sizes.values())
    if not 0 <= total <= whole:
        raise SubsetError(f"cannot draw {total} of {whole} items")
    if total == 0:
        return {g: 0 for g in sizes}
    shares = {g: total * n // whole for g, n in sizes.items()}
    remainders = {g: total * n % whole for g, n in sizes.items()}  # exact integer remainders, no float ties
    left = total - sum(shares.values())
    for g in sorted(sizes, key=lambda g: (-remainders[g], -sizes[g], g))[:left]:
        shares[g] += 1
    return shares


def _stratum_seed(seed: int, split: str, category: str) -> list[int]:
    digest = hashlib.sha256(f"{split}\0{category}".encode()).digest()
    return [int(seed), int.from_bytes(digest[:8], "little")]


def select_subset(items: Sequence[Item], counts: Mapping[str, int], seed: int,
                  root: Path | str = "the catalogue", where: str = "the study file") -> list[Item]:
    """The items of the subset, in catalogue order (see the module docstring for the rule).

    Raises ``SubsetError`` naming every partition that has fewer items than ``counts`` asks for.
    """
    by_stratum: dict[str, dict[str, list[Item]]] = {s: {} for s in counts}
    for it in items:
        if it.split in by_stratum:
            by_stratum[it.split].setdefault(it.category, []).append(it)
    short = {s: sum(map(len, by_stratum[s].values())) for s in counts}
    short = {s: n for s, n in short.items() if n < counts[s]}
    if short:
        have = ", ".join(f"{n:,} {s} images but subset.{s} = {counts[s]:,}" for s, n in short.items())
        raise SubsetError(f"catalogue {root} has {have}; a subset cannot be larger than the partition it is drawn "
                          f"from. Lower those counts in [catalogue] subset of {where}, or point [catalogue] root at "
                          f"the full DeepFashion Category and Attribute benchmark (209,222 train, 40,000 val, "
                          f"40,000 test images)")
    chosen: set[str] = set()
    for split, by_category in by_stratum.items():
        shares = allocate({c: len(v) for c, v in by_category.items()}, counts[split])
        for category, members in by_category.items():
            names = sorted(it.item_id for it in members)
            order = np.random.default_rng(_stratum_seed(seed, split, category)).permutation(len(names))
            chosen.update(names[i] for i in order[:shares[category]])
    return [it for it in items if it.item_id in chosen]


def subset_key(catalog: Catalog, counts: Mapping[str, int], seed: int) -> str:
    """What the draw depends on: the rule's version, the annotation files, the seed and the counts."""
    parts = {"version": SUBSET_VERSION, "annotations": catalog.hash(), "seed": int(seed),
             "counts": {s: int(counts[s]) for s in sorted(counts)}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def subset_path(study: Study, catalog: Catalog) -> Path:
    """``<cache_dir>/subset/<study name>-<key>.txt``: another catalogue, seed or count is another file."""
    return study.cache_dir / "subset" / f"{study.name}-{subset_key(catalog, study.catalogue.subset, study.seed)}.txt"


def _header(study: Study, catalog: Catalog, chosen: Sequence[Item]) -> list[str]:
    c = study.catalogue
    asked = ", ".join(f"{s} = {n}" for s, n in c.subset.items())
    got = Counter(it.split for it in chosen)
    return [
        "# Dress-UP catalogue subset (dressup.subset; `python -m dressup subset --study FILE` rewrites it)",
        f"# study {study.name} ({study.path}), seed {study.seed}, [catalogue] subset = {{ {asked} }}",
        f"# catalogue {catalog.root}, annotation sha256 {catalog.hash()}, rule version {SUBSET_VERSION}",
        "# within each DeepFashion partition, categories get proportional shares (largest remainder); within a",
        "# category, items follow a permutation seeded by (seed, partition, category) of their sorted names",
        f"# {len(chosen)} images: " + ", ".join(f"{got[s]} {s}" for s in c.subset) + "; one per line: image_name split",
    ]


def _write(path: Path, header: Sequence[str], chosen: Sequence[Item]) -> None:
    lines = [line + "\n" for line in header] + [f"{it.item_id} {it.split}\n" for it in chosen]
    atomic_write(path, "".join(lines))  # several processes may write the same file


def _read(path: Path, catalog: Catalog, counts: Mapping[str, int]) -> list[Item]:
    """The items a subset file names, checked against the catalogue and the counts asked for."""
    fix = f"delete {path} and run `python -m dressup subset --study FILE` to draw it again"
    chosen: list[Item] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.rstrip("\n").rsplit(None, 1)
            item = catalog.by_id.get(parts[0]) if len(parts) == 2 else None
            if item is None or item.split != parts[1]:
                raise SubsetError(f"{path} line {number}: {line.strip()!r} is not an image of the catalogue "
                                  f"{catalog.root} in that partition; {fix}")
            chosen.append(item)
    got = Counter(it.split for it in chosen)
    if dict(got) != {s: n for s, n in counts.items() if n}:
        raise SubsetError(f"{path} holds {dict(got)} images, not the {dict(counts)} asked for; {fix}")
    return chosen


def _full_catalog(study: Study) -> Catalog:
    c = study.catalogue
    return load_catalog(c.root, caption_category=c.caption_category, require_images=False)


def write_study_subset(study: Study) -> SubsetInfo:
    """Draw the study's subset and (re)write its file; what ``python -m dressup subset`` runs."""
    if not study.catalogue.subset:
        raise SubsetError(f"{study.path} sets no [catalogue] subset; add e.g. "
                          "subset = { train = 14000, val = 2000, test = 4000 } (the paper's) under [catalogue]")
    catalog = _full_catalog(study)
    chosen = select_subset(catalog.items, study.catalogue.subset, study.seed, catalog.root, str(study.path))
    key = subset_key(catalog, study.catalogue.subset, study.seed)
    path = subset_path(study, catalog)
    _write(path, _header(study, catalog, chosen), chosen)
    categories: dict[str, dict[str, int]] = {s: {} for s in study.catalogue.subset}
    for it in chosen:
        categories[it.split][it.category] = categories[it.split].get(it.category, 0) + 1
    return SubsetInfo(path, key, dict(Counter(it.split for it in chosen)), categories)


def study_catalog(study: Study) -> Catalog:
    """The study's catalogue as every part of the library should see it: its ``[catalogue] subset`` when set
    (read from its file, drawn and written when the file is missing), else every item whose image exists."""
    c = study.catalogue
    if not c.subset:
        return load_catalog(c.root, caption_category=c.caption_category, require_images=True)
    catalog = _full_catalog(study)
    path = subset_path(study, catalog)
    if path.is_file():
        chosen = _read(path, catalog, c.subset)
    else:
        chosen = select_subset(catalog.items, c.subset, study.seed, catalog.root, str(study.path))
        _write(path, _header(study, catalog, chosen), chosen)
    if catalog.missing_images:
        missing = [it.item_id for it in chosen if not os.path.isfile(it.image_path)]
        if missing:
            raise SubsetError(f"{len(missing):,} of the {len(chosen):,} subset images ({path}) are missing under "
                              f"{catalog.root}, e.g. {missing[:3]}; the subset is drawn from the annotation files, "
                              "so it needs DeepFashion's img/ folder in full (download and unpack img.zip)")
    return dataclasses.replace(catalog, items=chosen, missing_images=0,
                               splits=tuple(s for s in SPLITS if s in c.subset))
