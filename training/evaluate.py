"""Offline evaluation on the time-split holdout, one module for training, gate and demo.

Every model and baseline is scored on the same holdout rows:

- NDCG@10 within each feed request (the list the user actually saw), on the graded value
  label; requests where nothing had value carry no ranking signal and are left out;
- AUC and GAUC (per-user AUC, impression-weighted: a global AUC rewards merely telling
  heavy users from light ones);
- XAUC for watch time: how often the scores order two impressions of one request the way
  their watch times do;
- ECE of the predicted value probability (only for models whose scores are probabilities);
- per-surface NDCG@10 slices.

The metric functions live in :mod:`models.metrics`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from models.metrics import ndcg_at_k

__all__ = ["Metrics", "evaluate_scores", "json_safe", "ndcg_at_k", "surface_slices"]
NAN = float("nan")


@dataclass(frozen=True)
class Metrics:
    ndcg_at_10: float
    auc: float
    n_requests: int
    n_rows: int
    gauc: float = NAN
    xauc_watch: float = NAN
    ece: float = NAN

    def to_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}": float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, float | None]) -> Metrics:
        """Inverse of ``to_dict`` after a JSON trip (undefined metrics travel as null)."""
        return cls(**{k: NAN if v is None else v for k, v in d.items()})  # type: ignore[arg-type]


def json_safe(obj: object) -> object:
    """NaN and infinities as None: task results travel as strict JSON (Airflow's XCom)."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


EVAL_GROUP = "eval_group"


def group_column(holdout: pd.DataFrame) -> str:
    """The lists a ranking metric ranks within: ``eval_group`` when the holdout has one (real
    datasets: a user's day, see :func:`with_eval_groups`), else the served request."""
    return EVAL_GROUP if EVAL_GROUP in holdout.columns else "request_id"


def with_eval_groups(holdout: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Real logs have no served requests, only sessions cut from gaps in activity, often
    of one or two videos, in which any scorer's NDCG is nearly 1. A ranker is judged there
    on each user's whole holdout day instead (all the videos they saw that day, ranked)."""
    if dataset == "simulator":
        return holdout
    day = holdout["event_timestamp"].dt.strftime("%Y-%m-%d")
    return holdout.assign(**{EVAL_GROUP: holdout["user_id"].astype(str) + "|" + day})


def evaluate_scores(
    holdout: pd.DataFrame, scores: np.ndarray, probabilities: bool = False
) -> Metrics:
    """All holdout metrics of one scorer; ``probabilities`` when the scores are P(value)."""
    from models.metrics import expected_calibration_error, gauc, xauc

    scores = np.asarray(scores, dtype=np.float64)
    groups = holdout[group_column(holdout)].to_numpy()
    rel = holdout["value"].to_numpy()
    positive = holdout["positive"].to_numpy()
    auc = (
        float(roc_auc_score(positive, scores))
        if 0 < positive.sum() < len(positive)
        else float("nan")
    )
    valid_requests = int(holdout.groupby(group_column(holdout))["value"].max().gt(0).sum())
    return Metrics(
        ndcg_at_10=ndcg_at_k(groups, rel, scores, 10),
        auc=auc,
        n_requests=valid_requests,
        n_rows=len(holdout),
        gauc=gauc(holdout["user_id"].to_numpy(), positive.astype(int), scores).value,
        xauc_watch=xauc(holdout["watch_time_s"].to_numpy(np.float64), scores, groups=groups),
        ece=(
            expected_calibration_error(positive.astype(int), np.clip(scores, 0.0, 1.0)).ece
            if probabilities
            else NAN
        ),
    )


def surface_slices(holdout: pd.DataFrame, scores: np.ndarray) -> dict[str, float]:
    """NDCG@10 per surface (spotlight, discover, stories): a model can win on average and
    lose where a product team cares most."""
    from models.metrics import by_slice

    frame = holdout.assign(_score=np.asarray(scores, dtype=np.float64))
    return by_slice(
        frame,
        "surface",
        lambda d: ndcg_at_k(
            d[group_column(d)].to_numpy(), d["value"].to_numpy(), d["_score"].to_numpy()
        ),
    ).values


def head_metrics(
    holdout: pd.DataFrame, predictions: np.ndarray, heads: tuple[str, ...], labels: np.ndarray
) -> dict[str, dict[str, float]]:
    """Per-head AUC and calibration error on the holdout.

    Binary heads (completion, like, share, skip) get AUC and ECE; the watch head's target is
    a D2Q quantile in [0, 1], so its "AUC" is taken against watching above the bucket median
    and its ECE is the row-weighted gap between mean prediction and mean target per bin.
    """
    from models.metrics import expected_calibration_error

    out: dict[str, dict[str, float]] = {}
    preds = np.asarray(predictions, dtype=np.float64).reshape(len(holdout), -1)
    for j, head in enumerate(heads):
        p, y = np.clip(preds[:, j], 0.0, 1.0), labels[:, j]
        binary = y if head != "watch" else (y > 0.5).astype(float)
        auc = float(roc_auc_score(binary, p)) if 0 < binary.sum() < len(binary) else float("nan")
        if head == "watch":
            bins = np.minimum((p * 10).astype(int), 9)
            n = np.bincount(bins, minlength=10)
            gap = np.abs(
                np.bincount(bins, weights=y, minlength=10)
                - np.bincount(bins, weights=p, minlength=10)
            )
            ece = float(gap.sum() / max(n.sum(), 1))
        else:
            ece = expected_calibration_error(y.astype(int), p).ece
        out[head] = {
            "auc": auc,
            "ece": ece,
            "mean_prediction": float(p.mean()),
            "mean_label": float(y.mean()),
        }
    return out
