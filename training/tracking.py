"""What a training run records in MLflow beside its own metrics: the datasets it read, as
run inputs (their source, schema, size and digest: metadata, never the rows), and every
reference it was judged against, comparable side by side with the model itself.

The references (baselines, the champion, the oracle) each get a child run under the
model's run with their metrics under the *same* keys as the model's (``ndcg_at_10``,
``auc``, ...), so the MLflow UI's run table and its compare view line them up column by
column; ``review/comparison.json`` holds the same numbers as one table.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

REFERENCE_TAG = "reelrank.reference_of"  # on a child run: the model run it is a reference of


def log_dataset(
    frame: pd.DataFrame, name: str, source: Path | str, context: str, targets: str | None = None
) -> None:
    """Log ``frame`` as an input of the active run (metadata only: the rows stay where
    ``source`` says)."""
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas

    with warnings.catch_warnings():  # MLflow's hint about integer columns and missing values
        warnings.simplefilter("ignore")
        dataset = from_pandas(
            frame,
            source=str(source),
            name=name,
            targets=targets if targets in frame.columns else None,
        )
    mlflow.log_input(dataset, context=context)


def log_references(
    experiment_id: str,
    parent_run_id: str,
    label: str,
    metrics: Mapping[str, Mapping[str, float]],
    model: str = "challenger",
) -> None:
    """One child run per reference (every entry of ``metrics`` except ``model``) with its
    metrics under the model's own keys, and the whole table as ``review/comparison.json``
    on the parent run. ``label`` names the runs (e.g. the holdout day)."""
    import mlflow

    for name, values in metrics.items():
        if name == model:
            continue
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"{name}-{label}", nested=True):
            mlflow.set_tags({REFERENCE_TAG: parent_run_id, "reelrank.reference": name})
            mlflow.log_metrics({k: v for k, v in values.items() if not math.isnan(v)})
    table = pd.DataFrame(
        [
            {"model": name, **{k: float(v) for k, v in values.items()}}
            for name, values in metrics.items()
        ]
    )
    mlflow.log_table(table, artifact_file="review/comparison.json", run_id=parent_run_id)
