"""A judge of generated garments that never looks inside the generator: a small CNN trained on the catalogue's
own images and their category and colour labels.

Used by ``bench/diffusion_demo.py`` and the test suite to measure the demo's generative arm: an image counts for
the asked category (colour) when the judge's top class is the asked one. The judge's accuracy on the
catalogue's test split is the ceiling any generator's figure can reach, so it is reported beside them.

Distinctness of a grid: the distance of two images is their mean absolute pixel difference (0-255) at the
judge's resolution; a grid's figure is its nearest pair. The threshold comes from the catalogue itself
(``catalogue_threshold``): the 1st percentile, over its items, of the distance to the nearest *other* item
with the same colour and category, i.e. closer than 99% of real, different garments of one description come
to each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from dressup.protocols import GRID

JUDGE_SIZE = 32
# Training steps of the catalogue judge. Its accuracy on the catalogue's test split is the ceiling of every figure
# it gives, so it is trained until that accuracy stops rising: measured on the demo catalogue (2026-12-03),
# 600 steps reach 0.905 (category) / 0.835 (colour), 2000 steps 0.960 / 0.938 (about 2 min on 2 cores).
JUDGE_STEPS = 2000


class Judge(nn.Module):
    """Four conv blocks and two heads (category, colour): small enough to train in a minute on one core."""

    def __init__(self, categories: int, colours: int, width: int = 32) -> None:
        super().__init__()
        w = width
        layers, c = [], 3
        for out in (w, w * 2, w * 4, w * 4):
            layers += [nn.Conv2d(c, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.category = nn.Linear(c, categories)
        self.colour = nn.Linear(c, colours)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.category(h), self.colour(h)


def as_input(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float() / 127.5 - 1.0


def train_judge(images: torch.Tensor, cat: torch.Tensor, col: torch.Tensor, *, steps: int, seed: int = 0) -> Judge:
    """Adam, batch 64, flips and a little pixel noise (generated images are noisier than drawn ones)."""
    torch.manual_seed(seed)
    judge = Judge(int(cat.max()) + 1, int(col.max()) + 1)
    opt = torch.optim.Adam(judge.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        rows = torch.randint(len(images), (64,), generator=g)
        x = as_input(images[rows])
        x = torch.where(torch.rand(64, 1, 1, 1, generator=g) < 0.5, x.flip(-1), x)
        x = x + 0.08 * torch.rand(64, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)
        a, b = judge(x)
        loss = F.cross_entropy(a, cat[rows]) + F.cross_entropy(b, col[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return judge.eval()


@torch.no_grad()
def judge_pixels(judge: Judge, pixels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    a, b = judge(as_input(pixels))
    return a.argmax(1).numpy(), b.argmax(1).numpy()


def to_judge_pixels(images) -> torch.Tensor:
    """uint8 [N, 3, 32, 32] from PIL images of any size (area resampling)."""
    arr = [np.asarray(im.convert("RGB").resize((JUDGE_SIZE, JUDGE_SIZE), Image.Resampling.BOX)) for im in images]
    return torch.from_numpy(np.stack(arr)).permute(0, 3, 1, 2).contiguous()


# ---------------------------------------------------------------------------------------------- distances
def nearest_pair(pixels: torch.Tensor) -> float:
    """The smallest mean absolute difference (0-255) between two of ``pixels``."""
    x = pixels.float().flatten(1)
    d = torch.cdist(x, x, p=1) / x.shape[1]
    d.fill_diagonal_(float("inf"))
    return float(d.min())


def catalogue_threshold(pixels: torch.Tensor, labels: list[tuple[str, str]], q: float = 1.0) -> tuple[float, float]:
    """(q-th percentile, median) over items of the distance to the nearest other item with the same labels."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(labels):
        groups.setdefault(key, []).append(i)
    nearest = []
    for rows in groups.values():
        if len(rows) < 2:
            continue
        x = pixels[rows].float().flatten(1)
        d = torch.cdist(x, x, p=1) / x.shape[1]
        d.fill_diagonal_(float("inf"))
        nearest += d.min(1).values.tolist()
    return float(np.percentile(nearest, q)), float(np.median(nearest))


@dataclass
class CatalogueJudge:
    """A judge trained on a catalogue, with its labels, test-split accuracy and distinctness threshold."""

    net: Judge
    categories: list[str]
    colours: list[str]
    accuracy: tuple[float, float]  # (category, colour) on the catalogue's test split
    threshold: float  # distinctness threshold (see the module docstring)
    catalogue_median: float

    def judge(self, images) -> tuple[list[str], list[str]]:
        """(category, colour) names the judge sees in PIL images of any size."""
        kc, kk = judge_pixels(self.net, to_judge_pixels(images))
        return [self.categories[i] for i in kc], [self.colours[i] for i in kk]


def train_catalogue_judge(catalog, *, steps: int = JUDGE_STEPS, seed: int = 0) -> CatalogueJudge:
    """Train a judge on the catalogue's train split; measure it on the test split; the distinctness threshold
    from the train split's items."""
    from dressup.generators.pixels import images_to_tensor

    categories = list(catalog.categories)
    colours = catalog.attribute_values("colour")

    def labelled(split: str):
        items = [it for it in catalog.split(split) if it.attribute_of("colour")]
        px = images_to_tensor([it.image_path for it in items], JUDGE_SIZE, 3)
        return (items, px, torch.tensor([categories.index(it.category) for it in items]),
                torch.tensor([colours.index(it.attribute_of("colour")) for it in items]))

    train_items, train_px, train_cat, train_col = labelled("train")
    _, test_px, test_cat, test_col = labelled("test")
    net = train_judge(train_px, train_cat, train_col, steps=steps, seed=seed)
    pc, pk = judge_pixels(net, test_px)
    accuracy = (float((pc == test_cat.numpy()).mean()), float((pk == test_col.numpy()).mean()))
    threshold, median = catalogue_threshold(train_px, [(it.attribute_of("colour"), it.category) for it in train_items])
    return CatalogueJudge(net, categories, colours, accuracy, threshold, median)


@dataclass
class GridVerdict:
    """What the judge saw in one prompt's grid of four."""

    text: str
    colour: str
    category: str
    category_hits: int
    colour_hits: int
    both_hits: int
    judged: list[str]
    nearest_pair: float
    images: list = field(default_factory=list, repr=False)  # the four PIL images


def _asked(judge: CatalogueJudge, prompts: int, seed: int):
    """(image seed, colour, category, text) for each "colour + category" prompt the judge can check
    (``dressup.generators.colour_prompts``), the grid's seed being the prompt's index."""
    from dressup.generators import colour_prompts, garment_phrase

    for i, (colour, text) in enumerate(colour_prompts(judge.colours, judge.categories, n=prompts, seed=seed)):
        yield i, colour, next(k for k in judge.categories if garment_phrase(colour, k) == text), text


def judge_grids(judge: CatalogueJudge, generator, *, prompts: int = 40, seed: int = 0) -> list[GridVerdict]:
    """Ask ``generator`` (the study's interface) for a grid per "colour + category" prompt
    (``dressup.generators.colour_prompts``) and judge each image."""
    from dressup.records import Preference

    verdicts = []
    for i, colour, category, text in _asked(judge, prompts, seed):
        images = [s.image for s in generator.generate(Preference(text=text), seed=i)]
        cats, cols = judge.judge(images)
        verdicts.append(GridVerdict(
            text, colour, category, sum(c == category for c in cats), sum(c == colour for c in cols),
            sum(a == category and b == colour for a, b in zip(cats, cols)),
            [f"{b} {a}" for a, b in zip(cats, cols)], nearest_pair(to_judge_pixels(images)), images))
    return verdicts


@dataclass
class CandidateVerdict:
    """What the judge saw in every candidate one prompt drew, and which four the generator's ranking showed.

    It separates the two limits of a drawing-and-ranking arm: the first four candidates are the generator
    alone, the shown four add the ranking, and the best four the judge itself would pick are the ceiling any
    ranking of these candidates could reach.
    """

    text: str
    colour_hits: list[bool]  # per candidate
    category_hits: list[bool]
    shown: list[int]

    def hits(self, which: str) -> tuple[int, int]:
        """(category, colour) hits of four candidates: "first", "shown", or "best": for each figure, the most
        any choice of four could carry (the judge's own pick, made for that figure alone)."""
        if which == "best":
            return min(GRID, sum(self.category_hits)), min(GRID, sum(self.colour_hits))
        rows = list(range(GRID)) if which == "first" else self.shown
        return sum(self.category_hits[i] for i in rows), sum(self.colour_hits[i] for i in rows)


def judge_candidates(judge: CatalogueJudge, generator, *, prompts: int = 40, seed: int = 0) -> list[CandidateVerdict]:
    """As ``judge_grids``, but judging every candidate the generator draws (``generator.draw``) and recording
    the four its ranking (``generator.rank``) shows: the same candidates and choice as ``generate``."""
    from dressup.records import Preference

    verdicts = []
    for i, colour, category, text in _asked(judge, prompts, seed):
        pref = Preference(text=text)
        drawn = generator.draw(generator.prompt(pref), i, generator.draw_count)
        images = [d.image for d in drawn]
        cats, cols = judge.judge(images)
        shown, _ = generator.rank(pref, images)
        verdicts.append(CandidateVerdict(text, [c == colour for c in cols], [c == category for c in cats], shown))
    return verdicts
