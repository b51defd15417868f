"""Build a :class:`~serving.pipeline.Recommender` from the registry and the feature store."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import date
from typing import Any

import numpy as np

from feature_repo.columns import (
    SEQUENCE_COLUMNS,
    USER_CREATOR_COLUMNS,
    USER_STATE_REFS,
    feature_refs,
)
from features.batch import FEATURE_DEFAULTS
from ingest.lake import read_table
from models.champion import catch_up, champion_retriever
from models.ranker import IncompatibleModel as IncompatibleModel  # raised by load_ranker
from models.ranker import Ranker, error_line, servable_ranker
from reelrank.errors import ModelNotFound, ReelrankError
from reelrank.settings import Settings
from serving.pipeline import (
    ITEM_FEATURES,
    USER_FEATURES,
    ItemTable,
    Recommender,
    RerankConfig,
    UserState,
)
from serving.served_state import Events, MemoryRecent, Recent

log = logging.getLogger(__name__)


class FeastUserReader:
    """One online read per user: the user's rates, topic affinity and recent history.

    The online store changes only when a materialization lands, so a user's state is kept
    (LRU, ``cache_size`` users; 0 turns it off) until :meth:`clear`, which the feature
    watcher calls when it sees a new materialization: a scrolling user costs one read per
    materialization, not one per request, and never sees a stale state.

    A read that fails (a corrupt or unreachable store) does not fail the request: that user
    takes the cold-start path, the failure is counted (``on_failure``) and the store is
    marked failing (:attr:`failing`, which ``/readyz`` reports) until a read succeeds again;
    one warning is logged when a burst of failures starts and one line when it ends, not one
    per request."""

    def __init__(
        self,
        store: Any,
        cache_size: int = 0,
        where: str = "the online store",
        on_failure: Callable[[], object] | None = None,
    ) -> None:
        self.store = store
        self.cache_size = cache_size
        self._cache: OrderedDict[str, UserState | None] = OrderedDict()
        self._lock = threading.Lock()
        self.refs = list(USER_STATE_REFS)
        self.where, self.on_failure = where, on_failure
        self.failing: str | None = None  # the error of the burst in progress
        self.failures = 0  # failed reads in the burst in progress
        self._probed = 0.0

    def clear(self) -> None:
        with self._lock:
            self._cache = OrderedDict()

    def _read(self, user_id: str) -> tuple[bool, UserState | None]:
        """(whether the store answered, the state): a failure is recorded, not raised."""
        try:
            state = self.read(user_id)
        except Exception as err:  # any store error: sqlite, redis, a corrupt value
            self._failed(err)
            return False, None
        if self.failing is not None:
            log.warning(
                "online feature reads from %s recovered after %d failed reads",
                self.where,
                self.failures,
            )
            self.failing, self.failures = None, 0
        return True, state

    def _failed(self, err: Exception) -> None:
        with self._lock:
            first = self.failing is None
            self.failing, self.failures = error_line(err), self.failures + 1
        if first:
            log.warning(
                "online feature reads are failing (%s: %s); users get the cold-start path "
                "until a read succeeds",
                self.where,
                self.failing,
            )
        if self.on_failure is not None:
            self.on_failure()

    def problem(self, every_s: float = 1.0) -> str | None:
        """Why the store cannot serve (None when it can): a probe read at most every
        ``every_s``, so that a worker that served no request since the store broke (or was
        repaired) still tells the truth."""
        now = time.monotonic()
        if now - self._probed >= every_s:
            self._probed = now
            self._read("__readiness_probe__")
        failing = self.failing
        if failing is None:
            return None
        return f"online feature reads from {self.where} fail: {failing}"

    def __call__(self, user_id: str) -> UserState | None:
        if self.cache_size <= 0:
            return self._read(user_id)[1]
        with self._lock:
            cache = self._cache
            if user_id in cache:
                cache.move_to_end(user_id)
                return cache[user_id]
        ok, state = self._read(user_id)
        if not ok:  # a failed read is not the user's state: do not keep it
            return None
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
        seq = [resp[c][0] or [] for c in SEQUENCE_COLUMNS]
        if all(v is None for v in values) and not history and not creators[0] and not seq[0]:
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
            (list(seq[0]), [int(a) for a in seq[1]], [float(t) for t in seq[2]]),
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
    Bento serves the version it was built with (``serving.pinned_version``). A version that
    cannot serve raises ``ModelLoadFailed`` or :class:`IncompatibleModel`, naming it."""
    pinned = settings.serving.pinned_version
    if pinned is not None and alias == "champion":
        model = servable_ranker(settings, version=pinned)
    else:
        model = servable_ranker(settings, alias)
    if model is None:
        return None
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
    points at another version, that version is loaded, warmed up and swapped in.

    A version that cannot be loaded (a corrupt file, other features) is not swapped in: the
    loaded one keeps serving, the refusal is logged once per version (not at every poll) and
    kept in :meth:`state` for ``/status``, ``/metrics`` and ``reelrank status``; the load is
    tried again every ``retry_s``, in case the file is repaired."""

    def __init__(self, settings: Settings, rec: Recommender, retry_s: float = 60.0) -> None:
        self.settings, self.rec = settings, rec
        self._client: Any = None
        self.retry_s = retry_s
        self.aliases: dict[str, str | None] = {}  # arm -> the version its alias names
        self.refused: dict[str, tuple[str, str, float]] = {}  # arm -> (version, why, when)

    def state(self) -> dict[str, dict[str, str | None]]:
        """Per arm: the version served, the version its alias names, and why they differ."""
        out = {}
        for arm, model in (("champion", self.rec.model), ("challenger", self.rec.challenger)):
            if model is None and arm not in self.aliases:
                continue
            refused = self.refused.get(arm)
            out[arm] = {
                "served": None if model is None else model.version,
                "alias": self.aliases.get(arm, None if model is None else model.version),
                "error": refused[1] if refused else None,
            }
        return out

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
                self.refused.pop(arm, None)
                self.aliases[arm] = version
                continue
            refused = self.refused.get(arm)
            if refused and refused[0] == version and time.monotonic() - refused[2] < self.retry_s:
                continue  # reported already; tried again later
            # the alias is published only once the attempt to follow it is over, so that
            # /status never shows an alias that moved without the outcome of loading it
            try:
                model = load_ranker(self.settings, arm)
            except Exception as err:  # any failure to load keeps the loaded version serving
                why = err.brief if isinstance(err, ReelrankError) else error_line(err)
                if refused is None or refused[0] != version:
                    log.error(
                        "%s: cannot load %s v%s, still serving v%s: %s",
                        arm,
                        name,
                        version,
                        current.version,
                        why,
                    )
                self.refused[arm] = (version, why, time.monotonic())
                self.aliases[arm] = version
                continue
            if model is None:
                self.aliases[arm] = version
                continue
            self.refused.pop(arm, None)
            self.rec.swap_model(model, arm)
            self.aliases[arm] = version
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
    settings: Settings,
    challenger: bool = False,
    seen: Recent | None = None,
    events: Events | None = None,
) -> Recommender:
    """The serving path with the champion (and, for an experiment, the challenger).

    ``seen``: where recently served videos are kept (:mod:`serving.served_state`); one
    process's memory when not given. ``events``: the users' recent engagement events
    accepted by ``/feedback`` (the served state's), merged into each user's state; none
    merged when not given."""
    from features.store import check_online_store, feature_store, online_store_label

    check_online_store(settings)  # before Feast opens it: a missing file would be created
    store = feature_store(settings)
    model = load_champion(settings)
    other = load_ranker(settings, "challenger") if challenger else None
    if challenger and other is None:
        log.warning("experiment configured but no challenger alias: champion serves all")
    items = load_item_table(settings, store)
    users = FeastUserReader(
        store, settings.serving.user_cache_size, where=online_store_label(settings)
    )
    rec = Recommender(
        model,
        items,
        users,
        settings.serving.n_candidates,
        retriever=load_retriever(settings),
        rerank=rerank_config(settings),
        challenger=other,
        realtime_weight=settings.serving.realtime_weight,
    )
    # warm up: the first predictions and online reads are slow (lazy init, caches)
    for _ in range(3):
        rec.recommend("__warmup__", 10, shadow=other is not None)
    users.clear()
    rec.seen = seen if seen is not None else MemoryRecent()  # warm-up leaves no trace
    rec.events = events
    rec.stats = dict.fromkeys(rec.stats, 0)
    log.info(
        "recommender ready: %s v%s, %d videos", model.name, model.version, len(items.video_ids)
    )
    return rec
