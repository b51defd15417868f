"""The recommender as a plain class: given a model and feature readers, rank and recommend.

Nothing here knows about HTTP or BentoML, so it is tested directly. Per-request work is numpy
only: one online read for the user, item features gathered from an in-memory table (loaded
in bulk from Feast's online store), one ``inplace_predict`` on a contiguous float32 matrix.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from feature_repo.columns import AFFINITY_COLUMNS, CREATOR_COLUMNS, USER_COLUMNS, VIDEO_COLUMNS
from features.batch import FEATURE_DEFAULTS
from features.cross import (
    MODEL_FEATURES,
    SERVED_POSITION,
    SURFACES,
    creator_affinity,
    surface_code,
    topic_affinity,
)
from reelrank.objectives import ValueHeads

log = logging.getLogger(__name__)
USER_FEATURES: tuple[str, ...] = (*USER_COLUMNS, *AFFINITY_COLUMNS)
ITEM_FEATURES: tuple[str, ...] = (*VIDEO_COLUMNS, *CREATOR_COLUMNS)


class Scorer(Protocol):
    def inplace_predict(self, data: np.ndarray) -> Any: ...


@dataclass
class UserState:
    """What one online read returns for a user."""

    features: np.ndarray  # USER_FEATURES order, defaults filled in
    history: list[str] = field(default_factory=list)  # recent positive video ids, newest first
    # the user's 28-day history with creators: parallel lists (view user_creator_history)
    creator_ids: list[str] = field(default_factory=list)
    creator_imp: list[float] = field(default_factory=list)
    creator_pos: list[float] = field(default_factory=list)


class UserFeatureReader(Protocol):
    def __call__(self, user_id: str) -> UserState | None:
        """The user's state, or None for an unknown user."""


class CandidateRetriever(Protocol):
    """What the recommender needs of the retrieval stage (``serving.retriever.Retriever``)."""

    def user_vector(self, user_features: np.ndarray | None, history: Sequence[str]) -> Any: ...
    def retrieve(self, user_vec: Any, n: int) -> tuple[np.ndarray, np.ndarray]: ...
    def scores(self, user_vec: Any, video_ids: Sequence[str]) -> np.ndarray: ...
    def history_caption(self, history: Sequence[str]) -> np.ndarray: ...
    def caption_similarity(self, centroid: np.ndarray, video_ids: Sequence[str]) -> np.ndarray: ...


@dataclass
class RankedModel:
    scorer: Scorer
    name: str
    version: str
    features: tuple[str, ...] = MODEL_FEATURES
    heads: ValueHeads = field(default_factory=lambda: ValueHeads(("value",), np.ones(1)))


@dataclass
class ItemTable:
    """Per-video features (video and creator views) as one dense float32 array."""

    video_ids: np.ndarray
    features: np.ndarray  # (n_videos, len(ITEM_FEATURES))
    missing: np.ndarray  # (n_videos,) bool: row filled with defaults
    creator_ids: np.ndarray  # (n_videos,) object: each video's creator ("" when unknown)
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
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
        return cls(np.asarray(video_ids), mat, missing, creators)

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
        ids = np.concatenate([self.video_ids, np.asarray(new, dtype=self.video_ids.dtype)])
        creators = np.concatenate(
            [self.creator_ids, np.array([creator_of[v] for v in new], dtype=object)]
        )
        index = {**self.index, **{v: len(self.video_ids) + i for i, v in enumerate(new)}}
        self.features, self.missing, self.creator_ids = features, missing, creators
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


class Recommender:
    """retrieve -> features -> score -> top k.

    With a retriever, a known user's candidates are the ``n_candidates`` nearest videos to
    the user tower's vector (new uploads included through the index's fresh part); without
    one, or for an unknown user, they are the recent-popular + fresh pool.
    """

    def __init__(
        self,
        model: RankedModel,
        items: ItemTable,
        users: UserFeatureReader,
        n_candidates: int = 500,
        retriever: CandidateRetriever | None = None,
    ) -> None:
        self.model = model
        self.items = items
        self.users = users
        self.n_candidates = n_candidates
        self.retriever = retriever
        self.default_user = np.array([FEATURE_DEFAULTS[c] for c in USER_FEATURES], np.float32)
        self._candidates = items.popular(n_candidates)
        self._aff = [USER_FEATURES.index(c) for c in AFFINITY_COLUMNS]
        self._slot = ITEM_FEATURES.index("v_topic_slot")
        self._compl = ITEM_FEATURES.index("v_completion_rate_7d")
        self._col = {c: i for i, c in enumerate(MODEL_FEATURES)}
        self._surface = {name: float(surface_code(name)[0]) for name in SURFACES}
        self.stats = {"requests": 0, "cold_start": 0, "default_item_rows": 0, "retrieved": 0}

    def feature_matrix(
        self,
        user: np.ndarray,
        rows: np.ndarray,
        retrieval_score: np.ndarray | None = None,
        content_similarity: np.ndarray | None = None,
        creator: tuple[np.ndarray, np.ndarray] | None = None,
        surface: str = "spotlight",
    ) -> np.ndarray:
        """The model input for one user against item ``rows``, in ``MODEL_FEATURES`` order.

        ``creator``: the user's impressions of and positive rate with each row's creator
        (:func:`features.cross.creator_affinity`); None means no history with any of them.
        Every row is scored at the served feed position (see :mod:`features.cross`)."""
        item = self.items.features[rows]
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

    def _retrieval_features(
        self, state: UserState | None, user_vec: Any, ids: Sequence[str], scores: Any = None
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        if self.retriever is None:
            return None, None
        if scores is None:
            scores = self.retriever.scores(user_vec, ids)
        history = state.history if state is not None else []
        sim = self.retriever.caption_similarity(self.retriever.history_caption(history), ids)
        return np.asarray(scores, np.float32), sim

    def _score(
        self,
        state: UserState | None,
        rows: np.ndarray,
        retrieval: tuple[np.ndarray | None, np.ndarray | None],
        surface: str = "spotlight",
    ) -> np.ndarray:
        user = self.default_user if state is None else state.features
        creator = None
        if state is not None and state.creator_ids:
            creator = creator_affinity(
                state.creator_ids,
                state.creator_imp,
                state.creator_pos,
                self.items.creator_ids[rows],
            )
        x = self.feature_matrix(user, rows, *retrieval, creator=creator, surface=surface)
        self.stats["requests"] += 1
        self.stats["cold_start"] += int(state is None)
        self.stats["default_item_rows"] += int(self.items.missing[rows].sum())
        model = self.model  # one read: a hot swap between here and combine cannot mix models
        return model.heads.combine(model.scorer.inplace_predict(x))

    def _user_vec(self, state: UserState | None) -> Any:
        if self.retriever is None:
            return None
        if state is None:
            return self.retriever.user_vector(None, [])
        return self.retriever.user_vector(state.features[: len(USER_COLUMNS)], state.history)

    def rank(self, user_id: str, video_ids: Sequence[str], surface: str = "spotlight") -> Scored:
        """Score the given candidates for the user, best first; unknown videos are reported."""
        t0 = time.perf_counter()
        index = self.items.index
        known = [v for v in video_ids if v in index]
        unknown = [v for v in video_ids if v not in index]
        state = self.users(user_id)
        if not known:
            return Scored([], [], state is None, unknown, {})
        rows = np.fromiter((index[v] for v in known), dtype=np.int64, count=len(known))
        t1 = time.perf_counter()
        retrieval = self._retrieval_features(state, self._user_vec(state), known)
        scores = self._score(state, rows, retrieval, surface)
        order = np.argsort(-scores, kind="stable")
        t2 = time.perf_counter()
        timings = {"user_features": (t1 - t0) * 1e3, "score": (t2 - t1) * 1e3}
        return Scored(
            [known[i] for i in order], scores[order].tolist(), state is None, unknown, timings
        )

    def candidates(self, state: UserState | None, user_vec: Any) -> tuple[list[str], Any]:
        """Candidate ids (and their retrieval scores when retrieved) for a user."""
        if self.retriever is not None and state is not None:
            ids, scores = self.retriever.retrieve(user_vec, self.n_candidates)
            index = self.items.index
            keep = np.fromiter((v in index for v in ids), dtype=bool, count=len(ids))
            self.stats["retrieved"] += int(keep.sum())
            return ids[keep].tolist(), np.asarray(scores)[keep]
        return self.items.video_ids[self._candidates].tolist(), None

    def recommend(self, user_id: str, k: int, surface: str = "spotlight") -> Scored:
        """Top ``k`` for the user: retrieve, score with the ranker, sort."""
        t0 = time.perf_counter()
        state = self.users(user_id)
        t1 = time.perf_counter()
        user_vec = self._user_vec(state)
        ids, retrieved = self.candidates(state, user_vec)
        t2 = time.perf_counter()
        if not ids:
            return Scored([], [], state is None, [], {})
        index = self.items.index
        rows = np.fromiter((index[v] for v in ids), dtype=np.int64, count=len(ids))
        retrieval = self._retrieval_features(state, user_vec, ids, retrieved)
        scores = self._score(state, rows, retrieval, surface)
        top = np.argsort(-scores, kind="stable")[:k]
        t3 = time.perf_counter()
        return Scored(
            [ids[i] for i in top],
            scores[top].tolist(),
            state is None,
            [],
            {
                "user_features": (t1 - t0) * 1e3,
                "retrieve": (t2 - t1) * 1e3,
                "score": (t3 - t2) * 1e3,
            },
        )

    def add_videos(self, videos: Any, content: Any) -> int:
        """New uploads: embedded into the retriever's fresh index, default feature rows."""
        added = 0
        if self.retriever is not None:
            added = self.retriever.add_videos(videos, content)  # type: ignore[attr-defined]
        self.items.append_defaults(list(videos["video_id"]), list(videos["creator_id"]))
        return added
