"""The ranker trains the same on a Dask cluster (xgboost.dask) as in-process: one training
function, the engine chosen by settings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.metrics import roc_auc_score

from features.cross import model_matrix
from models.objectives import HEADS, ValueHeads
from reelrank.settings import Settings, TrainingSettings
from training.engine import training_client
from training.ranker import head_predictions, predict, train_ranker

from .test_objectives import _frame

pytestmark = pytest.mark.unit


def test_the_engine_follows_the_profile_unless_set(tmp_path):
    assert Settings(home=tmp_path).training_engine == "local"
    assert Settings(home=tmp_path, profile="cluster").training_engine == "dask"
    pinned = Settings(home=tmp_path, profile="cluster", training={"engine": "local"})
    assert pinned.training_engine == "local"
    with training_client(Settings(home=tmp_path)) as client:
        assert client is None


@pytest.mark.parametrize("objective", ["heads", "value"])
def test_dask_training_matches_local_training(tmp_path, objective):
    train, valid, test = _frame(3000, 0), _frame(800, 1), _frame(1500, 2)
    params = TrainingSettings(n_estimators=40, objective=objective)
    local, _ = train_ranker(train, valid, params)
    settings = Settings(home=tmp_path, profile="cluster", training=params.model_dump())
    with training_client(settings) as client:
        assert client is not None
        assert len(client.scheduler_info()["workers"]) == params.dask_workers
        dist, dist_curves = train_ranker(train, valid, params, client)

    # a plain in-memory model of the same kind, carrying the same heads
    assert type(dist) is type(local)
    heads = ValueHeads.of_booster(dist.get_booster())
    assert heads.heads == (HEADS if objective == "heads" else ("value",))
    assert len(dist_curves["valid_logloss"]) > 1
    # the distributed quantile sketch and subsampling differ, so the trees differ a little;
    # what the model learned must not
    label = test["completed"] if objective == "heads" else test["positive"]
    auc_local = roc_auc_score(label, predict(local, test))
    auc_dist = roc_auc_score(label, predict(dist, test))
    assert auc_dist > 0.6
    assert abs(auc_dist - auc_local) < 0.02, (auc_local, auc_dist)
    assert head_predictions(dist, test).shape == (len(test), len(heads.heads))
    # it survives the model file like a locally trained one
    path = tmp_path / "m.json"
    dist.save_model(path)
    reloaded = xgb.Booster()
    reloaded.load_model(path)
    x = model_matrix(test).to_numpy()
    np.testing.assert_allclose(
        reloaded.inplace_predict(x), dist.get_booster().inplace_predict(x), rtol=1e-6
    )
    assert dist.get_booster().feature_names == list(model_matrix(test).columns)


def test_the_model_keeps_exactly_the_rounds_early_stopping_chose():
    train, valid = _frame(3000, 0), _frame(800, 1)
    params = TrainingSettings(n_estimators=80)
    model, curves = train_ranker(train, valid, params)
    rounds = model.get_booster().num_boosted_rounds()
    assert rounds <= len(curves["valid_logloss"])
    # the probe's first trees are the trees a refit with that many rounds grows
    refit = xgb.XGBRegressor(
        n_estimators=rounds,
        max_depth=params.max_depth,
        learning_rate=params.learning_rate,
        min_child_weight=params.min_child_weight,
        subsample=params.subsample,
        colsample_bytree=params.colsample_bytree,
        tree_method="hist",
        n_jobs=params.nthread,
        random_state=params.seed,
        objective="reg:logistic",
    )
    x = model_matrix(train, serve=False)
    from models.metrics import D2QLabeler
    from training.ranker import objective_labels

    heads = ValueHeads.of_booster(model.get_booster())
    d2q = D2QLabeler().fit(train["duration_s"].to_numpy(), train["watch_time_s"].to_numpy())
    refit.fit(x, objective_labels(train, heads, d2q))
    test = model_matrix(_frame(500, 2)).to_numpy()
    np.testing.assert_allclose(
        model.get_booster().inplace_predict(test), refit.get_booster().inplace_predict(test)
    )


def test_sample_weights_let_recent_rows_outweigh_a_changed_past():
    # the relation between a feature and the outcome flips: old rows say high retrieval score
    # means completion, recent rows (a quarter of the window) say the opposite
    def flipped(n: int, seed: int):
        df = _frame(n, seed)
        return df.assign(x_retrieval_score=1.0 - df["x_retrieval_score"])

    old, recent = _frame(3000, 0), flipped(1000, 1)
    train = pd.concat([old, recent], ignore_index=True)
    valid, test = flipped(500, 2), flipped(1500, 3)
    params = TrainingSettings(n_estimators=40, objective="value")
    weights = np.r_[np.full(len(old), 0.05), np.ones(len(recent))]
    plain, _ = train_ranker(train, valid, params)
    weighted, _ = train_ranker(train, valid, params, sample_weight=weights)
    auc = {
        name: roc_auc_score(test["positive"], predict(m, test))
        for name, m in (("plain", plain), ("weighted", weighted))
    }
    assert auc["weighted"] > 0.7 > auc["plain"], auc
