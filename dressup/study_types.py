"""The study as the rest of the library sees it: plain dataclasses, and the one error a study file raises.

``dressup.config.load_study`` fills these from a validated study file (``dressup.study_schema`` checks the file
first); everything else (arms, demo build, app, analysis) reads only these. Apart from the loader so that the
schema can take its defaults from them and the loader can import both without a cycle. The two ``__post_init__``
checks stay here because code and tests also build ``CatalogueSpec`` and ``QuerySpec`` directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class StudyFileError(ValueError):
    """A study file a researcher wrote is wrong; the message names the key and the fix."""


@dataclass
class EncoderSpec:
    """One encoder a study can use or evaluate.

    ``spec`` says where weights come from, in open_clip's scheme style:
    ``hf-hub:ORG/NAME`` (open_clip Hub checkpoint, e.g. Marqo-FashionCLIP),
    ``transformers:ORG/NAME`` (a transformers ``CLIPModel``, e.g. ``patrickjohncyh/fashion-clip``),
    ``openclip:ARCH/TAG`` (an open_clip architecture with a pretrained tag, or ``openclip:ARCH`` for random
    weights), ``config:PATH.json`` (a custom open_clip model config, random image tower),
    ``local:PATH`` (a checkpoint folder written by ``dressup.train``), or ``hub-local:ORG/NAME`` (such a folder
    published to the Hub by ``python -m dressup publish``).
    """

    name: str
    spec: str
    stn: bool = False
    lock_text: bool = False
    image_size: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainSpec:
    """How ``dressup.train`` makes one encoder (demo build or a researcher's run)."""

    name: str
    init: str  # an encoder name whose weights start training, or a spec
    captions: str = "full"  # "full" | "category"
    stn: bool = False
    lock_text: bool = True
    epochs: float = 1.0
    steps: int | None = None
    batch_size: int = 128
    lr: float = 1e-6
    weight_decay: float = 0.1
    warmup: int = 10
    duplicates: str = "soft"  # repeated captions in a batch: "soft" (shared target), "distinct", "ignore"
    checkpoint_every: int = 100
    build: bool = True  # trained by `python -m dressup demo build`; false: only by `python -m dressup train NAME`


@dataclass
class ArmSpec:
    """One arm of the study: ``retrieval`` (encoder + index) or ``generative``."""

    name: str
    kind: str
    encoder: str = ""
    generator: dict[str, Any] = field(default_factory=dict)


@dataclass
class CatalogueSpec:
    """Where the catalogue is (a folder, or a Hub dataset fetched into one) and, for the demo, how it is drawn."""

    root: Path
    kind: str = "deepfashion"  # "deepfashion" (on disk) or "demo" (drawn by dressup.democatalog if missing)
    size: int = 4000
    image_size: int = 64
    seed: int = 0
    split: str = "train"  # which split the study retrieves from ("all" for every split)
    caption_category: bool = True  # start captions with the category noun instead of "garment"
    inshop_garments: int = 0  # demo only: extra query/gallery images per garment for In-shop top-k
    # images drawn per DeepFashion partition (dressup.subset), e.g. the paper's {train = 14000, val = 2000,
    # test = 4000}; partitions not named are left out; empty: the whole catalogue
    subset: dict[str, int] = field(default_factory=dict)
    # a Hub dataset repo in DeepFashion's layout ("USER/NAME", may be private): root is then its snapshot folder in
    # the Hugging Face cache (dressup.catalog.catalogue_from_hub); revision pins a commit, branch or tag
    repo: str = ""
    revision: str = ""

    def __post_init__(self) -> None:
        if self.revision and not self.repo:
            raise StudyFileError(f"[catalogue] revision = {self.revision!r} pins a Hub dataset; add "
                                 "repo = \"USER/NAME\" or remove revision")
        if not isinstance(self.subset, dict):
            raise StudyFileError(f"[catalogue] subset must be a table such as {{ train = 14000, val = 2000, "
                                 f"test = 4000 }}, not {self.subset!r}")
        bad = {k: v for k, v in self.subset.items()
               if k not in ("train", "val", "test") or isinstance(v, bool) or not isinstance(v, int) or v < 1}
        if bad:
            raise StudyFileError(f"[catalogue] subset {bad}: keys must be DeepFashion partitions (train, val, test) "
                                 f"and values whole numbers of images >= 1, e.g. {{ train = 14000, val = 2000, "
                                 f"test = 4000 }}")
        if self.subset and self.split != "all" and self.split not in self.subset:
            raise StudyFileError(f"[catalogue] split = {self.split!r} is not drawn by subset {self.subset}; add "
                                 f"{self.split} = N to subset or retrieve from a split it names")


@dataclass
class QuerySpec:
    """How a preference becomes a query (see dressup.arms for why)."""

    colour_grounding: bool = False
    garment_grounding: bool = False  # garment words -> catalogue categories by WordNet (dressup.garments)
    garments: dict[str, list[str]] = field(default_factory=dict)  # catalogue category -> WordNet synsets
    fusion: str = "mean"  # "mean" (weighted mean of normalised embeddings) | "rrf" (reciprocal rank fusion)
    text_weight: float = 0.75  # share of the text embedding when photos are given too (measured: fusion.md)
    index: str = "auto"  # "auto" | "exact" | "hnsw"
    approximate_above: int = 30_000  # "auto" switches to HNSW above this many items (bench/RESULTS.md)

    def __post_init__(self) -> None:
        if self.garment_grounding and not self.garments:
            raise StudyFileError("[query] garment_grounding = true needs a [query.garments] table: each catalogue "
                                 'category with the WordNet synsets it stands for, e.g. dress = ["dress.n.01"]')
        bad = {k: v for k, v in self.garments.items()
               if not isinstance(v, list) or not all(isinstance(x, str) for x in v)}
        if bad:
            raise StudyFileError(f"[query.garments] values must be lists of WordNet synset names; got {bad}")


@dataclass
class UISpec:
    title: str = "Dress-UP: which recommendations suit you?"
    min_photos: int = 2
    max_photos: int = 4
    max_upload_mb: float = 10.0
    max_megapixels: float = 12.0  # a phone's photo; checked from every photo's header before any is decoded
    max_text_chars: int = 2000
    completion_url: str = ""  # e.g. Prolific's https://app.prolific.com/submissions/complete?cc={code}
    attention_check: bool = False
    researcher_password_env: str = "DRESSUP_RESEARCHER_PASSWORD"


@dataclass
class PushSpec:
    """Optional push of completed participants (never the database) to a private HF dataset (``study.push``)."""

    repo_id: str = ""
    every_minutes: float = 10.0
    token_env: str = "HF_TOKEN"


@dataclass
class Study:
    name: str
    profile: str  # "demo" | "paper"
    path: Path  # the study file itself
    seed: int
    participants_wanted: int
    results_dir: Path
    cache_dir: Path
    device: str  # "auto" | "cpu" | "cuda"
    catalogue: CatalogueSpec
    encoders: dict[str, EncoderSpec]
    train: dict[str, TrainSpec]
    arms: list[ArmSpec]
    query: QuerySpec
    ui: UISpec
    push: PushSpec
    raw: dict[str, Any]
    allow_cpu: bool = False  # the paper profile runs without CUDA only when this says so (dressup.device)
    database: str = ""  # a PostgreSQL URL shared by every host of the study; $DATABASE_URL wins; "": SQLite
    allow_data_loss: bool = False  # a demo on a Space's wiped disk may start; a study never should
    weights: Path | None = None  # trained weights shipped with the study (dressup.weights); None: train them

    @property
    def db_path(self) -> Path:
        return self.results_dir / "study.sqlite"

    def arm(self, name: str) -> ArmSpec:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise StudyFileError(f"study {self.name!r} has no arm {name!r}; it has {[a.name for a in self.arms]}")

    def encoder(self, name: str) -> EncoderSpec:
        if name not in self.encoders:
            raise StudyFileError(
                f"study {self.name!r} has no encoder {name!r} under [encoders]; it has {sorted(self.encoders)}"
            )
        return self.encoders[name]


def local_dir(study: Study, name: str) -> Path:
    """The folder a trained encoder lives in (its ``local:`` spec): where the build trains it and where shipped
    weights are unpacked (``dressup.weights``)."""
    spec = study.encoder(name).spec
    if not spec.startswith("local:"):
        raise StudyFileError(f"[encoders.{name}] must be a 'local:' folder to be trained into, not {spec!r}")
    return Path(spec[len("local:"):])
