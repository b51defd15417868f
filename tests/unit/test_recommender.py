"""The serving class on its own: a real XGBoost model, an in-memory user store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from feature_repo.columns import AFFINITY_COLUMNS, USER_COLUMNS, USER_CREATOR_COLUMNS
from features.batch import FEATURE_DEFAULTS
from features.cross import MODEL_FEATURES, add_creator_affinity, creator_affinity, model_matrix
from models.objectives import ValueHeads
from models.ranker import XGBoostRanker
from serving.pipeline import (
    ITEM_FEATURES,
    USER_FEATURES,
    ItemTable,
    Recommender,
    UserState,
)

pytestmark = pytest.mark.unit
N_VIDEOS = 40


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.random((500, len(MODEL_FEATURES))), columns=list(MODEL_FEATURES))
    y = (x["x_topic_affinity"] + 0.1 * rng.random(500) > 0.5).astype(int)
    model = xgb.XGBClassifier(n_estimators=20, max_depth=3).fit(x.astype(np.float32), y)
    return model.get_booster()


@pytest.fixture
def items() -> ItemTable:
    rng = np.random.default_rng(1)
    cols: dict[str, list[float | None]] = {c: list(rng.random(N_VIDEOS)) for c in ITEM_FEATURES}
    cols["v_topic_slot"] = [float(i % 4) for i in range(N_VIDEOS)]
    cols["v_imp_7d"] = [float(i) for i in range(N_VIDEOS)]
    cols["c_like_rate_28d"][0] = None  # a missing value
    creators = [f"c{i % 5}" for i in range(N_VIDEOS)]
    return ItemTable.from_columns([f"v{i}" for i in range(N_VIDEOS)], cols, creators)


def user_vector(topic: int) -> np.ndarray:
    u = np.array([FEATURE_DEFAULTS[c] for c in USER_FEATURES], dtype=np.float32)
    aff = np.full(len(AFFINITY_COLUMNS), 0.01, np.float32)
    aff[topic] = 0.9
    u[len(USER_COLUMNS) :] = aff
    return u


@pytest.fixture
def rec(booster, items) -> Recommender:
    users = {"fan-of-2": UserState(user_vector(2), [])}
    return Recommender(XGBoostRanker(booster, "m", "7"), items, users.get, n_candidates=20)


def test_missing_item_values_get_defaults_and_are_flagged(items):
    assert items.missing[0] and not items.missing[1:].any()
    assert items.features[0, ITEM_FEATURES.index("c_like_rate_28d")] == pytest.approx(
        FEATURE_DEFAULTS["c_like_rate_28d"]
    )


@pytest.mark.parametrize("surface", ["spotlight", "stories"])
def test_serving_matrix_equals_the_training_matrix(rec, items, surface):
    """Training (pandas) and serving (numpy) must build identical model inputs."""
    user = user_vector(2)
    history = (["c1", "c3"], [4.0, 1.0], [3.0, 0.0])
    rows = np.arange(N_VIDEOS)
    creator = creator_affinity(*history, items.creator_ids[rows])
    served = rec.feature_matrix(user, rows, creator=creator, surface=surface)
    frame = pd.DataFrame(items.features, columns=list(ITEM_FEATURES))
    for c, v in zip(USER_FEATURES, user, strict=True):
        frame[c] = v
    frame["x_retrieval_score"] = np.nan  # no retriever: missing, as XGBoost expects
    frame["x_content_similarity"] = np.nan
    frame["creator_id"] = items.creator_ids
    for c, v in zip(USER_CREATOR_COLUMNS, history, strict=True):
        frame[c] = [v] * len(frame)
    frame["surface"] = surface
    frame["position"] = 7  # logged position: training only, served rows sit at position 0
    frame = add_creator_affinity(frame)
    np.testing.assert_allclose(served, model_matrix(frame).to_numpy(), rtol=1e-6)
    assert set(served[:, MODEL_FEATURES.index("x_creator_imp_28d")]) == {0.0, 1.0, 4.0}


def test_a_multi_head_model_is_served_by_its_weighted_value(items):
    """The served score is the weighted sum of the heads stored with the model."""
    rng = np.random.default_rng(3)
    x = rng.random((300, len(MODEL_FEATURES))).astype(np.float32)
    y = np.column_stack([x[:, 0] > 0.5, x[:, 1] > 0.5]).astype(float)
    model = xgb.XGBRegressor(n_estimators=10, max_depth=2, objective="reg:logistic").fit(x, y)
    heads = ValueHeads.from_weights({"completion": 1.0, "skip": -2.0})
    heads.store_in(model.get_booster())
    reloaded = ValueHeads.of_booster(model.get_booster())
    assert reloaded.heads == ("completion", "skip") and reloaded.weights.tolist() == [1.0, -2.0]
    users = {"u": UserState(user_vector(1), [])}
    rec = Recommender(
        XGBoostRanker(model.get_booster(), "m", "1", heads=reloaded), items, users.get
    )
    out = rec.rank("u", ["v1", "v2", "v3"])
    mat = rec.feature_matrix(user_vector(1), np.array([items.index[v] for v in out.video_ids]))
    per_head = model.get_booster().inplace_predict(mat)
    np.testing.assert_allclose(out.scores, per_head[:, 0] - 2.0 * per_head[:, 1], rtol=1e-5)
    with pytest.raises(ValueError, match="unknown objective"):
        ValueHeads.from_weights({"clicks": 1.0})


def test_rank_orders_scores_and_reports_unknown_videos(rec):
    out = rec.rank("fan-of-2", ["v1", "v2", "nope", "v6"])
    assert out.unknown_video_ids == ["nope"]
    assert sorted(out.video_ids) == ["v1", "v2", "v6"]
    assert out.scores == sorted(out.scores, reverse=True)
    assert not out.cold_start


def test_recommend_prefers_the_users_topic(rec, items):
    out = rec.recommend("fan-of-2", 5)
    slots = [
        items.features[items.index[v], ITEM_FEATURES.index("v_topic_slot")] for v in out.video_ids
    ]
    assert len(out.video_ids) == 5 and slots.count(2.0) >= 4


def test_unknown_user_gets_the_cold_start_path(rec):
    out = rec.recommend("stranger", 3)
    assert out.cold_start and len(out.video_ids) == 3
    assert rec.stats["cold_start"] == 1


def test_candidate_pool_mixes_popular_and_fresh(items):
    rows = items.popular(10, fresh_share=0.2).tolist()
    engagement = items.column("v_imp_7d") * (
        items.column("v_completion_rate_7d") + items.column("v_like_rate_7d")
    )
    top = np.argsort(-engagement)[:8].tolist()
    freshest = [i for i in np.argsort(items.column("v_age_hours")).tolist() if i not in top][:2]
    assert rows == top + freshest


def test_new_videos_get_default_rows_and_are_flagged(rec, items):
    n = len(items.video_ids)
    assert items.append_defaults(["fresh-1", "fresh-2", "v1"]) == 2
    assert len(items.video_ids) == n + 2 and items.missing[-2:].all()
    assert items.index["fresh-2"] == n + 1
    out = rec.rank("fan-of-2", ["fresh-1", "v3"])
    assert sorted(out.video_ids) == ["fresh-1", "v3"] and not out.unknown_video_ids
