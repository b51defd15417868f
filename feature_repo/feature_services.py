"""Feature services: one per consuming model, versioned by name."""

from feast import FeatureService

from feature_repo.features import (
    creator_stats,
    user_creator_history,
    user_engagement,
    user_history,
    user_sequence,
    user_topic_affinity,
    video_content,
    video_stats,
)

ranker_v1 = FeatureService(
    name="ranker_v1",
    features=[user_engagement, user_topic_affinity, video_stats, creator_stats],
    tags={"model": "reelrank-ranker", "version": "1"},
    description="Everything the XGBoost ranker reads: user, topic affinity, video, creator.",
)

ranker_v2 = FeatureService(
    name="ranker_v2",
    features=[
        user_engagement,
        user_topic_affinity,
        video_stats,
        creator_stats,
        user_creator_history,
    ],
    tags={"model": "reelrank-ranker", "version": "2"},
    description="The multi-objective ranker's inputs: ranker_v1 plus the user's history with "
    "each creator.",
)

retrieval_v1 = FeatureService(
    name="retrieval_v1",
    features=[user_engagement, user_history, video_content],
    tags={"model": "reelrank-retrieval", "version": "1"},
    description="What the two-tower model reads: user rates, recent positive history, and "
    "each video's caption and visual embeddings.",
)

retrieval_v2 = FeatureService(
    name="retrieval_v2",
    features=[user_engagement, user_history, user_sequence, video_content],
    tags={"model": "reelrank-retrieval", "version": "2"},
    description="retrieval_v1 plus the user's latest events with actions and times: what "
    "the sequence kind of the retrieval model reads.",
)
