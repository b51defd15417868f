"""The ranker's objectives: labels per head, the value score, per-head metrics, and the
heads travelling inside the model file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from feature_repo.columns import AFFINITY_COLUMNS
from features.cross import MODEL_FEATURES
from models.metrics import D2QLabeler
from models.objectives import HEADS, ValueHeads
from reelrank.settings import TrainingSettings
from training.evaluate import head_metrics
from training.ranker import D2Q_ATTR, head_predictions, objective_labels, predict, train_ranker

pytestmark = pytest.mark.unit


def test_weights_pick_heads_in_a_fixed_order_and_combine_linearly():
    h = ValueHeads.from_weights({"skip": -0.5, "completion": 1.0, "like": 0.0})
    assert h.heads == ("completion", "skip")  # zero weight: not trained; order from HEADS
    assert h.combine(np.array([[0.8, 0.2], [0.1, 0.9]])).tolist() == pytest.approx([0.7, -0.35])
    with pytest.raises(ValueError, match="returned 3 outputs"):
        h.combine(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="non-zero"):
        ValueHeads.from_weights({"completion": 0.0})
    with pytest.raises(ValueError, match="unknown objective"):
        TrainingSettings(objective_weights={"click": 1.0})


def test_labels_per_head_with_d2q_watch_time():
    df = pd.DataFrame(
        {
            "completed": [1, 0, 0, 1],
            "liked": [1, 0, 0, 0],
            "shared": [0, 0, 1, 0],
            "skipped": [0, 1, 0, 0],
            "positive": [1, 0, 1, 1],
            "duration_s": [10.0, 10.0, 60.0, 60.0],
            "watch_time_s": [10.0, 1.0, 30.0, 60.0],
        }
    )
    # one bucket per duration; within it, watch quantiles 0 .. 1 over a known grid
    d2q = D2QLabeler(boundaries=[30.0], quantiles=[[0.0, 10.0], [0.0, 60.0]])
    heads = ValueHeads.from_weights({h: 1.0 for h in HEADS})
    y = objective_labels(df, heads, d2q)
    assert y.shape == (4, 5)
    assert y[:, heads.heads.index("completion")].tolist() == [1, 0, 0, 1]
    assert y[:, heads.heads.index("skip")].tolist() == [0, 1, 0, 0]
    # 10 s of a 10 s video and 60 s of a 60 s video are both the top of their bucket; 30 s
    # of a 60 s video is the middle, though it is more seconds than 10 s of a short one
    assert y[:, heads.heads.index("watch")].tolist() == pytest.approx([1.0, 0.1, 0.5, 1.0])


def test_head_metrics_against_a_hand_computed_example():
    hold = pd.DataFrame(index=range(4))
    labels = np.array([[1.0], [0.0], [1.0], [0.0]])
    preds = np.array([[0.9], [0.2], [0.4], [0.6]])
    m = head_metrics(hold, preds, ("completion",), labels)["completion"]
    # pairs (pos, neg): (0.9,0.2) (0.9,0.6) (0.4,0.2) ok, (0.4,0.6) wrong -> 3/4
    assert m["auc"] == pytest.approx(0.75)
    # bins: 0.2 -> 0/1 (gap .2), 0.4 -> 1/1 (.6), 0.6 -> 0/1 (.6), 0.9 -> 1/1 (.1); mean .375
    assert m["ece"] == pytest.approx(0.375)
    watch = head_metrics(
        hold,
        np.array([[0.3], [0.3], [0.7], [0.7]]),
        ("watch",),
        np.array([[0.2], [0.4], [0.9], [0.9]]),
    )["watch"]
    # bin 0.3: mean label 0.3 (gap 0); bin 0.7: mean label 0.9 (gap 0.2): weighted 0.1
    assert watch["ece"] == pytest.approx(0.1) and watch["auc"] == pytest.approx(1.0)


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {c: rng.random(n) for c in MODEL_FEATURES if not c.startswith(("x_", "ctx_"))}
    )
    df["v_topic_slot"] = rng.integers(0, 4, n).astype(float)
    for c in AFFINITY_COLUMNS:
        df[c] = rng.random(n)
    for c in (
        "x_creator_imp_28d",
        "x_creator_pos_rate",
        "x_retrieval_score",
        "x_content_similarity",
    ):
        df[c] = rng.random(n)
    df["surface"] = rng.choice(["spotlight", "discover", "stories"], n)
    df["position"] = rng.integers(0, 10, n)
    signal = df["x_retrieval_score"].to_numpy()
    df["completed"] = rng.random(n) < signal
    df["liked"] = rng.random(n) < 0.3 * signal
    df["shared"] = rng.random(n) < 0.1 * signal
    df["skipped"] = ~df["completed"] & (rng.random(n) < 0.5)
    df["positive"] = df["completed"] | df["liked"] | df["shared"]
    df["duration_s"] = rng.uniform(5, 60, n)
    df["watch_time_s"] = df["duration_s"] * np.clip(signal + rng.normal(0, 0.1, n), 0, 1)
    return df


def test_trained_heads_travel_in_the_model_file(tmp_path):
    train, valid = _frame(1500, 0), _frame(400, 1)
    params = TrainingSettings(n_estimators=30)
    model, curves = train_ranker(train, valid, params)
    assert curves["valid_logloss"]
    path = tmp_path / "model.json"
    model.save_model(path)
    booster = xgb.Booster()
    booster.load_model(path)
    heads = ValueHeads.of_booster(booster)
    assert heads.heads == HEADS
    assert heads.as_dict() == params.objective_weights
    assert D2QLabeler.from_dict(json.loads(booster.attr(D2Q_ATTR))).n_buckets > 1
    pred = head_predictions(model, valid)
    assert pred.shape == (len(valid), len(HEADS)) and ((pred >= 0) & (pred <= 1)).all()
    value = predict(model, valid)
    np.testing.assert_allclose(value, heads.combine(pred))
    # the heads learned their objectives: completion follows the signal, skip opposes it
    signal = valid["x_retrieval_score"].to_numpy()
    assert np.corrcoef(pred[:, 0], signal)[0, 1] > 0.5
    assert np.corrcoef(pred[:, HEADS.index("skip")], signal)[0, 1] < -0.3


def test_value_objective_trains_the_single_classifier():
    model, _ = train_ranker(
        _frame(800, 2), _frame(200, 3), TrainingSettings(n_estimators=20, objective="value")
    )
    assert isinstance(model, xgb.XGBClassifier)
    assert ValueHeads.of_booster(model.get_booster()).heads == ("value",)
