"""After a drift, the retrain that weighs the days since it beats the one that does not.

The same harness as ``bench/drift_retrain.py`` on a tiny version 2 world: a topic surge on
day 8, rankers trained on the 5 days before the holdout (one of them after the surge), with
and without the weights the training uses while a drift episode is open."""

from __future__ import annotations

import pytest

from bench.drift_retrain import Case, run_case

pytestmark = [pytest.mark.model]


def test_recent_weighted_retrain_beats_the_unweighted_one_after_a_topic_surge():
    case = Case(
        "topic_surge",
        seed=1,
        n_users=500,
        n_videos=1000,
        n_creators=50,
        drift_day=8,
        lag=1,
        window=5,
    )
    res = run_case(case, half_life=0.5)
    weighted, plain = res["recent-weighted"], res["retrained"]
    assert weighted["auc"] > plain["auc"] + 0.02, res
    assert weighted["ndcg"] > plain["ndcg"] + 0.01, res
    assert weighted["ndcg"] > res["stale"]["ndcg"], res  # and the model before the surge
    assert weighted["ndcg"] < res["oracle"]["ndcg"], res
