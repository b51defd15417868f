"""Training and holdout sets through Feast's point-in-time join, with no row lost unnoticed.

Feast's ``get_historical_features`` can drop an entity row that has no feature value as of
its timestamp (a user's first day, a video uploaded an hour ago). We tag every entity row
with a ``row_id``, left-join Feast's answer back onto the full entity frame, impute the
documented defaults for what is missing, and report per view how many rows were imputed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from feature_repo.columns import USER_CREATOR_COLUMNS, VIEW_COLUMNS
from features.batch import FEATURE_DEFAULTS, as_of_timestamp
from features.cross import add_creator_affinity
from ingest.lake import partition_path, read_table
from reelrank.errors import InvalidDataError, MissingDataError
from reelrank.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)

SAMPLE_KEY = "reelrank-sample1"  # pandas wants a 16-character hash key
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


@dataclass
class DataWindow:
    """The training days and the holdout day that follows them."""

    train_start: date
    train_end: date
    holdout: date

    @classmethod
    def ending_at(cls, holdout: date, train_days: int) -> DataWindow:
        return cls(holdout - timedelta(days=train_days), holdout - timedelta(days=1), holdout)

    def to_dict(self) -> dict[str, str]:
        return {
            "train_start": self.train_start.isoformat(),
            "train_end": self.train_end.isoformat(),
            "holdout": self.holdout.isoformat(),
        }


def keep_share(ids: pd.Series, share: float) -> np.ndarray:
    """A stable pseudo-random subset of ``ids``: the same id is always in or out (for a
    given share), whatever day, process or profile draws it."""
    if share >= 1.0:
        return np.ones(len(ids), dtype=bool)
    h = pd.util.hash_array(ids.to_numpy(dtype=object), hash_key=SAMPLE_KEY)
    return h < np.uint64(int(share * float(2**64 - 1)))


@dataclass
class SampleReport:
    """How many impressions the window held and how many were kept, per part."""

    rows_in_window: dict[str, int] = field(default_factory=dict)
    rows_kept: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, dict[str, int]]:
        return {"rows_in_window": self.rows_in_window, "rows_kept": self.rows_kept}


def sampled_impressions(
    settings: Settings, window: DataWindow
) -> tuple[pd.DataFrame, pd.DataFrame, SampleReport]:
    """The window's impressions, read one day at a time and sampled to the row budgets
    (``training.max_train_rows``, ``training.max_holdout_rows``): memory holds one day plus
    what is kept, so the cost of the join and the fit stops growing with traffic."""
    t = settings.training
    days = [window.train_start + timedelta(days=i) for i in range(t.train_days)]
    counts = {d: read_table_rows(settings, d) for d in [*days, window.holdout]}
    report = SampleReport()
    train_total = sum(counts[d] for d in days)
    train_share = min(1.0, t.max_train_rows / max(train_total, 1))
    hold_share = min(1.0, t.max_holdout_rows / max(counts[window.holdout], 1))
    parts: list[pd.DataFrame] = []
    for d in days:
        imp = read_table(settings.lake_dir, "impressions", start=d, end=d)
        parts.append(imp[keep_share(imp["request_id"], train_share)] if len(imp) else imp)
    train = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    hold = read_table(settings.lake_dir, "impressions", start=window.holdout, end=window.holdout)
    if len(hold):
        hold = hold[keep_share(hold["user_id"], hold_share)].reset_index(drop=True)
    report.rows_in_window = {"train": train_total, "holdout": counts[window.holdout]}
    report.rows_kept = {"train": len(train), "holdout": len(hold)}
    if train_share < 1.0 or hold_share < 1.0:
        log.info("training window sampled: %s", report.to_dict())
    return train, hold, report


def read_table_rows(settings: Settings, day: date) -> int:
    """Rows of one impressions partition, from its metadata (no data read)."""
    path = partition_path(settings.lake_dir, "impressions", day)
    return pq.ParquetFile(path).metadata.num_rows if path.exists() else 0


def build_sets(
    settings: Settings, store: FeatureStore, window: DataWindow
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, JoinReport]]:
    """Training rows (train window) and holdout rows (the next day), features joined."""
    videos = read_table(settings.lake_dir, "videos", end=window.holdout)
    train_imp, hold_imp, sample = sampled_impressions(settings, window)
    if train_imp.empty and hold_imp.empty:
        raise MissingDataError(f"no impressions between {window.train_start} and {window.holdout}")
    imp = pd.concat([train_imp, hold_imp], ignore_index=True)
    holdout_start = as_of_timestamp(window.train_end)
    ents = entity_frame(imp, videos)
    train_ents = ents[ents["event_timestamp"] < holdout_start].reset_index(drop=True)
    hold_ents = ents[ents["event_timestamp"] >= holdout_start].reset_index(drop=True)
    if train_ents.empty or hold_ents.empty:
        raise InvalidDataError(f"empty training or holdout set for window {window.to_dict()}")
    train, train_rep = join_by_day(store, train_ents, settings.feature_service)
    hold, hold_rep = join_by_day(store, hold_ents, settings.feature_service)
    return train, hold, {"train": train_rep, "holdout": hold_rep, "sample": sample}
