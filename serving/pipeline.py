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
from features.cross import MODEL_FEATURES, topic_affinity

log = logging.getLogger(__name__)
USER_FEATURES: tuple[str, ...] = (*USER_COLUMNS, *AFFINITY_COLUMNS)
ITEM_FEATURES: tuple[str, ...] = (*VIDEO_COLUMNS, *CREATOR_COLUMNS)


class Scorer(Protocol):
    def inplace_predict(self, data: np.ndarray) -> Any: ...


class UserFeatureReader(Protocol):
    def __call__(self, user_id: str) -> np.ndarray | None:
        """The user's features in ``USER_FEATURES`` order, or None for an unknown user."""


@dataclass
class RankedModel:
    scorer: Scorer
    name: str
    version: str
    features: tuple[str, ...] = MODEL_FEATURES


@dataclass
class ItemTable:
    """Per-video features (video and creator views) as one dense float32 array."""

    video_ids: np.ndarray
    features: np.ndarray  # (n_videos, len(ITEM_FEATURES))
    missing: np.ndarray  # (n_videos,) bool: row filled with defaults
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.index = {v: i for i, v in enumerate(self.video_ids)}

    @classmethod
    def from_columns(cls, video_ids: Sequence[str], columns: dict[str, Sequence[Any]]) -> ItemTable:
        n = len(video_ids)
        mat = np.empty((n, len(ITEM_FEATURES)), dtype=np.float32)
        missing = np.zeros(n, dtype=bool)
        for j, name in enumerate(ITEM_FEATURES):
            col = np.array([np.nan if v is None else v for v in columns[name]], dtype=np.float64)
            gaps = np.isnan(col)
            missing |= gaps
            col[gaps] = FEATURE_DEFAULTS[name]
            mat[:, j] = col
        return cls(np.asarray(video_ids), mat, missing)

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
    def __init__(
        self,
        model: RankedModel,
        items: ItemTable,
        users: UserFeatureReader,
        n_candidates: int = 200,
    ) -> None:
        self.model = model
        self.items = items
        self.users = users
        self.n_candidates = n_candidates
        self.default_user = np.array([FEATURE_DEFAULTS[c] for c in USER_FEATURES], np.float32)
        self._candidates = items.popular(n_candidates)
        self._aff = [USER_FEATURES.index(c) for c in AFFINITY_COLUMNS]
        self._slot = ITEM_FEATURES.index("v_topic_slot")
        self._compl = ITEM_FEATURES.index("v_completion_rate_7d")
        self.stats = {"requests": 0, "cold_start": 0, "default_item_rows": 0}

    def feature_matrix(self, user: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The model input for one user against item ``rows``, in ``MODEL_FEATURES`` order."""
        item = self.items.features[rows]
        x = np.empty((len(rows), len(MODEL_FEATURES)), dtype=np.float32)
        x[:, : len(USER_COLUMNS)] = user[: len(USER_COLUMNS)]
        x[:, len(USER_COLUMNS) : len(USER_COLUMNS) + len(ITEM_FEATURES)] = item
        aff = topic_affinity(user[self._aff][None, :], item[:, self._slot])
        x[:, -2] = aff
        x[:, -1] = aff * item[:, self._compl]
        return x

    def _score(self, user_id: str, rows: np.ndarray) -> tuple[np.ndarray, bool, dict[str, float]]:
        t0 = time.perf_counter()
        user = self.users(user_id)
        cold = user is None
        t1 = time.perf_counter()
        x = self.feature_matrix(self.default_user if cold else user, rows)
        scores = np.asarray(self.model.scorer.inplace_predict(x), dtype=np.float64).reshape(-1)
        t2 = time.perf_counter()
        self.stats["requests"] += 1
        self.stats["cold_start"] += int(cold)
        self.stats["default_item_rows"] += int(self.items.missing[rows].sum())
        return scores, cold, {"user_features": (t1 - t0) * 1e3, "score": (t2 - t1) * 1e3}

    def rank(self, user_id: str, video_ids: Sequence[str]) -> Scored:
        """Score the given candidates for the user, best first; unknown videos are reported."""
        known = [v for v in video_ids if v in self.items.index]
        unknown = [v for v in video_ids if v not in self.items.index]
        rows = np.fromiter((self.items.index[v] for v in known), dtype=np.int64, count=len(known))
        if len(rows) == 0:
            return Scored([], [], self.users(user_id) is None, unknown, {})
        scores, cold, timings = self._score(user_id, rows)
        order = np.argsort(-scores, kind="stable")
        return Scored([known[i] for i in order], scores[order].tolist(), cold, unknown, timings)

    def recommend(self, user_id: str, k: int) -> Scored:
        """Top ``k`` of the candidate pool for the user (cold start: default user features)."""
        rows = self._candidates
        scores, cold, timings = self._score(user_id, rows)
        top = np.argsort(-scores, kind="stable")[:k]
        return Scored(
            self.items.video_ids[rows[top]].tolist(), scores[top].tolist(), cold, [], timings
        )
