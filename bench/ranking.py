"""Ranker variants side by side on the same training set and holdout: prints figures only.

Answers the questions the ranker's design rests on, on the data the last training run used
(run ``make demo`` or ``reelrank train`` first):

1. foundation: the first ranker (one classifier on "completed, liked or shared", without the
   user x creator and context features), retrained here on today's data;
2. value: one classifier on the same label, with every feature of ``ranker_v2``;
3. heads: one booster with a head per objective (completion, D2Q watch, like, share, skip),
   ordered by the weighted value score (the shipped default);
4. heads, other weights: the same heads model re-weighted (no retraining), to show how the
   weights trade NDCG on the value label against watch-time order (XAUC) and skips.

Every variant is scored on the same holdout rows, beside global and recent popularity and
the simulator's oracle.

    python bench/ranking.py [--holdout 2025-07-09]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from features.cross import CONTEXT_COLUMNS, MODEL_FEATURES, USER_CREATOR_CROSS
from models.objectives import ValueHeads
from reelrank.settings import Settings, get_settings
from training import baselines
from training.evaluate import Metrics, evaluate_scores
from training.pipeline import _dir, world_oracle_scores
from training.ranker import head_predictions, train_ranker

FOUNDATION_FEATURES = tuple(
    f for f in MODEL_FEATURES if f not in (*USER_CREATOR_CROSS, *CONTEXT_COLUMNS)
)
FOUNDATION = "foundation: v1 features, value clf"
VALUE = "value clf, v2 features"
OTHER_WEIGHTS = {
    "heads, value label only": {"completion": 1.0, "like": 1.0, "share": 1.0},
    "heads, watch-heavy": {
        "completion": 0.5,
        "watch": 2.0,
        "like": 1.0,
        "share": 1.0,
        "skip": -1.0,
    },
}


def _foundation(
    fit: pd.DataFrame, valid: pd.DataFrame, hold: pd.DataFrame, settings: Settings
) -> np.ndarray:
    """The foundation ranker's recipe on its own feature subset."""
    import xgboost as xgb

    from features.cross import model_matrix

    t = settings.training
    params = {
        "max_depth": t.max_depth,
        "learning_rate": t.learning_rate,
        "min_child_weight": t.min_child_weight,
        "subsample": t.subsample,
        "colsample_bytree": t.colsample_bytree,
        "tree_method": "hist",
        "n_jobs": t.nthread,
        "random_state": t.seed,
    }
    cols = list(FOUNDATION_FEATURES)
    x_fit, x_va = model_matrix(fit)[cols], model_matrix(valid)[cols]
    probe = xgb.XGBClassifier(
        n_estimators=t.n_estimators, eval_metric="logloss", early_stopping_rounds=20, **params
    )
    probe.fit(x_fit, fit["positive"], eval_set=[(x_va, valid["positive"])], verbose=False)
    model = xgb.XGBClassifier(n_estimators=probe.best_iteration + 1, **params)
    model.fit(x_fit, fit["positive"], verbose=False)
    return model.predict_proba(model_matrix(hold)[cols])[:, 1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--holdout", type=date.fromisoformat, default=None)
    args = ap.parse_args()
    settings = get_settings()
    console = Console(width=150)
    runs = sorted((settings.home / "training").glob("*/train.parquet"))
    if not runs and args.holdout is None:
        sys.exit("no training set found: run `make demo` (or `reelrank train`) first")
    holdout = args.holdout or date.fromisoformat(runs[-1].parent.name)
    out = _dir(settings, holdout)
    train = pd.read_parquet(out / "train.parquet")
    hold = pd.read_parquet(out / "holdout.parquet")

    from features.store import feature_store
    from models.retrieval_features import with_retrieval_features

    (train, hold), _, _ = with_retrieval_features(
        settings, feature_store(settings), [train, hold], holdout
    )
    last_day = train["event_timestamp"].max().normalize()
    fit = train[train["event_timestamp"] < last_day]
    valid = train[train["event_timestamp"] >= last_day]
    console.print(
        f"training set {len(train):,} rows (fit {len(fit):,}, early-stop day {len(valid):,}), "
        f"holdout {holdout} {len(hold):,} rows"
    )

    results: dict[str, Metrics] = {}
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    results[FOUNDATION] = evaluate_scores(
        hold, _foundation(fit, valid, hold, settings), probabilities=True
    )
    seconds[FOUNDATION] = time.perf_counter() - t0

    t0 = time.perf_counter()
    value_settings = settings.training.model_copy(update={"objective": "value"})
    value_model, _ = train_ranker(fit, valid, value_settings)
    results[VALUE] = evaluate_scores(
        hold, head_predictions(value_model, hold)[:, 0], probabilities=True
    )
    seconds[VALUE] = time.perf_counter() - t0

    t0 = time.perf_counter()
    heads_model, _ = train_ranker(fit, valid, settings.training)
    pred = head_predictions(heads_model, hold)
    shipped = ValueHeads.of_booster(heads_model.get_booster())
    label = "heads, shipped weights"
    results[label] = evaluate_scores(hold, shipped.combine(pred))
    seconds[label] = time.perf_counter() - t0
    for name, weights in OTHER_WEIGHTS.items():
        w = np.array([weights.get(h, 0.0) for h in shipped.heads])
        results[name] = evaluate_scores(hold, replace(shipped, weights=w).combine(pred))

    results["popularity"] = evaluate_scores(
        hold, baselines.score(baselines.popularity(train), hold["video_id"])
    )
    results["recent popularity"] = evaluate_scores(
        hold, baselines.score(baselines.recent_popularity(train), hold["video_id"])
    )
    oracle = None
    if settings.dataset == "simulator":
        oracle = evaluate_scores(hold, world_oracle_scores(settings, hold, holdout))
        results["oracle"] = oracle

    base = results[FOUNDATION].ndcg_at_10
    table = Table(
        title=f"ranker variants on holdout {holdout} (same rows for every line); shipped "
        f"weights {shipped.as_dict()}"
    )
    for col in ("model", "NDCG@10", "vs foundation", "% oracle", "AUC", "GAUC", "XAUC", "train s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, m in results.items():
        pct = f"{100 * m.ndcg_at_10 / oracle.ndcg_at_10:.1f}%" if oracle else "n/a"
        table.add_row(
            name,
            f"{m.ndcg_at_10:.4f}",
            f"{100 * (m.ndcg_at_10 / base - 1):+.2f}%",
            pct,
            f"{m.auc:.4f}",
            f"{m.gauc:.4f}",
            f"{m.xauc_watch:.4f}",
            f"{seconds[name]:.1f}" if name in seconds else "",
        )
    console.print(table)


if __name__ == "__main__":
    main()
