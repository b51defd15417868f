"""Point-in-time joins through Feast, with no row lost unnoticed.

Feast's ``get_historical_features`` can drop an entity row that has no feature value as of
its timestamp (a user's first day, a video uploaded an hour ago). We tag every entity row
with a ``row_id``, left-join Feast's answer back onto the full entity frame, impute the
documented defaults for what is missing, and report per view how many rows were imputed.
Training builds its sets with these joins; monitoring joins a day's impressions the same
way, so both see exactly the same feature values.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from feature_repo.columns import USER_CREATOR_COLUMNS, VIEW_COLUMNS
from features.batch import FEATURE_DEFAULTS
from features.cross import add_creator_affinity

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)

LABEL_COLUMNS = ("completed", "liked", "shared", "skipped", "watch_time_s", "duration_s")


@dataclass
class JoinReport:
    """What the point-in-time join returned, and what had to be imputed."""

    rows: int
    rows_returned_by_feast: int
    imputed_rows: dict[str, int] = field(default_factory=dict)

    @property
    def rows_dropped_by_feast(self) -> int:
        return self.rows - self.rows_returned_by_feast

    def to_dict(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "rows_returned_by_feast": self.rows_returned_by_feast,
            **{f"imputed_{k}": v for k, v in self.imputed_rows.items()},
        }


def value_label(df: pd.DataFrame) -> np.ndarray:
    """Graded relevance of an impression: completion, like and share each add one."""
    return (
        df["completed"].astype(int) + df["liked"].astype(int) + df["shared"].astype(int)
    ).to_numpy(np.float64)


def entity_frame(impressions: pd.DataFrame, videos: pd.DataFrame) -> pd.DataFrame:
    """One row per impression: join keys, timestamp, context and labels."""
    df = impressions.merge(
        videos[["video_id", "creator_id"]], on="video_id", how="left", validate="many_to_one"
    )
    df = df.rename(columns={"ts": "event_timestamp"})
    df["row_id"] = np.arange(len(df), dtype=np.int64)
    df["value"] = value_label(df)
    df["positive"] = df["value"] > 0
    keep = [
        "row_id",
        "request_id",
        "user_id",
        "video_id",
        "creator_id",
        "event_timestamp",
        "surface",
        "position",
        *LABEL_COLUMNS,
        "value",
        "positive",
    ]
    return df[keep]


def join_features(
    store: FeatureStore, entities: pd.DataFrame, feature_service: str
) -> tuple[pd.DataFrame, JoinReport]:
    """Point-in-time features for every entity row; missing values imputed and counted."""
    keys = entities[["row_id", "user_id", "video_id", "creator_id", "event_timestamp"]]
    service = store.get_feature_service(feature_service)
    feats = store.get_historical_features(entity_df=keys, features=service).to_df()
    feature_cols = [c for cols in VIEW_COLUMNS.values() for c in cols]
    list_cols = [c for c in USER_CREATOR_COLUMNS if c in feats.columns]
    feats = feats[["row_id", *feature_cols, *list_cols]].drop_duplicates("row_id")
    out = entities.merge(feats, on="row_id", how="left", validate="one_to_one")
    report = JoinReport(rows=len(entities), rows_returned_by_feast=len(feats))
    for view, cols in VIEW_COLUMNS.items():
        missing = out[list(cols)].isna().any(axis=1)
        report.imputed_rows[view] = int(missing.sum())
        for c in cols:
            out[c] = out[c].fillna(FEATURE_DEFAULTS[c])
    if list_cols:
        # a user with no history with any creator is a fact (no impressions), not a gap
        report.imputed_rows["user_creator_history"] = int(
            sum(not isinstance(v, list | np.ndarray) for v in out["uc_creator_ids"])
        )
        out = add_creator_affinity(out)
    if report.rows_dropped_by_feast or any(report.imputed_rows.values()):
        log.info("point-in-time join: %s", report.to_dict())
    return out.sort_values("row_id").reset_index(drop=True), report


def join_by_day(
    store: FeatureStore, entities: pd.DataFrame, feature_service: str
) -> tuple[pd.DataFrame, JoinReport]:
    """:func:`join_features` one day of entity rows at a time: the offline store's
    point-in-time join holds one day's rows and their candidate feature rows in memory,
    not the whole window's."""
    days = entities["event_timestamp"].dt.floor("D")
    parts: list[pd.DataFrame] = []
    report = JoinReport(rows=0, rows_returned_by_feast=0)
    for _, chunk in entities.groupby(days, sort=True):
        out, rep = join_features(store, chunk, feature_service)
        parts.append(out)
        report.rows += rep.rows
        report.rows_returned_by_feast += rep.rows_returned_by_feast
        for k, v in rep.imputed_rows.items():
            report.imputed_rows[k] = report.imputed_rows.get(k, 0) + v
    if not parts:
        return join_features(store, entities, feature_service)
    joined = pd.concat(parts, ignore_index=True)
    return joined.sort_values("row_id").reset_index(drop=True), report
