"""Feature services: one per consuming model, versioned by name."""

from feast import FeatureService

from feature_repo.features import creator_stats, user_engagement, user_topic_affinity, video_stats

ranker_v1 = FeatureService(
    name="ranker_v1",
    features=[user_engagement, user_topic_affinity, video_stats, creator_stats],
    tags={"model": "reelrank-ranker", "version": "1"},
    description="Everything the XGBoost ranker reads: user, topic affinity, video, creator.",
)
