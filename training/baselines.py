"""Popularity baselines, always evaluated beside the models.

A personalised ranker that cannot beat "show what is popular" is not worth serving.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def popularity(train: pd.DataFrame) -> pd.Series:
    """Positive engagements per video over the whole training window (global popularity)."""
    return train.groupby("video_id")["positive"].sum().astype(np.float64)


def recent_popularity(train: pd.DataFrame, days: int = 1) -> pd.Series:
    """Positive engagements per video over the last ``days`` of the training window."""
    last = train["event_timestamp"].max().normalize() - pd.Timedelta(days=days - 1)
    recent = train[train["event_timestamp"] >= last]
    return recent.groupby("video_id")["positive"].sum().astype(np.float64)


def score(table: pd.Series, video_ids: pd.Series) -> np.ndarray:
    """Baseline score of each video; unseen videos score zero."""
    return video_ids.map(table).fillna(0.0).to_numpy(np.float64)
