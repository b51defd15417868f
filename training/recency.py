"""Weights that make a retrain after drift learn mostly from the world as it is now.

When the monitoring opens a drift episode, the days before its start describe a world that
has changed: a model fitted on the whole window with equal weights keeps predicting the old
one until the new days outnumber the old. While an episode is open, the ranker's training
rows from the episode's first day on weigh 1 and older rows weigh half as much for every
``half_life_days`` they lie before it. XGBoost takes these as sample weights: the window
(and every feature) stays the same, only how much each row counts changes, so the retrain
still sees enough rows to fit, yet follows the new world.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd


def recency_weights(
    timestamps: pd.Series, since: date | pd.Timestamp, half_life_days: float
) -> np.ndarray:
    """One weight per row: 1 from the day ``since`` on, ``0.5 ** (days before it /
    half_life_days)`` for older rows (whole days, by each row's UTC day)."""
    if half_life_days <= 0:
        raise ValueError(f"half_life_days must be positive, got {half_life_days}")
    ts = pd.to_datetime(timestamps, utc=True)
    start = pd.Timestamp(since)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    days_before = (start.normalize() - ts.dt.normalize()).dt.days.to_numpy(np.float64)
    return np.power(0.5, np.clip(days_before, 0.0, None) / half_life_days)
