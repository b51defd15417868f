"""Build a :class:`~serving.pipeline.Recommender` from the registry and the feature store."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from feature_repo.columns import VIEW_COLUMNS
from features.batch import FEATURE_DEFAULTS
from features.cross import MODEL_FEATURES
from ingest.lake import read_table
from reelrank.settings import Settings
from serving.pipeline import ITEM_FEATURES, USER_FEATURES, ItemTable, RankedModel, Recommender

log = logging.getLogger(__name__)


_VIEW_OF = {c: view for view, cols in VIEW_COLUMNS.items() for c in cols}


def _view_of(feature: str) -> str:
    return _VIEW_OF[feature]  # a KeyError here means a feature no view declares


class FeastUserReader:
    """One online read per request for the user's two views."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.refs = [f"{_view_of(c)}:{c}" for c in USER_FEATURES]

    def __call__(self, user_id: str) -> np.ndarray | None:
        resp = self.store.get_online_features(
            features=self.refs, entity_rows=[{"user_id": user_id}]
        ).to_dict()
        values = [resp[c][0] for c in USER_FEATURES]
        if all(v is None for v in values):
            return None
        return np.array(
            [
                FEATURE_DEFAULTS[c] if v is None else v
                for c, v in zip(USER_FEATURES, values, strict=True)
            ],
            dtype=np.float32,
        )


def load_item_table(settings: Settings, store: Any) -> ItemTable:
    """All catalog videos' features in one bulk online read (refreshed on reload)."""
    videos = read_table(settings.lake_dir, "videos", columns=["video_id", "creator_id"])
    rows = [
        {"video_id": v, "creator_id": c}
        for v, c in zip(videos["video_id"], videos["creator_id"], strict=True)
    ]
    refs = [f"{_view_of(c)}:{c}" for c in ITEM_FEATURES]
    resp = store.get_online_features(features=refs, entity_rows=rows).to_dict()
    return ItemTable.from_columns(videos["video_id"].tolist(), {c: resp[c] for c in ITEM_FEATURES})


def load_champion(settings: Settings, alias: str = "champion") -> RankedModel:
    import mlflow

    from training.registry import client

    c = client(settings)
    mv = c.get_model_version_by_alias(settings.ranker_model_name, alias)
    model = mlflow.xgboost.load_model(f"models:/{settings.ranker_model_name}/{mv.version}")
    booster = model.get_booster()
    names = tuple(booster.feature_names or ())
    if names != MODEL_FEATURES:
        # numpy input is positional: a model trained on other columns would score garbage
        raise ValueError(
            f"{settings.ranker_model_name} v{mv.version} expects features {names}, "
            f"serving builds {MODEL_FEATURES}"
        )
    booster.set_param({"nthread": 1})
    return RankedModel(booster, settings.ranker_model_name, str(mv.version), names)


def build_recommender(settings: Settings) -> Recommender:
    from features.store import feature_store

    store = feature_store(settings)
    model = load_champion(settings)
    items = load_item_table(settings, store)
    rec = Recommender(model, items, FeastUserReader(store), settings.serving.n_candidates)
    # warm up: the first predictions and online reads are slow (lazy init, caches)
    for _ in range(3):
        rec.recommend("__warmup__", 10)
    rec.stats = dict.fromkeys(rec.stats, 0)
    log.info(
        "recommender ready: %s v%s, %d videos", model.name, model.version, len(items.video_ids)
    )
    return rec
