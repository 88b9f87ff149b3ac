"""Caption text from catalogue annotations: how a category and its present attributes read as one caption.

Kept apart from the file parsers (``dressup.catalog_files``) because a caption is a product decision (the
paper's wording, which encoders are trained and evaluated on), not part of reading DeepFashion's format:
``load_catalog`` writes each item's caption with ``attribute_caption``, the demo's baseline encoder trains on
``category_caption``, and the query benchmarks name categories with ``category_name``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from dressup.records import Item

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


def display(name: str) -> str:
    """An annotation name as words: underscores become spaces."""
    return name.replace("_", " ").strip()


def category_name(raw: str) -> str:
    """DeepFashion's category name as the library writes it: "Long_Sleeve_Top" -> "long sleeve top"."""
    return display(raw).lower()


def attribute_phrase(name: str, type_name: str) -> str:
    """One attribute as caption text: ("striped", "texture") -> "striped pattern"."""
    if name in NAME_PHRASES:
        return NAME_PHRASES[name]
    x = display(name)
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
