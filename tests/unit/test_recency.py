from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from training.recency import recency_weights

pytestmark = pytest.mark.unit


def test_rows_from_the_drift_on_weigh_one_and_older_rows_halve_per_half_life():
    ts = pd.Series(
        pd.to_datetime(
            ["2025-06-10 23:59", "2025-06-08 00:00", "2025-06-06 12:00", "2025-06-11 03:00"],
            utc=True,
        )
    )
    w = recency_weights(ts, date(2025, 6, 10), half_life_days=2.0)
    assert np.allclose(w, [1.0, 0.5, 0.25, 1.0])


def test_naive_timestamps_are_utc_and_the_half_life_must_be_positive():
    ts = pd.Series(pd.to_datetime(["2025-06-09 10:00"]))
    assert recency_weights(ts, pd.Timestamp("2025-06-10"), 1.0) == pytest.approx([0.5])
    with pytest.raises(ValueError, match="positive"):
        recency_weights(ts, date(2025, 6, 10), 0.0)
