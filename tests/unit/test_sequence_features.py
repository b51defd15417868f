"""The ``user_sequence`` feature: its action codes, and that the training examples read the
same events serving reads from the feature table (train/serve parity)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from features.batch import as_of_timestamp
from features.sequence import (
    COMPLETED,
    LIKED,
    RATIO_SHIFT,
    SKIPPED,
    action_codes,
    epoch_seconds,
    is_positive,
    ordered_events,
    sequences_before,
    user_sequence,
)

pytestmark = pytest.mark.unit
D0 = date(2025, 6, 1)


def impressions(n: int, days: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp(D0, tz="UTC")
    ts = start + pd.to_timedelta(rng.uniform(0, days * 86400, n).round(3), unit="s")
    ts = ts.sort_values()  # the lake holds each day's rows in time order, roughly
    done = rng.random(n) < 0.4
    return pd.DataFrame(
        {
            "user_id": rng.choice(["a", "b", "c", "d"], n),
            "video_id": [f"v{i}" for i in rng.integers(0, 30, n)],
            "ts": ts,
            "completed": done,
            "liked": rng.random(n) < 0.1,
            "shared": rng.random(n) < 0.05,
            "skipped": ~done & (rng.random(n) < 0.5),
            "watch_time_s": rng.uniform(0, 40, n),
            "duration_s": 20.0,
        }
    )


def test_action_codes_carry_the_bits_and_the_watch_ratio_bucket():
    frame = pd.DataFrame(
        {
            "completed": [True, False, False],
            "liked": [True, False, False],
            "shared": [False, False, False],
            "skipped": [False, True, False],
            "watch_time_s": [30.0, 1.0, 9.0],
            "duration_s": [20.0, 20.0, 20.0],
        }
    )
    codes = action_codes(frame)
    assert codes.tolist() == [COMPLETED | LIKED | (4 << RATIO_SHIFT), SKIPPED, 2 << RATIO_SHIFT]
    assert is_positive(codes).tolist() == [True, False, False]


def test_epoch_seconds_are_exact_microseconds():
    stamps = ["2025-06-01 00:00:00.000001", "1970-01-01 00:00:00.000000"]
    ts = pd.Series(pd.to_datetime(stamps, utc=True))
    assert epoch_seconds(ts).tolist() == [1748736000.000001, 0.0]


@pytest.mark.parametrize("length", [3, 50])
def test_training_sequences_equal_the_served_feature_rows(length: int):
    """A training example of day D + 1 reads the user's events before D + 1 starts: exactly
    the ``user_sequence`` row of day D that the online store serves that day."""
    imp = impressions(600, days=35, seed=length)
    events = ordered_events(imp)
    checked = 0
    for day in (D0, D0 + timedelta(days=10), D0 + timedelta(days=33)):
        table = user_sequence(imp, day, length).set_index("user_id")
        cutoff = as_of_timestamp(day).timestamp()
        users = ["a", "b", "c", "d", "nobody"]
        got = sequences_before(events, pd.Series(users), pd.Series([cutoff] * 5), length)
        for u, (ids, acts, ts) in zip(users, got, strict=True):
            if u not in table.index:
                assert ids == [] and acts == [] and ts == []
                continue
            row = table.loc[u]
            assert ids == list(row["seq_video_ids"])
            assert acts == list(row["seq_actions"])
            assert ts == list(row["seq_ts"])
            assert len(ids) == min(length, len(ids)) and ts == sorted(ts)
            checked += 1
    assert checked >= 10
    # the 28-day window: nothing older than 28 days before the cutoff
    late = user_sequence(imp, D0 + timedelta(days=33), 10_000)
    oldest = min(min(t) for t in late["seq_ts"])
    assert oldest >= as_of_timestamp(D0 + timedelta(days=33 - 28)).timestamp()
