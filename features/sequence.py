"""The user's recent events as one feature: what the sequential retrieval model reads.

The pooled two-tower reads a user's recent *positives* (``user_history``); the sequence model
reads every recent impression in order, with what the user did on it and when. Each event is
three numbers, kept as three parallel lists per user (oldest first, the newest ``length``):

- ``seq_video_ids``: the video;
- ``seq_actions``: an action code, :func:`action_codes` (completed/liked/shared/skipped bits
  and a watch-ratio bucket), so one integer carries everything the model embeds;
- ``seq_ts``: the event time in epoch seconds (the model buckets the gaps between events).

Training, evaluation and serving all build these lists with this module (a batch table per
day for Feast, :func:`sequences_before` for training examples), so the model never sees one
encoding in training and another in production.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from feature_repo.columns import SEQUENCE_COLUMNS
from features.batch import as_of_timestamp

__all__ = ["SEQUENCE_COLUMNS"]

COMPLETED, LIKED, SHARED, SKIPPED = 1, 2, 4, 8
RATIO_BUCKETS = 5  # watch ratio in [0, .2), [.2, .4), ..., [.8, 1]
RATIO_SHIFT = 4  # the ratio bucket lives above the four action bits
LOOKBACK_DAYS = 28


def ratio_bucket(watch_frac: np.ndarray) -> np.ndarray:
    """Watch ratio (clipped to [0, 1]) in ``RATIO_BUCKETS`` equal buckets, 0-based."""
    w = np.clip(np.nan_to_num(np.asarray(watch_frac, np.float64), nan=0.0), 0.0, 1.0)
    return np.minimum((w * RATIO_BUCKETS).astype(np.int64), RATIO_BUCKETS - 1)


def action_codes(frame: pd.DataFrame) -> np.ndarray:
    """One integer per impression: action bits + (watch-ratio bucket << ``RATIO_SHIFT``).

    ``frame`` has the lake's impression columns (completed, liked, shared, skipped,
    watch_time_s, duration_s)."""
    bits = (
        frame["completed"].to_numpy(bool) * COMPLETED
        + frame["liked"].to_numpy(bool) * LIKED
        + frame["shared"].to_numpy(bool) * SHARED
        + frame["skipped"].to_numpy(bool) * SKIPPED
    ).astype(np.int64)
    dur = frame["duration_s"].to_numpy(np.float64)
    frac = frame["watch_time_s"].to_numpy(np.float64) / np.where(dur > 0, dur, 1.0)
    return bits + (ratio_bucket(frac) << RATIO_SHIFT)


def is_positive(codes: np.ndarray | int) -> np.ndarray:
    """Completed, liked or shared: the positives every retrieval model learns to predict."""
    return (np.asarray(codes) & (COMPLETED | LIKED | SHARED)) > 0


def epoch_seconds(ts: pd.Series) -> np.ndarray:
    """Timestamps (tz-aware UTC) as float epoch seconds: whole microseconds divided by 1e6
    (exact in float64, so the SQL tables and serving give the same number)."""
    t = pd.to_datetime(ts, utc=True)
    us = ((t - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1)).to_numpy(np.int64)
    return us.astype(np.float64) / 1e6


def ordered_events(imp: pd.DataFrame) -> pd.DataFrame:
    """Impressions as events: user_id, video_id, action, t (epoch s), sorted by user then
    time (ties keep the lake's row order)."""
    out = pd.DataFrame(
        {
            "user_id": imp["user_id"].to_numpy(),
            "video_id": imp["video_id"].astype(str).to_numpy(),
            "action": action_codes(imp),
            "t": epoch_seconds(imp["ts"]),
        }
    )
    return out.sort_values(["user_id", "t"], kind="stable").reset_index(drop=True)


def user_sequence(imp: pd.DataFrame, day: date, length: int) -> pd.DataFrame:
    """Each user's last ``length`` impressions up to the end of ``day`` (28-day window),
    oldest first, as the three ``SEQUENCE_COLUMNS`` lists; visible from the next day on."""
    lo, hi = as_of_timestamp(day - timedelta(days=LOOKBACK_DAYS)), as_of_timestamp(day)
    window = imp[(imp["ts"] >= lo) & (imp["ts"] < hi)]
    ev = ordered_events(window)
    ev = ev.groupby("user_id", sort=True).tail(length)
    g = ev.groupby("user_id", sort=True)
    return pd.DataFrame(
        {
            "user_id": g.size().index.to_numpy(),
            "event_timestamp": as_of_timestamp(day),
            "seq_video_ids": g["video_id"].agg(list).to_list(),
            "seq_actions": g["action"].agg(lambda s: s.astype("int64").tolist()).to_list(),
            "seq_ts": g["t"].agg(lambda s: s.astype("float64").tolist()).to_list(),
        }
    )


def sequences_before(
    events: pd.DataFrame, users: pd.Series, cutoff: pd.Series, length: int
) -> list[tuple[list[str], list[int], list[float]]]:
    """For each (user, cutoff time in epoch s): the user's last ``length`` events strictly
    before the cutoff, oldest first; ``events`` from :func:`ordered_events`.

    With the cutoff at the start of a day and events of the 28 days before it, this is the
    ``user_sequence`` row of the day before: what serving reads for that user that day."""
    by_user = {u: g for u, g in events.groupby("user_id", sort=False)}
    out: list[tuple[list[str], list[int], list[float]]] = []
    for u, c in zip(users, cutoff, strict=True):
        g = by_user.get(u)
        if g is None:
            out.append(([], [], []))
            continue
        t = g["t"].to_numpy()
        end = int(np.searchsorted(t, c, side="left"))
        start = max(0, end - length)
        lo = int(np.searchsorted(t, c - LOOKBACK_DAYS * 86400.0, side="left"))
        start = max(start, lo)
        out.append(
            (
                g["video_id"].to_numpy()[start:end].tolist(),
                g["action"].to_numpy()[start:end].tolist(),
                t[start:end].tolist(),
            )
        )
    return out
