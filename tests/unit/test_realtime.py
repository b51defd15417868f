"""Real-time feedback: engagement events posted to ``/feedback`` reach the user's next feed.

The events accepted by :func:`serving.feedback.accept_feedback` are kept in the served
state's recent events, encoded as the sequence features encode them; the
:class:`~serving.pipeline.Recommender` merges them into the user's state before retrieval.
A real two-tower model over three topics tells whether the feed moved toward the topic the
user just engaged with (the truth the data knows: each video's topic)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from features.sequence import COMPLETED, LIKED, RATIO_SHIFT, SHARED, SKIPPED
from ingest.served import read_feedback
from models.ranker import XGBoostRanker
from serving.feedback import (
    Event,
    FeedbackRejected,
    ServedList,
    accept_feedback,
    engagement_events,
    feedback_rows,
)
from serving.pipeline import Recommender, RerankConfig, UserState, with_recent_events
from serving.served_state import MemoryClaims, MemoryEvents, MemoryLists, MemoryRecent
from tests.unit.test_serving_path import _booster, user
from tests.unit.test_serving_retrieval import _items_for
from tests.unit.test_two_tower import _trained_retriever

pytestmark = pytest.mark.unit
T0 = datetime(2025, 7, 1, 12, tzinfo=UTC)


# -- merging recent events into a user's state -------------------------------------------------
def test_recent_events_are_appended_and_their_positives_prepended_without_duplicates():
    online = UserState(
        np.zeros(3, np.float32),
        history=["h1", "h2", "h3"],
        events=(["h3", "s1", "h1"], [COMPLETED, SKIPPED, LIKED], [10.0, 20.0, 30.0]),
    )
    recent = [
        ("h1", LIKED, 30.0),  # already in the online sequence (materialized since)
        ("old", COMPLETED, 25.0),  # older than the online sequence's newest: in the store
        ("n1", COMPLETED, 40.0),
        ("n2", SKIPPED, 50.0),  # a skip: an event, not a positive
        ("h2", SHARED, 60.0),  # engaged again: moves to the front of the history
        ("n3", LIKED | COMPLETED, 70.0),
    ]
    merged = with_recent_events(online, recent, np.ones(3, np.float32), history_len=4, seq_len=5)
    assert merged.events == (
        ["h1", "n1", "n2", "h2", "n3"],  # the newest 5, oldest first
        [LIKED, COMPLETED, SKIPPED, SHARED, LIKED | COMPLETED],
        [30.0, 40.0, 50.0, 60.0, 70.0],
    )
    assert merged.history == ["n3", "h2", "n1", "h1"]  # newest first, distinct, 4 at most
    assert online.history == ["h1", "h2", "h3"] and len(online.events[0]) == 3  # not mutated
    np.testing.assert_array_equal(merged.features, online.features)
    # nothing newer than the online state: the very same state
    assert with_recent_events(online, recent[:2], np.ones(3), history_len=4, seq_len=5) is online
    # an unknown user's first engagements make a state with the default features
    new = with_recent_events(None, [("n1", COMPLETED, 1.0)], np.ones(3, np.float32), 4, 5)
    assert new is not None and new.history == ["n1"] and new.events == (["n1"], [COMPLETED], [1.0])
    np.testing.assert_array_equal(new.features, np.ones(3))


# -- /feedback appends the accepted events -------------------------------------------------------
@pytest.fixture
def lists() -> MemoryLists:
    reg = MemoryLists()
    positions = {"v1": 0, "v2": 1, "v3": 2}
    reg.add(
        ServedList(
            "r1",
            T0,
            "u1",
            "stories",
            "champion",
            "7",
            positions,
            {"v1": 10.0, "v2": 20.0, "v3": 40.0},
        )
    )
    return reg


def test_accepted_feedback_is_appended_as_sequence_events(lists, tmp_path: Path):
    events = MemoryEvents()
    batch = [
        Event(
            request_id="r1",
            video_id="v1",
            watch_time_s=10.0,
            completed=True,
            ts=T0 + timedelta(seconds=5),
        ),
        Event(
            request_id="r1",
            video_id="v2",
            watch_time_s=9.0,
            liked=True,
            ts=T0 + timedelta(seconds=30),
        ),
        Event(
            request_id="r1",
            video_id="v3",
            watch_time_s=2.0,
            skipped=True,
            ts=T0 + timedelta(seconds=12),
        ),
    ]
    claims = MemoryClaims()
    assert accept_feedback(batch, lists, claims, tmp_path, events) == (3, 0)
    t0 = T0.timestamp()
    # action bits + the watch-ratio bucket (ratio 1.0 -> 4, 0.45 -> 2, 0.05 -> 0), in time order
    assert events.get("u1") == [
        ("v1", COMPLETED | 4 << RATIO_SHIFT, t0 + 5),
        ("v3", SKIPPED, t0 + 12),
        ("v2", LIKED | 2 << RATIO_SHIFT, t0 + 30),
    ]
    assert len(read_feedback(tmp_path)) == 3
    # a retry is a duplicate: neither written nor appended again; a share is a new event
    share = Event(
        request_id="r1",
        video_id="v2",
        watch_time_s=9.0,
        liked=True,
        shared=True,
        ts=T0 + timedelta(seconds=40),
    )
    assert accept_feedback([batch[1], share], lists, claims, tmp_path, events) == (1, 1)
    assert [e[0] for e in events.get("u1")] == ["v1", "v3", "v2", "v2"]
    assert events.get("u1")[-1] == ("v2", LIKED | SHARED | 2 << RATIO_SHIFT, t0 + 40)
    assert len(read_feedback(tmp_path)) == 4


def test_rejected_or_unwritten_feedback_appends_nothing(lists, tmp_path: Path):
    events, claims = MemoryEvents(), MemoryClaims()
    good = Event(request_id="r1", video_id="v1", watch_time_s=1.0, completed=True)
    bad = Event(request_id="r1", video_id="v9", watch_time_s=1.0)
    with pytest.raises(FeedbackRejected):
        accept_feedback([good, bad], lists, claims, tmp_path, events)
    assert events.get("u1") == []
    blocked = tmp_path / "lake"
    blocked.write_text("a file where the lake's directory should be")
    with pytest.raises(OSError):
        accept_feedback([good], lists, claims, blocked, events)
    assert events.get("u1") == []
    assert accept_feedback([good], lists, claims, tmp_path, events) == (1, 0)  # released
    assert len(events.get("u1")) == 1


def test_engagement_events_group_rows_by_user(lists):
    rows = feedback_rows(
        [Event(request_id="r1", video_id="v3", watch_time_s=40.0, shared=True, ts=T0)], lists
    )
    assert engagement_events(rows) == {"u1": [("v3", SHARED | 4 << RATIO_SHIFT, T0.timestamp())]}


# -- the next feed, through the real Recommender ---------------------------------------------------
@pytest.fixture(scope="module")
def retriever():
    return _trained_retriever()


def _feed(retriever, events: MemoryEvents, user_id: str, request_id: str) -> list[str]:
    """A feed from a fresh recommender (nothing served before: the "seen" filter is the same
    for every call) that reads recent events from ``events``, as every worker does."""
    ids = [str(v) for v in retriever.catalog.video_ids]
    topic_a = [v for v, t in zip(ids, retriever.catalog.topic, strict=True) if t == 1]
    fan, other = user(2), user(1)
    fan.history, other.history = topic_a[:3], topic_a[3:8]  # positives of one topic
    rec = Recommender(
        XGBoostRanker(_booster(0, "x_retrieval_score"), "ranker", "1"),
        _items_for(ids),
        {"fan": fan, "other": other}.get,
        n_candidates=25,
        retriever=retriever,
        rerank=RerankConfig(diversity=0.0, exploration_position=None),
        seen=MemoryRecent(),
        events=events,
    )
    return rec.recommend(user_id, 8, request_id=request_id).video_ids


def test_three_engagements_with_a_rare_topic_bring_more_of_it_into_the_next_feed(
    retriever, tmp_path: Path
):
    topic_of = dict(
        zip(map(str, retriever.catalog.video_ids), retriever.catalog.topic.tolist(), strict=True)
    )
    events = MemoryEvents()
    before = {u: _feed(retriever, events, u, "req-1") for u in ("fan", "other")}
    rare = [v for v, t in topic_of.items() if t == 3]
    assert Counter(topic_of[v] for v in before["fan"])[3] <= 1  # a topic the fan rarely gets

    # the fan is shown three videos of it (a /rank list) and engages with each
    lists = MemoryLists()
    shown = rare[:3]
    lists.add(
        ServedList(
            "r-rank",
            T0,
            "fan",
            "spotlight",
            "champion",
            "1",
            {v: i for i, v in enumerate(shown)},
            dict.fromkeys(shown, 20.0),
        )
    )
    batch = [
        Event(
            request_id="r-rank",
            video_id=v,
            watch_time_s=20.0,
            completed=True,
            liked=i == 0,
            ts=T0 + timedelta(seconds=10 * (i + 1)),
        )
        for i, v in enumerate(shown)
    ]
    assert accept_feedback(batch, lists, MemoryClaims(), tmp_path, events) == (3, 0)

    after = {u: _feed(retriever, events, u, "req-1") for u in ("fan", "other")}
    more = Counter(topic_of[v] for v in after["fan"])[3]
    assert more >= Counter(topic_of[v] for v in before["fan"])[3] + 3, (before, after)
    assert not set(shown) & set(after["fan"])  # what they engaged with is not served again
    assert after["other"] == before["other"]  # no new events: the same feed, same draw


def test_a_sequence_champion_reads_the_recent_events_after_the_online_ones():
    from models.retriever import Retriever
    from tests.unit.test_sequence import _catalog, _events, _fit_sequence, successor_log

    cat = _catalog(40)
    result = _fit_sequence(cat, successor_log(cat, 100, seed=8), epochs=2)
    ret = Retriever.build(result.model, cat, np.arange(len(cat)), exact_below=1000)
    assert ret.seq_len == 8
    online = _events(cat, np.random.default_rng(3), 7)
    state = user(2)
    state.events = online
    events = MemoryEvents()
    last = online[2][-1]
    events.add("u", [("v0001", COMPLETED, last + 60.0), ("v0002", SKIPPED, last + 90.0)])
    rec = Recommender(
        XGBoostRanker(_booster(0, "x_retrieval_score"), "ranker", "1"),
        _items_for([str(v) for v in cat.video_ids]),
        {"u": state}.get,
        n_candidates=10,
        retriever=ret,
        rerank=RerankConfig(diversity=0.0, exploration_position=None),
        events=events,
    )
    merged = rec.user_state("u")
    assert merged is not None and merged.events is not None
    assert merged.events[0] == [*online[0][-6:], "v0001", "v0002"]  # the model's newest 8
    assert merged.events[1][-2:] == [COMPLETED, SKIPPED]
    assert merged.history[0] == "v0001" and "v0002" not in merged.history  # a skip: no positive
    vec = rec.user_vector(merged)
    np.testing.assert_array_equal(vec, ret.user_vector(None, [], merged.events))
    assert not np.allclose(vec, ret.user_vector(None, [], online))
    assert rec.users("u") is state and state.events == online  # the online state is untouched
    assert len(rec.recommend("u", 5).video_ids) == 5


def test_the_sessions_short_term_interest_moves_the_retrieval_vector(retriever):
    """The recent positives' mean item vector is blended in with ``realtime_weight``: the
    vector turns toward them as the weight grows, and stays put at 0 or without them."""
    ids = [str(v) for v in retriever.catalog.video_ids]
    rows = np.flatnonzero(retriever.catalog.topic == 3)[:3]
    recent = tuple(ids[r] for r in rows)
    short = retriever.item_vectors[rows].mean(axis=0)

    def vector(weight: float, positives: tuple[str, ...]) -> np.ndarray:
        rec = Recommender(
            XGBoostRanker(_booster(0, "x_retrieval_score"), "ranker", "1"),
            _items_for(ids),
            {}.get,
            retriever=retriever,
            realtime_weight=weight,
        )
        state = dataclasses.replace(user(2), history=ids[:3], recent_positives=positives)
        return np.asarray(rec.user_vector(state))

    def cosine(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    base = vector(0.0, recent)
    np.testing.assert_array_equal(vector(0.35, ()), base)  # nothing recent: unchanged
    turned = [cosine(vector(w, recent), short) for w in (0.0, 0.2, 0.35, 0.6)]
    assert turned == sorted(turned) and turned[-1] > turned[0] + 0.1, turned
    # the blend keeps the user vector's length scale (dot-product scores stay comparable)
    assert np.linalg.norm(vector(0.35, recent)) <= np.linalg.norm(base) * 1.0001
