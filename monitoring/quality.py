"""Online quality once delayed labels arrive: served lists joined to their feedback.

Pure functions over two frames: the served-request log (one row per served item, as
``serving.request_log.read_served`` returns it) and feedback events (as
``serving.feedback.read_feedback`` returns them). An item is matched to its feedback by
``(request_id, video_id)``; several events for one item are merged (a flag is set when any
event set it, watch time is the longest reported). A served item without feedback counts as
no engagement; feedback for an item that is not in the served frame is ignored and counted.
Rows of the ``shadow`` arm were scored but never shown, so they are left out.

NDCG follows :func:`models.metrics.ndcg_at_k` (the offline evaluation): per request, the
relevance of an item is ``completed + liked + shared``, gains are ``2**rel - 1`` with a
``log2(rank + 1)`` discount, the served order (``position``) is the ranking, and requests
without any engagement are left out of the mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.metrics import ndcg_at_k

KEY = ["request_id", "video_id"]
GROUP = ["ranker_version", "arm"]
SHADOW = "shadow"
GAIN_FLAGS = ("completed", "liked", "shared")
FLAGS = (*GAIN_FLAGS, "skipped")
SERVED_COLUMNS = (*KEY, *GROUP, "position")
FEEDBACK_COLUMNS = (*KEY, *FLAGS, "watch_time_s")


def _check(frame: pd.DataFrame, needed: Sequence[str], what: str) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}")


def _shown(served: pd.DataFrame) -> pd.DataFrame:
    """Served items that were shown: no shadow rows, one row per (request, video)."""
    _check(served, SERVED_COLUMNS, "served")
    shown = served.loc[served["arm"] != SHADOW, list(SERVED_COLUMNS)]
    return shown.drop_duplicates(KEY, keep="first")


def _per_item(feedback: pd.DataFrame) -> pd.DataFrame:
    """Feedback merged to one row per (request, video): any flag set, longest watch."""
    _check(feedback, FEEDBACK_COLUMNS, "feedback")
    fb = feedback[list(FEEDBACK_COLUMNS)].copy()
    for flag in FLAGS:
        fb[flag] = fb[flag].astype("boolean").fillna(False).astype(bool)
    fb["watch_time_s"] = pd.to_numeric(fb["watch_time_s"], errors="coerce").astype(float)
    agg: dict[str, str] = {flag: "max" for flag in FLAGS}
    agg["watch_time_s"] = "max"
    return fb.groupby(KEY, sort=False, observed=True).agg(agg).reset_index()


def unmatched_feedback(served: pd.DataFrame, feedback: pd.DataFrame) -> int:
    """Feedback rows whose (request_id, video_id) is not a shown item of ``served``."""
    _check(feedback, KEY, "feedback")
    keys = pd.MultiIndex.from_frame(_shown(served)[KEY].astype(str))
    fb_keys = pd.MultiIndex.from_frame(feedback[KEY].astype(str))
    return int((~fb_keys.isin(keys)).sum())


def labelled_items(served: pd.DataFrame, feedback: pd.DataFrame) -> pd.DataFrame:
    """Shown items with their merged feedback; ``labelled`` says whether any arrived."""
    shown = _shown(served)
    items = _per_item(feedback)
    shown = shown.astype({"request_id": str, "video_id": str})
    items = items.astype({"request_id": str, "video_id": str})
    joined = shown.merge(items, on=KEY, how="left", indicator=True)
    joined["labelled"] = joined.pop("_merge").eq("both")
    for flag in FLAGS:
        joined[flag] = joined[flag].astype("boolean").fillna(False).astype(bool)
    joined["gain"] = sum(joined[f].astype(np.int64) for f in GAIN_FLAGS)
    return joined


def online_quality(served: pd.DataFrame, feedback: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """Per (ranker_version, arm): volumes, NDCG@k in served order and engagement rates.

    Columns: ``ranker_version``, ``arm``, ``requests``, ``items``, ``labelled_items``,
    ``ndcg_requests`` (requests with some engagement, the ones NDCG averages over),
    ``ndcg_at_{k}``, then ``completion_rate``, ``like_rate``, ``share_rate``, ``skip_rate``
    and ``mean_watch_time_s`` over labelled items (NaN where there are none).
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    ndcg_col = f"ndcg_at_{k}"
    columns = [
        *GROUP,
        "requests",
        "items",
        "labelled_items",
        "ndcg_requests",
        ndcg_col,
        "completion_rate",
        "like_rate",
        "share_rate",
        "skip_rate",
        "mean_watch_time_s",
    ]
    items = labelled_items(served, feedback)
    if items.empty:
        return pd.DataFrame(columns=columns)
    items = items.sort_values([*GROUP, "request_id", "position"], kind="stable")
    rows: list[dict[str, Any]] = []
    for (version, arm), part in items.groupby(GROUP, sort=True, observed=True):
        labelled = part[part["labelled"]]
        request_gain = part.groupby("request_id", sort=False)["gain"].sum()
        rows.append(
            {
                "ranker_version": version,
                "arm": arm,
                "requests": int(part["request_id"].nunique()),
                "items": len(part),
                "labelled_items": len(labelled),
                "ndcg_requests": int((request_gain > 0).sum()),
                ndcg_col: ndcg_at_k(
                    part["request_id"].to_numpy(),
                    part["gain"].to_numpy(dtype=float),
                    -part["position"].to_numpy(dtype=float),
                    k,
                ),
                "completion_rate": _rate(labelled["completed"]),
                "like_rate": _rate(labelled["liked"]),
                "share_rate": _rate(labelled["shared"]),
                "skip_rate": _rate(labelled["skipped"]),
                "mean_watch_time_s": _rate(labelled["watch_time_s"]),
            }
        )
    return pd.DataFrame(rows, columns=columns).reset_index(drop=True)


def _rate(values: pd.Series) -> float:
    return float(values.astype(float).mean()) if len(values) else math.nan


@dataclass
class QualityReport:
    """Online quality per ranker version and arm, and how much feedback could not be joined."""

    metrics: pd.DataFrame
    unmatched_feedback: int
    feedback_rows: int
    k: int = 10

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN becomes None, numpy scalars become Python numbers."""
        records = [
            {key: _plain(value) for key, value in row.items()}
            for row in self.metrics.to_dict(orient="records")
        ]
        return {
            "k": self.k,
            "feedback_rows": self.feedback_rows,
            "unmatched_feedback": self.unmatched_feedback,
            "groups": records,
        }


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def quality_report(served: pd.DataFrame, feedback: pd.DataFrame, k: int = 10) -> QualityReport:
    """:func:`online_quality` with the count of feedback that matched no shown item."""
    return QualityReport(
        metrics=online_quality(served, feedback, k),
        unmatched_feedback=unmatched_feedback(served, feedback),
        feedback_rows=len(feedback),
        k=k,
    )
