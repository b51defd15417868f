"""The recommender as a plain class: given models and feature readers, rank and recommend.

Nothing here knows about HTTP or BentoML, so it is tested directly. The path is

    retrieve -> filter -> features -> score -> re-rank -> respond

and per-request work is numpy only: one online read for the user, item features gathered
from an in-memory table (loaded in bulk from Feast's online store and swapped whole when a
materialization lands), one ``inplace_predict`` on a contiguous float32 matrix. Filters drop
what the user saw recently, blocked creators and retired videos; re-ranking spreads creators
and topics (MMR) and keeps one slot for a fresh upload. Exploration then draws the feed from
the re-ranked list (``serving.exploration``: a small epsilon-greedy or Plackett-Luce policy,
seeded from the request id) and gives each served item its exact propensity, which the
served log keeps for off-policy estimates. Models and the item table are swapped by
reference (hot reload): a request reads each once, so it never mixes two.

Real time: what the user did minutes ago, posted to ``/feedback`` and kept in the served
state's recent events (shared by the workers), is merged into the user's online state before
retrieval (:func:`with_recent_events`; one more read per request), so the next feed follows
it without waiting for a materialization.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from feature_repo.columns import AFFINITY_COLUMNS, CREATOR_COLUMNS, USER_COLUMNS, VIDEO_COLUMNS
from features.batch import FEATURE_DEFAULTS
from features.cross import (
    MODEL_FEATURES,
    SERVED_POSITION,
    SURFACES,
    creator_affinity,
    creator_affinity_coded,
    surface_code,
    topic_affinity,
)
from features.sequence import is_positive
from models.ranker import Ranker
from reelrank.settings import ExplorationSettings, ServingSettings
from serving.exploration import GREEDY, ExplorationPolicy, Slate, draw_slate, request_rng
from serving.rerank import exploration_slot, mmr_rerank, removals
from serving.served_state import Events, MemoryRecent, Recent, RecentEvent

log = logging.getLogger(__name__)
_SERVING = ServingSettings.model_fields
USER_FEATURES: tuple[str, ...] = (*USER_COLUMNS, *AFFINITY_COLUMNS)
ITEM_FEATURES: tuple[str, ...] = (*VIDEO_COLUMNS, *CREATOR_COLUMNS)


@dataclass
class UserState:
    """What one online read returns for a user."""

    features: np.ndarray  # USER_FEATURES order, defaults filled in
    history: list[str] = field(default_factory=list)  # recent positive video ids, newest first
    # the user's 28-day history with creators: parallel lists (view user_creator_history)
    creator_ids: list[str] = field(default_factory=list)
    creator_imp: list[float] = field(default_factory=list)
    creator_pos: list[float] = field(default_factory=list)
    # the user's latest events, oldest first (view user_sequence): video ids, action codes,
    # epoch seconds; what a sequence-kind retrieval model reads
    events: tuple[list[str], list[int], list[float]] | None = None
    # positives merged from /feedback since the last materialization, newest first: the
    # session's short-term interest (:meth:`Recommender.user_vector` blends it in)
    recent_positives: tuple[str, ...] = ()


def with_recent_events(
    state: UserState | None,
    recent: Sequence[RecentEvent],
    default_features: np.ndarray,
    history_len: int | None = None,
    seq_len: int | None = None,
) -> UserState | None:
    """The user's state with their recent engagement events merged in (a new state; the
    given one, which a reader may cache, is never changed).

    ``recent`` (oldest first: video id, action code, epoch seconds) is what ``/feedback``
    accepted lately. Events the online state already holds are dropped: those before the
    newest event of its sequence (a materialization has brought them, or they would precede
    what it holds), and any identical to one of its events. The rest are appended to
    ``events`` (the sequence model's input, the newest ``seq_len`` kept) and their positives,
    newest first, go to the front of ``history`` (the pooled tower's input; a video already
    there moves to the front), keeping ``history_len`` at most (or the online history's
    length, if longer). Without new events the given state itself is returned. An unknown
    user (``state`` None) with events gets ``default_features`` and those events."""
    if state is None:
        if not recent:
            return None
        state = UserState(default_features.copy(), events=([], [], []))
    ids, actions, times = state.events if state.events is not None else ([], [], [])
    newest = max(times, default=float("-inf"))
    held = set(zip(ids, actions, times, strict=True))
    new = [e for e in recent if e[2] >= newest and e not in held]
    if not new:
        return state
    ids = [*ids, *(e[0] for e in new)]
    actions = [*actions, *(e[1] for e in new)]
    times = [*times, *(e[2] for e in new)]
    if seq_len is not None:
        ids, actions, times = ids[-seq_len:], actions[-seq_len:], times[-seq_len:]
    liked = list(dict.fromkeys(v for v, a, _ in reversed(new) if bool(is_positive(a))))
    moved = set(liked)
    history = liked + [v for v in state.history if v not in moved]
    keep = max(history_len, len(state.history)) if history_len is not None else len(history)
    return dataclasses.replace(
        state,
        history=history[:keep],
        events=(list(ids), list(actions), list(times)),
        recent_positives=tuple(liked),
    )


class UserFeatureReader(Protocol):
    def __call__(self, user_id: str) -> UserState | None:
        """The user's state, or None for an unknown user."""


class CachedUserReader(UserFeatureReader, Protocol):
    def clear(self) -> None:
        """Forget cached states (a new materialization landed)."""


class RetrievalCatalog(Protocol):
    @property
    def video_ids(self) -> np.ndarray: ...

    def rows(self, video_ids: Sequence[str]) -> np.ndarray: ...


class CandidateRetriever(Protocol):
    """What the recommender needs of the retrieval stage (``models.retriever.Retriever``).

    Videos are *catalog rows* here (positions in ``catalog.video_ids``, -1 for unknown):
    the request path carries integers from the index to the feed and maps ids only at its
    ends."""

    @property
    def catalog(self) -> RetrievalCatalog: ...

    def user_vector(
        self,
        user_features: np.ndarray | None,
        history: Sequence[str],
        events: tuple[Sequence[str], Sequence[int], Sequence[float]] | None = None,
    ) -> Any: ...
    def retrieve_rows(
        self, user_vec: Any, n: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...
    def scores_rows(self, user_vec: Any, rows: np.ndarray) -> np.ndarray: ...
    def history_caption(self, history: Sequence[str]) -> np.ndarray: ...
    def caption_similarity_rows(self, centroid: np.ndarray, rows: np.ndarray) -> np.ndarray: ...


@dataclass
class ItemTable:
    """Per-video features (video and creator views) as one dense float32 array.

    Video ids are unique: row ``i`` is ``video_ids[i]`` and ``index`` maps each id to it."""

    video_ids: np.ndarray
    features: np.ndarray  # (n_videos, len(ITEM_FEATURES))
    missing: np.ndarray  # (n_videos,) bool: row filled with defaults
    creator_ids: np.ndarray  # (n_videos,) object: each video's creator ("" when unknown)
    index: dict[str, int] = field(init=False)
    creator_codes: np.ndarray = field(init=False)  # (n_videos,) int64: code of each creator
    creator_index: dict[str, int] = field(init=False)  # creator id -> code

    def __post_init__(self) -> None:
        codes, uniques = pd.factorize(np.asarray(self.creator_ids, dtype=object))
        self.creator_codes = codes.astype(np.int64)
        self.creator_index = {c: i for i, c in enumerate(uniques)}
        self.index = {v: i for i, v in enumerate(self.video_ids)}

    @classmethod
    def from_columns(
        cls,
        video_ids: Sequence[str],
        columns: dict[str, Sequence[Any]],
        creator_ids: Sequence[str] | None = None,
    ) -> ItemTable:
        n = len(video_ids)
        mat = np.empty((n, len(ITEM_FEATURES)), dtype=np.float32)
        missing = np.zeros(n, dtype=bool)
        for j, name in enumerate(ITEM_FEATURES):
            col = np.array([np.nan if v is None else v for v in columns[name]], dtype=np.float64)
            gaps = np.isnan(col)
            missing |= gaps
            col[gaps] = FEATURE_DEFAULTS[name]
            mat[:, j] = col
        creators = np.array(list(creator_ids) if creator_ids is not None else [""] * n, object)
        return cls(np.asarray(video_ids, dtype=object), mat, missing, creators)

    def append_defaults(
        self, video_ids: Sequence[str], creator_ids: Sequence[str] | None = None
    ) -> int:
        """Rows for videos that have no features yet (new uploads): defaults, flagged missing.

        The id index is swapped in last, so a concurrent reader that finds an id always
        finds its row."""
        creator_of = dict(zip(video_ids, creator_ids or [""] * len(video_ids), strict=True))
        new = [v for v in dict.fromkeys(video_ids) if v not in self.index]
        if not new:
            return 0
        defaults = np.array([FEATURE_DEFAULTS[c] for c in ITEM_FEATURES], np.float32)
        features = np.vstack([self.features, np.tile(defaults, (len(new), 1))])
        missing = np.concatenate([self.missing, np.ones(len(new), dtype=bool)])
        ids = np.concatenate([self.video_ids, np.asarray(new, dtype=object)])
        creators = np.concatenate(
            [self.creator_ids, np.array([creator_of[v] for v in new], dtype=object)]
        )
        index = {**self.index, **{v: len(self.video_ids) + i for i, v in enumerate(new)}}
        creator_index = dict(self.creator_index)
        for v in new:
            creator_index.setdefault(creator_of[v], len(creator_index))
        codes = np.concatenate(
            [self.creator_codes, np.array([creator_index[creator_of[v]] for v in new], np.int64)]
        )
        self.creator_index = creator_index
        self.features, self.missing, self.creator_ids = features, missing, creators
        self.creator_codes = codes
        self.video_ids = ids
        self.index = index
        return len(new)

    def column(self, name: str) -> np.ndarray:
        return self.features[:, ITEM_FEATURES.index(name)]

    def popular(self, n: int, fresh_share: float = 0.1) -> np.ndarray:
        """Candidate rows: the most engaging recent videos plus a few of the freshest."""
        engagement = self.column("v_imp_7d") * (
            self.column("v_completion_rate_7d") + self.column("v_like_rate_7d")
        )
        n_fresh = round(n * fresh_share)
        top = np.argsort(-engagement, kind="stable")[: max(n - n_fresh, 0)]
        fresh_order = np.argsort(self.column("v_age_hours"), kind="stable")
        fresh = fresh_order[~np.isin(fresh_order, top)][:n_fresh]
        return np.concatenate([top, fresh])


@dataclass
class Scored:
    video_ids: list[str]
    scores: list[float]
    cold_start: bool
    unknown_video_ids: list[str]
    timings_ms: dict[str, float]
    features: np.ndarray | None = None  # (len(video_ids), n_features): what was scored
    filtered: dict[str, int] = field(default_factory=dict)
    arm: str = "champion"
    model_version: str = ""
    shadow_scores: list[float] | None = None  # the challenger's scores, shadow mode only
    default_rows: int = 0  # candidates scored with default item features
    durations: list[float] = field(default_factory=list)  # seconds, per served video
    ranked: int = 0  # candidates scored
    why: list[Why] | None = None  # per served video, with explain=True only
    # per served video: the probability the serving policy put it in its slot, given the
    # slots before it (serving.exploration); 1.0 throughout for a deterministic answer
    propensities: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Why:
    """Why one served video is where it is (``recommend(..., explain=True)`` only).

    ``source``: ``two_tower`` (retrieved for this user), or for a cold-start user the
    recent-popular pool (``popular``, or ``fresh`` for an upload younger than
    ``fresh_hours``). ``value`` is the ranker's score, blended from ``heads``;
    ``score_rank`` its rank among every scored candidate. ``slot``: ``score`` when it is the
    best-valued of the videos from its position down, ``diversity`` when the MMR pass lifted
    it above better-valued ones (other creators or topics), ``exploration`` for the slot kept
    for a fresh upload or an item the exploration policy drew in place of the best remaining
    one."""

    source: str
    retrieval_score: float | None
    value: float
    heads: dict[str, float]
    score_rank: int
    slot: str


def exploration_policy(settings: ExplorationSettings) -> ExplorationPolicy:
    """The policy the ``serving.exploration`` settings describe."""
    return ExplorationPolicy(
        kind=settings.kind,
        epsilon=settings.epsilon,
        temperature=settings.temperature,
        top_m=settings.top_m,
    )


@dataclass(frozen=True)
class RerankConfig:
    """How the scored list becomes the feed. The defaults are the settings' own
    (``ServingSettings``: diversity, exploration_position, fresh_hours, max_age_hours,
    exploration). ``exploration`` applies to requests that carry a request id (its seed):
    see :meth:`Recommender.recommend`."""

    diversity: float = _SERVING["diversity"].default  # MMR weight (0: pure score order)
    pool: int = 50  # top-scored candidates the MMR pass chooses from (at least k)
    exploration_position: int | None = _SERVING["exploration_position"].default
    fresh_hours: float = _SERVING["fresh_hours"].default  # "fresh": younger than this
    max_age_hours: float | None = _SERVING["max_age_hours"].default  # older: retired
    exploration: ExplorationPolicy = field(
        default_factory=lambda: exploration_policy(_SERVING["exploration"].default)
    )

    @classmethod
    def of(cls, serving: ServingSettings) -> RerankConfig:
        return cls(
            diversity=serving.diversity,
            exploration_position=serving.exploration_position,
            fresh_hours=serving.fresh_hours,
            max_age_hours=serving.max_age_hours,
            exploration=exploration_policy(serving.exploration),
        )


class Recommender:
    """retrieve -> filter -> features -> score -> re-rank.

    With a retriever, a known user's candidates are the ``n_candidates`` nearest videos to
    the user tower's vector (new uploads included through the index's fresh part); without
    one, or for an unknown user, they are the recent-popular + fresh pool. ``challenger``
    is the experiment's other model (``arm="challenger"`` or ``shadow=True``). ``seen``
    holds what each user was served lately; ``events``, when given, each user's recent
    engagement events, merged into the user's state on every request
    (:func:`with_recent_events`).
    """

    def __init__(
        self,
        model: Ranker,
        items: ItemTable,
        users: UserFeatureReader,
        n_candidates: int = 500,
        retriever: CandidateRetriever | None = None,
        rerank: RerankConfig | None = None,
        challenger: Ranker | None = None,
        seen: Recent | None = None,
        events: Events | None = None,
        realtime_weight: float = 0.0,
    ) -> None:
        self.model = model
        self.challenger = challenger
        self.users = users
        self.n_candidates = n_candidates
        self.retriever = retriever
        self.rerank_config = rerank or RerankConfig()
        self.seen: Recent = seen if seen is not None else MemoryRecent()
        # the users' recent engagement events (serving.served_state); None: not merged
        self.events: Events | None = events
        # weight of the session's short-term interest in the retrieval vector
        self.realtime_weight = realtime_weight
        self.default_user = np.array([FEATURE_DEFAULTS[c] for c in USER_FEATURES], np.float32)
        self._aff = [USER_FEATURES.index(c) for c in AFFINITY_COLUMNS]
        self._slot = ITEM_FEATURES.index("v_topic_slot")
        self._compl = ITEM_FEATURES.index("v_completion_rate_7d")
        self._age = ITEM_FEATURES.index("v_age_hours")
        self._duration = ITEM_FEATURES.index("v_duration_s")
        self._col = {c: i for i, c in enumerate(MODEL_FEATURES)}
        self._surface = {name: float(surface_code(name)[0]) for name in SURFACES}
        self.stats = {"requests": 0, "cold_start": 0, "default_item_rows": 0, "retrieved": 0}
        self._items_lock = threading.Lock()
        self.items = items
        self._candidates = items.popular(n_candidates)
        # (items, catalog, len(items.index), len(catalog ids), item row of each catalog row)
        self._catalog_rows: tuple[Any, ...] | None = None
        if retriever is not None:
            self._catalog_to_items(retriever, items)

    # -- hot reload ------------------------------------------------------------------------
    def swap_model(self, model: Ranker, arm: str = "champion") -> None:
        """Serve ``model`` from the next request on (requests in flight finish with the old
        one). It is warmed up first, so the first request after the swap is not slow."""
        x = self.feature_matrix(self.default_user, np.zeros(1, dtype=np.int64))
        for _ in range(2):
            model.predict(x)
        if arm == "champion":
            self.model = model
        elif arm == "challenger":
            self.challenger = model
        else:
            raise ValueError(f"unknown arm {arm!r}")

    def swap_items(self, items: ItemTable) -> int:
        """Serve a freshly loaded item table; videos only the old table knew (uploads since
        the last materialization) are carried over with their default rows. Returns how
        many were carried over."""
        with self._items_lock:
            old = self.items
            carried = [v for v in old.video_ids.tolist() if v not in items.index]
            if carried:
                rows = [old.index[v] for v in carried]
                items.append_defaults(carried, old.creator_ids[rows].tolist())
            pool = items.popular(self.n_candidates)
            self.items, self._candidates = items, pool
        if self.retriever is not None:  # computed here, not by the next request
            self._catalog_to_items(self.retriever, items)
        return len(carried)

    def _catalog_to_items(self, retriever: CandidateRetriever, items: ItemTable) -> np.ndarray:
        """The item-table row of each retrieval-catalog row (-1: none).

        Both only grow between swaps (uploads), so a cached map is extended by the new
        catalog rows and the new item rows: a request never pays for the whole catalog."""
        catalog = retriever.catalog
        index, ids = items.index, catalog.video_ids  # append_defaults swaps the index last
        n_index, n_ids = len(index), len(ids)
        cached = self._catalog_rows
        if cached is not None and cached[0] is items and cached[1] is catalog:
            _, _, seen_index, seen_ids, mapping = cached
            if (seen_index, seen_ids) == (n_index, n_ids):
                return mapping
            # ids are unique, so item rows seen_index..n_index-1 are the ones added since
            if seen_index <= n_index and seen_ids <= n_ids:
                grown = np.concatenate(
                    [
                        mapping,
                        np.fromiter(
                            (index.get(v, -1) for v in ids[seen_ids:n_ids]),
                            dtype=np.int64,
                            count=n_ids - seen_ids,
                        ),
                    ]
                )
                rows_of = catalog.rows(items.video_ids[seen_index:n_index].tolist())
                new_rows = np.arange(seen_index, n_index)
                ok = (rows_of >= 0) & (rows_of < n_ids)
                grown[rows_of[ok]] = new_rows[ok]
                self._catalog_rows = (items, catalog, n_index, n_ids, grown)
                return grown
        mapping = np.fromiter((index.get(v, -1) for v in ids), dtype=np.int64, count=n_ids)
        self._catalog_rows = (items, catalog, n_index, n_ids, mapping)
        return mapping

    # -- features and scores ---------------------------------------------------------------
    def feature_matrix(
        self,
        user: np.ndarray,
        rows: np.ndarray,
        retrieval_score: np.ndarray | None = None,
        content_similarity: np.ndarray | None = None,
        creator: tuple[np.ndarray, np.ndarray] | None = None,
        surface: str = "spotlight",
        items: ItemTable | None = None,
    ) -> np.ndarray:
        """The model input for one user against item ``rows``, in ``MODEL_FEATURES`` order.

        ``creator``: the user's impressions of and positive rate with each row's creator
        (:func:`features.cross.creator_affinity`); None means no history with any of them.
        Every row is scored at the served feed position (see :mod:`features.cross`)."""
        item = (items or self.items).features[rows]
        x = np.empty((len(rows), len(MODEL_FEATURES)), dtype=np.float32)
        x[:, : len(USER_COLUMNS)] = user[: len(USER_COLUMNS)]
        x[:, len(USER_COLUMNS) : len(USER_COLUMNS) + len(ITEM_FEATURES)] = item
        aff = topic_affinity(user[self._aff][None, :], item[:, self._slot])
        x[:, self._col["x_topic_affinity"]] = aff
        x[:, self._col["x_affinity_x_completion"]] = aff * item[:, self._compl]
        x[:, self._col["x_retrieval_score"]] = (
            np.nan if retrieval_score is None else retrieval_score
        )
        x[:, self._col["x_content_similarity"]] = (
            np.nan if content_similarity is None else content_similarity
        )
        if creator is None:
            creator = creator_affinity([], [], [], [""] * len(rows))
        x[:, self._col["x_creator_imp_28d"]] = creator[0]
        x[:, self._col["x_creator_pos_rate"]] = creator[1]
        x[:, self._col["ctx_surface"]] = self._surface[surface]
        x[:, self._col["ctx_position"]] = SERVED_POSITION
        return x

    def retrieval_features(
        self, state: UserState | None, user_vec: Any, video_ids: Sequence[str]
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Retrieval score and caption similarity of the given videos for a user (both None
        without a retriever); NaN for videos the retrieval catalog does not know."""
        retriever = self.retriever
        rows = None if retriever is None else retriever.catalog.rows(video_ids)
        return self._retrieval_features(retriever, state, user_vec, rows)

    @staticmethod
    def _retrieval_features(
        retriever: CandidateRetriever | None,
        state: UserState | None,
        user_vec: Any,
        catalog_rows: np.ndarray | None,
        scores: Any = None,
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Retrieval score and caption similarity of candidates given as catalog rows."""
        if retriever is None or catalog_rows is None:
            return None, None
        if scores is None:
            scores = retriever.scores_rows(user_vec, catalog_rows)
        history = state.history if state is not None else []
        sim = retriever.caption_similarity_rows(retriever.history_caption(history), catalog_rows)
        return np.asarray(scores, np.float32), sim

    def _matrix(
        self,
        state: UserState | None,
        rows: np.ndarray,
        retrieval: tuple[np.ndarray | None, np.ndarray | None],
        surface: str,
        items: ItemTable,
    ) -> np.ndarray:
        user = self.default_user if state is None else state.features
        creator = None
        if state is not None and state.creator_ids:
            code_of = items.creator_index
            codes = np.fromiter(
                (code_of.get(c, -1) for c in state.creator_ids),
                dtype=np.int64,
                count=len(state.creator_ids),
            )
            creator = creator_affinity_coded(
                codes, state.creator_imp, state.creator_pos, items.creator_codes[rows]
            )
        return self.feature_matrix(
            user, rows, *retrieval, creator=creator, surface=surface, items=items
        )

    def score_rows(
        self,
        state: UserState | None,
        rows: np.ndarray,
        retrieval: tuple[np.ndarray | None, np.ndarray | None],
        surface: str = "spotlight",
        model: Ranker | None = None,
    ) -> np.ndarray:
        """The ranking step alone: value scores of item-table ``rows`` for a user, given
        their retrieval features (:meth:`retrieval_features`); counted in :attr:`stats`."""
        items = self.items
        x = self._matrix(state, rows, retrieval, surface, items)
        self._count(state, items, rows)
        return (model or self.model).predict(x)

    def _count(self, state: UserState | None, items: ItemTable, rows: np.ndarray) -> int:
        defaults = int(items.missing[rows].sum())
        self.stats["requests"] += 1
        self.stats["cold_start"] += int(state is None)
        self.stats["default_item_rows"] += defaults
        return defaults

    def user_state(
        self, user_id: str, retriever: CandidateRetriever | None = None
    ) -> UserState | None:
        """The user's online state (None: unknown), with their recent engagement events
        merged in when the recommender has an ``events`` store: one read of it. The events
        and history are capped at what the retrieval model reads (its ``seq_len`` and
        ``history_len``, when it says)."""
        state = self.users(user_id)
        if self.events is None:
            return state
        recent = self.events.get(user_id)
        if not recent:
            return state
        retriever = retriever or self.retriever
        return with_recent_events(
            state,
            recent,
            self.default_user,
            getattr(retriever, "history_len", None),
            getattr(retriever, "seq_len", None),
        )

    def user_vector(
        self, state: UserState | None, retriever: CandidateRetriever | None = None
    ) -> Any:
        """The user's retrieval vector (None without a retriever); a cold-start vector for
        an unknown user."""
        retriever = retriever or self.retriever
        if retriever is None:
            return None
        if state is None:
            return retriever.user_vector(None, [])
        feats = state.features[: len(USER_COLUMNS)]
        if state.events is None:  # no user_sequence row: a pooled model needs none
            vec = retriever.user_vector(feats, state.history)
        else:
            vec = retriever.user_vector(feats, state.history, state.events)
        return self._with_short_term(vec, state.recent_positives, retriever)

    def _with_short_term(
        self, vec: Any, recent: Sequence[str], retriever: CandidateRetriever
    ) -> Any:
        """Blend the session's short-term interest into the user's vector: the mean item
        vector of the videos engaged with since the last materialization, scaled to the
        user vector's length, weighted ``realtime_weight``. A user tower that pools 20
        positives (or attends over 50 events) barely moves with three new ones; this is
        what makes a topic the user just engaged with reach the candidates now."""
        vectors = getattr(retriever, "item_vectors", None)
        if not recent or self.realtime_weight <= 0 or vectors is None:
            return vec
        rows = retriever.catalog.rows(list(recent))
        rows = rows[(rows >= 0) & (rows < len(vectors))]
        if not len(rows):
            return vec
        short = vectors[rows].mean(axis=0)
        norm_short, norm_vec = float(np.linalg.norm(short)), float(np.linalg.norm(vec))
        if norm_short == 0.0 or norm_vec == 0.0:
            return vec
        w = self.realtime_weight
        return ((1.0 - w) * vec + w * short * (norm_vec / norm_short)).astype(vec.dtype)

    def _arm_model(self, arm: str) -> Ranker:
        if arm == "champion":
            return self.model
        if arm == "challenger" and self.challenger is not None:
            return self.challenger
        raise ValueError(f"no model for arm {arm!r}")

    # -- endpoints -------------------------------------------------------------------------
    def rank(
        self,
        user_id: str,
        video_ids: Sequence[str],
        surface: str = "spotlight",
        arm: str = "champion",
        shadow: bool = False,
    ) -> Scored:
        """Score the given candidates for the user, best first; unknown videos are reported."""
        t0 = time.perf_counter()
        items, model, retriever = self.items, self._arm_model(arm), self.retriever
        index = items.index
        known = [v for v in video_ids if v in index]
        unknown = [v for v in video_ids if v not in index]
        state = self.user_state(user_id, retriever)
        if not known:
            return Scored([], [], state is None, unknown, {}, arm=arm, model_version=model.version)
        rows = np.fromiter((index[v] for v in known), dtype=np.int64, count=len(known))
        t1 = time.perf_counter()
        catalog_rows = None if retriever is None else retriever.catalog.rows(known)
        user_vec = self.user_vector(state, retriever)
        retrieval = self._retrieval_features(retriever, state, user_vec, catalog_rows)
        x = self._matrix(state, rows, retrieval, surface, items)
        defaults = self._count(state, items, rows)
        scores = model.predict(x)
        shadow_scores = self.challenger.predict(x) if shadow and self.challenger else None
        order = np.argsort(-scores, kind="stable")
        t2 = time.perf_counter()
        return Scored(
            [known[i] for i in order],
            scores[order].tolist(),
            state is None,
            unknown,
            {"user_features": (t1 - t0) * 1e3, "score": (t2 - t1) * 1e3},
            features=x[order],
            arm=arm,
            model_version=model.version,
            shadow_scores=None if shadow_scores is None else shadow_scores[order].tolist(),
            default_rows=defaults,
            durations=items.features[rows[order], self._duration].tolist(),
            propensities=[1.0] * len(order),  # the given candidates, all of them, in order
        )

    def candidates(
        self,
        state: UserState | None,
        user_vec: Any,
        items: ItemTable | None = None,
    ) -> tuple[list[str], Any]:
        """Candidate ids (and their retrieval scores when retrieved) for a user."""
        items = items or self.items
        rows, _, scores = self._candidate_rows(state, user_vec, items, self.retriever)
        return items.video_ids[rows].tolist(), scores

    def _candidate_rows(
        self,
        state: UserState | None,
        user_vec: Any,
        items: ItemTable,
        retriever: CandidateRetriever | None,
        exclude: np.ndarray | None = None,
        n: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """The candidates as item-table rows, their retrieval-catalog rows (None without a
        retriever) and their retrieval scores (None unless retrieved).

        With a retriever and a known user: the nearest videos that have an item row, but
        none of the catalog rows in ``exclude`` (``n``: how many, ``n_candidates`` unless
        given). Else the recent-popular + fresh pool."""
        if retriever is not None and state is not None:
            found, scores = retriever.retrieve_rows(user_vec, n or self.n_candidates, exclude)
            rows = self._catalog_to_items(retriever, items)[found]
            keep = rows >= 0
            self.stats["retrieved"] += int(keep.sum())
            return rows[keep], found[keep], np.asarray(scores)[keep]
        pool = self._candidates if items is self.items else items.popular(self.n_candidates)
        catalog_rows = None if retriever is None else retriever.catalog.rows(items.video_ids[pool])
        return pool, catalog_rows, None

    def _filter(
        self,
        items: ItemTable,
        rows: np.ndarray,
        seen: np.ndarray,
        blocked_creators: set[str],
        k: int,
    ) -> tuple[np.ndarray, dict[str, int]]:
        """Keep-mask over candidate rows (retired videos, blocked creators and the ``seen``
        mask removed) and the count per reason. A user who has seen every candidate gets
        repeats rather than an empty feed."""
        cfg = self.rerank_config
        unavailable = (
            ~(items.features[rows, self._age] <= cfg.max_age_hours)  # unknown age: retired
            if cfg.max_age_hours is not None
            else np.zeros(len(rows), dtype=bool)
        )
        blocked = (
            np.fromiter((c in blocked_creators for c in items.creator_ids[rows]), bool, len(rows))
            if blocked_creators
            else np.zeros(len(rows), dtype=bool)
        )
        keep, filtered = removals(unavailable, blocked, seen)
        if keep.sum() < k:
            repeats = np.flatnonzero(~unavailable & ~blocked & ~keep)[: k - int(keep.sum())]
            keep[repeats] = True
            filtered["seen"] -= len(repeats)
            filtered["repeated"] = len(repeats)
        return keep, filtered

    def recommend(
        self,
        user_id: str,
        k: int,
        surface: str = "spotlight",
        *,
        exclude: Iterable[str] = (),
        blocked_creators: Iterable[str] = (),
        arm: str = "champion",
        shadow: bool = False,
        explain: bool = False,
        request_id: str | None = None,
    ) -> Scored:
        """The user's next ``k`` videos: retrieve, filter, score, re-rank, explore
        (``explain``: and :class:`Why` each is there; it costs the served rows' head
        predictions only).

        ``request_id`` seeds the exploration policy (``rerank_config.exploration``), so the
        same id draws the same feed from the same ranked list; without one the request is
        served the re-ranked list as is (the deterministic policy: what offline evaluation
        and replays of a ranking measure). ``propensities`` says, per served video, the
        probability that the policy put it in its slot given the slots before it.

        Candidates travel as integer rows of the item table from the index to the feed;
        ids appear only where they enter (what the user has seen) and leave (the feed)."""
        t0 = time.perf_counter()
        # one snapshot of each swappable part for the whole request
        items, model, retriever = self.items, self._arm_model(arm), self.retriever
        state = self.user_state(user_id, retriever)
        t1 = time.perf_counter()
        # seen lately: served here, engaged with (history), or on the client's screen
        seen = self.seen.get(user_id) | set(exclude)
        if state is not None:
            seen.update(state.history)
        user_vec = self.user_vector(state, retriever)
        rows, catalog_rows, retrieved, filtered, t2 = self._unseen_candidates(
            state, user_vec, items, retriever, seen, set(blocked_creators), k
        )
        if not len(rows):
            return Scored(
                [],
                [],
                state is None,
                [],
                {},
                filtered=filtered,
                arm=arm,
                model_version=model.version,
            )
        t3 = time.perf_counter()
        retrieval = self._retrieval_features(retriever, state, user_vec, catalog_rows, retrieved)
        x = self._matrix(state, rows, retrieval, surface, items)
        defaults = self._count(state, items, rows)
        t4 = time.perf_counter()
        scores = model.predict(x)
        shadow_scores = self.challenger.predict(x) if shadow and self.challenger else None
        t5 = time.perf_counter()

        policy = GREEDY if request_id is None else self.rerank_config.exploration
        ranked, by_mmr = self._rerank(items, rows, scores, k, policy.span(k))
        rng = None if policy.deterministic or request_id is None else request_rng(request_id)
        slate = draw_slate(policy, len(ranked), k, rng)
        chosen = ranked[slate.places]
        served_rows = rows[chosen]
        served = items.video_ids[served_rows].tolist()
        self.seen.add(user_id, served)
        t6 = time.perf_counter()
        return Scored(
            served,
            scores[chosen].tolist(),
            state is None,
            [],
            {
                "user_features": (t1 - t0) * 1e3,
                "retrieve": (t2 - t1) * 1e3,
                "filter": (t3 - t2) * 1e3,
                "features": (t4 - t3) * 1e3,
                "score": (t5 - t4) * 1e3,
                "rerank": (t6 - t5) * 1e3,
            },
            features=x[chosen],
            filtered=filtered,
            arm=arm,
            model_version=model.version,
            shadow_scores=None if shadow_scores is None else shadow_scores[chosen].tolist(),
            default_rows=defaults,
            durations=items.features[served_rows, self._duration].tolist(),
            ranked=len(rows),
            why=(
                self._why(model, items, rows, x, scores, retrieved, ranked, by_mmr, slate)
                if explain
                else None
            ),
            propensities=slate.propensities.tolist(),
        )

    def _why(
        self,
        model: Ranker,
        items: ItemTable,
        rows: np.ndarray,
        x: np.ndarray,
        scores: np.ndarray,
        retrieved: np.ndarray | None,
        ranked: np.ndarray,
        by_mmr: np.ndarray,
        slate: Slate,
    ) -> list[Why]:
        chosen = ranked[slate.places]
        heads = np.asarray(model.predict_heads(x[chosen]), dtype=np.float64)
        heads = heads.reshape(len(chosen), -1)
        rank = np.empty(len(scores), dtype=np.int64)
        rank[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
        fresh_hours = self.rerank_config.fresh_hours
        # the fresh upload's slot, as a place in the ranked list: inserted from outside the
        # MMR order, or moved up to exploration_position
        kept = ~np.isin(ranked, by_mmr)
        moved = self.rerank_config.exploration_position
        if moved is not None and moved < min(len(ranked), len(by_mmr)):
            kept[moved] |= bool(
                by_mmr[moved] != ranked[moved]
                and items.features[rows[ranked[moved]], self._age] <= fresh_hours
            )
        explored = kept[slate.places] | slate.explored  # or drawn by the exploration policy
        fresh = items.features[rows[chosen], self._age] <= fresh_hours
        out = []
        for pos, c in enumerate(chosen.tolist()):
            later = [d for d, e in zip(chosen[pos:].tolist(), explored[pos:], strict=True) if not e]
            if explored[pos]:
                slot = "exploration"
            elif scores[c] >= max(scores[d] for d in later):
                slot = "score"
            else:
                slot = "diversity"
            out.append(
                Why(
                    source="two_tower"
                    if retrieved is not None
                    else "fresh"
                    if fresh[pos]
                    else "popular",
                    retrieval_score=None if retrieved is None else float(retrieved[c]),
                    value=float(scores[c]),
                    heads=dict(zip(model.heads.heads, heads[pos].tolist(), strict=True)),
                    score_rank=int(rank[c]),
                    slot=slot,
                )
            )
        return out

    def _unseen_candidates(
        self,
        state: UserState | None,
        user_vec: Any,
        items: ItemTable,
        retriever: CandidateRetriever | None,
        seen: set[str],
        blocked: set[str],
        k: int,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, dict[str, int], float]:
        """Retrieve, then filter retired videos, blocked creators and what the user saw
        lately; at most ``n_candidates`` remain. Returns (item rows, catalog rows, retrieval
        scores, what was filtered and why, the time retrieval ended)."""
        # a known user's seen videos, as catalog rows: the index search skips them
        seen_catalog = None
        if retriever is not None and state is not None and seen:
            seen_catalog = retriever.catalog.rows(list(seen))
            seen_catalog = seen_catalog[seen_catalog >= 0]
        rows, catalog_rows, retrieved = self._candidate_rows(
            state, user_vec, items, retriever, seen_catalog
        )
        t2 = time.perf_counter()
        if seen_catalog is not None:
            keep, filtered = self._filter(items, rows, np.zeros(len(rows), bool), blocked, k)
            filtered["seen"] = len(seen_catalog)  # skipped by the search
            if keep.sum() < k:  # the index has too few unseen videos: some come back
                wider = self.n_candidates + min(len(seen_catalog), 3 * self.n_candidates)
                rows, catalog_rows, retrieved = self._candidate_rows(
                    state, user_vec, items, retriever, n=wider
                )
                # seen_catalog is only set with a retriever, so catalog_rows is too
                seen_mask = np.isin(catalog_rows, seen_catalog)  # type: ignore[arg-type]
                keep, filtered = self._filter(items, rows, seen_mask, blocked, k)
        else:
            index = items.index
            seen_rows = np.fromiter((index.get(v, -1) for v in seen), np.int64, len(seen))
            keep, filtered = self._filter(items, rows, np.isin(rows, seen_rows), blocked, k)
        keep &= np.cumsum(keep) <= self.n_candidates  # at most n_candidates are ranked
        if not keep.all():
            rows = rows[keep]
            catalog_rows = None if catalog_rows is None else catalog_rows[keep]
            retrieved = None if retrieved is None else retrieved[keep]
        return rows, catalog_rows, retrieved, filtered, t2

    def _rerank(
        self, items: ItemTable, rows: np.ndarray, scores: np.ndarray, k: int, n: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ranked list as positions in ``rows``: diversity (MMR) among the best scored,
        then one slot kept for a fresh upload; and the MMR order before that slot (for
        :class:`Why`). ``n`` (at least ``k``): how long a list exploration needs; the MMR
        pool stays the best ``max(pool, k)``, and MMR and the fresh slot are greedy, so the
        first ``k`` places do not depend on ``n``."""
        cfg = self.rerank_config
        pool = np.argsort(-scores, kind="stable")[: max(cfg.pool, k)]
        topics = items.features[rows[pool], self._slot]
        n = k if n is None else max(n, k)
        chosen = pool[
            mmr_rerank(scores[pool], items.creator_codes[rows[pool]], topics, n, cfg.diversity)
        ]
        if cfg.exploration_position is not None:
            fresh = np.flatnonzero(items.features[rows, self._age] <= cfg.fresh_hours)
            return exploration_slot(chosen, fresh, cfg.exploration_position, scores=scores), chosen
        return chosen, chosen

    def add_videos(self, videos: Any, content: Any) -> int:
        """New uploads: embedded into the retriever's fresh index, default feature rows."""
        added = 0
        if self.retriever is not None:
            added = self.retriever.add_videos(videos, content)  # type: ignore[attr-defined]
        with self._items_lock:
            self.items.append_defaults(list(videos["video_id"]), list(videos["creator_id"]))
        if self.retriever is not None:  # computed here, not by the next request
            self._catalog_to_items(self.retriever, self.items)
        return added
