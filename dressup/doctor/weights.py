"""Do a model's weight files really exist, and would they open?

A file name in the Hugging Face cache proves little: ``hf download`` interrupted after ``model_index.json`` leaves
a repository that looks cached, and a copied or half-synced blob can be cut short. So every weights file the
loaders would read is opened as they would open it, without reading the tensors: a safetensors file's 8-byte
header length and JSON header must parse, name at least one non-empty tensor, and the file must be at least as
long as the header's largest data offset; a ``.bin`` (torch's zip format) must be a zip whose directory opens
(the directory is at the end of the file, so a truncated download fails). Nothing is downloaded.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from dressup.doctor.base import hf_download

MAX_HEADER = 100 * 2 ** 20  # safetensors' own limit on the JSON header

# Weight file names by library, most preferred first; fp16 variants count (a GPU loads them first).
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                     "diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.bin",
                     "diffusion_pytorch_model.fp16.bin")
TRANSFORMERS_WEIGHTS = ("model.safetensors", "model.fp16.safetensors", "model.safetensors.index.json",
                        "pytorch_model.bin", "pytorch_model.fp16.bin", "pytorch_model.bin.index.json")
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"), ("spiece.model",), ("tokenizer.model",))


class Broken(str):
    """A problem with a file that is present but damaged (truncated, unreadable): fetching it again needs
    ``--force-download``. ``file`` is its path inside the repository."""

    file: str

    def __new__(cls, text: str, file: str) -> "Broken":
        obj = super().__new__(cls, text)
        obj.file = file
        return obj


def inspect_weights(path: Path, label: str = "") -> tuple[str | None, str]:
    """(the problem, or None; a short summary) for one weights file, read no further than its header.
    ``label`` names the file in messages (default: its path)."""
    shown = label or str(path)
    try:
        size = path.stat().st_size
    except OSError as e:  # e.g. a snapshot symlink whose blob was deleted
        return f"{shown} cannot be read ({e.strerror or e})", ""
    if path.suffix == ".safetensors":
        return _inspect_safetensors(path, size, shown)
    try:
        with zipfile.ZipFile(path) as z:
            entries = len(z.infolist())
    except (zipfile.BadZipFile, OSError) as e:
        return f"{shown} ({size:,} bytes) is not a complete zip archive ({e}): truncated, or not torch's format", ""
    if not entries:
        return f"{shown} is an empty archive", ""
    return None, f"{path.name} ({size / 2 ** 20:.1f} MiB, {entries} entries)"


def _inspect_safetensors(path: Path, size: int, shown: str) -> tuple[str | None, str]:
    if size < 8:
        return f"{shown} is truncated ({size} bytes, shorter than a safetensors header)", ""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if not 0 < n <= MAX_HEADER or 8 + n > size:
            return f"{shown} is truncated or corrupt (its header claims {n:,} bytes; the file has {size:,})", ""
        raw = f.read(n)
    try:
        header = json.loads(raw)
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        spans = [tuple(int(x) for x in t["data_offsets"]) for t in tensors.values()]
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        return f"{shown} has an unreadable safetensors header ({e})", ""
    if not tensors or any(len(s) != 2 or not 0 <= s[0] <= s[1] for s in spans):
        return f"{shown} names no tensors (or impossible offsets): it holds no weights", ""
    end = max(s[1] for s in spans)
    if end == 0:
        return f"{shown}: every tensor is empty", ""
    if 8 + n + end > size:
        return (f"{shown} is truncated: {size:,} bytes, but its header needs {8 + n + end:,} "
                f"(an interrupted download or copy)"), ""
    return None, f"{path.name} ({len(tensors)} tensors, {size / 2 ** 20:.1f} MiB)"


@dataclass(frozen=True)
class Source:
    """Where a model's files are: a Hub repository in the Hugging Face cache, or a ``save_pretrained`` folder.

    An existing folder wins, as it does for ``from_pretrained``; otherwise the cache is asked through
    huggingface_hub's own ``try_to_load_from_cache`` (``refs/<revision>`` -> ``snapshots/<commit>/FILE``), so
    the doctor reads exactly what an offline load would read.
    """

    ident: str
    revision: str = ""
    cache_dir: str | None = None

    @property
    def folder(self) -> Path | None:
        p = Path(self.ident).expanduser()
        return p if p.is_dir() else None

    def file(self, name: str) -> Path | None:
        if self.folder is not None:
            p = self.folder / name
            return p if p.is_file() else None
        from huggingface_hub import try_to_load_from_cache

        try:
            hit = try_to_load_from_cache(self.ident, name, cache_dir=self.cache_dir, revision=self.revision or None)
        except ValueError:  # not a valid repo id (huggingface_hub's HFValidationError is one)
            return None
        return Path(hit) if isinstance(hit, str) else None

    def cached(self) -> bool:
        """Whether anything of it is here at all (to tell "never downloaded" from "downloaded in part")."""
        if self.folder is not None:
            return True
        from huggingface_hub import constants
        from huggingface_hub.file_download import repo_folder_name

        try:
            name = repo_folder_name(repo_id=self.ident, repo_type="model")
        except ValueError:
            return False
        return (Path(self.cache_dir or constants.HF_HUB_CACHE) / name / "snapshots").is_dir()

    def where(self) -> str:
        if self.folder is not None:
            return f"folder {self.folder}"
        from huggingface_hub import constants

        rev = f" (revision {self.revision})" if self.revision else ""
        return f"{self.ident}{rev} in the Hugging Face cache {self.cache_dir or constants.HF_HUB_CACHE}"

    def fix(self, problems: list[str] = ()) -> str:
        """The command for ``problems``: the damaged files fetched again when there are any, else the repository
        (``hf download`` resumes a partial download and skips what it already has)."""
        if self.folder is not None:
            return f"restore {self.folder} (write it with save_pretrained), or point the study file at a Hub id"
        broken = tuple(p.file for p in problems if isinstance(p, Broken))
        return hf_download(self.ident, self.revision, self.cache_dir, files=broken, force=bool(broken))


def check_json(source: Source, name: str) -> str | None:
    """The problem with a config file the loader needs, or None."""
    p = source.file(name)
    if p is None:
        return f"{name} is missing"
    try:
        json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return Broken(f"{name} is unreadable ({e})", name)
    return None


def check_weights(source: Source, prefix: str, candidates: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(problems, summaries) for the weights under ``prefix`` (``"unet/"``, or ``""`` for the repo's top).

    Every safetensors file present is opened (a GPU reads the fp16 variant, a CPU the full one, so either may be
    loaded); a ``.bin`` only when there is no safetensors file, since loaders then never touch it.
    """
    present = [(n, p) for n in candidates if (p := source.file(prefix + n)) is not None]
    if not present:
        return [f"{prefix or 'the repository'} has no weights file (looked for {', '.join(candidates[:2])}, ...)"], []
    safe = [(n, p) for n, p in present if ".safetensors" in n]
    problems: list[str] = []
    summaries: list[str] = []
    for name, path in safe or present[:1]:
        if name.endswith(".index.json"):  # sharded: the index names its shards
            try:
                shards = sorted(set(json.loads(path.read_text(encoding="utf-8"))["weight_map"].values()))
            except (OSError, ValueError, KeyError, AttributeError) as e:
                problems.append(Broken(f"{prefix}{name} is unreadable ({e})", prefix + name))
                continue
            found = {s: source.file(prefix + s) for s in shards}
            problems += [f"{prefix}{s} (a shard {name} names) is missing" for s, p in found.items() if p is None]
            files = [(prefix + s, p) for s, p in found.items() if p is not None]
        else:
            files = [(prefix + name, path)]
        for rel, f in files:
            problem, summary = inspect_weights(f, rel)
            if problem:
                problems.append(Broken(problem, rel))
            else:
                summaries.append(prefix + summary)
    return problems, summaries


def _component_needs(cls: str) -> str:
    if cls.endswith(("Tokenizer", "TokenizerFast")):
        return "tokenizer"
    if "Scheduler" in cls:
        return "scheduler"
    if cls.endswith(("ImageProcessor", "FeatureExtractor", "Processor")):
        return "processor"
    return "model"


def check_pipeline(source: Source, safety_checker: bool) -> tuple[list[str], list[str]]:
    """(problems, summaries) for a diffusers pipeline: ``model_index.json``, then every component it lists
    (weights for models, config files for tokenizer, scheduler and feature extractor). With ``safety_checker``
    on, a pipeline that lists none is a problem: ``dressup.generators.load_sd15`` refuses it."""
    index = source.file("model_index.json")
    if index is None:
        return ["model_index.json is missing (the download stopped before it)"], []
    try:
        components = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return [f"model_index.json is unreadable ({e})"], []
    problems: list[str] = []
    summaries: list[str] = []
    no_weights: list[str] = []
    files: list[str] = []  # config and tokenizer problems, reported after the weights
    entry = components.get("safety_checker")
    if safety_checker and not (isinstance(entry, list) and len(entry) == 2 and entry[1]):
        problems.append("the pipeline lists no safety checker, and participants must not see unfiltered images: use a "
                        "model that has one, or set safety_checker = false only if your ethics approval allows it")
    candidates = DIFFUSERS_WEIGHTS + TRANSFORMERS_WEIGHTS
    for name, value in sorted(components.items()):
        if name.startswith("_") or not isinstance(value, list) or len(value) != 2 or not value[1]:
            continue
        if name == "safety_checker" and not safety_checker:
            continue  # loaded as None
        needs = _component_needs(str(value[1]))
        if needs == "model":
            problem = check_json(source, f"{name}/config.json")
            files += [problem] if problem else []
            if not any(source.file(f"{name}/{n}") for n in candidates):
                no_weights.append(name)
                continue
            p, s = check_weights(source, f"{name}/", candidates)
            problems += p
            summaries += s
        elif needs == "tokenizer":
            if not any(all(source.file(f"{name}/{f}") for f in group) for group in TOKENIZER_FILES):
                files.append(f"{name}/ has no tokenizer files (tokenizer.json, or vocab.json + merges.txt)")
        else:
            config = "scheduler_config.json" if needs == "scheduler" else "preprocessor_config.json"
            problem = check_json(source, f"{name}/{config}")
            files += [problem] if problem else []
    if no_weights:
        problems.insert(0, f"no weights file for {', '.join(no_weights)} (only part of the repository is here)")
    return problems + files, summaries
    return problems, summaries


def check_encoder_folder(folder: Path) -> tuple[list[str], list[str]]:
    """(problems, summaries) for a ``local:`` encoder folder: ``encoder.json`` of this dressup's format, the
    weights file it names, and the backend files its loader reads (transformers config, HF tokenizer)."""
    from dressup.encoders import ENCODER_JSON, FORMAT_VERSION, WEIGHTS

    meta_path = folder / ENCODER_JSON
    if not meta_path.is_file():
        return [f"{folder} has no {ENCODER_JSON}: the encoder was never trained or saved there"], []
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return [f"{meta_path} is unreadable ({e})"], []
    problems: list[str] = []
    if meta.get("format") != FORMAT_VERSION:
        problems.append(f"{meta_path} has format {meta.get('format')}, this dressup reads {FORMAT_VERSION}: retrain it")
    tok = meta.get("tokenizer") or {}
    needed = ([meta["hf_dir"] + "/config.json"] if meta.get("backend") == "transformers" and meta.get("hf_dir") else [])
    needed += [tok["path"]] if tok.get("kind") == "hf" and tok.get("path") else []
    problems += [f"{folder / n} is missing" for n in needed if not (folder / n).exists()]
    weights = folder / str(meta.get("weights", WEIGHTS))
    if not weights.is_file():
        return problems + [f"{weights} is missing (training may have stopped before its first checkpoint)"], []
    problem, summary = inspect_weights(weights)
    return problems + ([problem] if problem else []), [] if problem else [summary]
