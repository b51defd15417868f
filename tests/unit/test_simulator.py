from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ingest.simulator import TOPIC_WORDS, TOPICS, generate_world
from reelrank.settings import SimulationSettings

pytestmark = pytest.mark.unit
SIM = SimulationSettings(n_users=400, n_creators=30, n_videos=800, days=5)


def test_same_seed_same_world_and_days():
    a, b = generate_world(SIM), generate_world(SIM)
    pd.testing.assert_frame_equal(
        a.videos.drop(columns="visual_embedding"), b.videos.drop(columns="visual_embedding")
    )
    pd.testing.assert_frame_equal(a.impressions(2), b.impressions(2))


def test_a_day_does_not_depend_on_which_days_were_drawn_before():
    a, b = generate_world(SIM), generate_world(SIM)
    a.impressions(0)
    a.impressions(1)
    pd.testing.assert_frame_equal(a.impressions(3), b.impressions(3))


def test_other_seed_other_world():
    a = generate_world(SIM)
    b = generate_world(SIM.model_copy(update={"seed": 8}))
    assert not a.impressions(1)["video_id"].equals(b.impressions(1)["video_id"])


def test_engagement_rates_are_plausible_for_short_video():
    imp = generate_world(SIM).impressions(1)
    rates = imp[["completed", "liked", "shared", "skipped"]].mean()
    assert 0.15 < rates["completed"] < 0.5
    assert 0.02 < rates["liked"] < 0.15
    assert 0.002 < rates["shared"] < rates["liked"]
    assert 0.15 < rates["skipped"] < 0.5
    assert (imp["watch_time_s"] <= imp["duration_s"] + 1e-9).all()
    assert not (imp["completed"] & imp["skipped"]).any()
    assert imp.groupby("request_id")["position"].apply(lambda p: sorted(p) == list(range(10))).all()


def test_oracle_utility_drives_engagement():
    w = generate_world(SIM)
    imp = w.impressions(1)
    u = w.oracle_utility(imp["user_id"], imp["video_id"], w.day(1))
    positive = (imp["completed"] | imp["liked"] | imp["shared"]).to_numpy()
    assert u[positive].mean() > u[~positive].mean() + 0.5


def test_captions_carry_topic_words():
    v = generate_world(SIM).videos
    hits = [
        any(word in cap.split() for word in TOPIC_WORDS[t])
        for cap, t in zip(v["caption"], v["topic"], strict=True)
    ]
    assert all(hits)
    assert set(v["topic"]) <= set(TOPICS)


def test_videos_appear_in_feeds_only_after_upload():
    w = generate_world(SIM)
    imp = w.impressions(2).merge(w.videos[["video_id", "upload_ts"]], on="video_id")
    assert (imp["upload_ts"] < imp["ts"]).all()


def test_topic_surge_changes_what_people_like():
    surge = generate_world(SIM.model_copy(update={"scenario": "topic_surge", "scenario_day": 3}))
    base = generate_world(SIM)
    k = TOPICS.index("dance")
    assert surge.interests_on(2)[:, k].mean() == pytest.approx(base.interests[:, k].mean())
    assert surge.interests_on(3)[:, k].mean() > base.interests[:, k].mean() + 0.3
    assert np.allclose(surge.interests_on(3).sum(axis=1), 1.0)
