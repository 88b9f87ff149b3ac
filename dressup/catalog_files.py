"""DeepFashion's annotation files, one parser each: where they are, how a row reads, what a bad row is.

Both of DeepFashion's benchmarks (Category and Attribute Prediction, In-shop Clothes Retrieval) share this
format: each file starts with a count line and a header line; names may contain spaces, so the numeric
columns are the last tokens. Every malformed file raises ``CatalogError`` naming the file, the line and what
was expected, because a silently misread annotation would only show up weeks later as a bad study.
``dressup.catalog`` assembles these parsers into a checked ``Catalog``; the layout is in its docstring.

Each parser feeds the raw bytes it reads to an optional hasher, so every annotation file (up to DeepFashion's
600 MB) is read once for both parsing and the catalogue's hash.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from dressup.captions import category_name

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

SPLITS = ("train", "val", "test")
INSHOP_SPLITS = ("train", "query", "gallery")
ATTRIBUTE_BLOCK = 4096  # rows of list_attr_img.txt parsed by numpy at once


class CatalogError(ValueError):
    """A catalogue folder or annotation file is wrong; the message names the file, the line and the fix."""


class Hasher(Protocol):
    """What the parsers feed the bytes they read to (``hashlib.sha256()``)."""

    def update(self, data: bytes, /) -> None: ...


def read_lines(root: Path, rel: str, hasher: Hasher | None) -> Iterator[tuple[int, str]]:
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


def read_rows(root: Path, rel: str, hasher: Hasher | None) -> tuple[str, Iterator[tuple[int, str]]]:
    """The header line and an iterator over the non-blank data rows.

    The count on line 1 is checked against the rows actually read when the iterator is exhausted.
    """
    lines = read_lines(root, rel, hasher)
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


def split_last(rel: str, number: int, text: str, what: str) -> tuple[str, int]:
    """A row "<name with spaces>  <integer>" -> (name, integer)."""
    parts = text.rsplit(None, 1)
    if len(parts) != 2 or not parts[1].lstrip("-").isdigit() or not parts[0].strip():
        raise CatalogError(f"{rel} line {number}: expected '{what}' (a name, then an integer), got {text.strip()!r}")
    return parts[0].strip(), int(parts[1])


def check_root(root: Path, required: Sequence[str], what: str) -> None:
    """Raise ``CatalogError`` unless ``root`` is a folder holding every file of ``required``."""
    if not root.is_dir():
        raise CatalogError(f"catalogue folder {root} does not exist; point the study file's [catalogue] root at {what}")
    for rel in required:
        if not (root / rel).is_file():
            raise CatalogError(
                f"catalogue folder {root} has no {rel}; it must hold {', '.join(required)} and img/ ({what})"
            )


def read_categories(root: Path, hasher: Hasher | None) -> list[tuple[str, int]]:
    """(category name as the library writes it, category type 1/2/3) in file order."""
    _, rows = read_rows(root, CATEGORY_CLOTH, hasher)
    categories = []
    for number, text in rows:
        name, ctype = split_last(CATEGORY_CLOTH, number, text, "category_name category_type")
        if ctype not in (1, 2, 3):
            raise CatalogError(f"{CATEGORY_CLOTH} line {number}: category_type must be 1, 2 or 3, got {ctype}")
        categories.append((category_name(name), ctype))
    return categories


def read_attribute_list(root: Path, hasher: Hasher | None) -> tuple[list[str], list[int], list[int]]:
    """Attribute names, their numeric types and the line each was defined on."""
    _, rows = read_rows(root, ATTR_CLOTH, hasher)
    names, types, lines = [], [], []
    for number, text in rows:
        name, atype = split_last(ATTR_CLOTH, number, text, "attribute_name attribute_type")
        names.append(name)
        types.append(atype)
        lines.append(number)
    return names, types, lines


def type_names(root: Path, hasher: Hasher | None, n_attributes: int) -> tuple[dict[int, str], str]:
    """Type id -> name, from list_attr_type.txt if present, else from the release the count identifies."""
    if (root / ATTR_TYPE).is_file():
        _, rows = read_rows(root, ATTR_TYPE, hasher)
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


def read_category_images(root: Path, hasher: Hasher | None, n_categories: int) -> dict[str, tuple[int, int]]:
    """image name -> (0-based category index, line)."""
    _, rows = read_rows(root, CATEGORY_IMG, hasher)
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


def bad_attribute_row(number: int, text: str, n: int) -> CatalogError:
    """The error for a row of list_attr_img.txt that is not an image name and ``n`` values of 1, -1 or 0."""
    parts = text.split()
    if len(parts) - 1 != n:
        return CatalogError(
            f"{ATTR_IMG} line {number}: expected the image name and {n} values (one per attribute of "
            f"{ATTR_CLOTH}), got {len(parts) - 1} values"
        )
    bad = next((p for p in parts[1:] if p not in ("1", "-1", "0")), None)
    return CatalogError(f"{ATTR_IMG} line {number}: values must be 1, -1 or 0, got {bad!r}")


def _parse_attribute_block(block: Sequence[tuple[int, str]], n: int) -> tuple[list[str], np.ndarray]:
    """(image names, values [rows, n]) of one block of list_attr_img.txt rows, parsed at once by numpy; a
    block that fails is re-read line by line to say which line is wrong."""
    names, tails = [], []
    for number, text in block:
        head = text.split(None, 1)
        if len(head) != 2:
            raise bad_attribute_row(number, text, n)
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
                raise bad_attribute_row(number, text, n)
        raise CatalogError(f"{ATTR_IMG} lines {block[0][0]}-{block[-1][0]}: could not be parsed as integers")
    return names, values


def read_attribute_rows(
    root: Path, hasher: Hasher | None, n: int, images: Mapping[str, tuple[int, int]]
) -> dict[str, np.ndarray]:
    """image name -> indices of its present attributes.

    DeepFashion's file is 289 222 rows x 1000 values, so rows are parsed in blocks by numpy; only a block that
    fails is re-read line by line to say which line is wrong.
    """
    _, rows = read_rows(root, ATTR_IMG, hasher)
    present: dict[str, np.ndarray] = {}
    block: list[tuple[int, str]] = []

    def flush() -> None:
        names, values = _parse_attribute_block(block, n)
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
        if len(block) == ATTRIBUTE_BLOCK:
            flush()
    if block:
        flush()
    return present


def read_partition(
    root: Path, hasher: Hasher | None, allowed: Sequence[str]
) -> dict[str, tuple[str, str, int]]:
    """image name -> (split, garment id or "", line). Two columns (Category benchmark) or three (In-shop)."""
    header, rows = read_rows(root, PARTITION, hasher)
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


def images_exist(root: Path, names: Sequence[str]) -> list[bool]:
    """Whether each image file of ``names`` (paths relative to ``root``) is on disk."""
    base = str(root)
    return [os.path.isfile(os.path.join(base, n)) for n in names]
