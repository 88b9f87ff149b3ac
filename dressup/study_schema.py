"""What a valid study file is: pydantic models of every section and key, and the JSON Schema made from them.

One model per TOML table (``[study]``, ``[catalogue]``, ``[encoders.*]``, ``[train.*]``, ``[arms.*]`` with its
``generator`` table, ``[query]`` with ``[query.garments]``, ``[ui]``, ``[push]``), each with ``extra="forbid"``
(a misspelt key is an error, not a silently ignored line) and strict types (``min_photos = "two"`` is refused,
never read as something else). Defaults come from the dataclasses of ``dressup.study_types``, so the file's
documented defaults and the loader's cannot drift apart.

The same models give the JSON Schema committed as ``assets/study.schema.json`` (regenerate it with
``python -m dressup schema``), which TOML editors (Taplo, Even Better TOML) use for completion and hover docs
when a study file starts with ``#:schema ./study.schema.json``. Turning a validation error into a message a
researcher can act on is ``dressup.study_errors``' job; checks across sections (an arm's encoder must be
defined) are ``check_references`` here.
"""
from __future__ import annotations

import json
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import GenerateJsonSchema

from dressup.device import DEVICES
from dressup.protocols import GRID
from dressup.study_types import (ArmSpec, CatalogueSpec, EncoderSpec, PushSpec, QuerySpec, Study, StudyFileError,
                                 TrainSpec, UISpec)

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "assets" / "study.schema.json"
GENERATOR_KINDS = ("sd15", "dcgan", "diffusion")  # the kinds dressup.generators registers (GENERATOR_KINDS)
PARTITIONS = ("train", "val", "test")  # DeepFashion's evaluation partitions


def _default(cls: type, name: str) -> Any:
    """The dataclass default of ``cls.name`` (the one the loader uses when the key is left out)."""
    f = next(f for f in fields(cls) if f.name == name)
    return f.default_factory() if f.default is MISSING else f.default


def _field(cls: type, name: str, description: str, **kw: Any) -> Any:
    return Field(_default(cls, name), description=description, **kw)


Share = Annotated[float, Field(ge=0.0, le=1.0)]


class _Section(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class StudySection(_Section):
    """``[study]``: what the study is called, where it keeps its results and caches, and where it runs."""

    name: str = Field(description="the study's name (shown to researchers, keys its records)",
                      examples=["my-study"])
    profile: Literal["demo", "paper"] = Field(description='"demo": the CPU-only miniature; "paper": real weights '
                                                          "from the Hub, DeepFashion on disk, a GPU")
    seed: int = Field(0, ge=0, description="seeds every random draw of the study (subset, arm order, images)")
    participants_wanted: int = Field(24, ge=1, description="how many complete participants the study wants")
    results_dir: str = Field("../results", description="folder of the database and exports, relative to this "
                                                       "file (under /data on a Space with storage)")
    cache_dir: str = Field("../cache", description="folder of models, indexes and the drawn catalogue, relative "
                                                   "to this file")
    device: Literal[DEVICES] = Field("auto", description='"auto": a GPU when there is one; "cpu"; "cuda"')
    allow_cpu: bool = _field(Study, "allow_cpu", "a paper study may run without CUDA (it warns at start)")
    database: str = _field(Study, "database", 'a PostgreSQL URL shared by every host ($DATABASE_URL wins); "": '
                                              "SQLite under results_dir")
    allow_data_loss: bool = _field(Study, "allow_data_loss", "start even where answers would be lost at a restart "
                                                             "(a Space's wiped disk)")
    weights: str = Field("", description="folder of trained weights shipped with the study (dressup.weights), "
                                         'relative to this file; "": train them')


class CatalogueSection(_Section):
    """``[catalogue]``: the garments the retrieval arms search (DeepFashion's layout, on disk or on the Hub)."""

    root: str = Field("", description="a DeepFashion-format folder, relative to this file (or give repo)")
    repo: str = _field(CatalogueSpec, "repo", 'a Hub dataset repo in DeepFashion\'s layout, "USER/NAME" '
                                              "(instead of root)")
    revision: str = _field(CatalogueSpec, "revision", "the commit, branch or tag of repo")
    kind: Literal["deepfashion", "demo"] = _field(CatalogueSpec, "kind", '"deepfashion" (on disk) or "demo" '
                                                                         "(drawn by dressup.democatalog)")
    size: int = _field(CatalogueSpec, "size", "demo only: garments drawn", ge=1)
    image_size: int = _field(CatalogueSpec, "image_size", "demo only: pixels per side of a drawn image", ge=8)
    seed: int = _field(CatalogueSpec, "seed", "demo only: the drawing's seed", ge=0)
    split: Literal["train", "val", "test", "all"] = _field(CatalogueSpec, "split", "the partition the study "
                                                                                   'retrieves from ("all": every one)')
    caption_category: bool = _field(CatalogueSpec, "caption_category", "start captions with the category noun "
                                                                       'instead of "garment"')
    inshop_garments: int = _field(CatalogueSpec, "inshop_garments", "demo only: garments with extra query/gallery "
                                                                    "images for In-shop top-k", ge=0)
    subset: dict[Literal[PARTITIONS], Annotated[int, Field(ge=1)]] = _field(
        CatalogueSpec, "subset", "images drawn per DeepFashion partition, e.g. { train = 14000, val = 2000, "
                                 "test = 4000 }; empty: the whole catalogue")


class EncoderSection(_Section):
    """``[encoders.NAME]``: one encoder a study can use or evaluate (see ``EncoderSpec`` for the schemes)."""

    spec: str = Field(description="where the weights come from: hf-hub:ORG/NAME, transformers:ORG/NAME, "
                                  "openclip:ARCH[/TAG], config:PATH.json, local:PATH or hub-local:ORG/NAME",
                      examples=["hf-hub:Marqo/marqo-fashionCLIP"])
    stn: bool = _field(EncoderSpec, "stn", "a spatial transformer in front of the image tower")
    lock_text: bool = _field(EncoderSpec, "lock_text", "the text tower is frozen")
    image_size: Annotated[int, Field(ge=8)] | None = _field(EncoderSpec, "image_size", "pixels per side the "
                                                                                       "image tower reads")
    options: dict[str, Any] = _field(EncoderSpec, "options", "backend options, e.g. { seed = 1 } for a random "
                                                             "config: tower")


class TrainSection(_Section):
    """``[train.NAME]``: how ``python -m dressup train NAME`` (and the demo build) makes encoder NAME."""

    init: str = Field(description="an encoder name whose weights start training, or a spec",
                      examples=["baseline"])
    captions: Literal["full", "category"] = _field(TrainSpec, "captions", '"full" attribute captions or '
                                                                          '"category" nouns only')
    stn: bool = _field(TrainSpec, "stn", "train with a spatial transformer in front of the image tower")
    lock_text: bool = _field(TrainSpec, "lock_text", "keep the text tower frozen")
    epochs: float = _field(TrainSpec, "epochs", "passes over the catalogue (when steps is not given)", gt=0)
    steps: Annotated[int, Field(ge=1)] | None = _field(TrainSpec, "steps", "optimiser steps (instead of epochs)")
    batch_size: int = _field(TrainSpec, "batch_size", "images per step", ge=1)
    lr: float = _field(TrainSpec, "lr", "learning rate", gt=0)
    weight_decay: float = _field(TrainSpec, "weight_decay", "AdamW weight decay", ge=0)
    warmup: int = _field(TrainSpec, "warmup", "warm-up steps", ge=0)
    duplicates: Literal["soft", "distinct", "ignore"] = _field(TrainSpec, "duplicates", "repeated captions in a "
                                                                                        "batch")
    checkpoint_every: int = _field(TrainSpec, "checkpoint_every", "steps between checkpoints", ge=1)
    build: bool = _field(TrainSpec, "build", "trained by `python -m dressup demo build`; false: only by "
                                             "`python -m dressup train NAME`")


class GeneratorSection(BaseModel):
    """``[arms.NAME] generator``: the keys every kind reads. Each kind's own keys (sd15's model, the diffusion
    model's sampling_steps, ...) pass through to ``dressup.generators``, which checks them when it loads."""

    model_config = ConfigDict(strict=True, extra="allow")

    kind: Literal[GENERATOR_KINDS] = Field(description='"sd15" (Stable Diffusion 1.5), "dcgan" or "diffusion" '
                                                       "(the demo's miniature)")
    encoder: str = Field("", description="encoder name (under [encoders]) that scores candidates")
    candidates: int = Field(GRID, ge=GRID, description=f"images drawn; more than {GRID} keeps the {GRID} closest "
                                                       "to the preference")
    text_weight: Share = Field(0.5, description="share of the text in the candidates' score")
    checkpoint: str = Field("", description="dcgan/diffusion: the trained model's folder, relative to this file")


class ArmSection(_Section):
    """``[arms.NAME]``: one arm of the study, retrieval (an encoder and its index) or generative."""

    kind: Literal["retrieval", "generative"] = Field(description='"retrieval" or "generative"')
    encoder: str = _field(ArmSpec, "encoder", "retrieval: the encoder name under [encoders]")
    generator: GeneratorSection | None = Field(None, description="generative: the generator, e.g. "
                                                                 '{ kind = "sd15", model = "..." }')


class QuerySection(_Section):
    """``[query]``: how a participant's words and photos become a query (see dressup.arms)."""

    colour_grounding: bool = _field(QuerySpec, "colour_grounding", "colour words -> the catalogue's colour names")
    garment_grounding: bool = _field(QuerySpec, "garment_grounding", "garment words -> the catalogue's categories "
                                                                     "by WordNet (needs [query.garments])")
    garments: dict[str, list[str]] = _field(QuerySpec, "garments", "each catalogue category with the WordNet "
                                                                   'synsets it stands for, e.g. dress = ["dress.n.01"]')
    fusion: Literal["mean", "rrf"] = _field(QuerySpec, "fusion", '"mean" (weighted mean of embeddings) or "rrf" '
                                                                 "(reciprocal rank fusion)")
    text_weight: Share = _field(QuerySpec, "text_weight", "the text's share of the query when photos are given too")
    index: Literal["auto", "exact", "hnsw"] = _field(QuerySpec, "index", '"auto" switches to HNSW above '
                                                                         "approximate_above items")
    approximate_above: int = _field(QuerySpec, "approximate_above", "catalogue size above which auto uses HNSW",
                                    ge=0)


class UISection(_Section):
    """``[ui]``: what participants see and may upload."""

    title: str = _field(UISpec, "title", "the page's title")
    min_photos: int = _field(UISpec, "min_photos", "photos a participant must add", ge=0)
    max_photos: int = _field(UISpec, "max_photos", "photos a participant may add", ge=1)
    max_upload_mb: float = _field(UISpec, "max_upload_mb", "megabytes per photo", gt=0)
    max_megapixels: float = _field(UISpec, "max_megapixels", "megapixels per photo", gt=0)
    max_text_chars: int = _field(UISpec, "max_text_chars", "characters of the preference's text", ge=1)
    completion_url: str = _field(UISpec, "completion_url", "where a finished participant goes; {code} is "
                                                           "replaced by the completion code")
    attention_check: bool = _field(UISpec, "attention_check", "add an attention-check grid")
    researcher_password_env: str = _field(UISpec, "researcher_password_env", "environment variable holding the "
                                                                             "researcher page's password")


class PushSection(_Section):
    """``[push]``: optional upload of completed participants to a private Hub dataset (study.push)."""

    repo_id: str = _field(PushSpec, "repo_id", 'the private dataset repo, "USER/NAME"; "": no push')
    every_minutes: float = _field(PushSpec, "every_minutes", "minutes between pushes", gt=0)
    token_env: str = _field(PushSpec, "token_env", "environment variable holding a write token")


class StudyFile(_Section):
    """A whole study file (``assets/demo.toml`` and ``assets/paper.toml`` are two)."""

    model_config = ConfigDict(strict=True, extra="forbid", title="Dress-UP study file",
                              json_schema_extra={"$comment": "generated by `python -m dressup schema`; edit "
                                                             "dressup/study_schema.py instead"})

    study: StudySection
    catalogue: CatalogueSection
    encoders: dict[str, EncoderSection] = Field({}, description="[encoders.NAME] tables")
    train: dict[str, TrainSection] = Field({}, description="[train.NAME] recipes")
    arms: dict[str, ArmSection] = Field(min_length=1, description="[arms.NAME] tables: the study's arms")
    query: QuerySection = QuerySection()
    ui: UISection = UISection()
    push: PushSection = PushSection()


def check_references(doc: StudyFile, path: Path) -> None:
    """Checks across sections that no single key's type can express; each names the key and the fix."""
    encoders = sorted(doc.encoders)
    for name, arm in doc.arms.items():
        if arm.kind == "retrieval" and arm.encoder not in doc.encoders:
            shown = arm.encoder or None
            raise StudyFileError(f"{path}: [arms.{name}] encoder {shown!r} is not defined under [encoders]; it has "
                                 f"{encoders}: set encoder to one of them or add [encoders.{arm.encoder or 'NAME'}]")
        if arm.kind == "retrieval" and arm.generator is not None:
            raise StudyFileError(f"{path}: [arms.{name}] generator is read only by kind = \"generative\"; remove it "
                                 "or make the arm generative")
        if arm.kind == "generative" and arm.generator is None:
            raise StudyFileError(f"{path}: [arms.{name}] kind = \"generative\" needs a generator table, e.g. "
                                 "generator = { kind = \"sd15\" }")
        if arm.generator is not None and arm.generator.encoder and arm.generator.encoder not in doc.encoders:
            raise StudyFileError(f"{path}: [arms.{name}.generator] encoder {arm.generator.encoder!r} is not defined "
                                 f"under [encoders]; it has {encoders}: name one of them or add "
                                 f"[encoders.{arm.generator.encoder}]")
    if doc.ui.min_photos > doc.ui.max_photos:
        raise StudyFileError(f"{path}: [ui] min_photos = {doc.ui.min_photos} is more than max_photos = "
                             f"{doc.ui.max_photos}; lower min_photos or raise max_photos")


class _TomlJsonSchema(GenerateJsonSchema):
    """TOML has no null: a key that may be left out (``steps``, ``generator``) is offered as its own type only."""

    def nullable_schema(self, schema: Any) -> Any:
        return self.generate_inner(schema["schema"])

    def default_schema(self, schema: Any) -> Any:
        if "default" in schema and schema["default"] is None:
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a study file, as committed in ``assets/study.schema.json``."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            **StudyFile.model_json_schema(schema_generator=_TomlJsonSchema)}


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def write_json_schema(path: Path = SCHEMA_PATH) -> Path:
    """(Re)write the committed schema file; ``python -m dressup schema`` calls this."""
    Path(path).write_text(json_schema_text(), encoding="utf-8")
    return Path(path)
