"""Behavioural checks of the retrieval champion the tiny loop trained, loaded from MLflow the
way the service loads it (model, index and ids together)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.content import content_text, embed_videos, text_encoder

pytestmark = [pytest.mark.model, pytest.mark.integration]


@pytest.fixture(scope="module")
def retriever(loop):
    from models.champion import champion_retriever
    from models.registry import configure_mlflow

    configure_mlflow(loop.settings)
    version, ret = champion_retriever(loop.settings)
    assert version is not None, "the loop registered no retrieval champion"
    return ret


def _topic_ids(ret, topic: int) -> np.ndarray:
    return ret.catalog.video_ids[ret.catalog.topic == topic]


def _dominant_topic(ret) -> int:
    indexed = ret.catalog.rows(list(ret.index.video_ids))
    return int(np.bincount(ret.catalog.topic[indexed]).argmax())


def test_a_user_whose_history_is_one_topic_gets_mostly_that_topic(retriever):
    """On average a majority of the retrieved videos share the history's topic, the typical
    topic several times its chance rate. Not every topic: on simulator version 2 users tire
    of a topic they binge (boredom) and leave session intents, so what a one-topic history
    predicts is partly other topics, and the model rightly mixes them in."""
    ret = retriever
    n = 50  # of ~500 indexed videos in 12 topics: by chance about 4 would match
    shares, lifts = [], []
    indexed = ret.catalog.topic[ret.catalog.rows(list(ret.index.video_ids))]
    for topic in np.unique(ret.catalog.topic):
        history = list(_topic_ids(ret, topic)[-ret.model.cfg.history_len :])
        if len(history) < 5:
            continue
        ids, _ = ret.retrieve(ret.user_vector(None, history), n)
        hits = (ret.catalog.topic[ret.catalog.rows(list(ids))] == topic).sum()
        in_index = int((indexed == topic).sum())
        shares.append(hits / min(n, in_index))  # a small topic cannot fill 50 slots
        lifts.append((hits / n) / (in_index / len(indexed)))  # over a random draw's share
    assert len(shares) >= 5
    assert np.mean(shares) > 0.5, shares
    assert np.median(lifts) >= 4.0, lifts
    assert min(lifts) > 1.25, lifts  # every topic above chance


def test_videos_uploaded_after_training_are_retrieved_for_fans_of_their_topic(retriever, loop):
    """One new video per topic, embedded from content only (no id embedding was trained):
    a fan of a topic gets that topic's new video, and it is the best of the new ones."""
    from ingest.simulator import TOPIC_WORDS

    ret = retriever
    cat = ret.catalog
    rows = []
    for topic, name in enumerate(ret.model.cfg.topics, start=1):
        words = TOPIC_WORDS[name]
        same = cat.rows(list(_topic_ids(ret, topic)))
        rows.append(
            {
                "video_id": f"new-{name}",
                "creator_id": "c-new",
                "topic": name,
                "duration_s": 20.0,
                "upload_ts": pd.Timestamp(cat.upload_ts.max(), tz="UTC"),
                "caption": f"{words[0]} {words[1]} {words[2]} wait for the end",
                "hashtags": [f"#{words[3]}"],
                "visual_embedding": cat.visual[same, :-1].mean(axis=0),
            }
        )
    videos = pd.DataFrame(rows)
    encoder = text_encoder(loop.settings.retrieval.text_encoder)
    content = embed_videos(videos, encoder, pd.Timestamp.now().date())
    assert content_text(rows[0]["caption"], rows[0]["hashtags"]).endswith(
        rows[0]["hashtags"][0][1:]
    )
    assert not ret.index.contains("new-cooking")
    assert ret.add_videos(videos, content) == len(rows)

    topics = ret.model.cfg.topics
    new_ids = [f"new-{name}" for name in topics]
    fresh = ret.fresh_rows
    found, fans, ranks = 0, {}, []
    for topic, name in enumerate(topics, start=1):
        fan = list(_topic_ids(ret, topic)[-ret.model.cfg.history_len :])
        if len(fan) < 5:
            continue
        user = ret.user_vector(None, fan)
        ids, _ = ret.retrieve(user, 50)
        found += f"new-{name}" in set(ids)
        fans[topic - 1] = ret.scores(user, new_ids)
        # where the fan's topic's new video stands among every fresh video, by score
        order = np.argsort(-(ret.item_vectors[fresh] @ user), kind="stable")
        ranks.append(int(np.flatnonzero(cat.video_ids[fresh[order]] == f"new-{name}")[0]))
    assert len(fans) >= 5
    # Returned to its fans. It competes with the holdout day's uploads for the fresh 10% of
    # the slots (5 of 50, among ~25 fresh videos): by chance a fan would get it 1 time in 5.
    # How many fans clear the cut moves with the trained model's float noise across CPUs
    # (the same seed gave 9 of 12 on one, 10 on another), so the bar is three times chance,
    # and the rank below says how close the misses are.
    chance = min(5, len(fresh)) / len(fresh)
    assert found >= min(3 * chance, 0.8) * len(fans), (found, len(fans), ranks)
    # ... and near the top of the fresh videos for its fans: chance would be the middle
    assert np.mean(ranks) <= 0.2 * len(fresh), (ranks, len(fresh))
    # personalised, not merely fresh: each new video scores higher for its topic's fans
    # than for the average fan of another topic
    scores = np.array([fans[t] for t in sorted(fans)])  # rows: fans, columns: new videos
    cols = sorted(fans)
    wins = [scores[i, t] > np.delete(scores[:, t], i).mean() for i, t in enumerate(cols)]
    assert np.mean(wins) >= 0.9, wins
