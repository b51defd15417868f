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
    from training.registry import configure_mlflow
    from training.retrieval import champion_retriever

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
    ret = retriever
    n = 50  # of ~500 indexed videos in 12 topics: by chance about 4 would match
    shares = []
    for topic in np.unique(ret.catalog.topic):
        history = list(_topic_ids(ret, topic)[-ret.model.cfg.history_len :])
        if len(history) < 5:
            continue
        ids, _ = ret.retrieve(ret.user_vector(None, history), n)
        shares.append((ret.catalog.topic[ret.catalog.rows(list(ids))] == topic).mean())
    assert len(shares) >= 5
    assert np.mean(shares) >= 0.6, shares


def test_a_video_uploaded_after_training_is_retrieved_for_a_fan_of_its_topic(retriever, loop):
    from ingest.simulator import TOPIC_WORDS

    ret = retriever
    topic = _dominant_topic(ret)
    name = ret.model.cfg.topics[topic - 1]
    same = ret.catalog.rows(list(_topic_ids(ret, topic)))
    visual = ret.catalog.visual[same, :-1].mean(axis=0)
    words = TOPIC_WORDS[name]
    video = pd.DataFrame(
        {
            "video_id": ["v-brand-new"],
            "creator_id": ["c-new"],
            "topic": [name],
            "duration_s": [20.0],
            "upload_ts": [pd.Timestamp(ret.catalog.upload_ts.max(), tz="UTC")],
            "caption": [f"{words[0]} {words[1]} {words[2]} wait for the end"],
            "hashtags": [[f"#{words[3]}"]],
            "visual_embedding": [visual],
        }
    )
    encoder = text_encoder(loop.settings.retrieval.text_encoder)
    content = embed_videos(video, encoder, pd.Timestamp.now().date())
    assert content_text(video["caption"][0], video["hashtags"][0]).endswith(words[3])
    assert not ret.index.contains("v-brand-new")
    assert ret.add_videos(video, content) == 1
    fan = list(_topic_ids(ret, topic)[-ret.model.cfg.history_len :])
    ids, _ = ret.retrieve(ret.user_vector(None, fan), 50)
    assert "v-brand-new" in set(ids)
