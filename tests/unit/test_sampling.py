"""Training-window sampling: past the row budgets, whole requests (train) and whole users
(holdout) are kept by a stable hash, one day in memory at a time; below them, nothing is
dropped."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ingest.lake import read_table
from ingest.pipeline import ingest_simulated
from tests.conftest import tiny_settings
from training.dataset import DataWindow, keep_share, sampled_impressions

pytestmark = pytest.mark.unit


def test_keep_share_is_stable_and_close_to_the_share():
    ids = pd.Series([f"r{i}" for i in range(20_000)])
    kept = keep_share(ids, 0.25)
    assert abs(kept.mean() - 0.25) < 0.02
    np.testing.assert_array_equal(
        kept, keep_share(ids.sample(frac=1.0, random_state=1).sort_index(), 0.25)
    )
    # a smaller share keeps a subset of a larger one
    assert not (keep_share(ids, 0.1) & ~kept).any()
    assert keep_share(ids, 1.0).all()


def test_the_window_is_sampled_by_request_and_user(tmp_path):
    settings = tiny_settings(tmp_path / "var")
    window = DataWindow.ending_at(settings.sim.end_date, settings.training.train_days)
    ingest_simulated(settings, window.holdout)
    full_train = read_table(
        settings.lake_dir, "impressions", start=window.train_start, end=window.train_end
    )
    full_hold = read_table(
        settings.lake_dir, "impressions", start=window.holdout, end=window.holdout
    )

    train, hold, report = sampled_impressions(settings, window)  # budgets above the data
    assert len(train) == len(full_train) and len(hold) == len(full_hold)
    assert report.rows_in_window == {"train": len(full_train), "holdout": len(full_hold)}

    budget = settings.model_copy(
        update={
            "training": settings.training.model_copy(
                update={
                    "max_train_rows": len(full_train) // 4,
                    "max_holdout_rows": len(full_hold) // 3,
                }
            )
        }
    )
    train, hold, report = sampled_impressions(budget, window)
    assert report.rows_kept == {"train": len(train), "holdout": len(hold)}
    assert 0.18 < len(train) / len(full_train) < 0.32
    assert 0.22 < len(hold) / len(full_hold) < 0.45
    # whole requests and whole users: every kept one has all of its rows
    per_request = full_train.groupby("request_id").size()
    kept_request = train.groupby("request_id").size()
    assert (kept_request == per_request[kept_request.index]).all()
    per_user = full_hold.groupby("user_id").size()
    kept_user = hold.groupby("user_id").size()
    assert (kept_user == per_user[kept_user.index]).all()
    # the same share of every day
    share = (
        train.groupby(train["ts"].dt.date).size()
        / full_train.groupby(full_train["ts"].dt.date).size()
    )
    assert share.between(0.12, 0.4).all(), share
