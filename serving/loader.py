"""Build a :class:`~serving.pipeline.Recommender` from the registry and the feature store."""

from __future__ import annotations

import logging
import time
from datetime import date
from typing import Any

import numpy as np

from feature_repo.columns import USER_CREATOR_COLUMNS, VIEW_COLUMNS
from features.batch import FEATURE_DEFAULTS
from features.cross import MODEL_FEATURES
from ingest.lake import read_table
from reelrank.objectives import ValueHeads
from reelrank.settings import Settings
from serving.pipeline import (
    ITEM_FEATURES,
    USER_FEATURES,
    ItemTable,
    RankedModel,
    Recommender,
    UserState,
)

log = logging.getLogger(__name__)


_VIEW_OF = {c: view for view, cols in VIEW_COLUMNS.items() for c in cols}


def _view_of(feature: str) -> str:
    return _VIEW_OF[feature]  # a KeyError here means a feature no view declares


class FeastUserReader:
    """One online read per request: the user's rates, topic affinity and recent history."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.refs = (
            [f"{_view_of(c)}:{c}" for c in USER_FEATURES]
            + ["user_history:hist_video_ids"]
            + [f"user_creator_history:{c}" for c in USER_CREATOR_COLUMNS]
        )

    def __call__(self, user_id: str) -> UserState | None:
        resp = self.store.get_online_features(
            features=self.refs, entity_rows=[{"user_id": user_id}]
        ).to_dict()
        values = [resp[c][0] for c in USER_FEATURES]
        history = resp["hist_video_ids"][0]
        creators = [resp[c][0] or [] for c in USER_CREATOR_COLUMNS]
        if all(v is None for v in values) and not history and not creators[0]:
            return None
        features = np.array(
            [
                FEATURE_DEFAULTS[c] if v is None else v
                for c, v in zip(USER_FEATURES, values, strict=True)
            ],
            dtype=np.float32,
        )
        return UserState(
            features,
            list(history or []),
            list(creators[0]),
            [float(x) for x in creators[1]],
            [float(x) for x in creators[2]],
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
    return ItemTable.from_columns(
        videos["video_id"].tolist(),
        {c: resp[c] for c in ITEM_FEATURES},
        videos["creator_id"].tolist(),
    )


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
    heads = ValueHeads.of_booster(booster)
    return RankedModel(booster, settings.ranker_model_name, str(mv.version), names, heads)


def load_retriever(settings: Settings) -> Any:
    """The retrieval champion (model, index and ids together), caught up with every video
    in the lake that arrived after its index was built; None if none is registered."""
    from training.retrieval import catch_up, champion_retriever

    version, retriever = champion_retriever(settings)
    if retriever is None:
        log.warning(
            "no %s champion: candidates come from the popular pool", settings.retrieval_model_name
        )
        return None
    retriever.version = version
    added = catch_up(retriever, settings, date.max)
    log.info("retrieval v%s: %d indexed, %d added since", version, retriever.index.size, added)
    return retriever


class CatalogWatcher:
    """Finds videos whose content was embedded after start-up and makes them retrievable."""

    def __init__(self, settings: Settings, rec: Recommender) -> None:
        self.settings, self.rec = settings, rec
        self.since = time.time()

    def poll(self) -> int:
        from features.content import read_content

        started = time.time()
        content = read_content(self.settings, since=self.since - 1.0)
        index = self.rec.items.index
        content = content[~content["video_id"].isin(index)]
        if content.empty:
            self.since = started
            return 0
        videos = read_table(self.settings.lake_dir, "videos")
        videos = videos[videos["video_id"].isin(content["video_id"])]
        added = self.rec.add_videos(videos, content)
        self.since = started
        log.info("catalog refresh: %d new videos retrievable", added)
        return added


def build_recommender(settings: Settings) -> Recommender:
    from features.store import feature_store

    store = feature_store(settings)
    model = load_champion(settings)
    items = load_item_table(settings, store)
    rec = Recommender(
        model,
        items,
        FeastUserReader(store),
        settings.serving.n_candidates,
        retriever=load_retriever(settings),
    )
    # warm up: the first predictions and online reads are slow (lazy init, caches)
    for _ in range(3):
        rec.recommend("__warmup__", 10)
    rec.stats = dict.fromkeys(rec.stats, 0)
    log.info(
        "recommender ready: %s v%s, %d videos", model.name, model.version, len(items.video_ids)
    )
    return rec
