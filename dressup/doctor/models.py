"""The model checks: each arm's encoder or generator, the ``[train.*]`` chains that make trained encoders, and
the indexes.

The demo profile builds its own models at first start (``dressup.demo.ensure_demo_build``), so a demo model not
built yet is a warning with the command that builds it ahead of time; in the paper profile, and for anything the
demo build does not make, a missing model is a fault.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from dressup.config import Study, StudyFileError
from dressup.doctor.base import FAULT, OK, WARN, Check, dressup_command
from dressup.doctor.weights import (OPEN_CLIP_WEIGHTS, TOKENIZER_FILES, TRANSFORMERS_WEIGHTS, Source,
                                    check_encoder_folder, check_json, check_pipeline, check_weights, inspect_weights)

SCHEMES = ("local", "config", "hf-hub", "transformers", "openclip", "hub-local")
BUILT_AT_START = "   # or let the app build it at first start (minutes)"


def _brief(problems: list[str], at_most: int = 3) -> str:
    more = f" (+{len(problems) - at_most} more)" if len(problems) > at_most else ""
    return "; ".join(problems[:at_most]) + more


def _demo_builds(study: Study) -> bool:
    """True when the app will run the demo build at start (demo profile, no current ``BUILD.json``)."""
    from dressup.demo import is_built

    return study.profile == "demo" and not is_built(study)


def _hub_files(source: Source, weights: tuple[str, ...], configs: tuple[str, ...],
               tokenizer: bool) -> tuple[list[str], list[str]]:
    problems = [p for name in configs if (p := check_json(source, name))]
    p, summaries = check_weights(source, "", weights)
    problems += p
    if tokenizer and not any(all(source.file(f) for f in group) for group in TOKENIZER_FILES):
        problems.append("no tokenizer files (tokenizer.json, or vocab.json + merges.txt)")
    return problems, summaries


def _open_clip_tag(arch: str, tag: str) -> tuple[Source | None, tuple[str, ...], str]:
    """Where open_clip reads ``ARCH/TAG``'s weights from: a Hub repo and file names, or ("", why) when not the Hub."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        return None, (), f"open_clip has no pretrained tag {tag!r} for {arch!r}"
    if not cfg.get("hf_hub"):
        return None, (), "open_clip downloads this tag from a URL on first load; its cache cannot be checked here"
    repo, filename = os.path.split(cfg["hf_hub"])  # as open_clip reads it: "org/name/" or "org/name/FILE"
    if not filename:
        return Source(repo), OPEN_CLIP_WEIGHTS, ""
    safe = "open_clip_model.safetensors" if filename == "open_clip_pytorch_model.bin" else \
        filename.rsplit(".", 1)[0] + ".safetensors"
    return Source(repo), (safe, filename), ""


def check_encoder(study: Study, arm: str, name: str) -> Check:
    """Are encoder ``name``'s weights on this machine, whole, where its loader will look?"""
    spec = study.encoder(name)
    scheme, _, rest = spec.spec.partition(":")
    what = f"encoder {name}"
    if scheme == "local":
        problems, summaries = check_encoder_folder(Path(rest))
        if not problems:
            return Check(arm, what, OK, f"{rest}: {', '.join(summaries)}")
        level, fix = train_fix(study, name)
        return Check(arm, what, level, _brief(problems), fix)
    if scheme == "config":
        problem = None if Path(rest).is_file() else f"{rest} is missing"
        if problem is None:
            try:
                json.loads(Path(rest).read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                problem = f"{rest} is unreadable ({e})"
        return Check(arm, what, FAULT if problem else OK, problem or f"{rest} (image tower from scratch)",
                     f"restore {rest} from the repository" if problem else "")
    cache_dir = spec.options.get("cache_dir")
    if scheme == "hub-local":  # a published local: folder: the cached snapshot is checked like the folder
        return _check_hub_local(arm, what, rest, cache_dir)
    if scheme == "transformers":
        source = Source(rest, cache_dir=cache_dir)
        problems, summaries = _hub_files(source, TRANSFORMERS_WEIGHTS, ("config.json", "preprocessor_config.json"),
                                         tokenizer=True)
    elif scheme == "hf-hub":
        source = Source(rest, cache_dir=cache_dir)
        problems, summaries = _hub_files(source, OPEN_CLIP_WEIGHTS, ("open_clip_config.json",), tokenizer=False)
        tok = _hf_tokenizer_name(source)
        if tok and not any(all(Source(tok, cache_dir=cache_dir).file(f) for f in g) for g in TOKENIZER_FILES):
            problems.append(f"the text tower's tokenizer {tok} is not cached either (hf download {tok})")
    elif scheme == "openclip":
        arch, _, tag = rest.partition("/")
        if not tag:
            return Check(arm, what, OK, f"{spec.spec} (random weights: nothing to download)")
        source, names, why = _open_clip_tag(arch, tag)
        if source is None:
            unknown = "no pretrained tag" in why
            return Check(arm, what, FAULT if unknown else WARN, f"{spec.spec}: {why}",
                         "check the tag against open_clip.list_pretrained_tags_by_model" if unknown else "")
        source = Source(source.ident, cache_dir=cache_dir)
        problems, summaries = check_weights(source, "", names)
    else:
        return Check(arm, what, FAULT, f"unknown spec scheme in {spec.spec!r}",
                     f"use one of {', '.join(s + ':' for s in SCHEMES)} in [encoders.{name}]")
    if problems:
        why = _brief(problems) if source.cached() else "not downloaded"
        return Check(arm, what, FAULT, f"{spec.spec} from {source.where()}: {why}", source.fix(problems))
    return Check(arm, what, OK, f"{spec.spec}: {', '.join(summaries)}")


def _check_hub_local(arm: str, what: str, repo: str, cache_dir: str | None) -> Check:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:  # the cache only: doctor never downloads
        folder = Path(snapshot_download(repo, cache_dir=cache_dir, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return Check(arm, what, FAULT, f"hub-local:{repo}: not downloaded", f"hf download {repo}")
    problems, summaries = check_encoder_folder(folder)
    if problems:
        return Check(arm, what, FAULT, f"hub-local:{repo} at {folder}: {_brief(problems)}",
                     f"hf download {repo} --force-download (or publish it again)")
    return Check(arm, what, OK, f"hub-local:{repo}: {', '.join(summaries)}")


def _hf_tokenizer_name(source: Source) -> str:
    p = source.file("open_clip_config.json")
    try:
        return str(json.loads(p.read_text(encoding="utf-8"))["model_cfg"]["text_cfg"].get("hf_tokenizer_name") or "")
    except (AttributeError, OSError, ValueError, KeyError, TypeError):
        return ""


def _healthy(study: Study, name: str) -> bool:
    spec = study.encoders.get(name)
    return bool(spec and spec.spec.startswith("local:") and not check_encoder_folder(Path(spec.spec[6:]))[0])


def train_fix(study: Study, name: str) -> tuple[str, str]:
    """(level, fix) for trained encoder ``name`` whose folder is missing or broken: the ``python -m dressup train``
    command for it and every recipe below it in its ``init`` chain that lacks a checkpoint too, in dependency
    order (``dressup.demo.train_order``). In a demo study whose build will run at start, a warning."""
    if name not in study.train:
        folder = study.encoder(name).spec.partition(":")[2]
        return FAULT, f"no [train.{name}] recipe makes it: copy a trained encoder folder to {folder}, or add one"
    needed: list[str] = []
    cur = name
    while cur in study.train and cur not in needed and (cur == name or not _healthy(study, cur)):
        needed.append(cur)
        cur = study.train[cur].init
    from dressup.demo import train_order

    try:
        names = [t.name for t in train_order(study) if t.name in needed]
    except StudyFileError:  # a cycle: reported by the train chain check
        names = list(reversed(needed))
    if _demo_builds(study) and all(study.train[n].build for n in needed):
        return WARN, dressup_command(study.path, "demo build") + BUILT_AT_START
    return FAULT, dressup_command(study.path, "train", *names)


def chain_roots(study: Study, names: list[str]) -> list[str]:
    """The untrained encoders at the bottom of the ``init`` chains of trained encoders ``names`` that need
    training: training starts from their weights, so those must be on this machine too."""
    roots: list[str] = []
    for name in names:
        seen: set[str] = set()
        cur = name
        while cur in study.train and cur not in seen:
            seen.add(cur)
            cur = study.train[cur].init
        if cur in study.encoders and cur not in study.train and cur not in roots:
            roots.append(cur)
    return roots


def check_train_chains(study: Study) -> list[Check]:
    """Every ``[train.NAME]`` recipe: NAME is a ``local:`` encoder to train into, and following ``init`` from it
    ends at an encoder that is not trained here (no cycle, no unknown name)."""
    faults: list[Check] = []
    chains: list[str] = []
    for name, recipe in study.train.items():
        what = f"train {name}"
        target = study.encoders.get(name)
        if target is None or not target.spec.startswith("local:"):
            faults.append(Check("train", what, FAULT, f"[train.{name}] trains into [encoders.{name}], which "
                                f"{'is not defined' if target is None else 'is not a local: folder'}",
                                f"add [encoders.{name}] spec = \"local:PATH\" to {study.path.name}"))
            continue
        path = [name]
        cur = recipe.init
        while cur in study.train and cur not in path:
            path.append(cur)
            cur = study.train[cur].init
        arrow = " <- ".join(path + [cur])
        if cur in path:
            faults.append(Check("train", what, FAULT, f"init chain has a cycle: {arrow}",
                                f"change init in one of [train.{'], [train.'.join(path)}] to an untrained encoder"))
        elif cur in study.encoders:
            chains.append(arrow)
        elif cur.partition(":")[0] in SCHEMES:
            faults.append(Check("train", what, WARN, f"init chain ends at the spec {cur!r}: `python -m dressup train` "
                                "starts only from an encoder name, so retraining would fail",
                                f"add [encoders.base] spec = {cur!r} and set init = \"base\""))
        else:
            faults.append(Check("train", what, FAULT, f"init {cur!r} (chain {arrow}) is neither an encoder under "
                                f"[encoders] nor a spec", f"set init to one of {sorted(study.encoders)}"))
    if not study.train:
        return []
    return faults or [Check("train", "train chains", OK, "; ".join(chains))]


def check_generator(study: Study, arm: str, settings: dict) -> Check:
    kind = settings.get("kind", "")
    if kind == "dcgan":
        p = Path(settings.get("checkpoint", ""))  # load_study resolved it against the study file's folder
        ck = p / "checkpoint.pt" if p.is_dir() or not p.suffix else p
        problem = None if ck.is_file() else f"{ck} is missing"
        summary = ""
        if problem is None:
            problem, summary = inspect_weights(ck)
        if problem is None:
            return Check(arm, "generator (dcgan)", OK, f"{ck.parent}: {summary}")
        if _demo_builds(study):
            return Check(arm, "generator (dcgan)", WARN, problem, dressup_command(study.path, "demo build") +
                         BUILT_AT_START)
        return Check(arm, "generator (dcgan)", FAULT, problem, dressup_command(study.path, "train-gan", "--arm", arm))
    if kind == "sd15":
        from dressup.generators import SDSettings, parse_settings

        try:
            s = parse_settings(settings, SDSettings, f"arms.{arm}.generator")
        except (TypeError, ValueError) as e:
            return Check(arm, "generator (sd15)", FAULT, str(e), f"fix [arms.{arm}] generator in {study.path.name}")
        source = Source(s.model, s.revision)
        problems, summaries = check_pipeline(source, s.safety_checker)
        if problems:
            why = _brief(problems) if source.cached() else "not downloaded"
            return Check(arm, "generator (sd15)", FAULT, f"{source.where()}: {why}", source.fix(problems))
        parts = sorted({x.split("/")[0] for x in summaries})
        off = "; safety checker OFF (safety_checker = false)" if not s.safety_checker else ""
        return Check(arm, "generator (sd15)", WARN if off else OK,
                     f"{source.where()}: {len(summaries)} weight files open ({', '.join(parts)}){off}")
    return Check(arm, "generator", FAULT, f"unknown generator kind {kind!r}", "set kind = 'sd15' or 'dcgan'")


def check_index(study: Study, arm: str, enc_name: str) -> Check:
    """An index is built at start when missing, so its absence only makes the start slower: a warning."""
    folders = sorted((study.cache_dir / "indexes").glob(f"{enc_name}-{study.catalogue.split}-*"))
    for f in folders:
        m = f / "manifest.json"
        if m.is_file():
            try:
                n = len(json.loads(m.read_text()).get("item_ids", []))
            except (OSError, ValueError):
                continue
            return Check(arm, f"index ({enc_name})", OK, f"{f} ({n} items; rechecked against the encoder at start)")
    return Check(arm, f"index ({enc_name})", WARN, "not built yet (it is built at app start, which then takes longer)",
                 dressup_command(study.path, "recommend", "--arm", arm, "--text", "test"))
