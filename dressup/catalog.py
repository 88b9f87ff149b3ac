"""Load a catalogue in DeepFashion's "Category and Attribute Prediction Benchmark" format (and In-shop's partition).

A catalogue folder holds::

    Anno/list_category_cloth.txt   category_name  category_type      (type 1 upper, 2 lower, 3 full body)
    Anno/list_category_img.txt     image_name  category_label        (1-based index into the file above)
    Anno/list_attr_cloth.txt       attribute_name  attribute_type
    Anno/list_attr_img.txt         image_name  v1 v2 ... vN          (1 present, -1 absent, 0 unknown)
    Eval/list_eval_partition.txt   image_name  evaluation_status     (train / val / test)
    Anno/list_attr_type.txt        type_id  type_name                (optional, our extension)
    img/...                        the images

Each file starts with a count line and a header line. Names may contain spaces: the numeric columns are the
last tokens. What a numeric attribute type *means* differs between DeepFashion's releases (see
``RELEASE_TYPE_NAMES``); ``list_attr_type.txt`` names the types explicitly and wins when present (the demo
catalogue writes one). Every malformed file raises ``CatalogError`` naming the file, the line and what was
expected, because a silently misread annotation would only show up weeks later as a bad study.

This module holds the loaded records (``Catalog``, ``InshopBenchmark``) and the cross-checks between files;
each file's parser is in ``dressup.catalog_files``, caption wording in ``dressup.captions`` and fetching a
Hub dataset in ``dressup.catalog_hub``. Their public names are re-exported here, where the rest of the
library imports them from. ``load_inshop`` reads the In-shop Clothes Retrieval partition, whose
``list_eval_partition.txt`` has a third column, the garment id.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dressup.captions import (
    CAPTION_FIRST,
    DEFAULT_PHRASE,
    NAME_PHRASES,
    PHRASES,
    SILENT_PREFIX,
    attribute_caption,
    attribute_phrase,
    category_caption,
    category_name,
)
from dressup.catalog_files import (
    ATTR_CLOTH,
    ATTR_IMG,
    ATTR_TYPE,
    CATEGORY_CLOTH,
    CATEGORY_IMG,
    INSHOP_SPLITS,
    PARTITION,
    RELEASE_TYPE_NAMES,
    REQUIRED_FILES,
    SPLITS,
    CatalogError,
    Hasher,
    check_root,
    images_exist,
    read_attribute_list,
    read_attribute_rows,
    read_categories,
    read_category_images,
    read_partition,
    type_names,
)
from dressup.catalog_hub import catalogue_from_hub
from dressup.records import Item

__all__ = [
    "ATTR_CLOTH", "ATTR_IMG", "ATTR_TYPE", "CAPTION_FIRST", "CATEGORY_CLOTH", "CATEGORY_IMG", "DEFAULT_PHRASE",
    "INSHOP_SPLITS", "NAME_PHRASES", "PARTITION", "PHRASES", "RELEASE_TYPE_NAMES", "REQUIRED_FILES",
    "SILENT_PREFIX", "SPLITS", "Catalog", "CatalogError", "InshopBenchmark", "attribute_caption",
    "attribute_phrase", "catalogue_from_hub", "category_caption", "category_name", "load_catalog", "load_inshop",
]

log = logging.getLogger(__name__)


@dataclass
class Catalog:
    """A loaded catalogue. ``items`` keep the order of list_category_img.txt; ``by_id`` indexes them."""

    root: Path
    items: list[Item]
    attribute_names: list[str]
    attribute_types: dict[str, str]  # attribute name -> type name
    categories: list[str]  # every category of list_category_cloth.txt, in file order
    missing_images: int = 0
    type_order: list[str] = field(default_factory=list)  # type names by type id (caption order after colour)
    splits: tuple[str, ...] = ()  # splits named in the partition file
    annotation_hash: str = ""
    by_id: dict[str, Item] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.by_id = {item.item_id: item for item in self.items}

    def split(self, name: str) -> list[Item]:
        """Items of one split ("train", "val", "test"), or every item for "all"."""
        if name == "all":
            return list(self.items)
        if name not in self.splits:
            raise CatalogError(f"catalogue {self.root} has no split {name!r}; it has {list(self.splits)} (or 'all')")
        return [item for item in self.items if item.split == name]

    def hash(self) -> str:
        """sha256 of the annotation files (names and bytes): an index built on another version is stale."""
        return self.annotation_hash

    def attribute_values(self, type_name: str) -> list[str]:
        """Attribute names of one type in file order, e.g. every colour; [] for a type the catalogue lacks."""
        return [a for a in self.attribute_names if self.attribute_types[a] == type_name]


@dataclass
class _Annotations:
    """Everything the five (or six) annotation files say, parsed and cross-checked, before items are built."""

    categories: list[tuple[str, int]]  # (name, type) in file order
    attribute_names: list[str]
    attribute_types: dict[str, str]
    type_order: list[str]
    images: dict[str, tuple[int, int]]  # image name -> (category index, line)
    present: dict[str, np.ndarray]  # image name -> indices of its present attributes
    partition: dict[str, tuple[str, str, int]]  # image name -> (split, garment id, line)


def _attribute_types(root: Path, hasher: Hasher, names: list[str], type_ids: list[int], lines: list[int]
                     ) -> tuple[dict[str, str], list[str]]:
    """(attribute name -> type name, type names by type id), checking that every attribute's type is named."""
    type_table, type_source = type_names(root, hasher, len(names))
    for name, type_id, number in zip(names, type_ids, lines):
        if type_id not in type_table:
            raise CatalogError(
                f"{ATTR_CLOTH} line {number}: attribute {name!r} has type {type_id}, which {type_source} does not "
                f"define (it defines {sorted(type_table)})"
            )
    return {name: type_table[t] for name, t in zip(names, type_ids)}, [type_table[t] for t in sorted(type_table)]


def _cross_check(images: dict[str, tuple[int, int]], present: dict[str, np.ndarray],
                 partition: dict[str, tuple[str, str, int]]) -> None:
    """Every image must be listed in list_category_img.txt, list_attr_img.txt and the partition file."""
    for name, (_, _, number) in partition.items():
        if name not in images:
            raise CatalogError(
                f"{PARTITION} line {number}: {name} is not listed in {CATEGORY_IMG}; every image must be listed "
                f"in {CATEGORY_IMG}, {ATTR_IMG} and {PARTITION}"
            )
    for name, (_, number) in images.items():
        for rel, table in ((ATTR_IMG, present), (PARTITION, partition)):
            if name not in table:
                raise CatalogError(f"{CATEGORY_IMG} line {number}: {name} has no row in {rel}; every image must be listed in all three files")


def _read_annotations(root: Path, hasher: Hasher) -> _Annotations:
    """Parse every annotation file of a Category-benchmark folder (in a fixed order: the hash depends on it)."""
    categories = read_categories(root, hasher)
    attr_names, attr_type_ids, attr_lines = read_attribute_list(root, hasher)
    attribute_types, type_order = _attribute_types(root, hasher, attr_names, attr_type_ids, attr_lines)
    images = read_category_images(root, hasher, len(categories))
    present = read_attribute_rows(root, hasher, len(attr_names), images)
    partition = read_partition(root, hasher, SPLITS)
    _cross_check(images, present, partition)
    return _Annotations(categories, attr_names, attribute_types, type_order, images, present, partition)


def _build_items(root: Path, ann: _Annotations, names: list[str], exists: list[bool], *, caption_category: bool,
                 require_images: bool) -> list[Item]:
    """One ``Item`` per listed image (in list_category_img.txt order), captioned; absent images dropped only
    when ``require_images``. Empties ``ann.present`` as it goes."""
    items: list[Item] = []
    # Items with the same noun and attributes share one attribute tuple, type dict and caption: DeepFashion's
    # 289k items repeat combinations, and a copy of each per item was most of a catalogue's memory.
    shared: dict[tuple[str, bytes], tuple[tuple[str, ...], dict[str, str], str]] = {}
    for name, found in zip(names, exists):
        indices = ann.present.pop(name)  # freed as we go: the parse tables and the items never peak together
        if require_images and not found:
            continue
        category, ctype = ann.categories[ann.images[name][0]]
        noun = category if caption_category else "garment"
        key = (noun, indices.tobytes())
        if key not in shared:
            attrs = tuple(ann.attribute_names[i] for i in indices)
            types = {a: ann.attribute_types[a] for a in attrs}
            shared[key] = (attrs, types, attribute_caption(noun, attrs, types, ann.type_order))
        attrs, types, caption = shared[key]
        split, garment, _ = ann.partition[name]
        items.append(Item(item_id=name, image_path=root / name, category=category, category_type=ctype,
                          attributes=attrs, attribute_types=types, split=split, caption=caption,
                          garment_id=garment))
    return items


def load_catalog(root: str | Path, *, caption_category: bool = True, require_images: bool = False) -> Catalog:
    """Read and cross-check a DeepFashion-format catalogue (see the module docstring for the layout).

    Captions start with the category name ("dress with red colour, ...") when ``caption_category`` is true,
    else with "garment". Items whose image file is absent are kept and counted in ``missing_images`` (a
    partial download is still a usable catalogue for annotations); ``require_images=True`` drops them.
    """
    root = Path(root).expanduser().resolve()
    check_root(root, REQUIRED_FILES, "a DeepFashion Category and Attribute Prediction folder")
    hasher = hashlib.sha256()
    ann = _read_annotations(root, hasher)
    names = list(ann.images)
    exists = images_exist(root, names)
    items = _build_items(root, ann, names, exists, caption_category=caption_category, require_images=require_images)
    missing = exists.count(False)
    if missing:
        action = "dropped (require_images=True)" if require_images else "kept; require_images=True drops them"
        log.warning("%d of %d images listed in %s are missing under %s: %s", missing, len(names), CATEGORY_IMG, root, action)
    return Catalog(
        root=root,
        items=items,
        attribute_names=ann.attribute_names,
        attribute_types=ann.attribute_types,
        categories=[c for c, _ in ann.categories],
        missing_images=missing,
        type_order=ann.type_order,
        splits=tuple(s for s in SPLITS if any(v[0] == s for v in ann.partition.values())),
        annotation_hash=hasher.hexdigest(),
    )


@dataclass
class InshopBenchmark:
    """DeepFashion In-shop Clothes Retrieval partition: images of garments seen several times.

    Top-k retrieval accuracy searches ``gallery`` with each of ``queries`` and counts a hit when an image of
    the same ``Item.garment_id`` is among the first k. Items carry only id, path, split and garment id
    (In-shop's partition has no categories or attributes): category "" and caption "".
    """

    root: Path
    queries: list[Item]
    gallery: list[Item]
    train: list[Item]
    missing_images: int = 0


def load_inshop(root: str | Path) -> InshopBenchmark:
    """Read an In-shop folder (``Eval/list_eval_partition.txt`` with item ids, and ``img/``).

    ``root`` is the In-shop folder itself, or a catalogue folder with an ``inshop/`` subfolder (where
    ``dressup.democatalog`` writes its In-shop partition).
    """
    root = Path(root).expanduser().resolve()
    if (root / "inshop" / PARTITION).is_file():
        root = root / "inshop"
    check_root(root, (PARTITION,), "an In-shop Clothes Retrieval folder")
    partition = read_partition(root, None, INSHOP_SPLITS)
    if any(not garment for _, garment, _ in partition.values()):
        raise CatalogError(
            f"{root / PARTITION} has no item_id column; an In-shop partition needs the header "
            f"'image_name item_id evaluation_status'"
        )
    names = list(partition)
    exists = images_exist(root, names)
    by_split: dict[str, list[Item]] = {s: [] for s in INSHOP_SPLITS}
    for name in names:
        split, garment, _ = partition[name]
        by_split[split].append(Item(name, root / name, "", 0, (), {}, split, "", garment))
    missing = exists.count(False)
    if missing:
        log.warning("%d of %d In-shop images listed in %s are missing under %s", missing, len(names), PARTITION, root)
    garments_with_query = {i.garment_id for i in by_split["query"]}
    if garments_with_query and not garments_with_query & {i.garment_id for i in by_split["gallery"]}:
        raise CatalogError(f"{root / PARTITION}: no query garment has a gallery image, so top-k accuracy is undefined")
    return InshopBenchmark(root, by_split["query"], by_split["gallery"], by_split["train"], missing)
