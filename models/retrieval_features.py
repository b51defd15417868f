"""What the retrieval model tells the ranker: for each (user, video, time) row, the user.item
score and the caption similarity of the video to the user's recent positives, with the user
as of the start of the row's day (Feast point-in-time), exactly as serving computes them.
Training, evaluation and monitoring all add these columns through this module."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from feature_repo.columns import SEQUENCE_COLUMNS, USER_COLUMNS, USER_TOWER_REFS
from features.batch import FEATURE_DEFAULTS
from models.champion import catch_up, champion_retriever
from models.retriever import Retriever
from models.sequence import SequenceTower, sequence_inputs, sequence_user_vectors
from models.two_tower import history_rows, user_matrix, user_vectors
from reelrank.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)


def user_states(store: FeatureStore, pairs: pd.DataFrame) -> pd.DataFrame:
    """User features and history as of the start of each (user_id, day); defaults where the
    user has none yet (new users), none dropped."""
    keys = pairs[["user_id", "day"]].drop_duplicates().reset_index(drop=True)
    ent = pd.DataFrame(
        {
            "user_id": keys["user_id"],
            "event_timestamp": pd.to_datetime(keys["day"]).dt.tz_localize("UTC"),
            "key": np.arange(len(keys)),
        }
    )
    got = store.get_historical_features(entity_df=ent, features=list(USER_TOWER_REFS)).to_df()
    got = got.drop_duplicates("key")
    out = keys.assign(key=np.arange(len(keys))).merge(
        got.drop(columns=["user_id", "event_timestamp"]), on="key", how="left"
    )
    for c in USER_COLUMNS:
        out[c] = out[c].astype("float64").fillna(FEATURE_DEFAULTS[c])
    for c in ("hist_video_ids", *SEQUENCE_COLUMNS):
        out[c] = [list(h) if isinstance(h, list | np.ndarray) else [] for h in out[c]]
    return out.drop(columns=["key"])


def state_events(states: pd.DataFrame) -> list[tuple[list[str], list[int], list[float]]]:
    """The ``user_sequence`` lists of each state row, as the sequence model reads them."""
    return [
        (list(v), [int(a) for a in acts], [float(t) for t in ts])
        for v, acts, ts in zip(
            states["seq_video_ids"], states["seq_actions"], states["seq_ts"], strict=True
        )
    ]


def state_user_vectors(retriever: Retriever, states: pd.DataFrame) -> np.ndarray:
    """Each state row's user vector, whichever kind the retriever's model is (batch torch;
    the numpy forward of serving gives the same vectors)."""
    cat, model = retriever.catalog, retriever.model
    if isinstance(model, SequenceTower):
        inputs = sequence_inputs(cat, state_events(states), model.cfg.seq_len)
        return sequence_user_vectors(model, cat, inputs)
    hist = history_rows(cat, states["hist_video_ids"].tolist(), model.cfg.history_len)
    return user_vectors(model, cat, user_matrix(states), hist)


def add_retrieval_features(
    store: FeatureStore, frame: pd.DataFrame, retriever: Retriever
) -> pd.DataFrame:
    """``x_retrieval_score`` (user . item vector) and ``x_content_similarity`` (the user's
    recent-positive caption centroid . the video's caption) for each (user, video, time) row,
    with the user as of the start of the row's day, exactly as serving computes them.
    Videos the retriever does not know get NaN, which XGBoost treats as missing."""
    day = pd.to_datetime(frame["event_timestamp"], utc=True).dt.tz_localize(None).dt.normalize()
    pairs = pd.DataFrame({"user_id": frame["user_id"].to_numpy(), "day": day.to_numpy()})
    states = user_states(store, pairs)
    key = pd.MultiIndex.from_frame(states[["user_id", "day"]])
    which = key.get_indexer(pd.MultiIndex.from_frame(pairs))
    cat = retriever.catalog
    hist = history_rows(cat, states["hist_video_ids"].tolist(), retriever.model.cfg.history_len)
    u = state_user_vectors(retriever, states)
    # the caption centroid of each user's history, unit length (zeros without history)
    mask = (hist >= 0)[:, :, None]
    centroid = (cat.caption[np.clip(hist, 0, None)] * mask).sum(axis=1)
    norm = np.linalg.norm(centroid, axis=1, keepdims=True)
    centroid = centroid / np.where(norm > 0, norm, 1.0)
    rows = cat.rows(frame["video_id"].tolist())
    ok = rows >= 0
    score = np.full(len(frame), np.nan, np.float32)
    sim = np.full(len(frame), np.nan, np.float32)
    score[ok] = np.einsum("ij,ij->i", u[which[ok]], retriever.item_vectors[rows[ok]])
    sim[ok] = np.einsum("ij,ij->i", centroid[which[ok]], cat.caption[rows[ok]])
    out = frame.copy()
    out["x_retrieval_score"] = score
    out["x_content_similarity"] = sim
    return out


def with_retrieval_features(
    settings: Settings, store: FeatureStore, frames: Sequence[pd.DataFrame], through: date
) -> tuple[list[pd.DataFrame], str | None, Retriever | None]:
    """Add the retrieval features with the retrieval champion (caught up with the catalog up
    to ``through``) to each frame; without a champion they are missing (NaN)."""
    version, retriever = champion_retriever(settings)
    if retriever is None:
        log.warning("no retrieval champion: retrieval features are missing")
        out = [f.assign(x_retrieval_score=np.nan, x_content_similarity=np.nan) for f in frames]
        return out, None, None
    catch_up(retriever, settings, through)
    return [add_retrieval_features(store, f, retriever) for f in frames], version, retriever
