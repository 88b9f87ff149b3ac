"""The analysis' PNG plots: MAP@4 / rating / rank per arm with CIs, rating and rank distributions,
position effects. Drawn from an ``Analysis`` (``study.findings``) with matplotlib's Agg backend.

What a reader can rely on: every panel says how many participants it rests on (the rank panel counts
complete rankings, which can be fewer than the participants analysed); an interval is drawn only when
there is one (one participant has none, and the plot says so); axes are never zoomed: ratings run 1-10,
ranks 1-k, MAP 0-1, so a small difference looks small.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from study.findings import Analysis
from study.formatting import number, p_value

ARM_COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860")


def plot_all(a: Analysis, out: Path) -> list[Path]:
    """Write map4.png, ratings.png, ranks.png and (with letters) positions.png; return their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    plt.rcParams.update({"font.size": 11, "axes.spines.top": False, "axes.spines.right": False})
    paths = [_plot_map(a, out, plt), _plot_ratings(a, out, plt), _plot_ranks(a, out, plt)]
    if len(a.positions):
        paths.append(_plot_positions(a, out, plt))
    plt.close("all")
    return paths


def participants(n: int, noun: str = "participant") -> str:
    """'1 participant', '5 participants'."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _colour(a: Analysis, arm: str) -> str:
    return ARM_COLOURS[a.arms.index(arm) % len(ARM_COLOURS)]


def _text_colour(rgba: Any) -> str:
    """Black on light fills, white on dark ones (relative luminance, WCAG's weights)."""
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3])
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.22 else "white"


def _errors(y: np.ndarray, lo: Any, hi: Any) -> np.ndarray | None:
    """Error-bar lengths, or None when no arm has an interval (one participant)."""
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    if np.isnan(lo).all():
        return None
    return np.vstack([y - lo, hi - y])


def _plot_map(a: Analysis, out: Path, plt: Any) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.8))
    f = a.figures
    x = np.arange(len(f))
    colours = [_colour(a, arm) for arm in f["arm"]]
    conf = int(round(a.settings["confidence"] * 100))
    panels = (("map4_paper", "MAP@4 (paper's definition)", (0, 1), "n_map"),
              ("avg_rating", "Average rating (1-10)", (1, 10), "n_rating"))
    for ax, (name, title, ylim, n_col) in zip(axes[:2], panels):
        y = f[name].to_numpy(dtype=float)
        ax.bar(x, y - ylim[0], bottom=ylim[0], color=colours, width=0.6)
        err = _errors(y, f[f"{name}_ci_low"], f[f"{name}_ci_high"])
        if err is not None:
            ax.errorbar(x, y, yerr=np.nan_to_num(err), fmt="none", ecolor="black", capsize=6, lw=1.5)
        for xi, yi in zip(x, y):
            ax.text(xi, ylim[0] + 0.03 * (ylim[1] - ylim[0]), number(yi, 2), ha="center", va="bottom",
                    color="white", fontweight="bold")
        if name == "map4_paper":  # the Kaggle variant beside each bar, with its own interval
            yk = f["map4_kaggle"].to_numpy(dtype=float)
            errk = _errors(yk, f["map4_kaggle_ci_low"], f["map4_kaggle_ci_high"])
            ax.errorbar(x + 0.36, yk, yerr=None if errk is None else np.nan_to_num(errk), fmt="D", color="black",
                        ms=5, capsize=3, lw=1, clip_on=False, zorder=3,
                        label="H&M Kaggle AP@4" + ("" if errk is None else " (with CI)"))
            ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False, fontsize=9, borderaxespad=0)
        ax.set_xticks(x, f["arm"], rotation=15)
        ax.set_xlim(-0.5, len(f) - 0.3)
        ax.set_ylim(*ylim)
        n = int(f[n_col].max()) if len(f) else 0
        ax.set_title(f"{title}\nn = {participants(n)}", pad=22 if name == "map4_paper" else 6)
    ax = axes[2]  # ranks: points, best at the top
    y = f["avg_rank"].to_numpy(dtype=float)
    err = _errors(y, f["avg_rank_ci_low"], f["avg_rank_ci_high"])
    for i, (xi, yi, c) in enumerate(zip(x, y, colours)):
        yerr = None if err is None else np.nan_to_num(err[:, i:i + 1])
        ax.errorbar([xi], [yi], yerr=yerr, fmt="o", color=c, ecolor="black", capsize=6, ms=11, lw=1.5)
        ax.text(xi + 0.15, yi, number(yi, 2), va="center", fontweight="bold")
    k = len(a.arms)
    ax.set_ylim(k + 0.2, 0.8)
    ax.set_yticks(range(1, k + 1), [ordinal(i) for i in range(1, k + 1)])
    ax.set_xlim(-0.5, len(f) - 0.3)
    ax.set_xticks(x, f["arm"], rotation=15)
    ax.grid(axis="y", alpha=0.3)
    n_rank = int(f["n_rank"].max()) if len(f) else 0
    ax.set_title(f"Average rank (top = best)\nn = {participants(n_rank, 'complete ranking')}")
    n = a.n_included
    method = a.settings.get("interval_method", "bootstrap")
    note = (f"with {conf}% {method} CIs" if n > 1 else "no interval: one participant cannot show spread")
    fig.suptitle(f"Per arm, {participants(n)} analysed; {note}")
    fig.tight_layout()
    path = out / "map4.png"
    fig.savefig(path, dpi=120)
    return path


def _plot_ratings(a: Analysis, out: Path, plt: Any) -> Path:
    counts = a.rating_counts
    k = len(counts)
    fig, axes = plt.subplots(k, 1, figsize=(8, 1.6 * k + 0.9), sharex=True, squeeze=False)
    for ax, (arm, row) in zip(axes[:, 0], counts.iterrows()):
        total = max(int(row.sum()), 1)
        share = row.to_numpy() / total
        ax.bar(row.index, share, color=_colour(a, arm), width=0.8)
        fig_row = a.figures.set_index("arm").loc[arm]
        ax.axvline(fig_row["avg_rating"], color="black", lw=1.5)
        if not math.isnan(fig_row["avg_rating_ci_low"]):
            ax.axvspan(fig_row["avg_rating_ci_low"], fig_row["avg_rating_ci_high"], color="black", alpha=0.12, lw=0)
        ax.set_ylim(0, max(share.max() * 1.25, 0.05))
        ax.set_ylabel("share")
        ax.set_title(f"{arm}: mean {number(fig_row['avg_rating'], 2)}, n = {participants(int(row.sum()))}",
                     loc="left", fontsize=11, fontweight="bold")
    axes[-1, 0].set_xticks(range(1, 11))
    axes[-1, 0].set_xlim(0.4, 10.6)
    axes[-1, 0].set_xlabel("rating (1 = worst, 10 = best); black line: mean, grey band: CI")
    fig.suptitle("How participants rated each arm")
    fig.tight_layout()
    path = out / "ratings.png"
    fig.savefig(path, dpi=120)
    return path


def _plot_ranks(a: Analysis, out: Path, plt: Any) -> Path:
    shares = a.rank_shares
    k = shares.shape[1]
    cmap = plt.get_cmap("RdYlGn_r")
    colours = [cmap(i / max(k - 1, 1)) for i in range(k)]
    fig, ax = plt.subplots(figsize=(9, 0.7 * len(shares) + 1.8))
    order = a.figures.set_index("arm")["avg_rank"].reindex(shares.index).sort_values(ascending=False).index
    left = np.zeros(len(order))
    for place in range(1, k + 1):
        vals = shares.loc[order, place].to_numpy()
        ax.barh(list(order), vals, left=left, color=colours[place - 1], label=ordinal(place), edgecolor="white")
        for y, (l, v) in enumerate(zip(left, vals)):
            if v >= 0.06:
                ax.text(l + v / 2, y, f"{v:.0%}", ha="center", va="center", fontsize=9,
                        color=_text_colour(colours[place - 1]))
        left += vals
    ax.set_xlim(0, 1)
    n_rank = int(a.figures["n_rank"].max()) if len(a.figures) else 0
    ax.set_xlabel(f"share of {participants(n_rank, 'complete ranking')}")
    ax.legend(ncol=k, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False, title="ranked")
    fig.suptitle("Where participants ranked each arm (ties split evenly)", y=0.98)
    fig.tight_layout()
    path = out / "ranks.png"
    fig.savefig(path, dpi=120)
    return path


def ordinal(i: int) -> str:
    return {1: "1st (best)", 2: "2nd", 3: "3rd"}.get(i, f"{i}th")


def _plot_positions(a: Analysis, out: Path, plt: Any) -> Path:
    p = a.positions
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    x = np.arange(len(p))
    k = len(a.arms)
    panels = (("rating", "Average rating by letter", (1, 10)), ("rank", "Average rank by letter", (1, k)))
    for ax, (name, title, (lo, hi)) in zip(axes[:2], panels):
        y = p[name].to_numpy(dtype=float)
        err = _errors(y, p[f"{name}_ci_low"], p[f"{name}_ci_high"])
        ax.errorbar(x, y, yerr=None if err is None else np.nan_to_num(err), fmt="o-", color="#333333",
                    capsize=6, lw=1.5, ms=7)
        ax.axhline(np.nanmean(y), color="grey", ls="--", lw=1)
        ax.set_ylim(lo - 0.2, hi + 0.2)  # the whole scale: a small position effect looks small
        ax.set_xticks(x, p["letter"])
        ax.set_xlabel("letter (grid's place on the page, A = first)")
        rows = a.friedman[(a.friedman["by"] == "letter") & (a.friedman["measure"] == name)]
        if len(rows):
            title += f"\n(Friedman p = {p_value(float(rows['p'].iloc[0]))})"
        ax.set_title(title)
        if name == "rank":
            ax.invert_yaxis()
            ax.set_ylabel("1 = best")
        else:
            ax.set_ylabel("1 = worst, 10 = best")
    c = a.arm_letter_counts
    ax = axes[2]
    cmap = plt.get_cmap("Blues")
    vmax = max(c.to_numpy().max(), 1)
    im = ax.imshow(c.to_numpy(), cmap=cmap, vmin=0, vmax=vmax, aspect="auto")
    for (i, j), v in np.ndenumerate(c.to_numpy()):
        ax.text(j, i, str(v), ha="center", va="center", color=_text_colour(cmap(v / vmax)))
    ax.set_xticks(range(c.shape[1]), c.columns)
    ax.set_yticks(range(c.shape[0]), c.index)
    ax.set_title("Grids per arm and letter (balance)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle("Position effects: did the order of the grids matter? (full scales)")
    fig.tight_layout()
    path = out / "positions.png"
    fig.savefig(path, dpi=120)
    return path
