"""The drawn demo catalogue: deterministic, readable by the DeepFashion reader, and its pixels tell the truth."""
from __future__ import annotations

import hashlib
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dressup.catalog import load_catalog, load_inshop
from dressup.colours import CATALOGUE_COLOURS, delta_e_2000, rgb_to_lab
from dressup.democatalog import (
    CATEGORIES,
    PATTERNS,
    Garment,
    Pose,
    build_demo_catalogue,
    demo_catalogue_matches,
    draw_garment,
)
from dressup.images import load_image

SIZE = 400
IMAGE = 64


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo_catalogue(tmp_path_factory.mktemp("demo"), size=SIZE, image_size=IMAGE, seed=0,
                                inshop_garments=6, progress=False)


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(built: Path, tmp_path: Path) -> None:
    one, two = (build_demo_catalogue(tmp_path / n, size=40, image_size=IMAGE, seed=0, inshop_garments=2, progress=False)
                for n in ("one", "two"))
    first, second = _tree_digest(one), _tree_digest(two)
    assert len(first) > 40 + 6 and first == second
    # An item's picture depends on the seed and its index only, not on how big the catalogue is.
    big = _tree_digest(built)
    images = [name for name in first if name.startswith("img/")]
    assert len(images) == 40 and all(first[name] == big[name] for name in images)


def test_another_seed_draws_another_catalogue(built: Path, tmp_path: Path) -> None:
    other = build_demo_catalogue(tmp_path / "other", size=20, image_size=IMAGE, seed=1, progress=False)
    ours = (built / "Anno/list_attr_img.txt").read_text().splitlines()[2:22]
    theirs = (other / "Anno/list_attr_img.txt").read_text().splitlines()[2:]
    assert ours != theirs


def test_reader_reads_it_back_with_every_category_and_colour(built: Path) -> None:
    cat = load_catalog(built)
    assert len(cat.items) == SIZE and cat.missing_images == 0
    assert len(cat.categories) >= 8
    assert {i.category for i in cat.items} == set(cat.categories)
    assert {"tee", "long sleeve top", "dress", "skirt", "trousers", "shorts", "jacket"} <= set(cat.categories)
    assert set(cat.attribute_values("colour")) == set(CATALOGUE_COLOURS)
    assert {i.attribute_of("colour") for i in cat.items} == set(CATALOGUE_COLOURS)
    assert {i.attribute_of("texture") for i in cat.items} == set(PATTERNS)
    assert (len(cat.split("train")), len(cat.split("val")), len(cat.split("test"))) == (320, 40, 40)
    assert cat.type_order == ["colour", "texture", "sleeve", "neckline", "fabric", "gender"]


def test_annotations_follow_the_categories_rules(built: Path) -> None:
    cat = load_catalog(built)
    kind = {c.name.replace("_", " ").lower(): c for c in CATEGORIES}
    for item in cat.items:
        rules = kind[item.category]
        assert item.category_type == rules.category_type
        assert item.attribute_of("sleeve") in (rules.sleeves or (None,))
        assert item.attribute_of("neckline") in (rules.necklines or (None,))
        assert item.attribute_of("gender") in rules.genders
        assert item.attribute_of("fabric") is not None
        assert item.caption.startswith(f"{item.category} with {item.attribute_of('colour')} colour, ")
        assert item.item_id.startswith(f"img/{rules.name}/img_")
    assert {i.attribute_of("gender") for i in cat.items if i.category in ("dress", "skirt")} == {"womenswear"}
    assert {i.attribute_of("gender") for i in cat.items if i.category == "trousers"} == {"menswear", "womenswear"}


def test_images_are_valid_product_shots(built: Path) -> None:
    cat = load_catalog(built)
    for item in cat.items[:60]:
        im = load_image(item.image_path)
        assert im.size == (IMAGE, IMAGE)
        a = np.asarray(im, dtype=np.float64)
        border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
        assert np.median(border, axis=0).min() > 170  # a light background
        assert a.std() > 10  # and something on it


def _dominant_colour(image: Image.Image) -> str:
    """The palette colour most pixels carry, among pixels nearer a palette colour than the background.

    The background is the median of the image's border; each pixel gets the nearest (CIEDE2000) of the eleven
    catalogue colours and the background, and the garment's colour is the most frequent non-background label.
    """
    names = list(CATALOGUE_COLOURS)
    a = np.asarray(image, dtype=np.float64)
    background = np.median(np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]]), axis=0)
    targets = rgb_to_lab(np.array(list(CATALOGUE_COLOURS.values()) + [background], dtype=np.float64))
    label = delta_e_2000(rgb_to_lab(a).reshape(-1, 1, 3), targets[None]).argmin(axis=1)
    counts = np.bincount(label[label < len(names)], minlength=len(names))
    return names[int(counts.argmax())]


def test_solid_garments_pixels_carry_their_colour_name(built: Path) -> None:
    solid = [i for i in load_catalog(built).items if "solid" in i.attributes]
    assert len(solid) >= 50
    results = Counter(_dominant_colour(load_image(i.image_path)) == i.attribute_of("colour") for i in solid)
    assert results[True] / len(solid) >= 0.95, results


def test_every_colour_survives_every_fabric_and_a_white_on_light_grey() -> None:
    for colour in CATALOGUE_COLOURS:
        for fabric in ("cotton", "denim", "knit", "leather"):
            garment = Garment("Tee", colour, "solid", fabric, "menswear", "short_sleeve", "crew_neckline",
                              rgb=CATALOGUE_COLOURS[colour])
            pose = Pose(background=(226, 227, 229), background_bottom=(214, 215, 217))
            jpeg = io.BytesIO()
            draw_garment(garment, pose, IMAGE).save(jpeg, "JPEG", quality=92)
            assert _dominant_colour(load_image(jpeg.getvalue())) == colour, (colour, fabric)


def test_inshop_partition(built: Path) -> None:
    bench = load_inshop(built)
    garments = {i.garment_id for i in bench.queries} | {i.garment_id for i in bench.gallery}
    assert len(garments) == 6
    for garment in garments:
        shots = [i for i in bench.queries + bench.gallery if i.garment_id == garment]
        assert 3 <= len(shots) <= 4
        assert any(i.split == "query" for i in shots) and any(i.split == "gallery" for i in shots)
        assert all(i.image_path.is_file() for i in shots)
    assert bench.missing_images == 0 and bench.train == []
    first = [i for i in bench.queries + bench.gallery if i.garment_id == sorted(garments)[0]]
    pixels = [np.asarray(load_image(i.image_path), dtype=np.int16) for i in first]
    assert not np.array_equal(pixels[0], pixels[1])  # same garment, another shot


def test_stamp_says_what_was_built(built: Path, tmp_path: Path) -> None:
    assert demo_catalogue_matches(built, size=SIZE, image_size=IMAGE, seed=0, inshop_garments=6)
    assert not demo_catalogue_matches(built, size=SIZE, image_size=IMAGE, seed=1, inshop_garments=6)
    assert not demo_catalogue_matches(tmp_path / "empty")


def test_bad_sizes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="size >= 10"):
        build_demo_catalogue(tmp_path, size=3, progress=False)
    with pytest.raises(ValueError, match="image_size >= 16"):
        build_demo_catalogue(tmp_path, size=100, image_size=8, progress=False)
