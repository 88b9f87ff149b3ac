"""The paper's subset: seeded and reproducible, stratified by category inside DeepFashion's own partitions,
refused when the catalogue is too small, written by `python -m dressup subset` and used wherever the study's
catalogue is loaded."""
from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from dressup.arms import StudyModels
from dressup.catalog import load_catalog
from dressup.cli import main
from dressup.config import StudyFileError, load_study
from dressup.subset import SubsetError, allocate, select_subset, study_catalog, subset_path
from tests.test_catalog import make_catalogue

# (category label, how many) per partition: uneven on purpose, one category (4, dress) rare and absent from val
SIZES = {
    "train": {1: 151, 2: 89, 3: 47, 4: 13},
    "val": {1: 30, 2: 20, 3: 10},
    "test": {1: 45, 2: 25, 3: 12, 4: 8},
}
ASKED = {"train": 60, "val": 12, "test": 20}


def catalogue(root: Path, sizes: dict = SIZES, touch: bool = True) -> Path:
    """A DeepFashion-format folder with (empty) image files: the subset reads names, never pixels."""
    rows, i = [], 0
    for split, by_label in sizes.items():
        for label, n in by_label.items():
            for _ in range(n):
                i += 1
                rows.append((f"img/Cat_{label}/img_{i:08d}.jpg", label, {"solid"}, split))
    random.Random(0).shuffle(rows)  # partitions interleaved in the files, as in DeepFashion
    make_catalogue(root, rows)
    if touch:
        for name, *_ in rows:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).touch()
    return root


def study_file(tmp_path: Path, root: Path, subset: dict | None = ASKED, seed: int = 7, split: str = "test",
               name: str = "study.toml") -> Path:
    table = "" if subset is None else "subset = { " + ", ".join(f"{k} = {v}" for k, v in subset.items()) + " }"
    path = tmp_path / name
    path.write_text(f"""
[study]
name = "subset-test"
profile = "paper"
seed = {seed}
cache_dir = "{tmp_path / 'cache'}"
device = "cpu"

[catalogue]
root = "{root}"
split = "{split}"
caption_category = false
{table}

[encoders.e]
spec = "config:nowhere.json"

[arms.baseline]
kind = "retrieval"
encoder = "e"
""")
    return path


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    return catalogue(tmp_path / "deepfashion")


def test_allocate_is_proportional_within_one_and_sums_to_the_total():
    sizes = {"a": 151, "b": 89, "c": 47, "d": 13}
    shares = allocate(sizes, 60)
    assert sum(shares.values()) == 60
    for g, n in sizes.items():
        assert abs(shares[g] - 60 * n / 300) < 1
    assert allocate({"a": 1, "b": 1, "c": 1}, 2) == {"a": 1, "b": 1, "c": 0}  # ties: by name
    assert allocate({"a": 5}, 0) == {"a": 0} and allocate({"a": 5}, 5) == {"a": 5}


def test_the_same_seed_gives_the_same_images_and_another_seed_others(root: Path):
    items = load_catalog(root).items
    first = [it.item_id for it in select_subset(items, ASKED, seed=7)]
    again = [it.item_id for it in select_subset(list(reversed(items)), ASKED, seed=7)]
    assert sorted(first) == sorted(again)  # the files' row order does not matter
    assert first != [it.item_id for it in select_subset(items, ASKED, seed=8)]


def test_each_partition_gets_its_count_and_keeps_its_category_proportions(root: Path):
    items = load_catalog(root).items
    chosen = select_subset(items, ASKED, seed=7)
    assert Counter(it.split for it in chosen) == Counter(ASKED)
    originals = {it.item_id: it for it in items}
    for split, want in ASKED.items():
        pool = Counter(it.category for it in items if it.split == split)
        got = Counter(it.category for it in chosen if it.split == split)
        assert set(got) <= set(pool)
        for category, n in pool.items():  # within one item of the exact proportional share
            assert abs(got[category] - want * n / sum(pool.values())) < 1, (split, category)
    assert all(originals[it.item_id].split == it.split for it in chosen)  # never moved across partitions
    assert Counter(it.category for it in chosen if it.split == "train")["dress"] >= 2  # the rare one is kept


def test_a_too_small_catalogue_is_refused_naming_the_counts_and_the_fix(root: Path):
    items = load_catalog(root).items
    with pytest.raises(SubsetError) as e:
        select_subset(items, {"train": 60, "val": 61, "test": 200}, seed=7, root=root, where="study.toml")
    msg = str(e.value)
    assert "60 val images but subset.val = 61" in msg and "90 test images but subset.test = 200" in msg
    assert "subset.train" not in msg and "Lower those counts" in msg and "study.toml" in msg


def test_the_study_file_is_validated(tmp_path: Path, root: Path):
    for bad in ({"train": 0}, {"tran": 10}, {"train": 1.5}):
        with pytest.raises(StudyFileError, match="subset"):
            load_study(study_file(tmp_path, root, subset=bad))
    with pytest.raises(StudyFileError, match="split = 'test' is not drawn"):
        load_study(study_file(tmp_path, root, subset={"train": 10}))
    assert load_study(study_file(tmp_path, root, subset={"train": 10}, split="all")).catalogue.subset == {"train": 10}


def test_the_cli_writes_the_file_and_every_loader_uses_it(tmp_path: Path, root: Path, capsys):
    study = load_study(study_file(tmp_path, root))
    assert main(["subset", "--study", str(study.path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    path = Path(out["path"])
    assert path == subset_path(study, load_catalog(root)) and path.parent == study.cache_dir / "subset"
    assert out["counts"] == ASKED and sum(out["categories"]["train"].values()) == 60
    lines = path.read_text().splitlines()
    header = [ln for ln in lines if ln.startswith("#")]
    assert any("seed 7" in ln for ln in header) and any("largest remainder" in ln for ln in header)
    rows = [ln.split() for ln in lines if not ln.startswith("#")]
    assert len(rows) == 92 and {s for _, s in rows} == set(ASKED)

    catalog = study_catalog(study)  # read back from the file
    assert [(it.item_id, it.split) for it in catalog.items] == [tuple(r) for r in rows]
    assert len(catalog.split("test")) == 20 and catalog.splits == ("train", "val", "test")
    assert [it.item_id for it in StudyModels(study, "cpu", False).catalog.items] == [r[0] for r in rows]

    path.unlink()  # missing at load: drawn again, identically, and written
    assert [it.item_id for it in study_catalog(study).items] == [r[0] for r in rows] and path.is_file()
    assert path.read_text() == "\n".join(lines) + "\n"


def test_without_a_subset_the_whole_catalogue_loads_and_the_cli_says_how_to_ask(tmp_path: Path, root: Path, capsys):
    study = load_study(study_file(tmp_path, root, subset=None))
    assert len(study_catalog(study).items) == sum(sum(v.values()) for v in SIZES.values())
    assert main(["subset", "--study", str(study.path)]) == 2
    assert "subset = { train = 14000" in capsys.readouterr().err


def test_an_edited_file_and_missing_images_are_errors(tmp_path: Path, root: Path):
    study = load_study(study_file(tmp_path, root))
    catalog = study_catalog(study)
    path = subset_path(study, load_catalog(root))
    text = path.read_text()
    path.write_text(text.replace(" test\n", " train\n", 1))
    with pytest.raises(SubsetError, match="not an image of the catalogue"):
        study_catalog(study)
    path.write_text(text)
    (root / catalog.items[0].item_id).unlink()
    with pytest.raises(SubsetError, match="1 of the 92 subset images"):
        study_catalog(study)
