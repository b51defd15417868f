"""Feature views: one per batch table, typed field by field."""

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Float64

from feature_repo.columns import AFFINITY_COLUMNS, CREATOR_COLUMNS, USER_COLUMNS, VIDEO_COLUMNS
from feature_repo.data_sources import (
    creator_stats_source,
    user_engagement_source,
    user_topic_affinity_source,
    video_stats_source,
)
from feature_repo.entities import creator, user, video

# Rows are daily snapshots; a row older than the TTL is treated as missing, so an entity
# that went quiet for a month falls back to defaults instead of stale values.
TTL = timedelta(days=30)


def _fields(names: tuple[str, ...]) -> list[Field]:
    return [Field(name=n, dtype=Float64) for n in names]


user_engagement = FeatureView(
    name="user_engagement",
    entities=[user],
    ttl=TTL,
    schema=_fields(USER_COLUMNS),
    source=user_engagement_source,
    online=True,
    tags={"owner": "reelrank", "windows": "1d,7d,28d"},
    description="Per-user impressions, watch time and engagement rates over 1/7/28 days.",
)
user_topic_affinity = FeatureView(
    name="user_topic_affinity",
    entities=[user],
    ttl=TTL,
    schema=_fields(AFFINITY_COLUMNS),
    source=user_topic_affinity_source,
    online=True,
    tags={"owner": "reelrank", "windows": "28d"},
    description="Share of a user's positive engagement per topic slot (28 days, smoothed).",
)
video_stats = FeatureView(
    name="video_stats",
    entities=[video],
    ttl=TTL,
    schema=_fields(VIDEO_COLUMNS),
    source=video_stats_source,
    online=True,
    tags={"owner": "reelrank", "windows": "1d,7d"},
    description="Per-video engagement, freshness (age) and velocity.",
)
creator_stats = FeatureView(
    name="creator_stats",
    entities=[creator],
    ttl=TTL,
    schema=_fields(CREATOR_COLUMNS),
    source=creator_stats_source,
    online=True,
    tags={"owner": "reelrank", "windows": "28d"},
    description="Per-creator catalog size and 28-day engagement quality.",
)
