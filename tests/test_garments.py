"""Garment words grounded by WordNet, and participants' words read into the catalogue's vocabulary."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from dressup.colours import CATALOGUE_COLOURS
from dressup.config import QuerySpec, StudyFileError
from dressup.garments import GarmentLexicon, GarmentLexiconError, build_lexicon
from dressup.reading import QueryReader, emoji_as_words

ROOT = Path(__file__).resolve().parent.parent
DEMO_ANCHORS = tomllib.loads((ROOT / "assets" / "demo.toml").read_text(encoding="utf-8"))["query"]["garments"]


@pytest.fixture(scope="module")
def lexicon(tmp_path_factory) -> GarmentLexicon:
    return GarmentLexicon.load_or_build(DEMO_ANCHORS, tmp_path_factory.mktemp("lexicon"))


@pytest.fixture(scope="module")
def reader(lexicon) -> QueryReader:
    return QueryReader(dict(CATALOGUE_COLOURS), lexicon, ["striped", "long_sleeve", "denim"])


@pytest.mark.parametrize("word, category", [
    ("frock", "dress"), ("gown", "dress"), ("sundress", "dress"), ("pinafore", "dress"),
    ("slacks", "trousers"), ("chinos", "trousers"), ("jeans", "trousers"), ("sweatpants", "trousers"),
    ("jumper", "long sleeve top"),  # first sense: a sweater, not the pinafore dress of sense 7
    ("pullover", "long sleeve top"), ("cardigan", "long sleeve top"),
    ("kilt", "skirt"), ("miniskirt", "skirt"), ("T-shirt", "tee"), ("tee shirt", "tee"), ("tshirt", "tee"),
    ("singlet", "tank top"), ("camisole", "tank top"), ("blazer", "jacket"), ("overcoat", "coat"),
    ("bermuda shorts", "shorts"), ("hot pants", "shorts"), ("Trousers", "trousers"), ("hoodie", "hoodie"),
    ("parka", "jacket"),  # under jacket, which is under coat: the nearer anchor wins
    ("trowsers", "trousers"), ("jaket", "jacket"),  # misspellings, not English words
])
def test_wordnet_reads_garment_words_as_catalogue_categories(lexicon, word, category):
    assert lexicon.lookup(word) == category


@pytest.mark.parametrize("word", ["blanket", "night", "summer", "turtleneck", "dot", "sweeter"])
def test_words_that_are_not_garments_or_are_ambiguous_are_left_alone(lexicon, word):
    # "sweeter" is an English word, so it is not read as a misspelt "sweater"; a turtleneck is as much a jersey (tee) as a sweater, so it is not guessed.
    assert lexicon.lookup(word) is None


def test_lexicon_is_built_once_and_reused_from_the_cache(tmp_path, monkeypatch):
    anchors = {"skirt": ["skirt.n.02"], "dress": ["dress.n.01"]}
    first = GarmentLexicon.load_or_build(anchors, tmp_path)
    files = list(tmp_path.glob("garments-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["words"]["kilt"] == "skirt"

    def no_wordnet(*a, **k):
        raise AssertionError("WordNet was read again")

    monkeypatch.setattr("dressup.garments.build_lexicon", no_wordnet)
    again = GarmentLexicon.load_or_build(anchors, tmp_path)
    assert again.words == first.words


def test_a_wrong_anchor_names_the_fix():
    with pytest.raises(GarmentLexiconError, match="not a WordNet 3.0 synset"):
        build_lexicon({"dress": ["frocky.n.01"]})


def test_garment_grounding_without_anchors_is_a_study_file_error():
    with pytest.raises(StudyFileError, match=r"\[query.garments\]"):
        QuerySpec(garment_grounding=True)
    with pytest.raises(StudyFileError, match="lists of WordNet synset names"):
        QuerySpec(garments={"dress": "dress.n.01"})


@pytest.mark.parametrize("text, read", [
    ("crimson frock", "red dress"),
    ("Hi! I'd love a flowy lilac frock for a June wedding, nothing too fancy", "purple dress"),
    ("❤️👗", "red dress"),
    ("no stripes please, just a plain navy t-shirt", "blue tee"),
    ("not red, not pink... something emerald, a dress", "green dress"),
    ("I don't want trousers, I want shorts in sky blue", "blue shorts"),
    ("anything but black: a mustard blazer", "yellow jacket"),
    ("burgandy trowsers", "red trousers"),  # a misspelt colour and a misspelt garment
    ("navy striped long-sleeve denim jumper", "blue striped long_sleeve denim long sleeve top"),
    ("white linen shorts", "white shorts"),  # WordNet's "white" is also cricket trousers: colours come first
    ("long sleeve top in grey", "grey long sleeve top"),  # the longer reading wins over "long sleeve"
])
def test_reader_turns_participants_words_into_catalogue_words(reader, text, read):
    assert reader.read(text).text == read


def test_text_in_which_nothing_is_read_goes_to_the_encoder_as_written(reader):
    assert reader.read("something for a wedding").text == "something for a wedding"
    assert reader.read("qwzx flibbertigibbet").text == "qwzx flibbertigibbet"
    assert reader.read("").text == ""


def test_negated_words_are_recorded_as_unwanted(reader):
    reading = reader.read("a tee that isn't black, maybe mustard?")
    assert reading.wanted("colour") == ["yellow"] and reading.unwanted("colour") == ["black"]
    assert reading.wanted("garment") == ["tee"]


def test_colour_grounding_alone_rewrites_colours_in_place_and_keeps_the_rest():
    only_colours = QueryReader(dict(CATALOGUE_COLOURS))
    assert only_colours.read("a crimson frock for summer").text == "a red frock for summer"
    assert QueryReader(None).read("  crimson frock ").text == "crimson frock"


def test_emoji_become_their_cldr_names():
    assert emoji_as_words("🖤👕").split() == ["black", "heart", "t-shirt"]


@pytest.mark.parametrize("word, category", [
    ("cami", "tank top"), ("cardi", "long sleeve top"),  # clippings: the start of the word they shorten
    ("shacket", "jacket"), ("jorts", "shorts"),  # blends: they end with the garment they are a kind of
    ("hoody", "hoodie"),  # a spelling variant keeps the stem, nearest spelling among the stem's words
    ("tankini", None), ("bralette", None), ("onesie", None),  # nothing reached, or reached only by 3 letters
    ("zara", None), ("uniqlo", None), ("gucci", None), ("asos", None),  # brands are no garment
    ("joggers", None),  # an English word (a runner) is never re-read by its shape
])
def test_words_wordnet_lacks_are_read_by_how_english_makes_garment_names(lexicon, word, category):
    assert lexicon.lookup(word) == category
