"""Pictures for the evaluation report: confusions, and the sweep that produced the model."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from postag.training.objective import DEFAULT, Objective

MOST_CONFUSED = 15
# EWT dev accuracy of tagging every word NN: the floor a tagger that learned nothing sits on.
ALWAYS_NN = 13.2
LINE_STYLES = ("-", "-.", ":")
DPI = 130


@functools.cache
def pyplot():
    """matplotlib's pyplot, drawing to files only (no display is needed or assumed).

    Imported on first use, not with this module: every sweep driver imports it (through
    evaluate) yet draws only at the sweep's end, and a driver stopped before then, or a
    test that never draws, would pay half a second of imports for nothing.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass(frozen=True)
class TrialCurves:
    """One sweep trial as the plots need it (read from its MLflow run)."""

    label: str
    hidden_size: int
    num_layers: int
    baseline: bool
    best_score: float | None  # on the objective the sweep chose by
    scores: list[float]  # on it, by epoch, from epoch 1
    grad_norm_first: list[float]
    grad_norm_last: list[float]


def confusion_png(confusion: torch.Tensor, tags: tuple[str, ...], path: Path) -> Path:
    """Row-normalized confusions among the tags with the most errors (padding left out)."""
    counts = confusion.double().numpy()[1:, 1:]
    names = list(tags[1:])
    errors = counts.sum(axis=1) - np.diag(counts) + counts.sum(axis=0) - np.diag(counts)
    keep = np.argsort(-errors, kind="stable")[:MOST_CONFUSED]
    keep = keep[errors[keep] > 0] if (errors[keep] > 0).any() else keep
    sub = counts[np.ix_(keep, keep)]
    rows = counts[keep].sum(axis=1, keepdims=True)
    share = np.divide(sub, rows, out=np.zeros_like(sub), where=rows > 0)
    off_diagonal = share.copy()
    np.fill_diagonal(off_diagonal, 0.0)
    fig, ax = pyplot().subplots(figsize=(9, 8))
    image = ax.imshow(off_diagonal, cmap="Reds")
    labels = [names[i] for i in keep]
    ax.set_xticks(range(len(keep)), labels, rotation=60, ha="right")
    ax.set_yticks(range(len(keep)), labels)
    for i in range(len(keep)):
        for j in range(len(keep)):
            if i != j and sub[i, j] > 0:
                ax.text(j, i, f"{int(sub[i, j])}", ha="center", va="center", fontsize=7)
    ax.set_xlabel("predicted tag")
    ax.set_ylabel("gold tag")
    ax.set_title(
        f"The {len(keep)} most confused tags: error counts, coloured by share of the gold tag"
    )
    fig.colorbar(image, ax=ax, label="share of gold tokens tagged as the column's tag")
    return save_figure(fig, path)


def curves_png(trials: list[TrialCurves], objective: Objective, path: Path) -> Path:
    """Every trial's objective metric by epoch (validation accuracy, by default)."""
    plt = pyplot()
    scale = 100 if objective.in_percent else 1
    unit = " (%)" if objective.in_percent else ""
    fig, ax = plt.subplots(figsize=(10, 6))
    colours = plt.get_cmap("tab20").colors
    for i, trial in enumerate(trials):
        epochs = range(1, len(trial.scores) + 1)
        if trial.baseline:
            style = {"color": "red", "linestyle": "--", "linewidth": 2}
        else:
            # 20 distinct colours, then the same colours in other line styles.
            style = {"color": colours[i % 20], "linestyle": LINE_STYLES[i // 20 % 3]}
        ax.plot(epochs, [scale * a for a in trial.scores], label=trial.label, **style)
    if objective == DEFAULT:
        ax.axhline(ALWAYS_NN, color="grey", linestyle=":", label=f"always NN ({ALWAYS_NN}%)")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{objective.phrase}{unit}")
    ax.set_title(
        f"{objective.phrase.capitalize()} per epoch, every trial of the sweep (baseline dashed)"
    )
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def heatmap_png(trials: list[TrialCurves], objective: Objective, path: Path) -> Path:
    """The best score on the objective for each (hidden size, depth), over the other axes."""
    healthy = [t for t in trials if not t.baseline and t.best_score is not None]
    hidden = sorted({t.hidden_size for t in healthy})
    layers = sorted({t.num_layers for t in healthy})
    grid = np.full((len(layers), len(hidden)), np.nan)
    for t in healthy:
        i, j = layers.index(t.num_layers), hidden.index(t.hidden_size)
        old, new = grid[i, j], t.best_score
        grid[i, j] = new if np.isnan(old) or objective.better(new, old) else old
    fig, ax = pyplot().subplots(figsize=(1.6 * len(hidden) + 3, 1.2 * len(layers) + 2.5))
    image = ax.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
    ax.set_xticks(range(len(hidden)), [str(h) for h in hidden])
    ax.set_yticks(range(len(layers)), [str(n) for n in layers])
    for i in range(len(layers)):
        for j in range(len(hidden)):
            if not np.isnan(grid[i, j]):
                text = objective.shown(grid[i, j])
                ax.text(j, i, text, ha="center", va="center", color="white")
    ax.set_xlabel("LSTM hidden size")
    ax.set_ylabel("LSTM layers")
    ax.set_title(f"Best {objective.phrase} by hidden size and depth (baseline excluded)")
    fig.colorbar(image, ax=ax, label=f"best {objective.phrase}")
    return save_figure(fig, path)


def grad_norms_png(baseline: TrialCurves, healthy: TrialCurves, path: Path) -> Path:
    fig, ax = pyplot().subplots(figsize=(9, 5.5))
    for trial, colour in ((baseline, "red"), (healthy, "blue")):
        epochs = range(1, len(trial.grad_norm_first) + 1)
        ax.plot(
            epochs,
            trial.grad_norm_first,
            color=colour,
            marker="o",
            label=f"{trial.label}: first LSTM layer",
        )
        ax.plot(
            epochs,
            trial.grad_norm_last,
            color=colour,
            marker="s",
            linestyle="--",
            label=f"{trial.label}: last LSTM layer",
        )
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean gradient norm per step (log scale)")
    ax.set_title("Why the deep baseline fails: the gradient vanishes before the first layer")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return save_figure(fig, path)


def save_figure(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    pyplot().close(fig)
    return path
