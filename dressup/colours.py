"""Colour words grounded by a colour-science table.

Participants write "crimson", "navy blue" or "something in mustard"; the catalogue only knows eleven basic
colours. This module turns colour words into catalogue colours with measured colours rather than a
hand-written synonym list:

* **The table** (``COLOUR_TABLE``, name -> sRGB) is matplotlib's ``XKCD_COLORS`` (949 names from the xkcd
  colour survey, where about 200 000 people named colours) with ``CSS4_COLORS`` (148) filling the names xkcd
  lacks. xkcd wins a clash because its values are what people *mean* by a name: the CSS/X11 values are
  historical accidents ("chocolate" is orange #D2691E, "plum" a light pink #DDA0DD, "darkgray" lighter than
  "gray"), while xkcd's are survey averages (chocolate #3D1C02, plum #580F41).
* **Distance** is CIEDE2000 (deltaE 2000) in CIELAB (D65), not CIE76: CIE76 over-weights differences among
  saturated colours and under-weights the blue-purple region, where CIEDE2000 was fitted to human judgements.
* **Categories are not spheres.** A basic colour term covers an irregular region: light browns (tan, camel,
  beige) lie nearer orange's or yellow's focal colour than brown's, and navy nearer black than blue. So a word
  is matched to the nearest *exemplar* of a palette colour: the palette colour itself plus every xkcd name
  whose last word is that colour ("navy blue", "sandy brown", "charcoal grey", "plum purple" ... the survey's
  own labelled samples, 28-175 per colour). A palette whose names are not basic colour words simply has one
  exemplar per colour, i.e. plain nearest-colour.
* **Pixels are not words.** ``nearest_palette_colour`` names a measured colour (a garment's pixels) by the
  palette's own values only: photographed whites are light greys, and people still call them white.

``find_colour_words`` finds colour names in free text without mistaking everyday words that are also xkcd
names ("dark", "sand", "summer"-like words, fabrics such as "denim" and "leather") for colours; see
``STOPLIST``.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
from matplotlib.colors import CSS4_COLORS, XKCD_COLORS, to_rgb

from dressup.phrases import longest_matches

RGB = tuple[int, int, int]


def _norm_token(token: str) -> str:
    """Lowercase, strip accents ("crème" -> "creme") and spell grey the palette's way."""
    token = unicodedata.normalize("NFKD", token.lower())
    token = "".join(ch for ch in token if not unicodedata.combining(ch))
    return token.replace("gray", "grey")


_TOKEN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def normalise_colour_name(name: str) -> str:
    """The lookup key of a colour name: lowercase words joined by single spaces ("Navy-Blue" -> "navy blue")."""
    return " ".join(_norm_token(t) for t in _TOKEN.findall(name))


def _hex_to_rgb(value: str) -> RGB:
    r, g, b = to_rgb(value)
    return (round(r * 255), round(g * 255), round(b * 255))


def _build_table() -> dict[str, RGB]:
    table: dict[str, RGB] = {}
    for key, value in XKCD_COLORS.items():
        table.setdefault(normalise_colour_name(key.removeprefix("xkcd:")), _hex_to_rgb(value))
    for key, value in CSS4_COLORS.items():
        table.setdefault(normalise_colour_name(key), _hex_to_rgb(value))
    return table


COLOUR_TABLE: dict[str, RGB] = _build_table()
_MAX_NAME_WORDS = max(len(name.split()) for name in COLOUR_TABLE)

# The demo catalogue's colours: each is the xkcd survey's value for that very name, so the pixels drawn are
# what people call the colour. Their smallest pairwise CIEDE2000 distance is 18 (blue-purple), the rest >= 20.
CATALOGUE_COLOURS: dict[str, RGB] = {
    name: COLOUR_TABLE[name]
    for name in ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey")
}

# Single words that are xkcd/CSS colour names but in a participant's sentence almost always mean something
# else: adjectives ("dark", "pale"), nature and food ("sand", "sky", "lemon"), fabrics and prints ("denim",
# "leather", "velvet", "linen", "camo"), verbs and slang ("spruce", "buff"). Multi-word names ("dark green",
# "sky blue", "lemon yellow") are always colours and are still found.
STOPLIST: frozenset[str] = frozenset(
    """
    dark pale bland drab ugly light bright dull royal marine
    dirt dust earth mud clay sand sandy stone cement steel ice snow sea sky ocean desert dusk twilight midnight
    grass leaf forest fern pine spruce moss algae lichen seaweed swamp iris rosa barney heather
    apple banana butter cherry berry coffee tea wine blood lemon melon mango kiwi pear pea grape grapefruit
    strawberry raspberry blueberry watermelon pumpkin squash celery avocado pistachio asparagus tomato wheat
    bisque honeydew straw
    denim leather velvet linen camo moccasin seashell peru
    buff bruise booger bile puke vomit snot poo poop shit diarrhea
    """.split()
)


def rgb_to_lab(rgb: np.ndarray | tuple[float, float, float] | list) -> np.ndarray:
    """sRGB (0-255, any leading shape, last axis 3) -> CIELAB under D65."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    srgb_to_xyz = np.array(
        [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
    )
    xyz = linear @ srgb_to_xyz.T / np.array([0.95047, 1.0, 1.08883])
    eps = (6 / 29) ** 3
    f = np.where(xyz > eps, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def delta_e_2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (Sharma, Wu & Dalal 2005), broadcasting over leading axes."""
    lab1, lab2 = np.asarray(lab1, dtype=np.float64), np.asarray(lab2, dtype=np.float64)
    L1, a1, b1 = np.moveaxis(lab1, -1, 0)
    L2, a2, b2 = np.moveaxis(lab2, -1, 0)
    c_bar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_bar**7 / (c_bar**7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    chroma_zero = c1p * c2p == 0
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(chroma_zero, 0.0, dh)
    d_l, d_c = L2 - L1, c2p - c1p
    d_h = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh) / 2)
    l_bar, cp_bar, h_sum = (L1 + L2) / 2, (c1p + c2p) / 2, h1p + h2p
    h_bar = np.where(
        chroma_zero,
        h_sum,
        np.where(np.abs(h1p - h2p) <= 180, h_sum / 2, np.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2)),
    )
    t = (
        1
        - 0.17 * np.cos(np.radians(h_bar - 30))
        + 0.24 * np.cos(np.radians(2 * h_bar))
        + 0.32 * np.cos(np.radians(3 * h_bar + 6))
        - 0.20 * np.cos(np.radians(4 * h_bar - 63))
    )
    s_l = 1 + 0.015 * (l_bar - 50) ** 2 / np.sqrt(20 + (l_bar - 50) ** 2)
    s_c = 1 + 0.045 * cp_bar
    s_h = 1 + 0.015 * cp_bar * t
    r_t = -np.sin(np.radians(60 * np.exp(-(((h_bar - 275) / 25) ** 2)))) * 2 * np.sqrt(cp_bar**7 / (cp_bar**7 + 25.0**7))
    return np.sqrt((d_l / s_l) ** 2 + (d_c / s_c) ** 2 + (d_h / s_h) ** 2 + r_t * (d_c / s_c) * (d_h / s_h))


# An exemplar this close (CIEDE2000) to *another* palette colour's own value is dropped: xkcd's "pale grey" is
# #FDFDFE, and it must not make near-whites grey when the palette has a white.
_EXEMPLAR_CLEARANCE = 6.0


@lru_cache(maxsize=32)
def _exemplars(palette_items: tuple[tuple[str, RGB], ...]) -> tuple[list[str], np.ndarray]:
    """Palette names and Lab values of every exemplar: the palette colours, then the xkcd names headed by one."""
    keys = {normalise_colour_name(name): name for name, _ in palette_items}
    names = [name for name, _ in palette_items]
    protos = rgb_to_lab(np.array([rgb for _, rgb in palette_items], dtype=np.float64))
    labels, labs = list(names), [protos]
    for key, value in XKCD_COLORS.items():
        words = normalise_colour_name(key.removeprefix("xkcd:")).split()
        if len(words) > 1 and words[-1] in keys:
            lab = rgb_to_lab(_hex_to_rgb(value))
            near = delta_e_2000(lab[None], protos) < _EXEMPLAR_CLEARANCE
            if not any(near[j] and names[j] != keys[words[-1]] for j in range(len(names))):
                labels.append(keys[words[-1]])
                labs.append(lab[None])
    return labels, np.concatenate(labs)


def _palette_items(palette: dict[str, tuple]) -> tuple[tuple[str, RGB], ...]:
    if not palette:
        raise ValueError("the colour palette is empty; pass e.g. dressup.colours.CATALOGUE_COLOURS")
    return tuple((name, (int(r), int(g), int(b))) for name, (r, g, b) in palette.items())


def name_rgb(rgb: tuple[float, float, float] | np.ndarray, palette: dict[str, tuple]) -> str:
    """The palette colour with the nearest exemplar (CIEDE2000) to an sRGB colour: how ``nearest_colour``
    names a colour word's value. For measured pixels prefer ``nearest_palette_colour``."""
    labels, labs = _exemplars(_palette_items(palette))
    distances = delta_e_2000(rgb_to_lab(np.asarray(rgb, dtype=np.float64))[None, :], labs)
    return labels[int(np.argmin(distances))]


def nearest_palette_colour(rgb: tuple[float, float, float] | np.ndarray, palette: dict[str, tuple]) -> str:
    """The palette colour nearest (CIEDE2000) to a measured sRGB colour, e.g. a garment's median pixel.

    Pixels are matched to the palette's own values, not to word exemplars: a white shirt photographed in soft
    light is (240, 240, 240), which people call white, though xkcd's survey has near-whites named "grey".
    """
    items = _palette_items(palette)
    protos = rgb_to_lab(np.array([rgb for _, rgb in items], dtype=np.float64))
    distances = delta_e_2000(rgb_to_lab(np.asarray(rgb, dtype=np.float64))[None, :], protos)
    return items[int(np.argmin(distances))][0]


def nearest_colour(word: str, palette: dict[str, tuple]) -> str | None:
    """The palette colour a colour word means, or None when the word is not a colour.

    Rules, in order: a palette name is itself ("Grey", "gray" -> "grey"); a name ending in a palette name is
    that colour ("navy blue" -> "blue", "off white" -> "white", "jet black" -> "black"); any other name in
    ``COLOUR_TABLE`` goes to the palette colour with the nearest exemplar in CIELAB by CIEDE2000 (see the
    module docstring). The stoplist does not apply here: a word given *as a colour* ("sand") is one.
    """
    items = _palette_items(palette)
    by_key = {normalise_colour_name(name): name for name, _ in items}
    key = normalise_colour_name(word)
    if not key:
        return None
    if key in by_key:
        return by_key[key]
    head = key.split()[-1]
    if head in by_key:
        return by_key[head]
    rgb = COLOUR_TABLE.get(key) or COLOUR_TABLE.get(key.replace(" ", ""))
    if rgb is None:
        return None
    return name_rgb(rgb, palette)


@dataclass(frozen=True)
class ColourMention:
    """One colour name found in text: ``text[start:end]`` is ``words``; ``name`` its key in COLOUR_TABLE."""

    start: int
    end: int
    words: str
    name: str
    rgb: RGB


_JOINER = re.compile(r"[\s\-/]+")


def _find(text: str, use_stoplist: bool) -> list[ColourMention]:
    tokens = [(m.start(), m.end(), _norm_token(m.group())) for m in _TOKEN.finditer(text)]

    def lookup(window: Sequence[tuple[int, int, str]]) -> str | None:
        # Words of one name may be joined by spaces, hyphens or slashes (_JOINER), never by other punctuation.
        key = " ".join(t[2] for t in window)
        if key in COLOUR_TABLE and not (len(window) == 1 and use_stoplist and key in STOPLIST):
            return key
        return None

    return [ColourMention(start, end, text[start:end], key, COLOUR_TABLE[key])
            for start, end, key in longest_matches(text, tokens, _MAX_NAME_WORDS, _JOINER, lookup)]


def find_colour_words(text: str) -> list[ColourMention]:
    """Colour names in free text, longest match first ("navy blue" is one mention, not two).

    Case, accents, punctuation and emoji are ignored; single words in ``STOPLIST`` are not colours here
    ("something flowy for summer, nothing too dark" has none).
    """
    return _find(text, use_stoplist=True)


def ground_colours(text: str, palette: dict[str, tuple]) -> tuple[str, dict[str, str]]:
    """Rewrite every colour mention to its palette colour: "a crimson dress" -> "a red dress".

    Returns the rewritten text and ``{mention (normalised): palette name}`` for every mention found,
    palette words included (they map to themselves and the text keeps them).
    """
    mapping: dict[str, str] = {}
    pieces: list[str] = []
    last = 0
    for mention in find_colour_words(text):
        target = nearest_colour(mention.name, palette)
        assert target is not None  # every mention is a table colour, and a table colour always has a nearest
        mapping[mention.name] = target
        pieces.append(text[last : mention.start])
        pieces.append(mention.words if normalise_colour_name(mention.words) == normalise_colour_name(target) else target)
        last = mention.end
    pieces.append(text[last:])
    return "".join(pieces), mapping


def ground_colour_list(words: list[str], palette: dict[str, tuple]) -> list[str]:
    """Palette colours for a list of colour words ("colours to avoid"), without duplicates, in order.

    Each entry may hold several colours ("navy, crimson"); an entry that is one word is a colour even if it is
    on the stoplist ("sand"). Entries that name no colour are dropped.
    """
    out: list[str] = []
    for entry in words:
        whole = nearest_colour(entry, palette)
        if whole is not None:
            names = [whole]
        else:
            names = [nearest_colour(m.name, palette) for m in _find(entry, use_stoplist=False)]
        for name in names:
            if name is not None and name not in out:
                out.append(name)
    return out


def garment_colour(image: "np.ndarray | object", palette: dict[str, tuple] | None = None, *,
                   min_delta_e: float = 10.0, smooth: int = 3) -> str | None:
    """The palette colour covering most of the garment in a product shot, or None when nothing stands out.

    The one colour judge of generated images (the DCGAN's ``colour_fidelity``, the diffusion benchmark, the
    generator tests), used to check them without the generator: the background is estimated from the border
    pixels (product shots have a plain one), pixels further than ``min_delta_e`` (CIEDE2000) from it are the
    garment, each is named by ``nearest_palette_colour``'s rule, and the most frequent name wins. A pattern's
    second colour covers less area than the main one, so it rarely wins. ``palette`` defaults to
    ``CATALOGUE_COLOURS``. A white garment on a white backdrop is not measurable; leave white out of colour
    prompts (``dressup.generators.colour_prompts`` does).
    """
    palette = CATALOGUE_COLOURS if palette is None else palette
    px = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.float64)
    if px.ndim != 3 or px.shape[2] != 3:
        raise ValueError(f"expected an RGB image, got an array of shape {px.shape}")
    if smooth > 1:  # a median filter: generated images are speckled, and a speckle must not vote
        from scipy.ndimage import median_filter

        px = median_filter(px, size=(smooth, smooth, 1), mode="nearest")
    border = np.concatenate([px[0], px[-1], px[:, 0], px[:, -1]])
    lab = rgb_to_lab(px.reshape(-1, 3))
    background = rgb_to_lab(np.median(border, axis=0))
    garment = lab[delta_e_2000(lab, np.broadcast_to(background, lab.shape)) > min_delta_e]
    if len(garment) == 0:
        return None
    items = _palette_items(palette)
    protos = rgb_to_lab(np.array([rgb for _, rgb in items], dtype=np.float64))
    d = np.stack([delta_e_2000(garment, np.broadcast_to(p, garment.shape)) for p in protos], axis=1)
    counts = np.bincount(d.argmin(1), minlength=len(items))
    return items[int(counts.argmax())][0]
