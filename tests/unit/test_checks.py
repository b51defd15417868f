"""The gate's behavioural checks catch what they claim to catch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_repo.columns import AFFINITY_COLUMNS
from features.cross import topic_affinity
from training.checks import behavioural_checks

pytestmark = pytest.mark.unit


@pytest.fixture
def rows() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 200
    df = pd.DataFrame(rng.dirichlet(np.ones(len(AFFINITY_COLUMNS)), n), columns=AFFINITY_COLUMNS)
    df["v_topic_slot"] = rng.integers(0, 12, n).astype(float)
    df["video_id"] = [f"v{i}" for i in range(n)]
    df["position"] = rng.integers(0, 10, n)
    df["quality"] = rng.random(n)
    return df


def affinity_scorer(df: pd.DataFrame) -> np.ndarray:
    aff = topic_affinity(df[list(AFFINITY_COLUMNS)].to_numpy(), df["v_topic_slot"].to_numpy())
    return aff + 0.05 * df["quality"].to_numpy()


def test_a_sensible_model_passes_every_check(rows):
    assert behavioural_checks(affinity_scorer, rows) == {
        "invariance": None,
        "direction": None,
        "minimum_functionality": None,
    }


def test_a_model_that_reads_the_position_fails_invariance(rows):
    out = behavioural_checks(lambda d: affinity_scorer(d) + d["position"].to_numpy(), rows)
    assert out["invariance"] and "position" in out["invariance"]


def test_a_model_that_ignores_taste_fails_direction_and_minimum_functionality(rows):
    out = behavioural_checks(lambda d: d["quality"].to_numpy(), rows)
    assert out["direction"] and out["minimum_functionality"]
    assert out["invariance"] is None


def test_a_failed_check_says_what_it_needed(rows):
    """Before: "raised the score on 82% of rows", without the 95% it needed."""
    out = behavioural_checks(lambda d: d["quality"].to_numpy(), rows)
    assert "needs more than 95% and a positive mean gain" in out["direction"], out["direction"]
    assert "needs at least 80%" in out["minimum_functionality"], out["minimum_functionality"]
