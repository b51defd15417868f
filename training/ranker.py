"""The XGBoost ranker: one model with a head per short-video objective.

Each impression carries five outcomes (:data:`models.objectives.HEADS`): completion, watch
time debiased by duration (D2Q quantile), like, share and skip. The ranker is one XGBoost
booster with one logistic output per head (multi-target ``reg:logistic``: every head is a
probability, or for the watch head the expected D2Q quantile), and the feed is ordered by
the weighted sum of the heads with weights from settings. ``objective="value"`` trains the
foundation's single classifier on "completed, liked or shared" instead; ``bench/ranking.py``
measures both on the same data.

One tree per head and round (XGBoost's default multi-target strategy), not vector-leaf trees
(``multi_output_tree``): on the demo's 160k training rows both reach the same holdout
metrics, vector leaves predict 500 candidates 2.8x faster (1.4 vs 4.0 ms) but train 6x slower
(39 vs 6.6 s), and training cost is what grows with traffic.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xgboost as xgb

from features.cross import model_matrix
from models.metrics import D2QLabeler
from models.objectives import ValueHeads
from reelrank.settings import TrainingSettings
from training.engine import fit

if TYPE_CHECKING:
    from distributed import Client

D2Q_ATTR = "reelrank_d2q"
TRAIN_CURVE_ROWS = 20_000


def _params(params: TrainingSettings, n_estimators: int) -> dict[str, object]:
    return {
        "n_estimators": n_estimators,
        "max_depth": params.max_depth,
        "learning_rate": params.learning_rate,
        "min_child_weight": params.min_child_weight,
        "subsample": params.subsample,
        "colsample_bytree": params.colsample_bytree,
        "tree_method": "hist",
        "n_jobs": params.nthread,
        "random_state": params.seed,
    }


def objective_labels(df: pd.DataFrame, heads: ValueHeads, d2q: D2QLabeler) -> np.ndarray:
    """(n, heads) training targets in [0, 1], in the order of ``heads``."""
    columns = {
        "completion": lambda: df["completed"].to_numpy(np.float64),
        "like": lambda: df["liked"].to_numpy(np.float64),
        "share": lambda: df["shared"].to_numpy(np.float64),
        "skip": lambda: df["skipped"].to_numpy(np.float64),
        "watch": lambda: np.nan_to_num(
            d2q.transform(df["duration_s"].to_numpy(), df["watch_time_s"].to_numpy()), nan=0.0
        ),
        "value": lambda: df["positive"].to_numpy(np.float64),
    }
    return np.column_stack([columns[h]() for h in heads.heads])


def train_ranker(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    params: TrainingSettings,
    client: Client | None = None,
    sample_weight: np.ndarray | None = None,
) -> tuple[xgb.XGBModel, dict[str, list[float]]]:
    """Fit on ``train``, early-stopping on ``valid`` (the last training day); on a Dask
    cluster when ``client`` is given (:mod:`training.engine`), in-process otherwise.
    ``sample_weight`` (one per ``train`` row) makes some rows count more, e.g. the days
    since a drift (:mod:`training.recency`).

    Early stopping on log loss (which also rewards calibration) picks the number of boosting
    rounds; the model keeps exactly those trees, so every consumer (serving's raw
    ``inplace_predict``, a model loaded from MLflow elsewhere) scores with the trees that were
    evaluated and gated. The heads, their weights and the fitted D2Q
    labeller are stored in the booster itself.

    Returns the model and its learning curves (per round) for the run's record.
    """
    x_tr, x_va = model_matrix(train, serve=False), model_matrix(valid, serve=False)
    if params.objective == "value":
        heads = ValueHeads(("value",), np.ones(1))
        factory: type[xgb.XGBModel] = xgb.XGBClassifier
        extra: dict[str, object] = {}
    else:
        heads = ValueHeads.from_weights(params.objective_weights)
        factory = xgb.XGBRegressor
        extra = {"objective": "reg:logistic"}
    d2q = D2QLabeler().fit(train["duration_s"].to_numpy(), train["watch_time_s"].to_numpy())
    y_tr, y_va = objective_labels(train, heads, d2q), objective_labels(valid, heads, d2q)
    if heads.heads == ("value",):
        y_tr, y_va = y_tr[:, 0].astype(int), y_va[:, 0].astype(int)
    # the training curve on a sample: evaluating every head on every training row each
    # round would cost more than the boosting itself
    k = np.random.default_rng(params.seed).permutation(len(x_tr))[:TRAIN_CURVE_ROWS]
    probe, ev = fit(
        factory,
        {
            **_params(params, params.n_estimators),
            **extra,
            "eval_metric": "logloss",
            "early_stopping_rounds": 20,
        },
        x_tr,
        y_tr,
        eval_set=[(x_tr.iloc[k], y_tr[k]), (x_va, y_va)],
        client=client,
        sample_weight=sample_weight,
    )
    curves = {
        "train_logloss": ev["validation_0"]["logloss"],
        "valid_logloss": ev["validation_1"]["logloss"],
    }
    # keep exactly the rounds early stopping chose: the first n trees of the probe are the
    # trees a refit with n rounds would grow (same data, same seeded row sampling), at no
    # extra cost
    rounds = probe.best_iteration + 1
    model = factory(**_params(params, rounds), **extra)
    model.load_model(bytearray(probe.get_booster()[:rounds].save_raw("json")))
    booster = model.get_booster()
    heads.store_in(booster)
    booster.set_attr(**{D2Q_ATTR: json.dumps(d2q.to_dict())})
    return model, curves


def head_predictions(model: xgb.XGBModel, df: pd.DataFrame) -> np.ndarray:
    """(n, heads) predictions at the served position."""
    x = model_matrix(df)
    booster = model.get_booster()
    out = booster.inplace_predict(x.to_numpy(), validate_features=False)
    return np.asarray(out, dtype=np.float64).reshape(len(x), -1)


def predict(model: xgb.XGBModel, df: pd.DataFrame) -> np.ndarray:
    """The value score the feed is ordered by."""
    return ValueHeads.of_booster(model.get_booster()).combine(head_predictions(model, df))
