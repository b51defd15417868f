"""Column names of every feature view: the one list both the views and the batch code use."""

N_TOPIC_SLOTS = 16
AFFINITY_COLUMNS: tuple[str, ...] = tuple(f"aff_{i:02d}" for i in range(N_TOPIC_SLOTS))
USER_COLUMNS: tuple[str, ...] = (
    "imp_1d",
    "imp_7d",
    "imp_28d",
    "watch_time_7d",
    "watch_time_28d",
    "completion_rate_7d",
    "completion_rate_28d",
    "like_rate_28d",
    "share_rate_28d",
    "skip_rate_7d",
    "skip_rate_28d",
    "days_active_28d",
)
VIDEO_COLUMNS: tuple[str, ...] = (
    "v_imp_1d",
    "v_imp_7d",
    "v_completion_rate_7d",
    "v_like_rate_7d",
    "v_share_rate_7d",
    "v_skip_rate_7d",
    "v_watch_frac_7d",
    "v_age_hours",
    "v_velocity",
    "v_duration_s",
    "v_topic_slot",
)
CREATOR_COLUMNS: tuple[str, ...] = (
    "c_videos_28d",
    "c_imp_28d",
    "c_completion_rate_28d",
    "c_like_rate_28d",
    "c_follow_rate_28d",
)

VIEW_COLUMNS: dict[str, tuple[str, ...]] = {
    "user_engagement": USER_COLUMNS,
    "user_topic_affinity": AFFINITY_COLUMNS,
    "video_stats": VIDEO_COLUMNS,
    "creator_stats": CREATOR_COLUMNS,
}

# Retrieval views: list-valued, so they are declared field by field in features.py
HISTORY_COLUMNS: tuple[str, ...] = ("hist_video_ids", "hist_len")
# The ranker's user x creator history: parallel lists per user (view user_creator_history)
USER_CREATOR_COLUMNS: tuple[str, ...] = ("uc_creator_ids", "uc_imp_28d", "uc_pos_28d")
# The sequence retrieval model's input: the user's latest events (view user_sequence)
SEQUENCE_COLUMNS: tuple[str, ...] = ("seq_video_ids", "seq_actions", "seq_ts")
CONTENT_COLUMNS: tuple[str, ...] = ("caption_embedding", "visual_embedding", "has_visual")

_VIEW_OF = {c: view for view, cols in VIEW_COLUMNS.items() for c in cols}


def feature_refs(columns: tuple[str, ...] | list[str]) -> list[str]:
    """Feast references (``view:column``) of batch feature columns, in the given order; a
    KeyError names a column no view declares."""
    return [f"{_VIEW_OF[c]}:{c}" for c in columns]


#: What one online or point-in-time read of a user's state asks for: the user's rates and
#: topic affinity, recent positive history, and history with creators (serving's UserState).
USER_STATE_REFS: tuple[str, ...] = (
    *feature_refs((*USER_COLUMNS, *AFFINITY_COLUMNS)),
    "user_history:hist_video_ids",
    *(f"user_creator_history:{c}" for c in USER_CREATOR_COLUMNS),
    *(f"user_sequence:{c}" for c in SEQUENCE_COLUMNS),
)
#: What the retrieval model's user side reads: the user's rates and recent positive history
#: (pooled kind) and latest events (sequence kind).
USER_TOWER_REFS: tuple[str, ...] = (
    *feature_refs(USER_COLUMNS),
    "user_history:hist_video_ids",
    *(f"user_sequence:{c}" for c in SEQUENCE_COLUMNS),
)
