"""The XGBoost ranker: predicts the probability that an impression creates value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xgboost as xgb

from features.cross import model_matrix
from reelrank.settings import TrainingSettings


def train_ranker(
    train: pd.DataFrame, valid: pd.DataFrame, params: TrainingSettings
) -> tuple[xgb.XGBClassifier, dict[str, list[float]]]:
    """Fit on ``train``, early-stopping on ``valid`` (the last training day).

    Returns the model and its learning curves (log loss per round) for the run's record.
    """
    x_tr, x_va = model_matrix(train), model_matrix(valid)
    model = xgb.XGBClassifier(
        n_estimators=params.n_estimators,
        max_depth=params.max_depth,
        learning_rate=params.learning_rate,
        min_child_weight=params.min_child_weight,
        subsample=params.subsample,
        colsample_bytree=params.colsample_bytree,
        tree_method="hist",
        n_jobs=params.nthread,
        random_state=params.seed,
        eval_metric=["logloss", "auc"],
        early_stopping_rounds=20,
    )
    model.fit(
        x_tr,
        train["positive"].astype(int),
        eval_set=[(x_tr, train["positive"].astype(int)), (x_va, valid["positive"].astype(int))],
        verbose=False,
    )
    ev = model.evals_result()
    curves = {
        "train_logloss": ev["validation_0"]["logloss"],
        "valid_logloss": ev["validation_1"]["logloss"],
        "valid_auc": ev["validation_1"]["auc"],
    }
    return model, curves


def predict(model: xgb.XGBClassifier, df: pd.DataFrame) -> np.ndarray:
    return model.predict_proba(model_matrix(df))[:, 1]
