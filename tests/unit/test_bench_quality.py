"""bench/quality.py's table and MLflow logging, on a hand-made row (no dataset needed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import mlflow
import pytest
from rich.console import Console

from training.kuairec import ColdStart

pytestmark = pytest.mark.unit


def load_bench() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "quality.py"
    spec = importlib.util.spec_from_file_location("bench_quality", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_quality"] = module
    spec.loader.exec_module(module)
    return module


def test_table_shows_measured_cells_and_n_a_for_models_a_row_lacks(tmp_path: Path) -> None:
    q = load_bench()
    row = q.Row(
        "tiny",
        {"popularity": {"precision_at_10": 0.5, "recall_at_50": 0.25, "ndcg_at_10": 0.625}},
        [ColdStart("multilingual", 0.15, 0.05, 100, 10)],
        {"item_knn.alpha": "1.0"},
    )
    console = Console(width=200, record=True)
    console.print(q.table([row]))
    text = console.export_text()
    assert "0.500 / 0.250 / 0.625" in text
    assert "multilingual: 0.150 vs random 0.050 (3.0x)" in text
    assert text.count("n/a") == len(q.MODELS) - 1  # every model but popularity
    assert set(q.DATASETS) == {"kuairec"}  # other rows are added only once measured

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    q.log_mlflow(uri, [row])
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["reelrank-quality"])
    assert len(runs) == 1
    assert runs["metrics.popularity.ndcg_at_10"].iloc[0] == pytest.approx(0.625)
    assert runs["metrics.cold_start.multilingual.recall_at_50"].iloc[0] == pytest.approx(0.15)
    assert runs["params.item_knn.alpha"].iloc[0] == "1.0"
