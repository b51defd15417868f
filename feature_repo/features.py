"""Feature views: one per batch table, typed field by field."""

from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource
from feast.types import Array, Float32, Float64, Int64, String

from feature_repo.columns import AFFINITY_COLUMNS, CREATOR_COLUMNS, USER_COLUMNS, VIDEO_COLUMNS
from feature_repo.data_sources import (
    creator_stats_source,
    user_creator_history_source,
    user_engagement_source,
    user_history_source,
    user_sequence_source,
    user_topic_affinity_source,
    video_content_source,
    video_stats_source,
)
from feature_repo.entities import creator, user, video

# Rows are daily snapshots; a row older than the TTL is treated as missing, so an entity
# that went quiet for a month falls back to defaults instead of stale values.
TTL = timedelta(days=30)


def _view(
    name: str,
    entity: Entity,
    columns: tuple[str, ...],
    source: FileSource,
    windows: str,
    description: str,
) -> FeatureView:
    return FeatureView(
        name=name,
        entities=[entity],
        ttl=TTL,
        schema=[Field(name=c, dtype=Float64) for c in columns],
        source=source,
        online=True,
        tags={"owner": "reelrank", "windows": windows},
        description=description,
    )


user_engagement = _view(
    "user_engagement",
    user,
    USER_COLUMNS,
    user_engagement_source,
    "1d,7d,28d",
    "Per-user impressions, watch time and engagement rates over 1/7/28 days.",
)
user_topic_affinity = _view(
    "user_topic_affinity",
    user,
    AFFINITY_COLUMNS,
    user_topic_affinity_source,
    "28d",
    "Share of a user's positive engagement per topic slot (28 days, smoothed).",
)
video_stats = _view(
    "video_stats",
    video,
    VIDEO_COLUMNS,
    video_stats_source,
    "1d,7d",
    "Per-video engagement, freshness (age) and velocity.",
)
creator_stats = _view(
    "creator_stats",
    creator,
    CREATOR_COLUMNS,
    creator_stats_source,
    "28d",
    "Per-creator videos uploaded and engagement quality over 28 days.",
)

user_history = FeatureView(
    name="user_history",
    entities=[user],
    ttl=TTL,
    schema=[
        Field(name="hist_video_ids", dtype=Array(String)),
        Field(name="hist_len", dtype=Float64),
    ],
    source=user_history_source,
    online=True,
    tags={"owner": "reelrank", "windows": "28d"},
    description="A user's most recent distinct positive videos, newest first (retrieval).",
)
user_creator_history = FeatureView(
    name="user_creator_history",
    entities=[user],
    ttl=TTL,
    schema=[
        Field(name="uc_creator_ids", dtype=Array(String)),
        Field(name="uc_imp_28d", dtype=Array(Float64)),
        Field(name="uc_pos_28d", dtype=Array(Float64)),
    ],
    source=user_creator_history_source,
    online=True,
    tags={"owner": "reelrank", "windows": "28d"},
    description="The creators a user saw most over 28 days, with impressions and positives "
    "per creator (parallel lists; the ranker's user x creator features).",
)
user_sequence = FeatureView(
    name="user_sequence",
    entities=[user],
    ttl=TTL,
    schema=[
        Field(name="seq_video_ids", dtype=Array(String)),
        Field(name="seq_actions", dtype=Array(Int64)),
        Field(name="seq_ts", dtype=Array(Float64)),
    ],
    source=user_sequence_source,
    online=True,
    tags={"owner": "reelrank", "windows": "28d"},
    description="A user's latest impressions, oldest first, as parallel lists: video, action "
    "code (completed/liked/shared/skipped bits + watch-ratio bucket) and epoch seconds "
    "(the sequence retrieval model).",
)
# Content does not change after upload, so it never expires (ttl 0 = no limit).
video_content = FeatureView(
    name="video_content",
    entities=[video],
    ttl=timedelta(0),
    schema=[
        Field(name="caption_embedding", dtype=Array(Float32)),
        Field(name="visual_embedding", dtype=Array(Float32)),
        Field(name="has_visual", dtype=Float64),
    ],
    source=video_content_source,
    online=True,
    tags={"owner": "reelrank", "encoder": "all-MiniLM-L6-v2"},
    description="Caption + hashtag embedding (all-MiniLM-L6-v2) and the upstream visual "
    "embedding of each video, computed once when it enters the catalog.",
)
