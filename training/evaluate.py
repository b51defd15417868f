"""Offline evaluation on the time-split holdout: NDCG@10 per request and AUC.

NDCG is computed within each feed request (the list the user actually saw), on the graded
value label; requests where nothing had value carry no ranking signal and are left out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score


@dataclass(frozen=True)
class Metrics:
    ndcg_at_10: float
    auc: float
    n_requests: int
    n_rows: int

    def to_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}": float(v) for k, v in asdict(self).items()}


def ndcg_at_k(groups: np.ndarray, relevance: np.ndarray, scores: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k over groups with at least one relevant item (ties broken by row order)."""
    df = pd.DataFrame({"g": groups, "rel": relevance.astype(np.float64), "s": scores})
    df["row"] = np.arange(len(df))
    gain = lambda r: np.power(2.0, r) - 1.0  # noqa: E731
    ranked = df.sort_values(["g", "s", "row"], ascending=[True, False, True])
    ranked["pos"] = ranked.groupby("g").cumcount()
    top = ranked[ranked["pos"] < k]
    dcg = (gain(top["rel"]) / np.log2(top["pos"] + 2.0)).groupby(top["g"]).sum()
    ideal = df.sort_values(["g", "rel"], ascending=[True, False])
    ideal["pos"] = ideal.groupby("g").cumcount()
    itop = ideal[ideal["pos"] < k]
    idcg = (gain(itop["rel"]) / np.log2(itop["pos"] + 2.0)).groupby(itop["g"]).sum()
    valid = idcg > 0
    if not valid.any():
        return float("nan")
    return float((dcg[valid] / idcg[valid]).mean())


def evaluate_scores(holdout: pd.DataFrame, scores: np.ndarray) -> Metrics:
    groups = holdout["request_id"].to_numpy()
    rel = holdout["value"].to_numpy()
    positive = holdout["positive"].to_numpy()
    auc = (
        float(roc_auc_score(positive, scores))
        if 0 < positive.sum() < len(positive)
        else float("nan")
    )
    valid_requests = int(holdout.groupby("request_id")["value"].max().gt(0).sum())
    return Metrics(
        ndcg_at_10=ndcg_at_k(groups, rel, scores, 10),
        auc=auc,
        n_requests=valid_requests,
        n_rows=len(holdout),
    )
