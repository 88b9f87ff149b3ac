"""``python -m dressup doctor``: is every arm ready to serve, and what exactly fixes each gap?

Nothing is downloaded or built: the doctor only looks (local folders, the Hugging Face cache, index
manifests), so it is safe to run on a Space before the first participant arrives.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dressup.config import Study

REQUIRED_ANNO = ("Anno/list_category_cloth.txt", "Anno/list_category_img.txt", "Anno/list_attr_cloth.txt",
                 "Anno/list_attr_img.txt", "Eval/list_eval_partition.txt")


@dataclass
class Check:
    arm: str
    what: str
    ok: bool
    detail: str
    fix: str = ""


def _hub_cached(repo_id: str, filenames: tuple[str, ...]) -> bool:
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        hit = try_to_load_from_cache(repo_id, name)
        if isinstance(hit, str):
            return True
    return False


def check_encoder_weights(study: Study, arm: str, enc_name: str) -> Check:
    spec = study.encoder(enc_name).spec
    scheme, _, rest = spec.partition(":")
    cmd = f"python -m dressup demo build --study {study.path}" if study.profile == "demo" else \
        f"python -m dressup train {enc_name} --study {study.path}"
    if scheme == "local":
        p = Path(rest)
        ok = (p / "encoder.json").is_file()
        return Check(arm, f"checkpoint ({enc_name})", ok, str(p), "" if ok else cmd)
    if scheme == "config":
        ok = Path(rest).is_file()
        return Check(arm, f"model config ({enc_name})", ok, rest, "" if ok else f"restore {rest} from the repository")
    if scheme in ("hf-hub", "transformers"):
        files = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin") if scheme == "hf-hub" else \
            ("model.safetensors", "pytorch_model.bin")
        ok = Path(rest).is_dir() or _hub_cached(rest, files)
        return Check(arm, f"weights ({enc_name})", ok, spec,
                     "" if ok else f"huggingface-cli download {rest}   # or `hf download {rest}` (needs network once)")
    if scheme == "openclip":
        return Check(arm, f"weights ({enc_name})", True, spec + " (open_clip downloads its tag on first load)")
    return Check(arm, f"weights ({enc_name})", False, f"unknown spec scheme in {spec!r}",
                 "use hf-hub:, transformers:, openclip:, config: or local:")


def check_catalogue(study: Study) -> Check:
    root = study.catalogue.root
    missing = [f for f in REQUIRED_ANNO if not (root / f).is_file()]
    if not missing:
        return Check("*", "catalogue", True, str(root))
    fix = (f"python -m dressup demo catalogue --study {study.path}" if study.catalogue.kind == "demo" else
           f"download DeepFashion's Category and Attribute Prediction Benchmark into {root} (Anno/, Eval/, img/)")
    return Check("*", "catalogue", False, f"{root}: missing {', '.join(missing)}", fix)


def check_index(study: Study, arm: str, enc_name: str) -> Check:
    folders = sorted((study.cache_dir / "indexes").glob(f"{enc_name}-{study.catalogue.split}-*"))
    for f in folders:
        m = f / "manifest.json"
        if m.is_file():
            n = len(json.loads(m.read_text()).get("item_ids", []))
            return Check(arm, f"index ({enc_name})", True, f"{f} ({n} items; rechecked against the encoder at start)")
    return Check(arm, f"index ({enc_name})", False, "not built yet (it is built at app start, which then takes longer)",
                 f"python -m dressup recommend --study {study.path} --arm {arm} --text test")


def check_generator(study: Study, arm: str, settings: dict) -> Check:
    kind = settings.get("kind", "")
    if kind == "dcgan":
        ck = settings.get("checkpoint", "")
        p = Path(ck)  # load_study resolved it against the study file's folder
        ok = p.exists()
        return Check(arm, "generator (dcgan)", ok, str(p),
                     "" if ok else f"python -m dressup train-gan --study {study.path} --arm {arm}")
    if kind == "sd15":
        model = settings.get("model", "stable-diffusion-v1-5/stable-diffusion-v1-5")
        ok = Path(model).is_dir() or _hub_cached(model, ("model_index.json",))
        return Check(arm, "generator (sd15)", ok, model,
                     "" if ok else f"huggingface-cli download {model}   # needs network once; a GPU to serve")
    return Check(arm, "generator", False, f"unknown generator kind {kind!r}", "set kind = 'sd15' or 'dcgan'")


def run_checks(study: Study) -> list[Check]:
    checks = [check_catalogue(study)]
    for arm in study.arms:
        if arm.kind == "retrieval":
            checks += [check_encoder_weights(study, arm.name, arm.encoder), check_index(study, arm.name, arm.encoder)]
        else:
            checks.append(check_generator(study, arm.name, arm.generator))
    return checks


def doctor(study: Study) -> bool:
    """Print one line per check and the command that fixes each gap; True when everything is ready."""
    checks = run_checks(study)
    print(f"study {study.name} ({study.profile} profile, {study.path})")
    for c in checks:
        print(f"  [{'ok' if c.ok else 'MISSING'}] {c.arm:>12} {c.what}: {c.detail}")
        if not c.ok and c.fix:
            print(f"  {'':>17}fix: {c.fix}")
    ready = all(c.ok for c in checks if not c.what.startswith("index"))
    print("ready" if ready else "not ready: run the fixes above")
    return ready
