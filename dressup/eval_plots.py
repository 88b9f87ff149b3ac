"""The evaluation's PCA figures (the paper's Figures 5-6): one scatter panel per encoder, saved as a PNG.

Apart from ``dressup.metrics`` (which computes the PCA itself) because it is the only part of the evaluation
that needs matplotlib; matplotlib is imported when a figure is drawn, with the Agg backend (no display).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from dressup.metrics import EvaluationError, mean_radius, pca_2d

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def pca_figure(panels: dict[str, np.ndarray], labels: Sequence[str], title: str) -> "Figure":
    """A matplotlib figure with one scatter panel per encoder (PCA of its embeddings, coloured by ``labels``).

    Each panel's title gives the encoder and its mean embedding radius; the axes the variance each component holds.
    """
    import matplotlib

    matplotlib.use("Agg")  # before pyplot is imported: no display needed
    import matplotlib.pyplot as plt

    if not panels:
        raise EvaluationError("no encoders to plot; pass at least one with --encoders")
    names = sorted(set(labels))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    colour_of = {n: cmap(i % cmap.N) for i, n in enumerate(names)}
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.0 * rows + 0.8), squeeze=False)
    for ax, (name, emb) in zip(axes.flat, panels.items()):
        coords, ratio = pca_2d(emb)
        ax.scatter(coords[:, 0], coords[:, 1], s=6, alpha=0.7, c=[colour_of[lab] for lab in labels], linewidths=0)
        ax.set_title(f"{name}\nmean radius {mean_radius(emb):.3f}", fontsize=10)
        ax.set_xlabel(f"PC1 ({ratio[0]:.0%})", fontsize=8)
        ax.set_ylabel(f"PC2 ({ratio[1]:.0%})", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        fig.delaxes(ax)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colour_of[n], label=n) for n in names]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(names), 6), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.1 if rows == 1 else 0.05, 1, 1))
    return fig


def plot_pca(panels: dict[str, np.ndarray], labels: Sequence[str], title: str, out: Path) -> Path:
    """``pca_figure`` saved as a PNG (matplotlib's Agg backend: no display needed)."""
    import matplotlib.pyplot as plt

    fig = pca_figure(panels, labels, title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
