"""Review plots for a registered version (PNG, logged as MLflow artifacts under ``review/``).

A reviewer decides from pictures faster than from tables: metrics by surface beside the
champion and baselines, the calibration curve, what the model relies on, and how its score
distribution moved against the champion's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def slices_plot(slices: Mapping[str, Mapping[str, float]], path: Path) -> Path:
    """Grouped bars: NDCG@10 per surface for each model."""
    plt = _pyplot()
    models = list(slices)
    surfaces = sorted({s for m in slices.values() for s in m})
    x = np.arange(len(surfaces))
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i, name in enumerate(models):
        ax.bar(
            x + i * width,
            [slices[name].get(s, np.nan) for s in surfaces],
            width,
            label=name,
        )
    ax.set_xticks(x + width * (len(models) - 1) / 2, surfaces)
    ax.set_ylabel("NDCG@10")
    ax.set_ylim(0, 1)
    ax.set_title("NDCG@10 by surface")
    ax.legend(fontsize=8, ncols=2)
    return _save(plt, fig, path)


def calibration_plot(curves: Mapping[str, tuple[list[float], list[float]]], path: Path) -> Path:
    """Reliability diagram: mean predicted P(value) vs observed share, per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfect")
    for name, (pred, obs) in curves.items():
        ax.plot(pred, obs, marker="o", label=name)
    ax.set_xlabel("mean predicted P(value)")
    ax.set_ylabel("observed share with value")
    ax.set_title("Calibration")
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def importance_plot(importance: Mapping[str, float], path: Path, top: int = 20) -> Path:
    """Total gain per feature, largest first."""
    plt = _pyplot()
    items = sorted(importance.items(), key=lambda kv: kv[1], reverse=True)[:top][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.28 * len(items) + 1.2))
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set_xlabel("total gain")
    ax.set_title(f"Feature importance (top {len(items)})")
    return _save(plt, fig, path)


def score_distribution_plot(scores: Mapping[str, np.ndarray], path: Path) -> Path:
    """Histograms of holdout scores: a challenger that shifts the distribution changes
    every downstream threshold, even at equal NDCG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(0, 1, 41)
    for name, s in scores.items():
        ax.hist(np.clip(s, 0, 1), bins=bins, histtype="step", lw=1.5, density=True, label=name)
    ax.set_xlabel("predicted P(value)")
    ax.set_ylabel("density")
    ax.set_title("Score distribution on the holdout")
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def learning_curve_plot(
    rounds: list[int],
    holdout: Mapping[str, list[float]],
    search: Mapping[str, list[float]],
    path: Path,
) -> Path:
    """The ranker's learning curve: holdout log-loss and AUC per head against the number of
    boosting rounds (left, right), with the log-loss of the round search (training sample
    and early-stopping day) for comparison. A curve still falling at the last round says
    more trees would help; one that turned up long before says the model overfits."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, values in holdout.items():
        if name.startswith("holdout_logloss_"):
            left.plot(rounds, values, marker=".", label=name.removeprefix("holdout_logloss_"))
    labels = {"train_logloss": "search: training sample", "valid_logloss": "search: last day"}
    for name, values in search.items():
        label = labels.get(name, name) + (" (mean of heads)" if len(holdout) > 3 else "")
        left.plot(range(1, len(values) + 1), values, ls=":", lw=1, label=label)
    left.set_xlabel("boosting rounds")
    left.set_ylabel("log-loss")
    left.set_title("Log-loss: holdout per head, round search dotted")
    left.legend(fontsize=7)
    for name, values in holdout.items():
        if name.startswith("holdout_auc_"):
            label = name.removeprefix("holdout_auc_").replace("_", " ")
            lw = 2.5 if name == "holdout_auc_value_score" else 1.2
            right.plot(rounds, values, marker=".", lw=lw, label=label)
    right.set_xlabel("boosting rounds")
    right.set_ylabel("AUC")
    right.set_title("Holdout AUC per head (value score bold)")
    right.legend(fontsize=7)
    return _save(plt, fig, path)


def two_tower_curve_plot(curves: Mapping[str, list[float]], path: Path) -> Path:
    """The two-tower's training loss and validation Recall@100 per epoch: the epoch kept is
    the best validation recall, so a reader sees where early stopping cut."""
    plt = _pyplot()
    loss = list(curves.get("retrieval_train_loss", []))
    recall = list(curves.get("retrieval_valid_recall", []))
    fig, ax = plt.subplots(figsize=(6, 3.6))
    epochs = range(1, max(len(loss), len(recall)) + 1)
    ax.plot(epochs[: len(loss)], loss, marker="o", c="tab:blue", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("sampled-softmax loss", color="tab:blue")
    other = ax.twinx()
    other.plot(epochs[: len(recall)], recall, marker="s", c="tab:orange", label="valid R@100")
    other.set_ylabel("validation Recall@100", color="tab:orange")
    if recall:
        best = int(np.argmax(recall)) + 1
        other.axvline(best, ls="--", c="grey", lw=1)
        other.annotate(f"kept: epoch {best}", (best, max(recall)), fontsize=8)
    ax.set_title("Two-tower training")
    return _save(plt, fig, path)
