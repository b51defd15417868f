"""The ranker's objectives and how their predictions combine into one value score.

A short-video ranker is judged on watch time and satisfaction, not clicks, so the ranker
predicts several outcomes of an impression ("heads") and the feed is sorted by a weighted
sum of them. The heads and their weights travel inside the model file (XGBoost booster
attributes), so what serves is exactly what was evaluated and gated, whatever the settings
say later. Shared by training, serving and monitoring.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from reelrank.settings import DEFAULT_WEIGHTS, HEADS, check_objective_weights

__all__ = ["DEFAULT_WEIGHTS", "HEADS", "ValueHeads"]

HEADS_ATTR = "reelrank_heads"
WEIGHTS_ATTR = "reelrank_weights"


@dataclass(frozen=True)
class ValueHeads:
    """Which outputs a booster has, and the weights that turn them into the value score."""

    heads: tuple[str, ...]
    weights: np.ndarray  # one per head

    @classmethod
    def from_weights(cls, weights: Mapping[str, float]) -> ValueHeads:
        check_objective_weights(dict(weights))
        heads = tuple(h for h in HEADS if weights.get(h, 0.0) != 0.0)
        return cls(heads, np.array([weights[h] for h in heads], dtype=np.float64))

    @classmethod
    def of_booster(cls, booster: Any) -> ValueHeads:
        """The heads stored in a booster; a booster without them is a single-output value
        classifier (the foundation's format), whose output is the value score itself."""
        heads, weights = booster.attr(HEADS_ATTR), booster.attr(WEIGHTS_ATTR)
        if heads is None or weights is None:
            return cls(("value",), np.ones(1))
        return cls(tuple(json.loads(heads)), np.asarray(json.loads(weights), dtype=np.float64))

    def store_in(self, booster: Any) -> None:
        booster.set_attr(
            **{
                HEADS_ATTR: json.dumps(list(self.heads)),
                WEIGHTS_ATTR: json.dumps(list(self.weights)),
            }
        )

    def as_dict(self) -> dict[str, float]:
        return {h: float(w) for h, w in zip(self.heads, self.weights, strict=True)}

    def combine(self, predictions: np.ndarray) -> np.ndarray:
        """(n, heads) predictions, or (n,) for one head, to the (n,) value score."""
        p = np.asarray(predictions, dtype=np.float64)
        if p.ndim == 1:
            p = p.reshape(-1, 1)
        if p.shape[1] != len(self.heads):
            raise ValueError(f"model returned {p.shape[1]} outputs for heads {self.heads}")
        return p @ self.weights
