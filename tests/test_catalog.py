"""The DeepFashion reader: both releases' attribute types, the paper's captions, and precise errors."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from PIL import Image

from dressup.catalog import (
    CatalogError,
    attribute_caption,
    category_caption,
    load_catalog,
    load_inshop,
)

# DeepFashion's fine-grained release: 26 attributes, types 1 texture, 2 sleeve, 3 length, 4 neckline,
# 5 fabric, 6 fit (names as in its list_attr_cloth.txt).
FINE = [
    ("floral", 1), ("graphic", 1), ("striped", 1), ("embroidered", 1), ("pleated", 1), ("solid", 1), ("lattice", 1),
    ("long_sleeve", 2), ("short_sleeve", 2), ("sleeveless", 2),
    ("maxi_length", 3), ("mini_length", 3), ("no_dress", 3),
    ("crew_neckline", 4), ("v_neckline", 4), ("square_neckline", 4), ("no_neckline", 4),
    ("denim", 5), ("chiffon", 5), ("cotton", 5), ("leather", 5), ("faux", 5), ("knit", 5),
    ("tight", 6), ("loose", 6), ("conventional", 6),
]
CATEGORIES = [("Blouse", 1), ("Long_Sleeve_Top", 1), ("Skirt", 2), ("Dress", 3)]


def _write(path: Path, header: str, rows: list[str], count: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{len(rows) if count is None else count}\n{header}\n" + "".join(r + "\n" for r in rows))


def _vector(attrs: list[tuple[str, int]], present: set[str]) -> str:
    return " ".join("1" if name in present else "-1" for name, _ in attrs)


def make_catalogue(
    root: Path,
    images: list[tuple[str, int, set[str], str]],
    attrs: list[tuple[str, int]] = FINE,
    type_names: dict[int, str] | None = None,
    categories: list[tuple[str, int]] = CATEGORIES,
) -> Path:
    """Write a DeepFashion-format folder: images are (name, 1-based category label, present attrs, split)."""
    _write(root / "Anno/list_category_cloth.txt", "category_name  category_type", [f"{n}    {t}" for n, t in categories])
    _write(root / "Anno/list_attr_cloth.txt", "attribute_name  attribute_type", [f"{n}        {t}" for n, t in attrs])
    _write(root / "Anno/list_category_img.txt", "image_name  category_label", [f"{n}  {c}" for n, c, _, _ in images])
    _write(root / "Anno/list_attr_img.txt", "image_name  attribute_labels", [f"{n}  {_vector(attrs, p)}" for n, _, p, _ in images])
    _write(root / "Eval/list_eval_partition.txt", "image_name  evaluation_status", [f"{n}  {s}" for n, _, _, s in images])
    if type_names is not None:
        _write(root / "Anno/list_attr_type.txt", "type_id  type_name", [f"{i}  {n}" for i, n in type_names.items()])
    return root


BLOUSE = ("img/Sheer_Blouse/img_00000001.jpg", 1, {"solid", "long_sleeve", "v_neckline", "chiffon", "conventional", "no_dress"}, "train")
SKIRT = ("img/Pleated_Skirt/img_00000002.jpg", 3, {"pleated", "mini_length", "no_neckline", "cotton", "loose"}, "val")
DRESS = ("img/Floral_Dress/img_00000003.jpg", 4, {"floral", "striped", "sleeveless", "maxi_length", "crew_neckline", "knit", "tight"}, "test")


@pytest.fixture
def fine(tmp_path: Path) -> Path:
    return make_catalogue(tmp_path / "fine", [BLOUSE, SKIRT, DRESS])


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1) if needle in line)


def test_fine_grained_release_gives_the_papers_caption(fine: Path) -> None:
    cat = load_catalog(fine, caption_category=False)
    blouse = cat.by_id[BLOUSE[0]]
    assert blouse.caption == "garment with solid pattern, long sleeve, v-shaped neckline, chiffon fabric, conventional fit"
    assert blouse.attribute_types["chiffon"] == "fabric" and blouse.attribute_types["long_sleeve"] == "sleeve"
    assert blouse.attributes == ("solid", "long_sleeve", "no_dress", "v_neckline", "chiffon", "conventional")
    assert cat.by_id[DRESS[0]].caption == (
        "garment with floral pattern, striped pattern, sleeveless, maxi length, crew neckline, knit fabric, tight fit"
    )


def test_category_captions_and_names(fine: Path) -> None:
    cat = load_catalog(fine)
    blouse, skirt, dress = (cat.by_id[x[0]] for x in (BLOUSE, SKIRT, DRESS))
    assert blouse.caption.startswith("blouse with solid pattern")
    assert skirt.caption == "skirt with pleated pattern, mini length, cotton fabric, loose fit"
    assert (dress.category, dress.category_type, skirt.category_type) == ("dress", 3, 2)
    assert cat.categories == ["blouse", "long sleeve top", "skirt", "dress"]
    assert category_caption(blouse) == "a photo of a blouse"
    assert [i.split for i in cat.items] == ["train", "val", "test"]
    assert blouse.image_path == fine.resolve() / BLOUSE[0] and blouse.image_path.is_absolute()
    assert blouse.garment_id == ""


def test_splits_values_and_hash(fine: Path, tmp_path: Path) -> None:
    cat = load_catalog(fine)
    assert [i.item_id for i in cat.split("train")] == [BLOUSE[0]]
    assert len(cat.split("all")) == 3
    with pytest.raises(CatalogError, match="no split 'training'"):
        cat.split("training")
    assert cat.attribute_values("fit") == ["tight", "loose", "conventional"]
    assert cat.attribute_values("colour") == []
    copy = tmp_path / "copy"
    shutil.copytree(fine, copy)
    assert load_catalog(copy).hash() == cat.hash() and len(cat.hash()) == 64
    with open(copy / "Eval/list_eval_partition.txt", "a") as f:
        f.write("\n")
    assert load_catalog(copy).hash() != cat.hash()


def test_thousand_attribute_release_names_its_types(tmp_path: Path) -> None:
    attrs = [("abstract chevron print", 1), ("chiffon", 2), ("a-line", 3), ("pocket", 4), ("boho", 5)]
    attrs += [(f"filler_{i}", 1 + i % 5) for i in range(995)]
    img = ("img/Boho_Dress/img_00000001.jpg", 4, {"boho", "pocket", "a-line", "chiffon", "abstract chevron print"}, "train")
    cat = load_catalog(make_catalogue(tmp_path / "big", [img], attrs=attrs), caption_category=False)
    item = cat.items[0]
    assert item.attribute_types == {
        "abstract chevron print": "texture", "chiffon": "fabric", "a-line": "shape", "pocket": "part", "boho": "style"
    }
    assert item.caption == "garment with abstract chevron print pattern, chiffon fabric, a-line, pocket, boho"
    assert len(cat.attribute_names) == 1000


def test_own_type_file_puts_colour_first(tmp_path: Path) -> None:
    attrs = [("striped", 1), ("long_sleeve", 2), ("collar", 3), ("denim", 4), ("womenswear", 5), ("red", 6), ("navy blue", 6)]
    types = {1: "texture", 2: "sleeve", 3: "neckline", 4: "fabric", 5: "gender", 6: "colour"}
    img = ("img/Tee/img_00000001.jpg", 1, {"striped", "long_sleeve", "collar", "denim", "womenswear", "red"}, "train")
    cat = load_catalog(make_catalogue(tmp_path / "own", [img], attrs=attrs, type_names=types))
    assert cat.items[0].caption == "blouse with red colour, striped pattern, long sleeve, collar, denim fabric, womenswear"
    assert cat.attribute_values("colour") == ["red", "navy blue"]
    assert cat.type_order == ["texture", "sleeve", "neckline", "fabric", "gender", "colour"]


def test_attribute_caption_without_attributes_is_the_noun() -> None:
    assert attribute_caption("dress", (), {}, []) == "dress"
    assert attribute_caption("dress", ("no_dress",), {"no_dress": "length"}, ["length"]) == "dress"


def test_missing_images_are_counted_kept_and_logged_once(fine: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name in (BLOUSE[0], DRESS[0]):
        (fine / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), "red").save(fine / name)
    with caplog.at_level(logging.WARNING, logger="dressup.catalog"):
        cat = load_catalog(fine)
    assert cat.missing_images == 1 and len(cat.items) == 3
    assert len([r for r in caplog.records if r.name == "dressup.catalog"]) == 1
    kept = load_catalog(fine, require_images=True)
    assert kept.missing_images == 1
    assert [i.item_id for i in kept.items] == [BLOUSE[0], DRESS[0]]
    assert kept.splits == ("train", "val", "test")  # a split whose images are all missing still exists
    assert kept.split("val") == []


def test_missing_folder_and_required_file_are_named(tmp_path: Path, fine: Path) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog(tmp_path / "nowhere")
    (fine / "Anno/list_attr_img.txt").unlink()
    with pytest.raises(CatalogError, match=r"has no Anno/list_attr_img\.txt; it must hold .*list_category_cloth"):
        load_catalog(fine)


def _expect(root: Path, rel: str, line: int, what: str) -> None:
    with pytest.raises(CatalogError) as info:
        load_catalog(root)
    message = str(info.value)
    assert f"{rel} line {line}" in message, message
    assert what in message, message


def test_bad_count_line(fine: Path) -> None:
    path = fine / "Anno/list_category_cloth.txt"
    path.write_text("four\n" + path.read_text().split("\n", 1)[1])
    _expect(fine, "Anno/list_category_cloth.txt", 1, "expected the number of rows")


def test_count_that_disagrees_with_the_rows(fine: Path) -> None:
    path = fine / "Anno/list_category_img.txt"
    path.write_text("7\n" + path.read_text().split("\n", 1)[1])
    _expect(fine, "Anno/list_category_img.txt", 1, "says 7 rows but the file has 3")


def test_wrong_number_of_columns(fine: Path) -> None:
    path = fine / "Anno/list_category_img.txt"
    path.write_text(path.read_text().replace(f"{SKIRT[0]}  3", f"{SKIRT[0]}  3  extra"))
    _expect(fine, "Anno/list_category_img.txt", 4, "expected 'image_name category_label'")


def test_unknown_category_index(fine: Path) -> None:
    path = fine / "Anno/list_category_img.txt"
    path.write_text(path.read_text().replace(f"{DRESS[0]}  4", f"{DRESS[0]}  9"))
    _expect(fine, "Anno/list_category_img.txt", 5, "category_label 9 is not a category")


def test_bad_category_type(fine: Path) -> None:
    path = fine / "Anno/list_category_cloth.txt"
    path.write_text(path.read_text().replace("Skirt    2", "Skirt    7"))
    _expect(fine, "Anno/list_category_cloth.txt", 5, "category_type must be 1, 2 or 3")


def test_attribute_row_shorter_than_the_attribute_list(fine: Path) -> None:
    path = fine / "Anno/list_attr_img.txt"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].rsplit(" ", 1)[0]
    path.write_text("\n".join(lines) + "\n")
    _expect(fine, "Anno/list_attr_img.txt", 4, "expected the image name and 26 values")


def test_attribute_value_outside_minus_one_zero_one(fine: Path) -> None:
    path = fine / "Anno/list_attr_img.txt"
    lines = path.read_text().splitlines()
    lines[4] = lines[4][:-2] + " 2"
    path.write_text("\n".join(lines) + "\n")
    _expect(fine, "Anno/list_attr_img.txt", 5, "values must be 1, -1 or 0, got '2'")


def test_image_in_attributes_but_not_categories(fine: Path) -> None:
    path = fine / "Anno/list_attr_img.txt"
    path.write_text(path.read_text().replace(SKIRT[0], "img/Ghost/img_9.jpg"))
    _expect(fine, "Anno/list_attr_img.txt", 4, "img/Ghost/img_9.jpg is not listed in Anno/list_category_img.txt")


def test_image_in_partition_but_not_categories(fine: Path) -> None:
    path = fine / "Eval/list_eval_partition.txt"
    path.write_text(path.read_text().replace(DRESS[0], "img/Ghost/img_9.jpg"))
    _expect(fine, "Eval/list_eval_partition.txt", 5, "img/Ghost/img_9.jpg is not listed")


def test_image_in_categories_but_not_partition(tmp_path: Path) -> None:
    root = make_catalogue(tmp_path / "c", [BLOUSE, SKIRT, DRESS])
    _write(root / "Eval/list_eval_partition.txt", "image_name  evaluation_status", [f"{BLOUSE[0]} train", f"{DRESS[0]} test"])
    _expect(root, "Anno/list_category_img.txt", 4, "has no row in Eval/list_eval_partition.txt")


def test_unknown_split_name(fine: Path) -> None:
    path = fine / "Eval/list_eval_partition.txt"
    path.write_text(path.read_text().replace(f"{SKIRT[0]}  val", f"{SKIRT[0]}  validation"))
    _expect(fine, "Eval/list_eval_partition.txt", 4, "evaluation_status must be one of")


def test_attribute_count_of_neither_release_asks_for_a_type_file(tmp_path: Path) -> None:
    root = make_catalogue(tmp_path / "odd", [BLOUSE], attrs=FINE[:25])
    with pytest.raises(CatalogError, match=r"25 attributes.*add Anno/list_attr_type\.txt"):
        load_catalog(root)


def test_type_missing_from_type_file(tmp_path: Path) -> None:
    root = make_catalogue(tmp_path / "t", [BLOUSE], type_names={1: "texture", 2: "sleeve"})
    _expect(root, "Anno/list_attr_cloth.txt", 13, "has type 3, which Anno/list_attr_type.txt does not define")


def test_many_rows_are_parsed_in_blocks_and_errors_keep_their_line(tmp_path: Path) -> None:
    images = [(f"img/Tee/img_{i:08d}.jpg", 1 + i % 4, {FINE[i % 26][0]}, "train") for i in range(5000)]
    root = make_catalogue(tmp_path / "many", images)
    cat = load_catalog(root)
    assert len(cat.items) == 5000
    assert all(item.attributes == (FINE[i % 26][0],) for i, item in enumerate(cat.items))
    path = root / "Anno/list_attr_img.txt"
    lines = path.read_text().splitlines()
    lines[4499] = lines[4499].replace("-1", "x", 1)
    path.write_text("\n".join(lines) + "\n")
    _expect(root, "Anno/list_attr_img.txt", 4500, "values must be 1, -1 or 0, got 'x'")


def test_inshop_partition_reads_queries_and_gallery(tmp_path: Path) -> None:
    root = tmp_path / "cat"
    rows = ["img/Tee/id_00000001/01.jpg id_00000001 query", "img/Tee/id_00000001/02.jpg id_00000001 gallery",
            "img/Tee/id_00000002/01.jpg id_00000002 query", "img/Tee/id_00000002/02.jpg id_00000002 gallery",
            "img/Tee/id_00000003/01.jpg id_00000003 train"]
    _write(root / "inshop/Eval/list_eval_partition.txt", "image_name  item_id  evaluation_status", rows)
    bench = load_inshop(root)  # finds the inshop/ subfolder
    assert [i.garment_id for i in bench.queries] == ["id_00000001", "id_00000002"]
    assert [i.split for i in bench.gallery] == ["gallery", "gallery"]
    assert len(bench.train) == 1 and bench.missing_images == 5
    assert bench.root == (root / "inshop").resolve()
    two_columns = tmp_path / "two"
    _write(two_columns / "Eval/list_eval_partition.txt", "image_name  evaluation_status", ["img/a.jpg query"])
    with pytest.raises(CatalogError, match="item_id"):
        load_inshop(two_columns)
