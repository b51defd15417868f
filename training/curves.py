"""The ranker's learning curve on the holdout day, one point per checkpoint of boosting rounds.

Training logs how the loss fell on the training sample and on the early-stopping day while
the number of trees was being chosen; what a reviewer also wants is how the *final* model
gets better on the holdout as trees are added: whether it was still improving, or had long
flattened out. The curve is read after training by predicting the holdout with the first
``i`` rounds only (``iteration_range=(0, i)``) at about twenty checkpoints, which costs a
few predictions and needs nothing from the training code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

from models.objectives import ValueHeads

CHECKPOINTS = 20


@dataclass
class HoldoutCurve:
    """Metric name -> values, one per round in :attr:`rounds` (MLflow's ``step``)."""

    rounds: list[int]
    metrics: dict[str, list[float]] = field(default_factory=dict)

    def points(self) -> list[tuple[str, int, float]]:
        """(metric, step, value) for every finite value, ready for ``log_batch``."""
        return [
            (name, step, float(v))
            for name, values in self.metrics.items()
            for step, v in zip(self.rounds, values, strict=True)
            if np.isfinite(v)
        ]


def checkpoints(n_rounds: int, n: int = CHECKPOINTS) -> list[int]:
    """About ``n`` round counts from 1 to ``n_rounds``, always including both ends."""
    if n_rounds <= 0:
        return []
    return sorted({int(x) for x in np.rint(np.linspace(1, n_rounds, min(n, n_rounds)))})


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")


def _logloss(y: np.ndarray, p: np.ndarray) -> float:
    """Cross-entropy with soft targets allowed (the watch head's D2Q quantile)."""
    p = np.clip(p, 1e-7, 1 - 1e-7)
    if np.all((y == 0) | (y == 1)):
        return float(log_loss(y, p, labels=[0, 1]))
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def holdout_curve(
    booster: object,
    x_hold: np.ndarray,
    labels: np.ndarray,
    positive: np.ndarray,
    heads: ValueHeads,
    n: int = CHECKPOINTS,
) -> HoldoutCurve:
    """Holdout log-loss and AUC per head, and the AUC of the value score against the logged
    positive, after 1..N boosting rounds of ``booster`` (an ``xgboost.Booster``).

    ``labels``: (rows, heads) targets in the order of ``heads`` (as ``objective_labels``
    returns them); ``positive``: the logged value label (completed, liked or shared). The
    watch head's AUC is taken against watching above the bucket median, as in
    ``training.evaluate.head_metrics``.
    """
    rounds = checkpoints(int(booster.num_boosted_rounds()), n)  # type: ignore[attr-defined]
    curve = HoldoutCurve(rounds)
    pos = np.asarray(positive, dtype=np.float64)
    for i in rounds:
        pred = np.asarray(
            booster.inplace_predict(  # type: ignore[attr-defined]
                x_hold, iteration_range=(0, i), validate_features=False
            ),
            dtype=np.float64,
        ).reshape(len(x_hold), -1)
        for j, head in enumerate(heads.heads):
            y, p = labels[:, j].astype(np.float64), pred[:, j]
            binary = (y > 0.5).astype(np.float64) if head == "watch" else y
            curve.metrics.setdefault(f"holdout_logloss_{head}", []).append(_logloss(y, p))
            curve.metrics.setdefault(f"holdout_auc_{head}", []).append(_auc(binary, p))
        if heads.heads != ("value",):
            curve.metrics.setdefault("holdout_auc_value_score", []).append(
                _auc(pos, heads.combine(pred))
            )
    return curve
