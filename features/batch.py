"""Batch features as pure functions: raw-lake frames in, one frame per feature view out.

Features "as of day D" summarise everything up to the end of D and carry
``event_timestamp = D + 1 day 00:00 UTC``: they become visible only after the day is over,
which is what makes Feast's point-in-time join free of leakage (an impression at 10:00 on
D + 1 sees D's features, never its own day's outcome).

Rates are smoothed towards the global rate (``(k + m p) / (n + m)``) so a video with one
impression does not get a completion rate of 100 %.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from feature_repo.columns import (
    AFFINITY_COLUMNS,
    CREATOR_COLUMNS,
    N_TOPIC_SLOTS,
    USER_COLUMNS,
    VIDEO_COLUMNS,
)

SMOOTHING = 5.0


def as_of_timestamp(day: date) -> datetime:
    """The moment features of ``day`` become known: the start of the next day."""
    nxt = day + timedelta(days=1)
    return datetime(nxt.year, nxt.month, nxt.day, tzinfo=UTC)


def topic_vocabulary(topics: pd.Series, existing: Sequence[str] = ()) -> list[str]:
    """Stable topic -> slot mapping: known topics keep their slot, new ones fill free slots.

    The last slot is reserved for "other" once the vocabulary is full, so the feature schema
    never changes when a catalog gains topics.
    """
    vocab = list(existing)
    counts = topics.value_counts()
    for t in sorted(counts.index, key=lambda x: (-counts[x], x)):
        if t not in vocab and len(vocab) < N_TOPIC_SLOTS - 1:
            vocab.append(t)
    return vocab


def topic_slots(topics: pd.Series, vocab: Sequence[str]) -> np.ndarray:
    index = {t: i for i, t in enumerate(vocab)}
    return topics.map(index).fillna(N_TOPIC_SLOTS - 1).to_numpy(np.int64)


def _rate(k: pd.Series, n: pd.Series, prior: float) -> pd.Series:
    return (k + SMOOTHING * prior) / (n + SMOOTHING)


def _window(imp: pd.DataFrame, day: date, days: int) -> pd.DataFrame:
    lo = as_of_timestamp(day - timedelta(days=days))
    hi = as_of_timestamp(day)
    return imp[(imp["ts"] >= lo) & (imp["ts"] < hi)]


def _priors(imp: pd.DataFrame) -> dict[str, float]:
    if imp.empty:
        return {"completed": 0.3, "liked": 0.05, "shared": 0.01, "skipped": 0.3, "followed": 0.01}
    return {
        c: float(imp[c].mean()) for c in ("completed", "liked", "shared", "skipped", "followed")
    }


def enrich_impressions(
    impressions: pd.DataFrame, videos: pd.DataFrame, vocab: Sequence[str]
) -> pd.DataFrame:
    """Attach creator and topic slot to each impression (the catalog join done once)."""
    cat = videos[["video_id", "creator_id", "topic"]].copy()
    cat["topic_slot"] = topic_slots(cat["topic"], vocab)
    out = impressions.merge(
        cat[["video_id", "creator_id", "topic_slot"]],
        on="video_id",
        how="left",
        validate="many_to_one",
    )
    out["positive"] = out["completed"] | out["liked"] | out["shared"]
    out["watch_frac"] = (out["watch_time_s"] / out["duration_s"]).clip(0.0, 1.0)
    out["day"] = out["ts"].dt.floor("D")
    return out


def user_engagement(imp: pd.DataFrame, day: date) -> pd.DataFrame:
    """Per-user engagement over 1/7/28-day windows ending with ``day``."""
    w28 = _window(imp, day, 28)
    w7 = _window(w28, day, 7)
    w1 = _window(w7, day, 1)
    p = _priors(w28)
    g28, g7 = w28.groupby("user_id"), w7.groupby("user_id")
    out = pd.DataFrame({"imp_28d": g28.size()})
    out["imp_7d"] = g7.size()
    out["imp_1d"] = w1.groupby("user_id").size()
    out = out.fillna(0.0)
    out["watch_time_7d"] = g7["watch_time_s"].sum()
    out["watch_time_28d"] = g28["watch_time_s"].sum()
    out = out.fillna(0.0)
    for name, col, grp, n in (
        ("completion_rate_7d", "completed", g7, "imp_7d"),
        ("completion_rate_28d", "completed", g28, "imp_28d"),
        ("like_rate_28d", "liked", g28, "imp_28d"),
        ("share_rate_28d", "shared", g28, "imp_28d"),
        ("skip_rate_7d", "skipped", g7, "imp_7d"),
        ("skip_rate_28d", "skipped", g28, "imp_28d"),
    ):
        out[name] = _rate(grp[col].sum().reindex(out.index).fillna(0.0), out[n], p[col])
    out["days_active_28d"] = g28["day"].nunique()
    out = out.reset_index().rename(columns={"index": "user_id"})
    out["event_timestamp"] = as_of_timestamp(day)
    return out[["user_id", "event_timestamp", *USER_COLUMNS]].astype(
        {c: "float64" for c in USER_COLUMNS}
    )


def user_topic_affinity(imp: pd.DataFrame, day: date, n_topics: int) -> pd.DataFrame:
    """Each user's share of positive engagement per topic slot over 28 days, smoothed."""
    w28 = _window(imp, day, 28)
    pos = w28[w28["positive"]]
    counts = pd.crosstab(pos["user_id"], pos["topic_slot"]).reindex(
        columns=range(N_TOPIC_SLOTS), fill_value=0
    )
    users = pd.Index(w28["user_id"].unique(), name="user_id")
    counts = counts.reindex(users, fill_value=0).astype("float64")
    prior = np.zeros(N_TOPIC_SLOTS)
    prior[: max(n_topics, 1)] = 1.0 / max(n_topics, 1)
    m = 2.0
    aff = (counts.to_numpy() + m * prior) / (counts.to_numpy().sum(axis=1, keepdims=True) + m)
    out = pd.DataFrame(aff, columns=list(AFFINITY_COLUMNS))
    out.insert(0, "user_id", users.to_numpy())
    out.insert(1, "event_timestamp", as_of_timestamp(day))
    return out


def user_history(imp: pd.DataFrame, day: date, length: int) -> pd.DataFrame:
    """Each user's most recent positive videos (newest first, distinct) over 28 days.

    The retrieval model's user tower pools the content of these videos, so a user is
    described by what they actually enjoyed, not only by aggregate rates.
    """
    w28 = _window(imp, day, 28)
    pos = w28.loc[w28["positive"], ["user_id", "video_id", "ts"]]
    pos = pos.sort_values("ts", ascending=False, kind="stable")
    pos = pos.drop_duplicates(["user_id", "video_id"])
    pos = pos.groupby("user_id", sort=True).head(length)
    hist = pos.groupby("user_id", sort=True)["video_id"].agg(list)
    return pd.DataFrame(
        {
            "user_id": hist.index.to_numpy(),
            "event_timestamp": as_of_timestamp(day),
            "hist_video_ids": hist.to_list(),
            "hist_len": hist.map(len).astype("float64").to_numpy(),
        }
    )


def user_creator_history(imp: pd.DataFrame, day: date, length: int) -> pd.DataFrame:
    """Each user's history with individual creators over 28 days: impressions and positives.

    Kept as three parallel lists per user (the ``length`` creators the user saw most), so the
    ranker's user x creator features come from one online read per request, not one per
    candidate; :func:`features.cross.creator_affinity` turns them into per-candidate values.
    """
    w28 = _window(imp, day, 28)
    g = w28.groupby(["user_id", "creator_id"], sort=True)["positive"].agg(["size", "sum"])
    g = g.reset_index().sort_values(
        ["user_id", "size", "creator_id"], ascending=[True, False, True], kind="stable"
    )
    g = g.groupby("user_id", sort=True).head(length)
    per_user = g.groupby("user_id", sort=True)
    return pd.DataFrame(
        {
            "user_id": per_user.size().index.to_numpy(),
            "event_timestamp": as_of_timestamp(day),
            "uc_creator_ids": per_user["creator_id"].agg(list).to_list(),
            "uc_imp_28d": per_user["size"].agg(lambda s: s.astype("float64").tolist()).to_list(),
            "uc_pos_28d": per_user["sum"].agg(lambda s: s.astype("float64").tolist()).to_list(),
        }
    )


def video_stats(
    imp: pd.DataFrame, videos: pd.DataFrame, day: date, vocab: Sequence[str]
) -> pd.DataFrame:
    """Per-video engagement, freshness and velocity for every video uploaded by ``day``."""
    asof = as_of_timestamp(day)
    cat = videos[videos["upload_ts"] < asof].set_index("video_id")
    w7 = _window(imp, day, 7)
    w1 = _window(w7, day, 1)
    p = _priors(w7)
    g7 = w7.groupby("video_id")
    out = pd.DataFrame(index=cat.index)
    out["v_imp_1d"] = w1.groupby("video_id").size()
    out["v_imp_7d"] = g7.size()
    out = out.fillna(0.0)
    for name, col, prior in (
        ("v_completion_rate_7d", "completed", p["completed"]),
        ("v_like_rate_7d", "liked", p["liked"]),
        ("v_share_rate_7d", "shared", p["shared"]),
        ("v_skip_rate_7d", "skipped", p["skipped"]),
    ):
        out[name] = _rate(g7[col].sum().reindex(out.index).fillna(0.0), out["v_imp_7d"], prior)
    frac_prior = float(w7["watch_frac"].mean()) if len(w7) else 0.4
    out["v_watch_frac_7d"] = _rate(
        g7["watch_frac"].sum().reindex(out.index).fillna(0.0), out["v_imp_7d"], frac_prior
    )
    out["v_age_hours"] = (asof - cat["upload_ts"]).dt.total_seconds() / 3600.0
    out["v_velocity"] = out["v_imp_1d"] / (out["v_imp_7d"] / 7.0 + 1.0)
    out["v_duration_s"] = cat["duration_s"]
    out["v_topic_slot"] = topic_slots(cat["topic"], vocab).astype("float64")
    out = out.reset_index().rename(columns={"index": "video_id"})
    out["event_timestamp"] = asof
    return out[["video_id", "event_timestamp", *VIDEO_COLUMNS]].astype(
        {c: "float64" for c in VIDEO_COLUMNS}
    )


def creator_stats(imp: pd.DataFrame, videos: pd.DataFrame, day: date) -> pd.DataFrame:
    """Per-creator catalog size and 28-day engagement quality."""
    asof = as_of_timestamp(day)
    cat = videos[(videos["upload_ts"] < asof) & (videos["upload_ts"] >= asof - timedelta(days=28))]
    w28 = _window(imp, day, 28)
    p = _priors(w28)
    g = w28.groupby("creator_id")
    # every creator with recent uploads or recent impressions (old videos still get watched)
    creators = pd.Index(cat["creator_id"].unique()).union(pd.Index(w28["creator_id"].unique()))
    out = pd.DataFrame(index=creators.rename(None))
    out["c_videos_28d"] = cat.groupby("creator_id").size()
    out["c_imp_28d"] = g.size()
    out = out.fillna(0.0)
    for name, col in (
        ("c_completion_rate_28d", "completed"),
        ("c_like_rate_28d", "liked"),
        ("c_follow_rate_28d", "followed"),
    ):
        out[name] = _rate(g[col].sum().reindex(out.index).fillna(0.0), out["c_imp_28d"], p[col])
    out = out.reset_index().rename(columns={"index": "creator_id"})
    out["event_timestamp"] = asof
    return out[["creator_id", "event_timestamp", *CREATOR_COLUMNS]].astype(
        {c: "float64" for c in CREATOR_COLUMNS}
    )


# Values used when an entity has no feature row (new user, brand-new video): the smoothed
# priors' neutral values, so a missing row looks "average", not "terrible".
FEATURE_DEFAULTS: dict[str, float] = {
    **{c: 0.0 for c in USER_COLUMNS},
    "completion_rate_7d": 0.3,
    "completion_rate_28d": 0.3,
    "like_rate_28d": 0.05,
    "share_rate_28d": 0.01,
    "skip_rate_7d": 0.35,
    "skip_rate_28d": 0.35,
    **{c: 1.0 / 12 for c in AFFINITY_COLUMNS},
    **{c: 0.0 for c in VIDEO_COLUMNS},
    "v_completion_rate_7d": 0.3,
    "v_like_rate_7d": 0.05,
    "v_share_rate_7d": 0.01,
    "v_skip_rate_7d": 0.35,
    "v_watch_frac_7d": 0.4,
    "v_duration_s": 25.0,
    "v_topic_slot": float(N_TOPIC_SLOTS - 1),
    **{c: 0.0 for c in CREATOR_COLUMNS},
    "c_completion_rate_28d": 0.3,
    "c_like_rate_28d": 0.05,
    "c_follow_rate_28d": 0.01,
}
