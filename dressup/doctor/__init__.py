"""``python -m dressup doctor``: would this study run here, and what exactly fixes each gap?

Nothing is downloaded, built or written: the doctor only looks (the Hugging Face cache, local folders, the
catalogue, the environment), so it is safe to run on a Space before the first participant arrives. It is only
useful if "ready" can be trusted, so each check looks at what the app would actually load: weight files are
opened (a cached ``model_index.json`` with no weights is not a model), images are counted against the
annotation lists, the GPU policy is the app's own, and deployment settings that lose answers or lock the
researcher out are faults. One line per check, ``[ok]``, ``[WARN]`` (shown; the study still runs) or ``[FAULT]``,
then ``ready`` (exit 0) or ``not ready: N fault(s)`` (exit 1).

- ``dressup.doctor.weights``: safetensors headers, zip archives, cache lookups, diffusers pipelines;
- ``dressup.doctor.models``: encoders, generators, ``[train.*]`` chains, indexes;
- ``dressup.doctor.catalogue``: annotation files and images (subset-aware);
- ``dressup.doctor.environment``: device, results storage, researcher password, push.
"""
from __future__ import annotations

import json
from collections.abc import Callable

from dressup.config import Study
from dressup.doctor.base import FAULT, OK, WARN, Check
from dressup.doctor.catalogue import check_catalogue, count_present
from dressup.doctor.environment import check_device, check_password, check_push, check_storage
from dressup.doctor.models import chain_roots, check_encoder, check_generator, check_index, check_train_chains

__all__ = ["Check", "OK", "WARN", "FAULT", "run_checks", "doctor", "count_present"]

TAGS = {OK: "[ok]", WARN: "[WARN]", FAULT: "[FAULT]"}


def _guard(arm: str, what: str, check: Callable[[], Check | list[Check]]) -> list[Check]:
    """One check's result; a check that crashes is a fault of its own line, not the end of the report."""
    try:
        out = check()
    except Exception as e:  # noqa: BLE001 - a diagnosis must reach the other checks
        return [Check(arm, what, FAULT, f"the check itself failed: {type(e).__name__}: {e}")]
    return out if isinstance(out, list) else [out]


def run_checks(study: Study) -> list[Check]:
    """Every check, in the order a researcher fixes them: machine and deployment, data, then models."""
    checks: list[Check] = []
    for what, fn in (("device", check_device), ("results", check_storage), ("researcher password", check_password),
                     ("push", check_push), ("catalogue", check_catalogue), ("train chains", check_train_chains)):
        checks += _guard("*", what, lambda fn=fn: fn(study))
    encoders: list[tuple[str, str]] = []  # (arm, encoder), each encoder checked once
    for arm in study.arms:
        names = [arm.encoder] if arm.kind == "retrieval" else []
        names += [arm.generator["encoder"]] if arm.kind == "generative" and arm.generator.get("encoder") else []
        encoders += [(arm.name, n) for n in names if n not in {e for _, e in encoders}]
    not_ready: list[str] = []
    for arm_name, enc in encoders:
        got = _guard(arm_name, f"encoder {enc}", lambda a=arm_name, e=enc: check_encoder(study, a, e))
        not_ready += [enc] if any(c.level != OK for c in got) else []
        checks += got
    done = {e for _, e in encoders}
    for root in chain_roots(study, not_ready):  # training starts from these weights
        if root not in done:
            checks += _guard("train", f"encoder {root}", lambda r=root: check_encoder(study, "train", r))
    for arm in study.arms:
        if arm.kind == "retrieval":
            checks += _guard(arm.name, "index", lambda a=arm: check_index(study, a.name, a.encoder))
        else:
            checks += _guard(arm.name, "generator", lambda a=arm: check_generator(study, a.name, a.generator))
    return checks


def report(study: Study, checks: list[Check]) -> str:
    """The human report: one line per check (and its fix), then the verdict."""
    lines = [f"study {study.name} ({study.profile} profile, {study.path})"]
    width = max((len(c.arm) for c in checks), default=1)
    for c in checks:
        lines.append(f"  {TAGS[c.level]:<7} {c.arm:>{width}}  {c.what}: {c.detail}")
        if c.fix and c.level != OK:
            lines.append(f"  {'':<7} {'':>{width}}  fix: {c.fix}")
    faults = sum(c.level == FAULT for c in checks)
    warnings = sum(c.level == WARN for c in checks)
    if faults:
        lines.append(f"not ready: {faults} fault(s)" + (f", {warnings} warning(s)" if warnings else ""))
    else:
        lines.append("ready" + (f" ({warnings} warning(s))" if warnings else ""))
    return "\n".join(lines)


def doctor(study: Study, *, as_json: bool = False) -> bool:
    """Print the report (or, with ``as_json``, a JSON list of checks: arm/what/ok/level/detail/fix); True when
    the study would run, i.e. no check is a fault."""
    checks = run_checks(study)
    if as_json:
        print(json.dumps([c.to_dict() for c in checks], indent=2))
    else:
        print(report(study, checks))
    return all(c.ok for c in checks)
