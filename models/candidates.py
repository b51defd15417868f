"""Which videos a feed could show on a day, and the popularity lists every model is judged
beside. Shared by the retrieval evaluation (training) and the offline evaluation of the whole
serving pipeline (serving), so both count the same catalog and the same baselines."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from ingest.lake import read_table
from models.two_tower import Catalog
from reelrank.settings import Settings

KS = (50, 100, 500)


def positives(settings: Settings, start: date, end: date) -> pd.DataFrame:
    imp = read_table(settings.lake_dir, "impressions", start=start, end=end)
    pos = imp[imp["completed"] | imp["liked"] | imp["shared"]]
    out = pos[["user_id", "video_id", "ts"]].copy()
    out["day"] = out["ts"].dt.tz_convert("UTC").dt.tz_localize(None).dt.normalize()
    return out.reset_index(drop=True)


def available_rows(catalog: Catalog, day: date, settings: Settings, end_of_day: bool) -> np.ndarray:
    """Catalog rows a feed could show on ``day``: uploaded before its start (or end), and
    not older than the catalog's lifetime."""
    start = np.datetime64(pd.Timestamp(day))
    edge = start + np.timedelta64(1, "D") if end_of_day else start
    oldest = start - np.timedelta64(settings.max_video_age_days, "D")
    up = catalog.upload_ts
    return np.flatnonzero((up < edge) & (up >= oldest))


def popularity_order(
    catalog: Catalog, pos: pd.DataFrame, available: np.ndarray, n: int = max(KS)
) -> np.ndarray:
    counts = pos["video_id"].value_counts()
    ids = catalog.video_ids[available]
    score = pd.Series(ids).map(counts).fillna(0.0).to_numpy()
    return ids[np.argsort(-score, kind="stable")[:n]]
