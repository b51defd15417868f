"""User x video cross features and the ranker's feature matrix, shared by training and serving.

Both paths build the model input with :func:`model_matrix` from the same named columns, so
the features a model was trained on and the ones it is served can never drift apart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from feature_repo.columns import AFFINITY_COLUMNS, CREATOR_COLUMNS, USER_COLUMNS, VIDEO_COLUMNS

CROSS_COLUMNS: tuple[str, ...] = ("x_topic_affinity", "x_affinity_x_completion")
# computed with the retrieval model (training.retrieval.add_retrieval_features / serving)
RETRIEVAL_COLUMNS: tuple[str, ...] = ("x_retrieval_score", "x_content_similarity")
MODEL_FEATURES: tuple[str, ...] = (
    *USER_COLUMNS,
    *VIDEO_COLUMNS,
    *CREATOR_COLUMNS,
    *CROSS_COLUMNS,
    *RETRIEVAL_COLUMNS,
)


def topic_affinity(affinity: np.ndarray, topic_slot: np.ndarray) -> np.ndarray:
    """The user's affinity for each video's topic: ``affinity[i, slot[i]]``.

    ``affinity`` is (n, slots) or (1, slots) for one user against many candidates.
    """
    slots = np.clip(topic_slot.astype(np.int64), 0, affinity.shape[1] - 1)
    if affinity.shape[0] == 1:
        return affinity[0, slots]
    return affinity[np.arange(len(slots)), slots]


def add_cross_features(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    aff = topic_affinity(
        out[list(AFFINITY_COLUMNS)].to_numpy(np.float64), out["v_topic_slot"].to_numpy()
    )
    out["x_topic_affinity"] = aff
    out["x_affinity_x_completion"] = aff * out["v_completion_rate_7d"].to_numpy(np.float64)
    return out


def model_matrix(df: pd.DataFrame) -> pd.DataFrame:
    """The ranker's input, in the fixed column order, as float32."""
    return add_cross_features(df)[list(MODEL_FEATURES)].astype(np.float32)
