"""The XGBoost ranker: predicts the probability that an impression creates value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xgboost as xgb

from features.cross import model_matrix
from reelrank.settings import TrainingSettings


def _classifier(params: TrainingSettings, n_estimators: int, **extra: object) -> xgb.XGBClassifier:
    return xgb.XGBClassifier(
        n_estimators=n_estimators,
        max_depth=params.max_depth,
        learning_rate=params.learning_rate,
        min_child_weight=params.min_child_weight,
        subsample=params.subsample,
        colsample_bytree=params.colsample_bytree,
        tree_method="hist",
        n_jobs=params.nthread,
        random_state=params.seed,
        **extra,
    )


def train_ranker(
    train: pd.DataFrame, valid: pd.DataFrame, params: TrainingSettings
) -> tuple[xgb.XGBClassifier, dict[str, list[float]]]:
    """Fit on ``train``, early-stopping on ``valid`` (the last training day).

    Early stopping only picks the number of trees: the model is then refitted with exactly
    that many, so every consumer (``predict_proba``, a raw ``Booster.inplace_predict`` in
    serving, a model loaded from MLflow elsewhere) scores with the same trees that were
    evaluated and gated. Same seed, same data: the refit grows the same trees.

    Returns the model and its learning curves (per round) for the run's record.
    """
    x_tr, x_va = model_matrix(train), model_matrix(valid)
    y_tr, y_va = train["positive"].astype(int), valid["positive"].astype(int)
    # XGBoost early-stops on the last metric: logloss, which also rewards calibration
    # (stopping on AUC can leave a few-tree model whose probabilities are far off)
    probe = _classifier(
        params, params.n_estimators, eval_metric=["auc", "logloss"], early_stopping_rounds=20
    )
    probe.fit(x_tr, y_tr, eval_set=[(x_tr, y_tr), (x_va, y_va)], verbose=False)
    ev = probe.evals_result()
    curves = {
        "train_logloss": ev["validation_0"]["logloss"],
        "valid_logloss": ev["validation_1"]["logloss"],
        "valid_auc": ev["validation_1"]["auc"],
    }
    model = _classifier(params, probe.best_iteration + 1)
    model.fit(x_tr, y_tr, verbose=False)
    return model, curves


def predict(model: xgb.XGBClassifier, df: pd.DataFrame) -> np.ndarray:
    return model.predict_proba(model_matrix(df))[:, 1]
