"""The catalogue check: are the images the study serves on disk, and do the annotations read?

The annotation files are read by the same ``load_catalog`` the app uses, so a malformed file is reported here
rather than at start. Which images count depends on the study: with ``[catalogue] subset`` they are the subset's
(``dressup.subset``: its file when written, else the same seeded draw, computed without writing anything), and
the app refuses to start when any of them is missing; otherwise they are every listed image, and the split the
study retrieves from must be complete (missing training images are only skipped when training).
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from dressup.catalog import PARTITION, REQUIRED_FILES, CatalogError, load_catalog
from dressup.config import Study
from dressup.doctor.base import FAULT, OK, WARN, Check, dressup_command
from dressup.records import Item

SHOW_MISSING = 3


def count_present(root: Path, names: Iterable[str]) -> tuple[int, list[str]]:
    """(how many of the image ``names`` exist under ``root``, the missing ones in order): the one place images
    are counted, whichever list of names (full catalogue, one split, a subset) a study serves."""
    base = str(root)
    present, missing = 0, []
    for name in names:
        if os.path.isfile(os.path.join(base, name)):
            present += 1
        else:
            missing.append(name)
    return present, missing


def _download_fix(study: Study) -> str:
    if study.catalogue.kind == "demo":
        return dressup_command(study.path, "demo catalogue")
    return (f"download DeepFashion's Category and Attribute Prediction Benchmark into {study.catalogue.root} "
            f"(Anno/, Eval/, and img.zip unpacked to img/)")


def _subset_items(study: Study, catalog) -> tuple[list[Item], str]:
    """The subset's items as the app will read them, and where they come from."""
    from dressup.subset import select_subset, subset_path

    path = subset_path(study, catalog)
    counts = " ".join(f"{k}={v}" for k, v in study.catalogue.subset.items())
    if not path.is_file():
        return select_subset(catalog.items, study.catalogue.subset, study.seed, catalog.root, str(study.path)), \
            f"subset {counts}, drawn as the app will draw it; its file is not written yet"
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            item = catalog.by_id.get(line.rsplit(None, 1)[0])
            if item is None:
                raise CatalogError(f"{path} names {line.strip()!r}, which the catalogue does not list; delete the "
                                   f"file and run {dressup_command(study.path, 'subset')}")
            items.append(item)
    return items, f"subset {counts} from {path}"


def check_catalogue(study: Study) -> Check:
    c = study.catalogue
    missing_files = [f for f in REQUIRED_FILES if not (c.root / f).is_file()]
    stale_demo = False
    if c.kind == "demo" and not missing_files:
        from dressup.democatalog import demo_catalogue_matches

        stale_demo = not demo_catalogue_matches(c.root, size=c.size, image_size=c.image_size, seed=c.seed,
                                                inshop_garments=c.inshop_garments)
    if missing_files or stale_demo:
        from dressup.demo import is_built

        why = f"missing {', '.join(missing_files)}" if missing_files else "drawn with other settings"
        if c.kind == "demo" and study.profile == "demo" and not is_built(study):
            return Check("*", "catalogue", WARN, f"{c.root}: {why}; the demo build draws it at first start",
                         _download_fix(study))
        return Check("*", "catalogue", FAULT, f"{c.root}: {why}", _download_fix(study))
    try:
        catalog = load_catalog(c.root, caption_category=c.caption_category, require_images=False)
        if c.subset:
            listed, source = _subset_items(study, catalog)
            served = listed  # dressup.subset.study_catalog refuses a subset with any image missing
            served_what = "the subset"
        else:
            listed, source = catalog.items, f"{len(catalog.items):,} images listed"
            served = catalog.split(c.split)
            served_what = "the catalogue" if c.split == "all" else f"the {c.split} split the study retrieves from"
    except ValueError as e:  # CatalogError, SubsetError: the message names the file, line or counts
        return Check("*", "catalogue", FAULT, f"{c.root}: {e}",
                     f"repair the annotation files ({PARTITION} and Anno/), e.g. unpack them again")
    present, missing = count_present(c.root, (it.item_id for it in listed))
    detail = f"{c.root}: {present:,} of {len(listed):,} images present ({source})"
    if not missing:
        return Check("*", "catalogue", OK, detail)
    served_ids = {it.item_id for it in served}
    served_missing = [n for n in missing if n in served_ids]
    if served_missing:
        fix = (dressup_command(study.path, "demo catalogue") + "   # redraws it" if c.kind == "demo" else
               f"unpack DeepFashion's img.zip into {c.root} so that img/... is complete")
        return Check("*", "catalogue", FAULT,
                     f"{detail}; {len(served_missing):,} missing from {served_what}, e.g. "
                     f"{', '.join(served_missing[:SHOW_MISSING])}", fix)
    return Check("*", "catalogue", WARN, f"{detail}; {len(missing):,} missing outside {served_what} (skipped when "
                 f"training), e.g. {', '.join(missing[:SHOW_MISSING])}")
