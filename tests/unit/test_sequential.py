"""The leave-last-out protocol: its split, its metrics, and that it ranks a model that can
read order above one that cannot on a log where order is everything."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.two_tower import TowerConfig
from training.sequential import (
    content_free_catalog,
    hit_and_ndcg,
    sequential_protocol,
    split_leave_last_out,
)

pytestmark = pytest.mark.unit


def _cfg() -> TowerConfig:
    return TowerConfig(
        caption_dim=8,
        visual_dim=2,
        topics=["unknown"],
        dim=16,
        id_buckets=4096,
        creator_buckets=16,
        seq_len=24,
        seq_dim=16,
    )


def successor_impressions(n_items: int, n_users: int, seed: int) -> pd.DataFrame:
    """Each user completes a walk of 20 videos: after each, the next one (by id) half of the
    time, a random one otherwise; the last two steps (the validation and test targets) are
    always the next one. One skip sits in the middle. Which video comes next follows from the
    latest video: the set of videos watched holds many candidates."""
    rng = np.random.default_rng(seed)
    rows = []
    t0 = pd.Timestamp("2025-06-01", tz="UTC")
    for u in range(n_users):
        walk = [int(rng.integers(n_items))]
        for step in range(19):
            forced = step >= 17
            nxt = (walk[-1] + 1) % n_items if forced or rng.random() < 0.5 else None
            walk.append(int(rng.integers(n_items)) if nxt is None else nxt)
        seq = [(i, True) for i in walk]
        seq.insert(10, (int(rng.integers(n_items)), False))
        for j, (i, done) in enumerate(seq):
            rows.append(
                {
                    "user_id": f"u{u:04d}",
                    "video_id": f"v{i:03d}",
                    "ts": t0 + pd.Timedelta(minutes=j),
                    "completed": done,
                    "liked": False,
                    "shared": False,
                    "skipped": not done,
                    "watch_time_s": 10.0 if done else 1.0,
                    "duration_s": 10.0,
                }
            )
    return pd.DataFrame(rows)


def test_hit_and_ndcg_count_ties_against_the_target():
    scores = np.array([[3.0, 2.0, 1.0], [1.0, 1.0, 1.0]])
    hr, ndcg = hit_and_ndcg(scores, np.array([1, 0]), k=1)
    assert hr == 0.0 and ndcg == 0.0  # rank 1, and a three-way tie
    hr, ndcg = hit_and_ndcg(scores, np.array([1, 0]), k=2)
    assert hr == 0.5 and ndcg == pytest.approx(0.5 / np.log2(3.0))


def test_the_sequence_model_finds_what_the_order_says_comes_next():
    """Under the protocol, the sequence model ranks the next video far above popularity
    (the comparison with the pooled tower on such a task: tests/unit/test_sequence.py)."""
    imp = successor_impressions(100, 200, seed=1)
    cfg = _cfg()
    catalog = content_free_catalog([f"v{i:03d}" for i in range(100)], cfg)
    out = sequential_protocol(
        imp,
        catalog,
        cfg,
        kinds=("sequence",),
        max_epochs=12,
        patience=12,
        learning_rate=1e-2,
        seq_batch_size=16,
    )
    assert out["n_users"] == 200 and out["n_items"] == 100
    assert out["sequence_hr_at_10"] >= 0.3, out
    assert out["sequence_hr_at_10"] > out["popularity_hr_at_10"] + 0.15, out
    assert out["sequence_ndcg_at_10"] <= out["sequence_hr_at_10"]
    assert "pooled_hr_at_10" not in out


def test_the_protocol_holds_out_each_users_last_positive_for_every_model():
    imp = successor_impressions(100, 60, seed=2)
    cfg = _cfg()
    catalog = content_free_catalog([f"v{i:03d}" for i in range(100)], cfg)
    users, cuts = split_leave_last_out(imp, catalog)
    assert len(users) == 60
    for ids, _, _ in users.values():
        assert len(ids) == 21  # 20 completed + 1 skip
    u = sorted(users)[0]
    val, test = cuts[u]
    assert (val, test) == (19, 20)  # the last two positives
    walk = imp[imp["user_id"] == u].sort_values("ts")
    assert users[u][0][test] == walk["video_id"].iloc[-1]
    out = sequential_protocol(imp, catalog, cfg, k=5, max_epochs=1, patience=1)
    for key in ("popularity", "pooled", "sequence"):
        assert 0.0 <= out[f"{key}_ndcg_at_5"] <= out[f"{key}_hr_at_5"] <= 1.0
    assert out["pooled_epochs"] == 1 and out["sequence_epochs"] == 1
