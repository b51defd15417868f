"""Behavioural checks of the trained champion: consistency, invariance, direction, minimum
functionality. They use the model the tiny loop trained and promoted, loaded the way the
service loads it, so they test the model people would get.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.cross import MODEL_FEATURES, model_matrix

pytestmark = [pytest.mark.model, pytest.mark.integration]


@pytest.fixture(scope="module")
def model_and_rows(loop):
    import mlflow

    from models.registry import configure_mlflow

    s = loop.settings
    configure_mlflow(s)
    model = mlflow.xgboost.load_model(f"models:/{s.ranker_model_name}@champion")
    from datetime import date

    from features.store import feature_store
    from models.retrieval_features import with_retrieval_features

    day_dir = sorted((s.home / "training").iterdir())[0]
    rows = pd.read_parquet(day_dir / "holdout.parquet").sample(400, random_state=0)
    (rows,), version, _ = with_retrieval_features(
        s, feature_store(s), [rows.reset_index(drop=True)], date.fromisoformat(day_dir.name)
    )
    assert version is not None, "the loop registered no retrieval champion"
    return model, rows


@pytest.fixture(scope="module")
def recommender(loop):
    from serving.loader import build_recommender

    return build_recommender(loop.settings)


@pytest.fixture(scope="module")
def checks(model_and_rows):
    """The same checks the gate runs, on the champion the service loads."""
    from training.checks import behavioural_checks

    model, rows = model_and_rows
    return behavioural_checks(lambda df: score(model, df), rows)


def score(model, df: pd.DataFrame) -> np.ndarray:
    from training.ranker import predict

    return predict(model, df)


def test_serving_scores_with_exactly_the_evaluated_model(model_and_rows, recommender):
    """The served booster (raw inplace_predict, heads combined with the weights stored in
    the model) gives the offline value scores."""
    model, rows = model_and_rows
    x = model_matrix(rows).to_numpy()
    rm = recommender.model
    served = rm.predict(x)
    np.testing.assert_allclose(served, score(model, rows), rtol=1e-5, atol=1e-6)
    assert rm.features == MODEL_FEATURES
    assert rm.heads.heads == ("completion", "watch", "like", "share", "skip")


def test_invariance_scores_do_not_depend_on_candidate_order(recommender):
    videos = recommender.items.video_ids[:50].tolist()
    user = "u000001"
    first = recommender.rank(user, videos)
    forward = dict(zip(first.video_ids, first.scores, strict=True))
    backward = recommender.rank(user, videos[::-1])
    for v, s in zip(backward.video_ids, backward.scores, strict=True):
        assert s == pytest.approx(forward[v], rel=1e-6)


def test_direction_more_affinity_to_the_topic_raises_the_score(checks):
    assert checks["direction"] is None, checks["direction"]


def test_minimum_functionality_a_one_topic_user_gets_that_topic_on_top(checks):
    assert checks["minimum_functionality"] is None, checks["minimum_functionality"]


def test_invariance_scores_ignore_candidate_order_and_position(checks):
    assert checks["invariance"] is None, checks["invariance"]
