"""User x video cross features and the ranker's feature matrix, shared by training and serving.

Both paths build the model input with :func:`model_matrix` from the same named columns, so
the features a model was trained on and the ones it is served can never drift apart.

Context features describe where the video would be shown: the surface (known at request
time) and the feed position. Position is a training-only signal: attention fades down the
feed, so the model is trained with the logged position to explain that fade, and every
candidate is then scored as if shown first (``serve=True``), the usual way to keep a
ranker from learning the old policy's ordering.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from feature_repo.columns import AFFINITY_COLUMNS, CREATOR_COLUMNS, USER_COLUMNS, VIDEO_COLUMNS
from ingest.schema import SURFACES as CONTRACT_SURFACES

CROSS_COLUMNS: tuple[str, ...] = ("x_topic_affinity", "x_affinity_x_completion")
# from the user_creator_history view (one read per user, computed per candidate)
USER_CREATOR_CROSS: tuple[str, ...] = ("x_creator_imp_28d", "x_creator_pos_rate")
# computed with the retrieval model (training.retrieval.add_retrieval_features / serving)
RETRIEVAL_COLUMNS: tuple[str, ...] = ("x_retrieval_score", "x_content_similarity")
CONTEXT_COLUMNS: tuple[str, ...] = ("ctx_surface", "ctx_position")
MODEL_FEATURES: tuple[str, ...] = (
    *USER_COLUMNS,
    *VIDEO_COLUMNS,
    *CREATOR_COLUMNS,
    *CROSS_COLUMNS,
    *USER_CREATOR_CROSS,
    *RETRIEVAL_COLUMNS,
    *CONTEXT_COLUMNS,
)
# the model's surface codes are positions in the lake contract's list (append, never reorder)
SURFACES: tuple[str, ...] = CONTRACT_SURFACES
SERVED_POSITION = 0.0
# a creator the user has not seen gets the prior rate; a few impressions move it
CREATOR_RATE_PRIOR = 0.25
CREATOR_RATE_WEIGHT = 2.0


def surface_code(surface: str | Sequence[str] | pd.Series) -> np.ndarray:
    """Surface names as the numbers the model reads (unknown names are an error)."""
    names = [surface] if isinstance(surface, str) else list(surface)
    lookup = {s: float(i) for i, s in enumerate(SURFACES)}
    try:
        return np.array([lookup[s] for s in names], dtype=np.float32)
    except KeyError as err:
        raise ValueError(f"unknown surface {err.args[0]!r}; expected one of {SURFACES}") from err


def creator_rate(imp: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return (pos + CREATOR_RATE_WEIGHT * CREATOR_RATE_PRIOR) / (imp + CREATOR_RATE_WEIGHT)


def creator_affinity(
    creator_ids: Sequence[str],
    imp_28d: Sequence[float],
    pos_28d: Sequence[float],
    candidate_creators: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """One user's impressions of and positive rate with each candidate's creator.

    The serving path: the user's lists come from one online read, the candidates' creators
    from the in-memory item table."""
    stats = {c: (i, p) for c, i, p in zip(creator_ids, imp_28d, pos_28d, strict=True)}
    got = [stats.get(c, (0.0, 0.0)) for c in candidate_creators]
    imp = np.fromiter((g[0] for g in got), dtype=np.float64, count=len(got))
    pos = np.fromiter((g[1] for g in got), dtype=np.float64, count=len(got))
    return imp.astype(np.float32), creator_rate(imp, pos).astype(np.float32)


def creator_affinity_coded(
    creator_codes: np.ndarray,
    imp_28d: Sequence[float],
    pos_28d: Sequence[float],
    candidate_codes: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`creator_affinity` with creators as integer codes (-1: a creator no candidate
    can have): a sorted search instead of a dict lookup per candidate. A creator listed
    twice counts with its last entry, as in :func:`creator_affinity`."""
    codes = np.asarray(creator_codes, dtype=np.int64)
    n = len(candidate_codes)
    if not len(codes):
        imp = np.zeros(n)
        return imp.astype(np.float32), creator_rate(imp, imp).astype(np.float32)
    # the last entry of each code: unique over the reversed list
    uniq, first_in_reversed = np.unique(codes[::-1], return_index=True)
    at = len(codes) - 1 - first_in_reversed
    imp_u = np.asarray(imp_28d, dtype=np.float64)[at]
    pos_u = np.asarray(pos_28d, dtype=np.float64)[at]
    where = np.minimum(np.searchsorted(uniq, candidate_codes), len(uniq) - 1)
    hit = uniq[where] == candidate_codes
    imp = np.where(hit, imp_u[where], 0.0)
    pos = np.where(hit, pos_u[where], 0.0)
    return imp.astype(np.float32), creator_rate(imp, pos).astype(np.float32)


def add_creator_affinity(df: pd.DataFrame) -> pd.DataFrame:
    """The training path of :func:`creator_affinity`, vectorised over rows.

    ``df`` holds ``creator_id`` and each row's user lists ``uc_creator_ids``, ``uc_imp_28d``,
    ``uc_pos_28d`` (None or empty for a user with no history); the lists are replaced by
    ``x_creator_imp_28d`` and ``x_creator_pos_rate``.
    """

    def lists(col: str) -> list[Any]:
        return [v if isinstance(v, list | np.ndarray) else [] for v in df[col]]

    ids, imps, poss = lists("uc_creator_ids"), lists("uc_imp_28d"), lists("uc_pos_28d")
    lengths = np.fromiter((len(v) for v in ids), dtype=np.int64, count=len(ids))
    imp = np.zeros(len(df))
    pos = np.zeros(len(df))
    if lengths.sum():
        flat_ids = np.concatenate([np.asarray(v, dtype=object) for v in ids if len(v)])
        flat_imp = np.concatenate([np.asarray(v, dtype=np.float64) for v in imps if len(v)])
        flat_pos = np.concatenate([np.asarray(v, dtype=np.float64) for v in poss if len(v)])
        owner = np.repeat(np.arange(len(df)), lengths)
        hit = flat_ids == df["creator_id"].to_numpy(dtype=object)[owner]
        imp[owner[hit]] = flat_imp[hit]
        pos[owner[hit]] = flat_pos[hit]
    out = df.drop(columns=["uc_creator_ids", "uc_imp_28d", "uc_pos_28d"])
    out["x_creator_imp_28d"] = imp
    out["x_creator_pos_rate"] = creator_rate(imp, pos)
    return out


def topic_affinity(affinity: np.ndarray, topic_slot: np.ndarray) -> np.ndarray:
    """The user's affinity for each video's topic: ``affinity[i, slot[i]]``.

    ``affinity`` is (n, slots) or (1, slots) for one user against many candidates.
    """
    slots = np.clip(topic_slot.astype(np.int64), 0, affinity.shape[1] - 1)
    if affinity.shape[0] == 1:
        return affinity[0, slots]
    return affinity[np.arange(len(slots)), slots]


def add_cross_features(df: pd.DataFrame, serve: bool = True) -> pd.DataFrame:
    out = df.copy()
    aff = topic_affinity(
        out[list(AFFINITY_COLUMNS)].to_numpy(np.float64), out["v_topic_slot"].to_numpy()
    )
    out["x_topic_affinity"] = aff
    out["x_affinity_x_completion"] = aff * out["v_completion_rate_7d"].to_numpy(np.float64)
    out["ctx_surface"] = surface_code(out["surface"])
    out["ctx_position"] = (
        SERVED_POSITION if serve else out["position"].to_numpy(np.float64).clip(0.0, 50.0)
    )
    return out


def model_matrix(df: pd.DataFrame, serve: bool = True) -> pd.DataFrame:
    """The ranker's input, in the fixed column order, as float32.

    ``serve=False`` (training only) keeps the logged feed position; otherwise every row is
    scored at the served position, as the online path does."""
    return add_cross_features(df, serve)[list(MODEL_FEATURES)].astype(np.float32)
