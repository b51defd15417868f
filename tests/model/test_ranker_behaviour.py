"""Behavioural checks of the trained champion (invariance, direction, minimum functionality).

They use the model the tiny loop trained and promoted, with inputs built the way serving
builds them, so they test the model people would get.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_repo.columns import AFFINITY_COLUMNS
from features.cross import MODEL_FEATURES, model_matrix

pytestmark = [pytest.mark.model, pytest.mark.integration]


@pytest.fixture(scope="module")
def model_and_rows(loop):
    import mlflow

    from training.registry import configure_mlflow

    s = loop.settings
    configure_mlflow(s)
    model = mlflow.xgboost.load_model(f"models:/{s.ranker_model_name}@champion")
    holdout = sorted((s.home / "training").iterdir())[-1] / "holdout.parquet"
    rows = pd.read_parquet(holdout).sample(400, random_state=0).reset_index(drop=True)
    return model, rows


def score(model, df: pd.DataFrame) -> np.ndarray:
    return model.predict_proba(model_matrix(df))[:, 1]


def test_model_reads_exactly_the_declared_features(model_and_rows):
    model, _ = model_and_rows
    assert list(model.get_booster().feature_names) == list(MODEL_FEATURES)


def test_invariance_to_affinity_for_topics_the_video_is_not_about(model_and_rows):
    model, rows = model_and_rows
    other = rows.copy()
    slots = other["v_topic_slot"].astype(int).to_numpy()
    for i, col in enumerate(AFFINITY_COLUMNS):
        mask = slots != i
        other.loc[mask, col] = 1.0 - other.loc[mask, col]
    np.testing.assert_allclose(score(model, rows), score(model, other), rtol=1e-6)


def test_direction_more_affinity_to_the_topic_raises_the_score(model_and_rows):
    model, rows = model_and_rows
    low, high = rows.copy(), rows.copy()
    slots = rows["v_topic_slot"].astype(int).to_numpy()
    for i, col in enumerate(AFFINITY_COLUMNS):
        mask = slots == i
        low.loc[mask, col] = 0.01
        high.loc[mask, col] = 0.6
    assert (score(model, high) >= score(model, low) - 1e-6).mean() > 0.95
    assert score(model, high).mean() > score(model, low).mean() + 0.05


def test_minimum_functionality_a_one_topic_user_gets_that_topic_on_top(model_and_rows):
    model, rows = model_and_rows
    videos = rows.drop_duplicates("video_id").head(60).copy()
    target = int(videos["v_topic_slot"].mode()[0])
    for col in AFFINITY_COLUMNS:
        videos[col] = 0.005
    videos[AFFINITY_COLUMNS[target]] = 0.9
    top = videos.assign(s=score(model, videos)).nlargest(5, "s")
    assert (top["v_topic_slot"] == target).mean() >= 0.8
