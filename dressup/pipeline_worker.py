"""One thread owns a diffusers pipeline; every caller's images are drawn by it, batched together.

Why: a diffusers pipeline is not thread-safe. Its scheduler keeps per-call state (``set_timesteps``, the step
index, a multistep solver's history), and the pipeline itself stores ``_guidance_scale``, ``_num_timesteps``
and friends on ``self`` during a call (diffusers issues #3672, #7851). Two participants' requests on two arm
worker threads (one's early start, another's Submit) then corrupt each other: ``IndexError: index 26 is out of
bounds for dimension 0 with size 26``. A lock would make the calls safe but one at a time; on a GPU a batch of
16 images costs little more than a batch of 4, so this worker does better: while one call runs, requests
queue; the next call takes every image waiting (up to ``max_batch``) from any number of participants.

What a caller can rely on:

- **Same pixels alone or in a batch** (up to floating-point reassociation of batched kernels): every image is
  drawn from its own seeded ``torch.Generator`` (diffusers draws each image's starting noise from its own
  generator), with its own prompt and negative prompt; nothing else of a request is shared.
- **Never mixed up**: results are routed back by position, request by request.
- **Failures stay with the call that failed**: an exception inside the pipeline is raised in every caller
  whose images were in that call, and the worker goes on serving the next ones.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

log = logging.getLogger(__name__)


@dataclass
class _Image:
    """One image of one request: its words and seed, and where its result goes."""

    prompt: str
    negative: str
    seed: int
    request: "_Request"
    slot: int
    key: tuple
    max_batch: int


class _Request:
    """A caller's images; its future completes when all of them are drawn."""

    def __init__(self, n: int) -> None:
        self.future: Future[tuple[list[Image.Image], list[bool]]] = Future()
        self.images: list[Image.Image | None] = [None] * n
        self.flags: list[bool] = [False] * n
        self.left = n
        self.lock = threading.Lock()

    def put(self, slot: int, image: Image.Image, flagged: bool) -> None:
        with self.lock:
            self.images[slot], self.flags[slot] = image, flagged
            self.left -= 1
            done = self.left == 0
        if done and not self.future.done():
            self.future.set_result(([im for im in self.images if im is not None], list(self.flags)))

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class PipelineWorker:
    """Serialises and batches calls to one pipeline (see the module docstring); get it with ``worker_for``.

    Requests carry their own call arguments (steps, guidance, size): images are batched only with images
    whose arguments are equal, in arrival order. ``max_batch`` bounds the images of one pipeline call (GPU
    memory); the largest asked for by any request waiting wins.
    """

    def __init__(self, pipe: Any, name: str = "pipeline") -> None:
        self.pipe = pipe
        self.name = name
        self.calls = 0  # pipeline calls made (benchmarks read it: images / calls = mean batch)
        self.images = 0
        self._waiting: deque[_Image] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def run(self, prompt: str, negative: str, seeds: list[int], call_kwargs: dict[str, Any],
            max_batch: int = 8) -> tuple[list[Image.Image], list[bool]]:
        """One image per seed for this prompt; blocks until drawn. Returns the images and the safety flags."""
        return self.submit([(prompt, negative, s) for s in seeds], call_kwargs, max_batch).result()

    def submit(self, images: list[tuple[str, str, int]], call_kwargs: dict[str, Any],
               max_batch: int = 8) -> "Future[tuple[list[Image.Image], list[bool]]]":
        """Queue ``(prompt, negative, seed)`` images as one request; the future gives them in this order."""
        request = _Request(len(images))
        if not images:
            request.future.set_result(([], []))
            return request.future
        key = tuple(sorted(call_kwargs.items()))
        with self._cond:
            for slot, (prompt, negative, seed) in enumerate(images):
                self._waiting.append(_Image(prompt, negative or "", int(seed), request, slot, key,
                                            max(1, int(max_batch))))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name=f"{self.name}-worker", daemon=True)
                self._thread.start()
            self._cond.notify()
        return request.future

    def _take_batch(self) -> list[_Image]:
        """The oldest waiting image and every later one with the same call arguments, up to the bound."""
        with self._cond:
            while not self._waiting:
                self._cond.wait()
            key = self._waiting[0].key
            bound = max(i.max_batch for i in self._waiting if i.key == key)
            batch, rest = [], deque()
            while self._waiting:
                item = self._waiting.popleft()
                (batch if item.key == key and len(batch) < bound else rest).append(item)
            self._waiting = rest
            return batch

    def _serve(self) -> None:
        while True:
            batch = self._take_batch()
            try:
                images, flags = self._call(batch)
            except BaseException as e:  # noqa: BLE001 — handed to the callers; the worker lives on
                log.exception("%s: a batch of %d image(s) failed", self.name, len(batch))
                for item in batch:
                    item.request.fail(e)
                continue
            for item, image, flagged in zip(batch, images, flags):
                item.request.put(item.slot, image, flagged)

    def _call(self, batch: list[_Image]) -> tuple[list[Image.Image], list[bool]]:
        self.calls += 1
        self.images += len(batch)
        out = self.pipe(
            prompt=[b.prompt for b in batch],
            # "" is what diffusers uses for a missing negative prompt, so mixing requests with and without
            # one in a batch changes nothing
            negative_prompt=[b.negative for b in batch],
            generator=[torch.Generator("cpu").manual_seed(b.seed) for b in batch],
            **dict(batch[0].key),
        )
        images = [im.convert("RGB") for im in out.images]
        nsfw = getattr(out, "nsfw_content_detected", None)
        flags = [bool(f) for f in nsfw] if nsfw is not None else [False] * len(batch)
        if len(images) != len(batch):
            raise RuntimeError(f"{self.name} returned {len(images)} images for a batch of {len(batch)}")
        return images, flags


_WORKERS_LOCK = threading.Lock()


def worker_for(pipe: Any) -> PipelineWorker:
    """The one worker of ``pipe`` (made on first use and kept on the pipeline object itself), so that every
    generator sharing a pipeline also shares its single thread."""
    with _WORKERS_LOCK:
        worker = getattr(pipe, "_dressup_worker", None)
        if worker is None:
            worker = PipelineWorker(pipe, name=type(pipe).__name__)
            pipe._dressup_worker = worker
        return worker
