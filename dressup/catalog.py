"""Read a catalogue in DeepFashion's "Category and Attribute Prediction Benchmark" format.

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

The same module reads the In-shop Clothes Retrieval partition (``load_inshop``), whose
``list_eval_partition.txt`` has a third column, the garment id.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dressup.records import Item

log = logging.getLogger(__name__)

CATEGORY_CLOTH = "Anno/list_category_cloth.txt"
CATEGORY_IMG = "Anno/list_category_img.txt"
ATTR_CLOTH = "Anno/list_attr_cloth.txt"
ATTR_IMG = "Anno/list_attr_img.txt"
PARTITION = "Eval/list_eval_partition.txt"
ATTR_TYPE = "Anno/list_attr_type.txt"
REQUIRED_FILES = (CATEGORY_CLOTH, CATEGORY_IMG, ATTR_CLOTH, ATTR_IMG, PARTITION)

# The numeric attribute types of DeepFashion's two releases, told apart by how many attributes they have.
RELEASE_TYPE_NAMES: dict[int, dict[int, str]] = {
    1000: {1: "texture", 2: "fabric", 3: "shape", 4: "part", 5: "style"},
    26: {1: "texture", 2: "sleeve", 3: "length", 4: "neckline", 5: "fabric", 6: "fit"},
}

# How a present attribute reads in a caption, by its type ("{x}": the name with underscores as spaces).
PHRASES: dict[str, str] = {
    "colour": "{x} colour",
    "texture": "{x} pattern",
    "fabric": "{x} fabric",
    "fit": "{x} fit",
    "neckline": "{x} neckline",
    "sleeve": "{x}",
    "length": "{x}",
    "gender": "{x}",
}
DEFAULT_PHRASE = "{x}"
# Attribute names whose phrase is not their type's pattern.
NAME_PHRASES: dict[str, str] = {"v_neckline": "v-shaped neckline", "collar": "collar"}
# Fine-grained DeepFashion marks "not applicable" with attributes such as no_dress / no_neckline: true but
# meaningless in a caption, so they are kept in Item.attributes and left out of captions.
SILENT_PREFIX = "no_"
CAPTION_FIRST = ("colour",)  # colour leads; the other types follow in the order the type ids give

SPLITS = ("train", "val", "test")
INSHOP_SPLITS = ("train", "query", "gallery")


class CatalogError(ValueError):
    """A catalogue folder or annotation file is wrong; the message names the file, the line and the fix."""


def _lines(root: Path, rel: str, hasher: Any) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line, feeding the file's name and raw bytes to ``hasher`` (sha256 or None).

    Hashing while reading means each annotation file, up to DeepFashion's 600 MB, is read once.
    """
    if hasher is not None:
        hasher.update(rel.encode() + b"\0")
    with open(root / rel, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if hasher is not None:
                hasher.update(raw)
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise CatalogError(f"{rel} line {number}: not UTF-8 text ({e}); save the file as UTF-8") from None
            yield number, text.rstrip("\r\n")


def _rows(root: Path, rel: str, hasher: Any) -> tuple[str, Iterator[tuple[int, str]]]:
    """The header line and an iterator over the non-blank data rows.

    The count on line 1 is checked against the rows actually read when the iterator is exhausted.
    """
    lines = _lines(root, rel, hasher)
    first = next(lines, None)
    if first is None or not first[1].strip().isdigit():
        got = "an empty file" if first is None else repr(first[1])
        raise CatalogError(f"{rel} line 1: expected the number of rows (an integer), got {got}")
    second = next(lines, None)
    if second is None:
        raise CatalogError(f"{rel} line 2: expected a header line (column names), the file ends after line 1")
    declared = int(first[1].strip())

    def rows() -> Iterator[tuple[int, str]]:
        seen = 0
        for number, text in lines:
            if text.strip():
                seen += 1
                yield number, text
        if seen != declared:
            raise CatalogError(f"{rel} line 1: says {declared} rows but the file has {seen}; fix the count or the rows")

    return second[1], rows()


def _split_last(rel: str, number: int, text: str, what: str) -> tuple[str, int]:
    """A row "<name with spaces>  <integer>" -> (name, integer)."""
    parts = text.rsplit(None, 1)
    if len(parts) != 2 or not parts[1].lstrip("-").isdigit() or not parts[0].strip():
        raise CatalogError(f"{rel} line {number}: expected '{what}' (a name, then an integer), got {text.strip()!r}")
    return parts[0].strip(), int(parts[1])


def _display(name: str) -> str:
    return name.replace("_", " ").strip()


def category_name(raw: str) -> str:
    """DeepFashion's category name as the library writes it: "Long_Sleeve_Top" -> "long sleeve top"."""
    return _display(raw).lower()


def attribute_phrase(name: str, type_name: str) -> str:
    """One attribute as caption text: ("striped", "texture") -> "striped pattern"."""
    if name in NAME_PHRASES:
        return NAME_PHRASES[name]
    x = _display(name)
    template = PHRASES.get(type_name, DEFAULT_PHRASE)
    suffix = template.replace("{x}", "").strip()
    return x if suffix and x.endswith(suffix) else template.format(x=x)


def attribute_caption(
    noun: str, attributes: Sequence[str], attribute_types: Mapping[str, str], type_order: Sequence[str]
) -> str:
    """The paper's caption: "garment with solid pattern, long sleeve, v-shaped neckline, chiffon fabric, ...".

    Colour comes first, then the types in ``type_order``, attributes of one type in the given (file) order.
    Without phrases the caption is the noun alone.
    """
    rank = {t: i for i, t in enumerate(list(CAPTION_FIRST) + [t for t in type_order if t not in CAPTION_FIRST])}
    shown = [a for a in attributes if not a.startswith(SILENT_PREFIX)]
    shown.sort(key=lambda a: rank.get(attribute_types.get(a, ""), len(rank)))  # stable: file order within a type
    phrases = [attribute_phrase(a, attribute_types.get(a, "")) for a in shown]
    return f"{noun} with " + ", ".join(phrases) if phrases else noun


def category_caption(item: Item) -> str:
    """The category-only caption the demo's baseline encoder is trained on: "a photo of a dress"."""
    return f"a photo of a {item.category}"


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


def catalogue_from_hub(repo: str, revision: str = "") -> Path:
    """The snapshot folder of Hub dataset ``repo`` (DeepFashion's layout) in the Hugging Face cache.

    The cache rather than a folder of our own, because it is where ``hf download`` and a Space's
    ``preload_from_hub`` put files, and huggingface_hub itself reads it alone when HF_HUB_OFFLINE=1; online, a
    cached snapshot costs one look-up of the repo's current commit. A private repo reads HF_TOKEN (or the saved
    login) as the library always does. DeepFashion's agreement forbids redistribution: keep such a repo private.
    """
    import httpx2
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    at = f" --revision {revision}" if revision else ""
    fix = (f"download it with `hf download {repo} --repo-type dataset{at}` (a private repo needs HF_TOKEN or "
           "`hf auth login`)")
    try:
        return Path(snapshot_download(repo, repo_type="dataset", revision=revision or None))
    except LocalEntryNotFoundError:
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hub could not be reached"
        raise CatalogError(f"dataset {repo} is not (wholly) in the Hugging Face cache {constants.HF_HUB_CACHE} and "
                           f"{why}; {fix}") from None
    except (httpx2.HTTPError, OSError, ValueError) as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if isinstance(e, RepositoryNotFoundError) or status in (401, 403):
            raise CatalogError(f"the Hub will not let this machine read dataset {repo} ({_first_line(e)}); check the "
                               "name, and for a private repo set HF_TOKEN to a token that can read it (or run "
                               "`hf auth login`)") from None
        raise CatalogError(f"could not fetch dataset {repo} ({_first_line(e)}); {fix}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _check_root(root: Path, required: Sequence[str], what: str) -> None:
    if not root.is_dir():
        raise CatalogError(f"catalogue folder {root} does not exist; point the study file's [catalogue] root at {what}")
    for rel in required:
        if not (root / rel).is_file():
            raise CatalogError(
                f"catalogue folder {root} has no {rel}; it must hold {', '.join(required)} and img/ ({what})"
            )


def _read_categories(root: Path, hasher: Any) -> list[tuple[str, int]]:
    _, rows = _rows(root, CATEGORY_CLOTH, hasher)
    categories = []
    for number, text in rows:
        name, ctype = _split_last(CATEGORY_CLOTH, number, text, "category_name category_type")
        if ctype not in (1, 2, 3):
            raise CatalogError(f"{CATEGORY_CLOTH} line {number}: category_type must be 1, 2 or 3, got {ctype}")
        categories.append((category_name(name), ctype))
    return categories


def _read_attribute_list(root: Path, hasher: Any) -> tuple[list[str], list[int], list[int]]:
    """Attribute names, their numeric types and the line each was defined on."""
    _, rows = _rows(root, ATTR_CLOTH, hasher)
    names, types, lines = [], [], []
    for number, text in rows:
        name, atype = _split_last(ATTR_CLOTH, number, text, "attribute_name attribute_type")
        names.append(name)
        types.append(atype)
        lines.append(number)
    return names, types, lines


def _type_names(root: Path, hasher: Any, n_attributes: int) -> tuple[dict[int, str], str]:
    """Type id -> name, from list_attr_type.txt if present, else from the release the count identifies."""
    if (root / ATTR_TYPE).is_file():
        _, rows = _rows(root, ATTR_TYPE, hasher)
        table: dict[int, str] = {}
        for number, text in rows:
            parts = text.split(None, 1)
            if len(parts) != 2 or not parts[0].isdigit():
                raise CatalogError(f"{ATTR_TYPE} line {number}: expected 'type_id type_name', got {text.strip()!r}")
            table[int(parts[0])] = parts[1].strip()
        return table, ATTR_TYPE
    if n_attributes not in RELEASE_TYPE_NAMES:
        raise CatalogError(
            f"{ATTR_CLOTH} lists {n_attributes} attributes, so it is neither DeepFashion release (1000 or 26 "
            f"attributes) and its numeric types cannot be named; add {ATTR_TYPE} (a count line, the header "
            f"'type_id type_name', then rows such as '1 texture')"
        )
    return RELEASE_TYPE_NAMES[n_attributes], f"the {n_attributes}-attribute DeepFashion release"


def _read_category_images(root: Path, hasher: Any, n_categories: int) -> dict[str, tuple[int, int]]:
    """image name -> (0-based category index, line)."""
    _, rows = _rows(root, CATEGORY_IMG, hasher)
    out: dict[str, tuple[int, int]] = {}
    for number, text in rows:
        parts = text.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise CatalogError(f"{CATEGORY_IMG} line {number}: expected 'image_name category_label', got {text.strip()!r}")
        label = int(parts[1])
        if not 1 <= label <= n_categories:
            raise CatalogError(
                f"{CATEGORY_IMG} line {number}: category_label {label} is not a category; {CATEGORY_CLOTH} "
                f"defines 1..{n_categories}"
            )
        if parts[0] in out:
            raise CatalogError(f"{CATEGORY_IMG} line {number}: {parts[0]} is listed twice (first on line {out[parts[0]][1]})")
        out[parts[0]] = (label - 1, number)
    return out


def _bad_attribute_row(number: int, text: str, n: int) -> CatalogError:
    parts = text.split()
    if len(parts) - 1 != n:
        return CatalogError(
            f"{ATTR_IMG} line {number}: expected the image name and {n} values (one per attribute of "
            f"{ATTR_CLOTH}), got {len(parts) - 1} values"
        )
    bad = next((p for p in parts[1:] if p not in ("1", "-1", "0")), None)
    return CatalogError(f"{ATTR_IMG} line {number}: values must be 1, -1 or 0, got {bad!r}")


def _read_attribute_rows(
    root: Path, hasher: Any, n: int, images: Mapping[str, tuple[int, int]]
) -> dict[str, np.ndarray]:
    """image name -> indices of its present attributes.

    DeepFashion's file is 289 222 rows x 1000 values, so rows are parsed in blocks by numpy; only a block that
    fails is re-read line by line to say which line is wrong.
    """
    _, rows = _rows(root, ATTR_IMG, hasher)
    present: dict[str, np.ndarray] = {}
    block: list[tuple[int, str]] = []

    def flush() -> None:
        names, tails = [], []
        for number, text in block:
            head = text.split(None, 1)
            if len(head) != 2:
                raise _bad_attribute_row(number, text, n)
            names.append(head[0])
            tails.append(head[1])
        try:
            values = np.loadtxt(tails, dtype=np.int8, ndmin=2)
            ok = values.shape == (len(block), n) and bool(np.isin(values, (-1, 0, 1)).all())
        except ValueError:
            ok = False
        if not ok:
            for number, text in block:
                parts = text.split()
                if len(parts) - 1 != n or any(p not in ("1", "-1", "0") for p in parts[1:]):
                    raise _bad_attribute_row(number, text, n)
            raise CatalogError(f"{ATTR_IMG} lines {block[0][0]}-{block[-1][0]}: could not be parsed as integers")
        for (number, _), name, row in zip(block, names, values):
            if name not in images:
                raise CatalogError(
                    f"{ATTR_IMG} line {number}: {name} is not listed in {CATEGORY_IMG}; every image must be "
                    f"listed in {CATEGORY_IMG}, {ATTR_IMG} and {PARTITION}"
                )
            if name in present:
                raise CatalogError(f"{ATTR_IMG} line {number}: {name} is listed twice")
            present[name] = np.flatnonzero(row == 1)
        block.clear()

    for number, text in rows:
        block.append((number, text))
        if len(block) == 4096:
            flush()
    if block:
        flush()
    return present


def _read_partition(
    root: Path, hasher: Any, allowed: Sequence[str]
) -> dict[str, tuple[str, str, int]]:
    """image name -> (split, garment id or "", line). Two columns (Category benchmark) or three (In-shop)."""
    header, rows = _rows(root, PARTITION, hasher)
    columns = len(header.split())
    if columns not in (2, 3):
        raise CatalogError(
            f"{PARTITION} line 2: expected the header 'image_name evaluation_status' (or In-shop's "
            f"'image_name item_id evaluation_status'), got {header.strip()!r}"
        )
    out: dict[str, tuple[str, str, int]] = {}
    for number, text in rows:
        parts = text.split()
        if len(parts) != columns:
            raise CatalogError(f"{PARTITION} line {number}: expected {columns} columns like the header {header.split()}, got {len(parts)}")
        name, status = parts[0], parts[-1]
        if status not in allowed:
            raise CatalogError(f"{PARTITION} line {number}: evaluation_status must be one of {list(allowed)}, got {status!r}")
        if name in out:
            raise CatalogError(f"{PARTITION} line {number}: {name} is listed twice (first on line {out[name][2]})")
        out[name] = (allowed[allowed.index(status)], parts[1] if columns == 3 else "", number)  # one str per split
    return out


def _exists(root: Path, names: Sequence[str]) -> list[bool]:
    base = str(root)
    return [os.path.isfile(os.path.join(base, n)) for n in names]


def load_catalog(root: str | Path, *, caption_category: bool = True, require_images: bool = False) -> Catalog:
    """Read and cross-check a DeepFashion-format catalogue (see the module docstring for the layout).

    Captions start with the category name ("dress with red colour, ...") when ``caption_category`` is true,
    else with "garment". Items whose image file is absent are kept and counted in ``missing_images`` (a
    partial download is still a usable catalogue for annotations); ``require_images=True`` drops them.
    """
    root = Path(root).expanduser().resolve()
    _check_root(root, REQUIRED_FILES, "a DeepFashion Category and Attribute Prediction folder")
    hasher = hashlib.sha256()
    categories = _read_categories(root, hasher)
    attr_names, attr_type_ids, attr_lines = _read_attribute_list(root, hasher)
    type_table, type_source = _type_names(root, hasher, len(attr_names))
    for name, type_id, number in zip(attr_names, attr_type_ids, attr_lines):
        if type_id not in type_table:
            raise CatalogError(
                f"{ATTR_CLOTH} line {number}: attribute {name!r} has type {type_id}, which {type_source} does not "
                f"define (it defines {sorted(type_table)})"
            )
    attribute_types = {name: type_table[t] for name, t in zip(attr_names, attr_type_ids)}
    type_order = [type_table[t] for t in sorted(type_table)]
    images = _read_category_images(root, hasher, len(categories))
    present = _read_attribute_rows(root, hasher, len(attr_names), images)
    partition = _read_partition(root, hasher, SPLITS)
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

    names = list(images)
    exists = _exists(root, names)
    items: list[Item] = []
    # Items with the same noun and attributes share one attribute tuple, type dict and caption: DeepFashion's
    # 289k items repeat combinations, and a copy of each per item was most of a catalogue's memory.
    shared: dict[tuple[str, bytes], tuple[tuple[str, ...], dict[str, str], str]] = {}
    for name, found in zip(names, exists):
        indices = present.pop(name)  # freed as we go: the parse tables and the items never peak together
        if require_images and not found:
            continue
        category, ctype = categories[images[name][0]]
        noun = category if caption_category else "garment"
        key = (noun, indices.tobytes())
        if key not in shared:
            attrs = tuple(attr_names[i] for i in indices)
            types = {a: attribute_types[a] for a in attrs}
            shared[key] = (attrs, types, attribute_caption(noun, attrs, types, type_order))
        attrs, types, caption = shared[key]
        split, garment, _ = partition[name]
        items.append(Item(item_id=name, image_path=root / name, category=category, category_type=ctype,
                          attributes=attrs, attribute_types=types, split=split, caption=caption,
                          garment_id=garment))
    missing = exists.count(False)
    if missing:
        action = "dropped (require_images=True)" if require_images else "kept; require_images=True drops them"
        log.warning("%d of %d images listed in %s are missing under %s: %s", missing, len(names), CATEGORY_IMG, root, action)
    return Catalog(
        root=root,
        items=items,
        attribute_names=attr_names,
        attribute_types=attribute_types,
        categories=[c for c, _ in categories],
        missing_images=missing,
        type_order=type_order,
        splits=tuple(s for s in SPLITS if any(v[0] == s for v in partition.values())),
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
    _check_root(root, (PARTITION,), "an In-shop Clothes Retrieval folder")
    partition = _read_partition(root, None, INSHOP_SPLITS)
    if any(not garment for _, garment, _ in partition.values()):
        raise CatalogError(
            f"{root / PARTITION} has no item_id column; an In-shop partition needs the header "
            f"'image_name item_id evaluation_status'"
        )
    names = list(partition)
    exists = _exists(root, names)
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
