"""The machine and deployment checks: the GPU, where answers are stored, the researcher password, the push.

None of these reads a secret's value into the report: a password or token is only tested for being set, and a
database URL is printed with its credentials and host masked.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from dressup.config import Study
from dressup.doctor.base import FAULT, OK, WARN, Check
from dressup.device import DeviceError, gpu_policy

SPACE_PERSISTENT = Path("/data")  # a Hugging Face Space's persistent storage (the paid upgrade) is mounted here
DATABASE_ENV = "DATABASE_URL"
WIPED = "a Space's disk is wiped at every restart; use the persistent storage upgrade (/data) or set DATABASE_URL"


def check_device(study: Study) -> Check:
    """CUDA or not, and ``dressup.device.gpu_policy``'s verdict, the same one ``app.py`` takes at start."""
    import torch

    cuda = torch.cuda.is_available()
    found = f"CUDA: {torch.cuda.get_device_name(0)}" if cuda else "no CUDA GPU"
    try:
        warning = gpu_policy(study.profile, study.device, study.allow_cpu, study.path)
    except DeviceError as e:
        return Check("*", "device", FAULT, f"{found}: {e}",
                     f"run on GPU hardware (Space settings -> Hardware), or set allow_cpu = true under [study] in "
                     f"{study.path.name}")
    if warning:  # the policy's words already say there is no GPU
        return Check("*", "device", WARN, warning)
    if study.device == "cuda" and not cuda:
        return Check("*", "device", WARN, f"{found}: device = \"cuda\" in {study.path.name}, so it runs on the CPU")
    runs_on = "cuda" if cuda and study.device != "cpu" else "cpu"
    return Check("*", "device", OK, f"{found}; the study runs on {runs_on} (device = {study.device!r})")


def mask_url(url: str) -> str:
    """``scheme://***@***/path``: the user, password and host of a database URL are never printed."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return "*** (not a URL)"
    return f"{parts.scheme}://***@***{parts.path}"


def _writable_ancestor(folder: Path) -> tuple[Path, bool]:
    p = folder
    while not p.exists() and p != p.parent:
        p = p.parent
    return p, os.access(p, os.W_OK | os.X_OK)


def check_storage(study: Study) -> Check:
    """Where answers go, and whether they survive a restart. On a Space (``SPACE_ID`` set) the container's disk is
    wiped at every restart, so a results folder outside ``/data`` with no database URL would lose every answer."""
    url = os.environ.get(DATABASE_ENV) or str(study.raw.get("study", {}).get("database", "") or "")
    url_from = f"${DATABASE_ENV}" if os.environ.get(DATABASE_ENV) else "[study] database"
    folder = study.results_dir
    on_space = bool(os.environ.get("SPACE_ID"))
    persistent = folder == SPACE_PERSISTENT or folder.is_relative_to(SPACE_PERSISTENT)
    where = (f"database {mask_url(url)} ({url_from}), results folder {folder}" if url else
             f"results folder {folder} (answers in {study.db_path.name})")
    existing, writable = _writable_ancestor(folder)
    if not writable:
        return Check("*", "results", FAULT, f"{where}: {existing} cannot be written by this user",
                     f"make {existing} writable, or set results_dir in {study.path.name} to a writable folder")
    if not on_space:
        return Check("*", "results", OK, where)
    if persistent and not SPACE_PERSISTENT.is_dir():
        return Check("*", "results", FAULT, f"{where}: this Space has no {SPACE_PERSISTENT}; {WIPED}",
                     "add persistent storage in the Space's settings, or set DATABASE_URL (a Space secret)")
    if persistent:
        return Check("*", "results", OK, f"{where} (the Space's persistent storage)")
    if url:
        return Check("*", "results", WARN, f"{where}: uploaded photos and stimuli under {folder} are still wiped at "
                     f"every Space restart", f"set results_dir under {SPACE_PERSISTENT} to keep them")
    return Check("*", "results", FAULT, f"{where}: {WIPED}",
                 f"set results_dir = \"{SPACE_PERSISTENT}/results\" in {study.path.name} (with persistent storage), "
                 f"or set DATABASE_URL")


def check_password(study: Study) -> Check:
    """The researcher page is off without its password: a paper study must have one (the lead researcher needs the
    page during data collection); a demo on a laptop may run without."""
    env = study.ui.researcher_password_env
    if os.environ.get(env):
        return Check("*", "researcher password", OK, f"${env} is set")
    level = FAULT if study.profile == "paper" else WARN
    return Check("*", "researcher password", level, f"${env} is not set (or empty): the researcher page is off",
                 f"export {env}=... (on Hugging Face Spaces: a secret named {env})")


def check_push(study: Study) -> Check:
    """``[push]``: participants are pushed to a private dataset only with a token; the token is never printed."""
    push = study.push
    repo = (push.repo_id or "").strip()
    if not repo:
        return Check("*", "push", OK, "push off ([push] repo_id is empty)")
    what = f"completed participants to the private dataset {repo} every {push.every_minutes:g} min"
    if os.environ.get(push.token_env):
        return Check("*", "push", OK, f"{what} (token from ${push.token_env})")
    return Check("*", "push", FAULT, f"{what}, but ${push.token_env} is not set",
                 f"export {push.token_env}=... (a token with write access; on Spaces a secret), "
                 f"or empty [push] repo_id")
