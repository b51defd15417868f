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

from features.batch import as_of_timestamp
from features.pit import JoinReport, entity_frame, join_by_day
from ingest.lake import partition_path, read_table
from reelrank.errors import InvalidDataError, MissingDataError
from reelrank.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)

SAMPLE_KEY = "reelrank-sample1"  # pandas wants a 16-character hash key


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
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, JoinReport | SampleReport]]:
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
