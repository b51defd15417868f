"""A new ranker kind is one class and one registration: a test double (a linear scorer kept
as a JSON file) goes through the real MLflow registry, loads by alias through the one
``load_ranker`` and serves through the real ``Recommender``, with no other code knowing it."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest

from features.batch import FEATURE_DEFAULTS
from features.cross import MODEL_FEATURES
from models.objectives import ValueHeads
from models.ranker import (
    KIND_TAG,
    RANKER_KINDS,
    Ranker,
    XGBoostRanker,
    load_ranker,
    ranker_kind,
    register_ranker,
)
from models.registry import CHAMPION, client, configure_mlflow
from reelrank.settings import get_settings
from serving.pipeline import ITEM_FEATURES, USER_FEATURES, ItemTable, Recommender, UserState

pytestmark = pytest.mark.unit


class LinearRanker(Ranker):
    """The double: one weight per input, stored as ``weights.json`` in the model folder."""

    kind = "test-linear"

    def __init__(self, weights: np.ndarray, name: str = "ranker", version: str = "0") -> None:
        super().__init__(name, version, MODEL_FEATURES, ValueHeads(("value",), np.ones(1)))
        self.weights = weights

    def predict_heads(self, x: np.ndarray) -> np.ndarray:
        # missing inputs (NaN: no retrieval features without a retriever) count zero
        return np.nan_to_num(np.asarray(x, np.float64)) @ self.weights

    @classmethod
    def load(cls, model_uri: str, name: str, version: str) -> LinearRanker:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
        weights = json.loads((local / "weights.json").read_text())
        return cls(np.asarray(weights, np.float64), name, version)

    @classmethod
    def log_model(cls, model: Any, **kwargs: Any) -> Any:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "weights.json").write_text(json.dumps(list(model.weights)))
            mlflow.log_artifacts(tmp, artifact_path=kwargs["name"])
        run_id = mlflow.active_run().info.run_id  # type: ignore[union-attr]
        c, name = mlflow.MlflowClient(), kwargs["registered_model_name"]
        if not c.search_registered_models(f"name = '{name}'"):
            c.create_registered_model(name)
        source = mlflow.get_artifact_uri(kwargs["name"])
        return c.create_model_version(name, source=source, run_id=run_id)


@pytest.fixture
def kind():
    register_ranker(LinearRanker)
    yield LinearRanker
    RANKER_KINDS.pop(LinearRanker.kind)


def test_a_new_kind_registers_loads_by_alias_and_serves(tmp_path, kind):
    s = get_settings(home=tmp_path / "h")
    mlflow.set_experiment(experiment_id=configure_mlflow(s))
    weights = np.zeros(len(MODEL_FEATURES))
    weights[MODEL_FEATURES.index("v_like_rate_7d")] = 1.0  # the most liked video first
    with mlflow.start_run():
        mv = kind.log_model(kind(weights), name="model", registered_model_name=s.ranker_model_name)
    c = client(s)
    c.set_model_version_tag(s.ranker_model_name, mv.version, KIND_TAG, kind.kind)
    c.set_registered_model_alias(s.ranker_model_name, CHAMPION, mv.version)

    ranker = load_ranker(s)
    assert isinstance(ranker, LinearRanker) and ranker.version == str(mv.version)
    assert ranker.value_weights == {"value": 1.0} and ranker.features == MODEL_FEATURES

    likes = [0.1, 0.9, 0.5]
    cols: dict[str, list[float | None]] = {c: [0.0] * 3 for c in ITEM_FEATURES}
    cols["v_like_rate_7d"] = likes
    items = ItemTable.from_columns(["a", "b", "c"], cols, ["x", "y", "z"])
    user = np.array([FEATURE_DEFAULTS[c] for c in USER_FEATURES], np.float32)
    rec = Recommender(ranker, items, {"u": UserState(user, [])}.get, n_candidates=3)
    assert rec.rank("u", ["a", "b", "c"]).video_ids == ["b", "c", "a"]


def test_an_untagged_version_is_xgboost_and_an_unknown_kind_is_named():
    assert ranker_kind("xgboost") is XGBoostRanker
    with pytest.raises(LookupError, match=r"unknown ranker kind 'lightgbm'.*xgboost"):
        ranker_kind("lightgbm")
