"""Which device a study runs on, and the paper profile's GPU policy.

One resolution for the whole library (encoders, generators, arms, the CLI): ``"auto"`` means CUDA when there
is one. The paper profile serves Stable Diffusion, whose grid of four takes minutes on a CPU: a Space whose
GPU was not granted would then make every participant wait minutes while looking healthy. So a paper study
refuses to start without CUDA unless its study file says ``allow_cpu = true`` (then it warns at start);
the demo profile is built for the CPU and never asks.
"""
from __future__ import annotations

import logging
import warnings

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")


class DeviceError(RuntimeError):
    """The study needs a GPU that this machine does not have; the message names both fixes."""


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(requested: str | None = "auto") -> str:
    """``"auto"``/None -> ``"cuda"`` when available, else ``"cpu"``; ``"cuda"`` without one warns and uses the CPU.

    Whether the CPU is acceptable at all is ``gpu_policy``'s decision, taken once at start.
    """
    requested = str(requested or "auto")
    if requested.startswith("cuda") and not cuda_available():
        warnings.warn("a CUDA device was asked for but none is available: running on the CPU (slow)",
                      RuntimeWarning, stacklevel=2)
        return "cpu"
    if requested == "auto":
        return "cuda" if cuda_available() else "cpu"
    return requested


def gpu_policy(profile: str, device: str, allow_cpu: bool, study_path: object = "the study file") -> str | None:
    """None when the study may run here; else a warning (CPU allowed) or a ``DeviceError`` (CPU not allowed).

    Only the paper profile needs a GPU; ``device = "cpu"`` in its study file is not consent by itself, since
    it is also how a researcher tries the study on a laptop: the explicit switch is ``allow_cpu = true``.
    """
    if profile != "paper" or cuda_available():
        return None
    if not allow_cpu:
        raise DeviceError(
            f"the paper profile serves Stable Diffusion and needs a CUDA GPU, and this machine has none "
            f"(device = {device!r} in {study_path}). On Hugging Face Spaces pick GPU hardware in the Space's "
            f"settings (e.g. Nvidia L4); to run on the CPU anyway (minutes per generated grid), set "
            f"allow_cpu = true under [study] in {study_path}.")
    message = (f"no CUDA GPU: the paper profile runs on the CPU because {study_path} says allow_cpu = true; "
               f"each generated grid will take far longer than on a GPU")
    log.warning(message)
    return message
