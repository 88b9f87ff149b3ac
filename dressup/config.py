"""The study file: every model id, path and threshold lives here, nowhere else.

A study is one TOML file (``assets/demo.toml`` is the demo profile's, ``assets/paper.toml`` the paper's).
Relative paths in it are resolved against the folder the file is in, so a researcher can copy the file
anywhere. ``load_study`` validates it and returns plain dataclasses; a mistake a researcher can make
raises ``StudyFileError`` naming the key and the fix.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_STUDY = Path(__file__).resolve().parent.parent / "assets" / "demo.toml"
STUDY_ENV = "DRESSUP_STUDY"


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


def _resolve(base: Path, value: str) -> Path:
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else (base / p).resolve()


def _pick(d: dict[str, Any], cls: type, where: str, **fixed: Any) -> Any:
    allowed = set(cls.__dataclass_fields__) - set(fixed)
    unknown = set(d) - allowed
    if unknown:
        raise StudyFileError(f"[{where}] has unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return cls(**fixed, **d)


def study_path_from_env(path: str | os.PathLike | None = None) -> Path:
    """The study file to use: an explicit path, else $DRESSUP_STUDY, else the demo study."""
    return Path(path or os.environ.get(STUDY_ENV) or DEFAULT_STUDY).resolve()


def load_study(path: str | os.PathLike | None = None) -> Study:
    """Read and validate a study file (see the module docstring for path rules)."""
    p = study_path_from_env(path)
    if not p.is_file():
        raise StudyFileError(f"study file {p} does not exist; copy assets/demo.toml and point {STUDY_ENV} at it")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise StudyFileError(f"study file {p} is not valid TOML: {e}") from e
    base = p.parent
    s = dict(raw.get("study", {}))
    for key in ("name", "profile"):
        if key not in s:
            raise StudyFileError(f"study file {p}: [study] needs '{key}'")
    if s["profile"] not in ("demo", "paper"):
        raise StudyFileError(f"[study] profile must be 'demo' or 'paper', not {s['profile']!r}")

    cat = dict(raw.get("catalogue", {}))
    if cat.get("repo"):
        cat["root"] = _hub_catalogue(cat, p)
    elif "root" not in cat:
        raise StudyFileError(f"study file {p}: [catalogue] needs 'root' (a DeepFashion-format folder) or 'repo' "
                             "(a Hub dataset in that layout)")
    else:
        cat["root"] = _resolve(base, cat["root"])
    catalogue = _pick(cat, CatalogueSpec, "catalogue")

    cache_dir = _resolve(base, s.get("cache_dir", "../cache"))
    encoders = {}
    for name, e in raw.get("encoders", {}).items():
        e = dict(e)
        if "spec" not in e:
            raise StudyFileError(f"[encoders.{name}] needs 'spec' (e.g. 'hf-hub:Marqo/marqo-fashionCLIP')")
        e["spec"] = _expand_spec(e["spec"], base)
        encoders[name] = _pick(e, EncoderSpec, f"encoders.{name}", name=name)
    train = {n: _pick(dict(t), TrainSpec, f"train.{n}", name=n) for n, t in raw.get("train", {}).items()}

    arms = []
    for name, a in raw.get("arms", {}).items():
        a = dict(a)
        kind = a.get("kind")
        if kind not in ("retrieval", "generative"):
            raise StudyFileError(f"[arms.{name}] kind must be 'retrieval' or 'generative', not {kind!r}")
        if kind == "retrieval" and a.get("encoder") not in encoders:
            raise StudyFileError(
                f"[arms.{name}] encoder {a.get('encoder')!r} is not defined under [encoders]; it has {sorted(encoders)}"
            )
        if isinstance(a.get("generator"), dict) and a["generator"].get("checkpoint"):  # a folder, like the others
            a["generator"] = {**a["generator"], "checkpoint": str(_resolve(base, a["generator"]["checkpoint"]))}
        arms.append(_pick(a, ArmSpec, f"arms.{name}", name=name))
    if not arms:
        raise StudyFileError(f"study file {p} defines no [arms.*]")

    return Study(
        name=s["name"],
        profile=s["profile"],
        path=p,
        seed=int(s.get("seed", 0)),
        participants_wanted=int(s.get("participants_wanted", 24)),
        results_dir=_results_dir(base, s.get("results_dir", "../results")),
        cache_dir=cache_dir,
        device=_device_choice(s.get("device", "auto"), p),
        catalogue=catalogue,
        encoders=encoders,
        train=train,
        arms=arms,
        query=_pick(dict(raw.get("query", {})), QuerySpec, "query"),
        ui=_pick(dict(raw.get("ui", {})), UISpec, "ui"),
        push=_pick(dict(raw.get("push", {})), PushSpec, "push"),
        raw=raw,
        allow_cpu=_flag(s.get("allow_cpu", False), "study", "allow_cpu", p),
        database=str(s.get("database", "")),
        allow_data_loss=_flag(s.get("allow_data_loss", False), "study", "allow_data_loss", p),
        weights=_resolve(base, s["weights"]) if s.get("weights") else None,
    )


SPACES_DATA = Path("/data")  # a Space's persistent storage, when the Space has the storage upgrade


def _results_dir(base: Path, value: str) -> Path:
    """On a Hugging Face Space with persistent storage, a relative results folder lives under /data (the
    Space's own disk is wiped at every restart); everywhere else it is relative to the study file."""
    p = Path(os.path.expanduser(value))
    if not p.is_absolute() and os.environ.get("SPACE_ID") and SPACES_DATA.is_dir():
        return SPACES_DATA.joinpath(*[part for part in p.parts if part not in ("..", ".")])
    return _resolve(base, value)


def _device_choice(value: Any, path: Path) -> str:
    from dressup.device import DEVICES

    if value not in DEVICES:
        raise StudyFileError(f"{path}: [study] device = {value!r} is not one of {list(DEVICES)}; "
                             f"use \"cuda\" for a GPU, \"auto\" to use one when there is one")
    return value


def _flag(value: Any, section: str, key: str, path: Path) -> bool:
    if not isinstance(value, bool):
        raise StudyFileError(f"{path}: [{section}] {key} = {value!r} must be true or false")
    return value


def _hub_catalogue(cat: dict[str, Any], path: Path) -> Path:
    """``[catalogue] repo``: the dataset's snapshot folder in the Hugging Face cache, fetched now if need be, so
    every later reader of ``root`` sees an ordinary folder."""
    from dressup.catalog import CatalogError, catalogue_from_hub

    repo = cat["repo"]
    if "root" in cat:
        raise StudyFileError(f"{path}: [catalogue] has both root and repo; keep root for a folder on this machine "
                             "or repo for a Hub dataset, not both")
    if not isinstance(repo, str) or repo.count("/") != 1:
        raise StudyFileError(f"{path}: [catalogue] repo = {repo!r} must be a Hub dataset id such as "
                             "\"lab/deepfashion\"")
    if cat.get("kind", "deepfashion") != "deepfashion":
        raise StudyFileError(f"{path}: [catalogue] repo needs kind = \"deepfashion\" (the demo catalogue is drawn "
                             "locally, not downloaded)")
    try:
        return catalogue_from_hub(repo, str(cat.get("revision") or ""))
    except CatalogError as e:
        raise StudyFileError(f"{path}: [catalogue] repo = {repo!r}: {e}") from None


def _expand_spec(spec: str, base: Path) -> str:
    """Make ``local:`` and ``config:`` paths absolute so a spec means the same from any working folder."""
    for scheme in ("local:", "config:"):
        if spec.startswith(scheme):
            return scheme + str(_resolve(base, spec[len(scheme):]))
    return spec
