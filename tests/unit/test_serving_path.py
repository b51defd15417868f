"""The serving path's stages on the plain class: filters, re-ranking, exploration, arms,
hot swaps; and the feedback checks. Real XGBoost models, in-memory users."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from feature_repo.columns import AFFINITY_COLUMNS, USER_COLUMNS
from features.batch import FEATURE_DEFAULTS
from features.cross import MODEL_FEATURES
from ingest.served import read_feedback
from models.ranker import XGBoostRanker
from serving.exploration import ExplorationPolicy, slate_propensities
from serving.feedback import (
    Event,
    FeedbackRejected,
    ServedList,
    event_key,
    feedback_rows,
    write_feedback,
)
from serving.pipeline import (
    ITEM_FEATURES,
    USER_FEATURES,
    ItemTable,
    Recommender,
    RerankConfig,
    UserState,
)
from serving.served_state import MemoryLists

pytestmark = pytest.mark.unit
N = 60


def _booster(seed: int, column: str) -> xgb.Booster:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.random((600, len(MODEL_FEATURES))), columns=list(MODEL_FEATURES))
    y = (x[column] + 0.1 * rng.random(600) > 0.5).astype(int)
    return (
        xgb.XGBClassifier(n_estimators=15, max_depth=3).fit(x.astype(np.float32), y).get_booster()
    )


@pytest.fixture(scope="module")
def champion() -> XGBoostRanker:
    return XGBoostRanker(_booster(0, "x_topic_affinity"), "ranker", "1")


@pytest.fixture(scope="module")
def challenger() -> XGBoostRanker:
    return XGBoostRanker(_booster(1, "v_like_rate_7d"), "ranker", "2")


def make_items(fresh: tuple[int, ...] = (), old: tuple[int, ...] = ()) -> ItemTable:
    rng = np.random.default_rng(2)
    cols: dict[str, list[float | None]] = {c: list(rng.random(N)) for c in ITEM_FEATURES}
    cols["v_topic_slot"] = [float(i % 4) for i in range(N)]
    cols["v_imp_7d"] = [float(i) for i in range(N)]
    cols["v_age_hours"] = [200.0 + i for i in range(N)]
    for i in fresh:
        cols["v_age_hours"][i] = 2.0
    for i in old:
        cols["v_age_hours"][i] = 5000.0
    return ItemTable.from_columns(
        [f"v{i}" for i in range(N)], cols, [f"c{i % 6}" for i in range(N)]
    )


def user(topic: int) -> UserState:
    u = np.array([FEATURE_DEFAULTS[c] for c in USER_FEATURES], dtype=np.float32)
    aff = np.full(len(AFFINITY_COLUMNS), 0.01, np.float32)
    aff[topic] = 0.9
    u[len(USER_COLUMNS) :] = aff
    return UserState(u, history=["v5"])


def recommender(champion, items=None, **rerank) -> Recommender:
    users = {"fan": user(2), "other": user(1)}
    cfg = RerankConfig(**{"diversity": 0.0, "exploration_position": None, **rerank})
    return Recommender(champion, items or make_items(), users.get, n_candidates=30, rerank=cfg)


def test_the_next_scroll_does_not_repeat_and_a_dry_pool_repeats_rather_than_empties(champion):
    rec = recommender(champion)
    first = rec.recommend("fan", 5)
    second = rec.recommend("fan", 5)
    assert len(first.video_ids) == len(second.video_ids) == 5
    assert not set(first.video_ids) & set(second.video_ids)
    assert "v5" not in first.video_ids + second.video_ids  # in the user's history
    assert second.filtered["seen"] >= 5
    for _ in range(10):  # 30 candidates: the pool runs dry
        last = rec.recommend("fan", 5)
    assert len(last.video_ids) == 5 and last.filtered.get("repeated", 0) > 0


def test_blocked_creators_excluded_and_retired_videos_are_filtered(champion):
    rec = recommender(champion, make_items(old=(40, 41, 42)), max_age_hours=1000.0)
    out = rec.recommend("other", 10, exclude=["v58", "v59"], blocked_creators=["c0", "c1"])
    creators = {f"c{int(v[1:]) % 6}" for v in out.video_ids}
    assert not creators & {"c0", "c1"}
    assert not set(out.video_ids) & {"v58", "v59", "v40", "v41", "v42"}
    assert out.filtered["blocked_creator"] > 0 and out.filtered["unavailable"] > 0


def test_diversity_spreads_creators_and_topics(champion):
    plain = recommender(champion).recommend("fan", 6)
    diverse = recommender(champion, diversity=0.8).recommend("fan", 6)
    creators = lambda out: len({int(v[1:]) % 6 for v in out.video_ids})  # noqa: E731
    assert creators(diverse) > creators(plain)
    assert plain.scores == sorted(plain.scores, reverse=True)  # no diversity: score order


def test_a_fresh_upload_gets_the_exploration_slot(champion):
    items = make_items(fresh=(33,))
    out = recommender(champion, items, exploration_position=2).recommend("other", 6)
    assert out.video_ids[2] == "v33"
    off = recommender(champion, make_items(fresh=(33,))).recommend("other", 6)
    assert "v33" not in off.video_ids[:3]


def test_explain_names_the_slot_of_each_item_and_costs_nothing_without_it(champion):
    """Issue 20, item 17: a feed whose scores are not in order explains itself."""
    rec = recommender(champion, make_items(fresh=(33,)), diversity=0.8, exploration_position=2)
    assert rec.recommend("other", 6).why is None  # the default path computes none of it
    out = rec.recommend("fan", 6, explain=True)
    assert out.why is not None and len(out.why) == 6
    slots = [w.slot for w in out.why]
    assert out.video_ids[2] == "v33" and slots[2] == "exploration"
    assert slots[0] == "score" and "diversity" in slots  # MMR lifted some above others
    for pos, (w, score) in enumerate(zip(out.why, out.scores, strict=True)):
        assert w.source == "popular" or w.source == "fresh"  # no retriever: the pool
        assert w.retrieval_score is None and w.value == pytest.approx(score)
        assert set(w.heads) == set(champion.heads.heads)
        later = [
            s for s, x in zip(out.scores[pos:], slots[pos:], strict=True) if x != "exploration"
        ]
        if w.slot == "diversity":
            assert score < max(later)
        if w.slot == "score":
            assert score >= max(later)
    assert out.why[2].source == "fresh"


def test_exploration_draws_the_feed_with_exact_propensities_and_replays_by_request_id(champion):
    """Issue 19: with a request id the feed is drawn from the re-ranked list, and each
    served video carries the probability the policy gave it in its slot."""
    policy = ExplorationPolicy("epsilon_greedy", epsilon=1.0, top_m=4)
    # the ranked list is prefix-stable: the deterministic feed of k + M - 1 is its head
    ranked = recommender(champion, diversity=0.5).recommend("fan", 6 + 3).video_ids
    feeds = []
    for request_id in ("r1", "r1", "r2", "r3", "r4"):
        rec = recommender(champion, diversity=0.5, exploration=policy)
        out = rec.recommend("fan", 6, request_id=request_id)
        assert set(out.video_ids) <= set(ranked) and len(out.video_ids) == 6
        assert out.propensities == [0.25] * 6  # eps = 1: uniform over a window of 4
        np.testing.assert_allclose(
            out.propensities, slate_propensities(policy, ranked, out.video_ids)
        )
        feeds.append(out.video_ids)
    assert feeds[0] == feeds[1]  # the same request id replays the same feed
    assert len({tuple(f) for f in feeds}) > 2
    plain = recommender(champion, diversity=0.5, exploration=policy).recommend("fan", 6)
    assert plain.video_ids == ranked[:6] and plain.propensities == [1.0] * 6  # no id: as ranked


def test_the_default_exploration_is_small_and_explain_names_the_drawn_slots(champion):
    default = RerankConfig().exploration
    assert default.kind == "epsilon_greedy" and 0 < default.epsilon <= 0.1
    policy = ExplorationPolicy("epsilon_greedy", epsilon=0.6, top_m=5)
    ranked = recommender(champion).recommend("fan", 8 + 4).video_ids
    drawn = 0
    for i in range(8):
        out = recommender(champion, exploration=policy).recommend(
            "fan", 8, explain=True, request_id=f"req-{i}"
        )
        assert out.why is not None
        # not the best remaining item of the ranked list: drawn, and said so
        for pos, (w, v) in enumerate(zip(out.why, out.video_ids, strict=True)):
            best = next(x for x in ranked if x not in out.video_ids[:pos])
            assert (w.slot == "exploration") == (v != best)
            drawn += v != best
            p = out.propensities[pos]
            assert p == pytest.approx(0.4 + 0.6 / 5 if v == best else 0.6 / 5)
    assert drawn > 0


def test_the_served_features_are_the_rows_that_were_scored(champion):
    rec = recommender(champion)
    out = rec.recommend("fan", 4)
    rows = np.array([rec.items.index[v] for v in out.video_ids])
    expected = rec.feature_matrix(user(2).features, rows)
    np.testing.assert_allclose(out.features, expected)
    scores = rec.model.predict(out.features)
    np.testing.assert_allclose(out.scores, scores, rtol=1e-6)


def test_arms_shadow_and_hot_swap(champion, challenger):
    rec = recommender(champion)
    with pytest.raises(ValueError, match="no model for arm"):
        rec.recommend("fan", 3, arm="challenger")
    rec.swap_model(challenger, "challenger")
    a = rec.rank("fan", ["v1", "v2", "v3"], arm="challenger")
    assert a.arm == "challenger" and a.model_version == "2"
    shadow = rec.rank("fan", ["v1", "v2", "v3"], shadow=True)
    assert shadow.arm == "champion" and shadow.shadow_scores is not None
    by_challenger = dict(zip(a.video_ids, a.scores, strict=True))
    assert shadow.shadow_scores == pytest.approx([by_challenger[v] for v in shadow.video_ids])
    rec.swap_model(challenger, "champion")  # a promotion: the next request uses it
    assert rec.rank("fan", ["v1"]).model_version == "2"
    with pytest.raises(ValueError, match="unknown arm"):
        rec.swap_model(champion, "blue")


def test_a_reloaded_item_table_keeps_uploads_made_since(champion):
    rec = recommender(champion)
    rec.items.append_defaults(["new-1"], ["c9"])
    fresh_table = make_items()
    assert rec.swap_items(fresh_table) == 1
    assert "new-1" in rec.items.index and rec.items is fresh_table
    assert rec.items.creator_ids[rec.items.index["new-1"]] == "c9"
    assert rec.rank("fan", ["new-1", "v1"]).unknown_video_ids == []
    # creator codes follow: a new creator gets a new code, a known one keeps its own
    items = rec.items
    items.append_defaults(["new-2", "new-3"], ["c-new", "c1"])
    codes = items.creator_codes[[items.index[v] for v in ("new-1", "new-2", "new-3", "v1")]]
    assert codes[0] == items.creator_index["c9"] and codes[1] == items.creator_index["c-new"]
    assert codes[2] == codes[3] == items.creator_index["c1"]
    assert len(set(items.creator_index.values())) == len(items.creator_index)


# -- feedback -------------------------------------------------------------------------------
T0 = datetime(2025, 7, 1, 12, tzinfo=UTC)


@pytest.fixture
def registry() -> MemoryLists:
    reg = MemoryLists(capacity=2)
    reg.add(
        ServedList(
            "r1",
            T0,
            "u1",
            "stories",
            "challenger",
            "7",
            {"v1": 0, "v2": 1},
            {"v1": 9.0, "v2": 20.0},
        )
    )
    return reg


def test_feedback_becomes_impression_rows_from_what_was_served(registry, tmp_path):
    events = [
        Event(
            request_id="r1",
            video_id="v2",
            watch_time_s=3.5,
            completed=True,
            ts=T0 + timedelta(seconds=5),
        ),
        Event(
            request_id="r1", video_id="v1", watch_time_s=9.0, liked=True, ts=T0 + timedelta(days=1)
        ),  # the next day
    ]
    rows = feedback_rows(events, registry)
    assert rows["position"].tolist() == [1, 0] and rows["surface"].eq("stories").all()
    assert rows["arm"].eq("challenger").all() and rows["model_version"].eq("7").all()
    assert rows["user_id"].eq("u1").all() and rows["event_id"].is_unique
    paths = write_feedback(tmp_path, rows)
    assert len(paths) == 2  # one part per UTC day
    back = read_feedback(tmp_path)
    assert len(back) == 2 and set(back["video_id"]) == {"v1", "v2"}
    assert len(read_feedback(tmp_path, start=(T0 + timedelta(days=1)).date())) == 1


def test_bad_feedback_is_rejected_whole_with_every_problem(registry, tmp_path):
    events = [
        Event(request_id="r1", video_id="v1", watch_time_s=1.0, ts=T0 + timedelta(seconds=1)),
        Event(request_id="nope", video_id="v1", watch_time_s=1.0),
        Event(request_id="r1", video_id="v9", watch_time_s=1.0),
        Event(request_id="r1", video_id="v2", watch_time_s=1.0, ts=T0 - timedelta(hours=1)),
    ]
    with pytest.raises(FeedbackRejected) as err:
        feedback_rows(events, registry)
    text = str(err.value)
    assert "unknown request_id: nope" in text and "'v9' was not served" in text
    assert "before the request was served" in text and len(err.value.problems) == 3
    assert read_feedback(tmp_path).empty


def test_contradictory_feedback_is_rejected_and_events_have_a_stable_key(registry):
    both = Event(request_id="r1", video_id="v1", watch_time_s=9.0, completed=True, skipped=True)
    with pytest.raises(FeedbackRejected) as err:
        feedback_rows([Event(request_id="r1", video_id="v2", watch_time_s=1.0), both], registry)
    assert err.value.problems == ["events[1]: contradictory: completed and skipped in one event"]
    liked = Event(request_id="r1", video_id="v1", watch_time_s=2.0, liked=True)
    # a retry (re-measured, re-timed) is the same event; another action is another event
    later = liked.model_copy(update={"watch_time_s": 2.5, "ts": T0 + timedelta(seconds=9)})
    assert event_key(liked) == event_key(later) == "r1\tv1\tliked"
    assert event_key(liked.model_copy(update={"shared": True})) == "r1\tv1\tliked+shared"
    assert event_key(Event(request_id="r1", video_id="v1", watch_time_s=1.0)) == "r1\tv1\tview"


def test_the_registry_forgets_the_oldest_lists(registry):
    for rid in ("r2", "r3"):
        registry.add(ServedList(rid, T0, "u", "spotlight", "champion", "1", {"v": 0}, {}))
    assert registry.get("r1") is None and registry.get("r3") is not None


class CountingStore:
    """A stand-in for Feast's online read that counts reads and can change its answer."""

    def __init__(self) -> None:
        self.reads = 0
        self.rate = 0.5

    def get_online_features(self, features, entity_rows):
        from feature_repo.columns import SEQUENCE_COLUMNS, USER_CREATOR_COLUMNS
        from serving.pipeline import USER_FEATURES

        self.reads += 1
        known = entity_rows[0]["user_id"] != "nobody"
        values = {c: [self.rate if known else None] for c in USER_FEATURES}
        values["hist_video_ids"] = [["v1"] if known else None]
        values.update({c: [None] for c in (*USER_CREATOR_COLUMNS, *SEQUENCE_COLUMNS)})

        class Response:
            def to_dict(self) -> dict:
                return values

        return Response()


def test_user_states_are_read_once_per_materialization():
    from serving.loader import FeastUserReader
    from serving.pipeline import USER_FEATURES

    store = CountingStore()
    reader = FeastUserReader(store, cache_size=1)
    first = reader("u1")
    assert reader("u1") is first and store.reads == 1  # the second scroll is served from memory
    assert reader("nobody") is None and reader("nobody") is None and store.reads == 2
    reader("u1")
    assert store.reads == 3  # the cache holds one user: u1 was evicted by "nobody"
    store.rate = 0.9  # a new materialization lands ...
    reader.clear()  # ... and the feature watcher clears the cache
    assert reader("u1").features[USER_FEATURES.index(USER_FEATURES[0])] == pytest.approx(0.9)
    uncached = FeastUserReader(store, cache_size=0)
    uncached("u1"), uncached("u1")
    assert store.reads == 6
