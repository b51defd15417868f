from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ingest import simulator as sim_module
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
    # before the scenario day the worlds agree (version 2's slow drift included)
    assert np.array_equal(surge.interests_on(2), base.interests_on(2))
    assert surge.interests_on(3)[:, k].mean() > base.interests_on(3)[:, k].mean() + 0.3
    assert np.allclose(surge.interests_on(3).sum(axis=1), 1.0)


# -- version 1 stays available; version 2's dynamics, one test each ----------------------
V1 = SIM.model_copy(update={"version": 1})


def test_version_2_is_the_default_and_version_1_is_another_world():
    assert SimulationSettings().version == 2
    v1, v2 = generate_world(V1), generate_world(SIM)
    # the same users, catalog and hidden tastes: only the dynamics differ
    pd.testing.assert_frame_equal(v1.users, v2.users)
    assert np.array_equal(v1.interests, v2.interests)
    assert not v1.impressions(2)["completed"].equals(v2.impressions(2)["completed"])


def test_version_1_is_static_over_days():
    w = generate_world(V1)
    assert w.interests_on(4) is w.interests
    users, videos = w.users["user_id"][:50], w.videos["video_id"][:50]
    assert np.array_equal(
        w.oracle_utility(users, videos, w.day(0)), w.oracle_utility(users, videos, w.day(4))
    )


def test_v2_days_regenerate_the_same_whatever_order_they_are_asked_in():
    in_order, backwards = generate_world(SIM), generate_world(SIM)
    expected = [in_order.impressions(d) for d in range(5)]
    for d in (4, 1, 3, 0, 2):  # the user state of day d is replayed from the seeded days before
        pd.testing.assert_frame_equal(backwards.impressions(d), expected[d])


def test_v2_state_cache_is_bounded_and_replays_evicted_days():
    w = generate_world(SIM.model_copy(update={"days": 14}))
    late = w.impressions(12)
    assert len(w._states) <= sim_module.STATES_KEPT
    w.impressions(2)  # an evicted day: replayed from day 0
    pd.testing.assert_frame_equal(w.impressions(12), late)


def test_v2_session_intent_lifts_one_topic_or_creator_for_the_first_requests():
    w = generate_world(SIM)
    d = w.draw(1)
    m = SIM.impressions_per_request
    moment = sim_module._session_moment(w, 1, d.req_user, w.interests_on(1), d.u, d.v, m)
    intent = (moment.intent_topic >= 0) | (moment.intent_creator >= 0)
    assert not ((moment.intent_topic >= 0) & (moment.intent_creator >= 0)).any()
    per_request = intent[::m]
    users_with = {int(x) for x in d.u[intent]}
    assert 0.3 < len(users_with) / len(set(d.req_user.tolist())) < 0.7
    # an intent is a prefix of the user's requests of the day: once left, it never returns
    for user in users_with:
        on = per_request[d.req_user == user]
        assert on[0] and (np.diff(on.astype(int)) <= 0).all()
    # it lifts exactly the intended topic or creator by INTENT_BOOST
    none = sim_module.Moment(*(np.full(len(d.u), x) for x in (-1, -1, 0.0, 0.0)))
    only_intent = sim_module.Moment(
        moment.intent_topic, moment.intent_creator, np.zeros(len(d.u)), np.zeros(len(d.u))
    )
    users, videos = w.users["user_id"].to_numpy()[d.u], w.videos["video_id"].to_numpy()[d.v]
    lift = w.oracle_utility(users, videos, w.day(1), only_intent) - w.oracle_utility(
        users, videos, w.day(1), none
    )
    hit = (moment.intent_topic == w.video_topic[d.v]) | (
        moment.intent_creator == w.video_creator[d.v]
    )
    assert hit.sum() > 50
    assert np.allclose(lift[hit], sim_module.INTENT_BOOST)
    assert np.allclose(lift[~hit], 0.0)


def test_v2_tastes_drift_slowly_and_only_in_version_2():
    w = generate_world(SIM.model_copy(update={"days": 30}))
    start = w.interests_on(0)
    floored = (w.interests + sim_module.TASTE_FLOOR) / (w.interests + sim_module.TASTE_FLOOR).sum(
        axis=1, keepdims=True
    )
    assert np.allclose(start, floored)  # day 0: the user's own tastes
    moved = [np.abs(w.interests_on(d) - start).sum(axis=1).mean() for d in (1, 5, 25)]
    assert 0.0 < moved[0] < moved[1] < moved[2]  # a little each day, more over weeks
    assert moved[0] < 0.15 and moved[2] > 0.25
    assert np.allclose(w.interests_on(25).sum(axis=1), 1.0)
    # the drifted favourite topic is still mostly the user's own after a day
    same = (w.interests_on(1).argmax(axis=1) == start.argmax(axis=1)).mean()
    assert same > 0.9


def test_v2_boredom_lowers_utility_with_repeats_of_topic_and_creator():
    w = generate_world(SIM)
    users, videos = w.users["user_id"][:200], w.videos["video_id"][:200]
    n = len(users)

    def at(topic_seen: float, creator_seen: float) -> np.ndarray:
        moment = sim_module.Moment(
            np.full(n, -1), np.full(n, -1), np.full(n, topic_seen), np.full(n, creator_seen)
        )
        return w.oracle_utility(users, videos, w.day(1), moment)

    fresh = at(0, 0)
    assert (at(3, 0) < fresh).all() and (at(0, 3) < fresh).all()
    assert (at(0, 6) < at(0, 3)).all()
    # the day's draw counts the views before each impression, in feed order
    d = w.draw(2)
    m = SIM.impressions_per_request
    moment = sim_module._session_moment(w, 2, d.req_user, w.interests_on(2), d.u, d.v, m)
    first = (d.u[:-1] != d.u[1:]).nonzero()[0] + 1
    assert (moment.topic_seen_today[np.r_[0, first]] == 0).all()  # a user's first view
    row = int(np.argmax(moment.creator_seen_today))
    earlier = (d.u[:row] == d.u[row]) & (w.video_creator[d.v[:row]] == w.video_creator[d.v[row]])
    assert moment.creator_seen_today[row] == earlier.sum() > 0
    # what was seen yesterday still bores today, halved
    state = w.state_on(3)
    d2 = w.draw(2)
    k = len(TOPICS)
    views = np.bincount(d2.u * k + w.video_topic[d2.v], minlength=len(w.users) * k)
    assert np.allclose(
        state.topic_seen.reshape(-1),
        sim_module.EXPOSURE_KEEP * (w.state_on(2).topic_seen.reshape(-1) + views),
    )


def test_v2_bonds_grow_with_engagement():
    w = generate_world(SIM)
    d = w.draw(2)
    engaged = d.completed | d.liked | d.followed
    pair = d.u * SIM.n_creators + w.video_creator[d.v]
    before, after = w.state_on(2).engaged.get(pair), w.state_on(3).engaged.get(pair)
    assert (after[engaged] > before[engaged]).all()
    assert (after[~engaged] <= before[~engaged] + 1e-12).sum() > 0
    # the oracle lifts a bonded creator's videos: same pairs without the engagements
    users, videos = w.users["user_id"].to_numpy()[d.u], w.videos["video_id"].to_numpy()[d.v]
    with_bonds = w.oracle_utility(users[engaged], videos[engaged], w.day(3))
    state = w.state_on(3)
    w._states[3] = sim_module.UserState(
        3, state.taste_walk, state.topic_seen, state.creator_seen, sim_module.PairCounts.empty()
    )
    without = w.oracle_utility(users[engaged], videos[engaged], w.day(3))
    lift = with_bonds - without
    assert (lift > 0).all() and (lift <= sim_module.BOND_MAX).all()


def test_the_lake_records_the_simulator_version(tmp_path):
    from ingest.pipeline import ingest_simulated, world_manifest
    from reelrank.settings import get_settings

    for version in (1, 2):
        s = get_settings(
            home=tmp_path / f"v{version}",
            sim={"n_users": 40, "n_creators": 5, "n_videos": 80, "days": 3, "version": version},
        )
        ingest_simulated(s, s.sim.end_date)
        assert world_manifest(s)["version"] == version
    # a lake recorded before the setting existed holds version 1
    path = tmp_path / "v1" / "lake" / "_world.json"
    legacy = {k: v for k, v in json.loads(path.read_text()).items() if k != "version"}
    path.write_text(json.dumps(legacy))
    assert world_manifest(s.model_copy(update={"home": tmp_path / "v1"}))["version"] == 1


@pytest.mark.parametrize(
    ("version", "day", "rows", "digest"),
    [
        (1, 0, 1690, "f23053ae077dc4fd"),
        (1, 3, 1450, "16a431e972524954"),
        (2, 0, 1690, "8a056042060e9de6"),
        (2, 3, 1450, "520f6af749b932ad"),
    ],
)
def test_the_worlds_draws_are_pinned(version: int, day: int, rows: int, digest: str) -> None:
    """The seed's world is part of the contract (saved lakes, published figures): a change
    that moves any draw of either version fails here, and must say it is a new world."""
    import hashlib

    w = generate_world(
        SimulationSettings(n_users=120, n_creators=12, n_videos=240, days=4, version=version)
    )
    df = w.impressions(day)
    got = hashlib.sha256(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    assert (len(df), got.hexdigest()[:16]) == (rows, digest)
