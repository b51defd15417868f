"""Datasets as run inputs and references side by side, on a real MLflow store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.registry import client, configure_mlflow
from reelrank.settings import get_settings
from training.tracking import REFERENCE_TAG, log_dataset, log_references

pytestmark = pytest.mark.unit


def test_inputs_are_metadata_and_references_share_the_models_metric_keys(tmp_path):
    import mlflow

    s = get_settings(home=tmp_path / "h")
    exp = configure_mlflow(s)
    frame = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "value": [1.0, 0.0, 2.0]})
    metrics = {
        "challenger": {"ndcg_at_10": 0.8, "auc": 0.7},
        "popularity": {"ndcg_at_10": 0.6, "auc": 0.55},
        "champion": {"ndcg_at_10": 0.75, "auc": float("nan")},
    }
    with mlflow.start_run(experiment_id=exp, run_name="ranker-2025-07-09") as run:
        mlflow.log_metrics(metrics["challenger"])
        log_dataset(frame, "train-2025-07-09", tmp_path / "train.parquet", "training", "value")
        log_references(exp, run.info.run_id, "2025-07-09", metrics)
    c = client(s)
    inputs = c.get_run(run.info.run_id).inputs.dataset_inputs
    (ds,) = [i.dataset for i in inputs]
    assert ds.name == "train-2025-07-09" and '"num_rows": 3' in ds.profile
    assert ds.source.endswith('train.parquet"}') and "u1" not in ds.source + ds.profile
    assert [t.value for i in inputs for t in i.tags if t.key == "mlflow.data.context"] == [
        "training"
    ]
    children = c.search_runs([exp], filter_string=f"tags.`{REFERENCE_TAG}` = '{run.info.run_id}'")
    side = {r.info.run_name: r.data.metrics for r in children}
    assert side == {
        "popularity-2025-07-09": {"ndcg_at_10": 0.6, "auc": 0.55},
        "champion-2025-07-09": {"ndcg_at_10": 0.75},  # undefined metrics are left out
    }
    mlflow.set_experiment(experiment_id=exp)
    table = mlflow.load_table("review/comparison.json", run_ids=[run.info.run_id])
    assert list(table["model"]) == ["challenger", "popularity", "champion"]
    assert np.isclose(table.set_index("model").loc["popularity", "ndcg_at_10"], 0.6)
