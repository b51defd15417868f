"""Build a :class:`~serving.pipeline.Recommender` from the registry and the feature store."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from datetime import date
from typing import Any

import numpy as np

from feature_repo.columns import USER_CREATOR_COLUMNS, USER_STATE_REFS, feature_refs
from features.batch import FEATURE_DEFAULTS
from features.cross import MODEL_FEATURES
from ingest.lake import read_table
from models import ranker as models_ranker
from models.champion import catch_up, champion_retriever
from models.ranker import Ranker
from reelrank.errors import ModelNotFound, StageFailed
from reelrank.settings import Settings
from serving.pipeline import (
    ITEM_FEATURES,
    USER_FEATURES,
    ItemTable,
    Recommender,
    RerankConfig,
    UserState,
)
from serving.served_state import MemoryRecent, Recent

log = logging.getLogger(__name__)


class IncompatibleModel(StageFailed, ValueError):
    """A registered ranker whose inputs are not the ones serving builds."""


class FeastUserReader:
    """One online read per user: the user's rates, topic affinity and recent history.

    The online store changes only when a materialization lands, so a user's state is kept
    (LRU, ``cache_size`` users; 0 turns it off) until :meth:`clear`, which the feature
    watcher calls when it sees a new materialization: a scrolling user costs one read per
    materialization, not one per request, and never sees a stale state."""

    def __init__(self, store: Any, cache_size: int = 0) -> None:
        self.store = store
        self.cache_size = cache_size
        self._cache: OrderedDict[str, UserState | None] = OrderedDict()
        self._lock = threading.Lock()
        self.refs = list(USER_STATE_REFS)

    def clear(self) -> None:
        with self._lock:
            self._cache = OrderedDict()

    def __call__(self, user_id: str) -> UserState | None:
        if self.cache_size <= 0:
            return self.read(user_id)
        with self._lock:
            cache = self._cache
            if user_id in cache:
                cache.move_to_end(user_id)
                return cache[user_id]
        state = self.read(user_id)
        with self._lock:
            if cache is self._cache:  # not cleared by a reload meanwhile
                cache[user_id] = state
                while len(cache) > self.cache_size:
                    cache.popitem(last=False)
        return state

    def read(self, user_id: str) -> UserState | None:
        """One online read from Feast (no cache)."""
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
    videos = videos.drop_duplicates("video_id", keep="last")  # one row per video
    rows = [
        {"video_id": v, "creator_id": c}
        for v, c in zip(videos["video_id"], videos["creator_id"], strict=True)
    ]
    refs = feature_refs(ITEM_FEATURES)
    resp = store.get_online_features(features=refs, entity_rows=rows).to_dict()
    return ItemTable.from_columns(
        videos["video_id"].tolist(),
        {c: resp[c] for c in ITEM_FEATURES},
        videos["creator_id"].tolist(),
    )


def load_ranker(settings: Settings, alias: str = "champion") -> Ranker | None:
    """The ranker version under ``alias``, ready to serve; None when the alias is unset. A
    Bento serves the version it was built with (``serving.pinned_version``)."""
    pinned = settings.serving.pinned_version
    if pinned is not None and alias == "champion":
        model = models_ranker.load_ranker(settings, version=pinned)
    else:
        model = models_ranker.load_ranker(settings, alias)
    if model is None:
        return None
    if model.features != MODEL_FEATURES:
        # numpy input is positional: a model trained on other columns would score garbage
        raise IncompatibleModel(
            f"{model.name} v{model.version} expects features {model.features}, "
            f"serving builds {MODEL_FEATURES}"
        )
    return model.for_serving()  # one request per thread; BentoML runs several


def load_champion(settings: Settings, alias: str = "champion") -> Ranker:
    model = load_ranker(settings, alias)
    if model is None:
        raise ModelNotFound(f"{settings.ranker_model_name} has no {alias!r} alias: train first")
    return model


def load_retriever(settings: Settings) -> Any:
    """The retrieval champion (model, index and ids together), caught up with every video
    in the lake that arrived after its index was built; None if none is registered."""
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
        # a lookup per new row: Series.isin(index) would copy every key of the catalog
        # (a GIL-holding pause that served requests feel), usually to check no row at all
        new = np.fromiter((v not in index for v in content["video_id"]), bool, len(content))
        content = content[new]
        if content.empty:
            self.since = started
            return 0
        videos = read_table(self.settings.lake_dir, "videos")
        videos = videos[videos["video_id"].isin(content["video_id"])]
        added = self.rec.add_videos(videos, content)
        self.since = started
        log.info("catalog refresh: %d new videos retrievable", added)
        return added


class ModelWatcher:
    """Follows the registry aliases: when ``champion`` (or, in an experiment, ``challenger``)
    points at another version, that version is loaded, warmed up and swapped in."""

    def __init__(self, settings: Settings, rec: Recommender) -> None:
        self.settings, self.rec = settings, rec
        self._client: Any = None

    def poll(self) -> list[str]:
        from models.registry import alias_version, client

        if self.settings.serving.pinned_version is not None:
            return []  # pinned: the aliases may move, this service does not follow them
        if self._client is None:  # one client for every poll
            self._client = client(self.settings)
        c = self._client
        name = self.settings.ranker_model_name
        swapped = []
        arms = [("champion", self.rec.model)]
        if self.rec.challenger is not None:
            arms.append(("challenger", self.rec.challenger))
        for arm, current in arms:
            version = alias_version(c, name, arm)
            if version is None or version == current.version:
                continue
            model = load_ranker(self.settings, arm)
            if model is None:
                continue
            self.rec.swap_model(model, arm)
            swapped.append(arm)
            log.info("%s: %s v%s -> v%s", arm, name, current.version, model.version)
        return swapped


ITEM_VIEWS = ("video_stats", "creator_stats")


def materialized_until(store: Any) -> float:
    """The latest materialization end of the item views (epoch seconds; 0 if none)."""
    store.refresh_registry()
    ends = [store.get_feature_view(v).most_recent_end_time for v in ITEM_VIEWS]
    return max((e.timestamp() for e in ends if e is not None), default=0.0)


class FeatureWatcher:
    """Reloads the in-memory item table when Feast has materialized newer features (a
    reload, not a restart)."""

    def __init__(self, settings: Settings, rec: Recommender, store: Any = None) -> None:
        from features.store import feature_store

        self.settings, self.rec = settings, rec
        self.store = store or feature_store(settings)
        self.seen = materialized_until(self.store)

    def poll(self) -> bool:
        until = materialized_until(self.store)
        if until <= self.seen:
            return False
        items = load_item_table(self.settings, self.store)
        carried = self.rec.swap_items(items)
        clear = getattr(self.rec.users, "clear", None)
        if clear is not None:  # user states of the old materialization are stale now
            clear()
        self.seen = until
        log.info(
            "item features reloaded: %d videos (%d new uploads carried over)",
            len(items.video_ids),
            carried,
        )
        return True


def rerank_config(settings: Settings) -> RerankConfig:
    return RerankConfig.of(settings.serving)


def build_recommender(
    settings: Settings, challenger: bool = False, seen: Recent | None = None
) -> Recommender:
    """The serving path with the champion (and, for an experiment, the challenger).

    ``seen``: where recently served videos are kept (:mod:`serving.served_state`); one
    process's memory when not given."""
    from features.store import feature_store

    store = feature_store(settings)
    model = load_champion(settings)
    other = load_ranker(settings, "challenger") if challenger else None
    if challenger and other is None:
        log.warning("experiment configured but no challenger alias: champion serves all")
    items = load_item_table(settings, store)
    users = FeastUserReader(store, settings.serving.user_cache_size)
    rec = Recommender(
        model,
        items,
        users,
        settings.serving.n_candidates,
        retriever=load_retriever(settings),
        rerank=rerank_config(settings),
        challenger=other,
    )
    # warm up: the first predictions and online reads are slow (lazy init, caches)
    for _ in range(3):
        rec.recommend("__warmup__", 10, shadow=other is not None)
    users.clear()
    rec.seen = seen if seen is not None else MemoryRecent()  # warm-up leaves no trace
    rec.stats = dict.fromkeys(rec.stats, 0)
    log.info(
        "recommender ready: %s v%s, %d videos", model.name, model.version, len(items.video_ids)
    )
    return rec
