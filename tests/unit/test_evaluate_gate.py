from __future__ import annotations

import math

import numpy as np
import pytest

from reelrank.settings import GateSettings
from training.evaluate import ndcg_at_k
from training.gate import decide

pytestmark = pytest.mark.unit


def test_ndcg_perfect_reversed_and_known_value():
    g = np.array(["a"] * 3)
    rel = np.array([3.0, 1.0, 0.0])
    assert ndcg_at_k(g, rel, np.array([3.0, 2.0, 1.0])) == pytest.approx(1.0)
    worst = ndcg_at_k(g, rel, np.array([1.0, 2.0, 3.0]))
    dcg = 1 / np.log2(3) + 7 / np.log2(4)
    idcg = 7 + 1 / np.log2(3)
    assert worst == pytest.approx(dcg / idcg)


def test_ndcg_ignores_groups_without_relevance_and_cuts_at_k():
    g = np.array(["a", "a", "b", "b"])
    rel = np.array([1.0, 0.0, 0.0, 0.0])
    assert ndcg_at_k(g, rel, np.array([1.0, 0.0, 5.0, 1.0])) == pytest.approx(1.0)
    g = np.array(["a"] * 3)
    assert ndcg_at_k(g, np.array([0.0, 0.0, 1.0]), np.array([3.0, 2.0, 1.0]), k=2) == 0.0
    assert math.isnan(ndcg_at_k(g, np.zeros(3), np.zeros(3)))


GATE = GateSettings(min_margin_over_baseline=0.01, min_margin_over_champion=0.0)
BASE = {"popularity": {"ndcg_at_10": 0.60}, "recent_popularity": {"ndcg_at_10": 0.62}}


def test_gate_passes_when_all_references_are_beaten():
    v = decide({"ndcg_at_10": 0.70}, BASE, {"ndcg_at_10": 0.69}, GATE)
    assert v.promote and v.label == "passed"
    assert v.references == {"popularity": 0.60, "recent_popularity": 0.62, "champion": 0.69}


def test_gate_needs_the_margin_over_baselines():
    v = decide({"ndcg_at_10": 0.625}, BASE, None, GATE)
    assert not v.promote
    assert any("recent_popularity" in r and "<" in r for r in v.reasons)


def test_gate_does_not_promote_a_tie_with_the_champion():
    v = decide({"ndcg_at_10": 0.70}, BASE, {"ndcg_at_10": 0.70}, GATE)
    assert not v.promote


def test_gate_fails_below_the_champion():
    v = decide({"ndcg_at_10": 0.70}, BASE, {"ndcg_at_10": 0.71}, GATE)
    assert not v.promote and any("champion" in r for r in v.reasons)


def test_gate_blockers_veto_promotion():
    v = decide({"ndcg_at_10": 0.9}, BASE, None, GATE, blockers=["champion saw this holdout"])
    assert not v.promote and "champion saw this holdout" in v.reasons


def test_gate_fails_an_unmeasurable_challenger():
    assert not decide({"ndcg_at_10": float("nan")}, BASE, None, GATE).promote
    assert not decide({}, BASE, None, GATE).promote


def test_metrics_survive_a_strict_json_trip_with_undefined_values():
    import json

    from training.evaluate import Metrics, json_safe

    m = Metrics(0.8, float("nan"), 10, 100, gauc=0.7)
    text = json.dumps(json_safe({"m": m.to_dict(), "x": [float("inf"), 1.0]}), allow_nan=False)
    back = json.loads(text)
    assert back["x"] == [None, 1.0]
    again = Metrics.from_dict(back["m"])
    assert again.ndcg_at_10 == 0.8 and again.gauc == 0.7
    assert np.isnan(again.auc) and np.isnan(again.ece)


# -- significance: a paired bootstrap over users of the NDCG@10 difference ---------------------
SIG = GateSettings(min_margin_over_baseline=0.005, min_holdout_rows=100, min_holdout_users=20)


def _holdout(n_users: int, lift: float, seed: int = 3):
    """Feeds of 10 videos, one request per user: the challenger finds the liked video with
    probability ``lift`` more often than chance; the baseline ranks at random."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        liked = rng.integers(10)
        for i in range(10):
            rows.append({"user_id": f"u{u}", "request_id": f"r{u}", "value": float(i == liked)})
    hold = pd.DataFrame(rows)
    noise = rng.random(len(hold))
    knows = np.repeat(rng.random(n_users) < lift, 10)
    challenger = np.where(knows, hold["value"].to_numpy() + noise, rng.random(len(hold)))
    return hold, challenger, noise


def _ndcg(hold, scores) -> float:
    return ndcg_at_k(hold["request_id"].to_numpy(), hold["value"].to_numpy(), scores)


def test_the_bootstrap_promotes_a_real_difference_and_not_noise():
    from training.gate import significance

    hold, better, baseline = _holdout(300, lift=0.3)
    ev = significance(hold, better, {"popularity": baseline}, SIG)
    iv = ev.intervals["popularity"]
    # the point estimate is the NDCG@10 difference itself, inside its interval
    diff = _ndcg(hold, better) - _ndcg(hold, baseline)
    assert iv.mean == pytest.approx(diff) and iv.low < iv.mean < iv.high
    assert iv.low > SIG.min_margin_over_baseline and ev.users == 300 and ev.rows == 3000
    metrics = {"ndcg_at_10": _ndcg(hold, better)}
    base = {"popularity": {"ndcg_at_10": _ndcg(hold, baseline)}}
    passed = decide(metrics, base, None, SIG, evidence=ev)
    assert passed.promote, passed.reasons
    assert any("95% CI" in r for r in passed.reasons)

    # two random scorers: one of them is ahead on the point estimate, never significantly
    hold, noise_a, noise_b = _holdout(300, lift=0.0, seed=5)
    a, b = _ndcg(hold, noise_a), _ndcg(hold, noise_b)
    winner, loser = (noise_a, noise_b) if a > b else (noise_b, noise_a)
    ev = significance(hold, winner, {"popularity": loser}, SIG)
    assert ev.intervals["popularity"].mean > 0 > ev.intervals["popularity"].low
    v = decide(
        {"ndcg_at_10": max(a, b)}, {"popularity": {"ndcg_at_10": min(a, b)}}, None, SIG, evidence=ev
    )
    assert not v.promote and any("not significant" in r for r in v.reasons), v.reasons
    # seeded: the same holdout gives the same interval
    assert significance(hold, winner, {"popularity": loser}, SIG) == ev


def test_the_gate_refuses_a_holdout_too_small_to_judge():
    from training.gate import significance

    hold, better, baseline = _holdout(15, lift=1.0)
    ev = significance(hold, better, {"popularity": baseline}, SIG)
    metrics = {"ndcg_at_10": _ndcg(hold, better)}
    base = {"popularity": {"ndcg_at_10": _ndcg(hold, baseline)}}
    v = decide(metrics, base, None, SIG, evidence=ev)
    assert not v.promote
    assert any("holdout too small" in r and "15 users < 20" in r for r in v.reasons), v.reasons


def test_a_failed_verdict_says_what_failed_and_against_what_not_what_passed():
    """Before: the failure message listed every comparison, the passed ones beside the one
    that failed, so a reader had to find the failure among them."""
    v = decide({"ndcg_at_10": 0.625}, BASE, {"ndcg_at_10": 0.61}, GATE)
    assert not v.promote
    assert v.failures == (
        "ndcg_at_10 0.6250 <= recent_popularity 0.6200 + margin 0.01 (needs >= 0.6300)",
    )
    assert v.summary.startswith("failed: ndcg_at_10 0.6250 <= recent_popularity 0.6200")
    assert "popularity 0.6000" not in v.summary.split("(passed:")[0]
    assert v.summary.endswith("(passed: vs popularity, vs champion)")
    # a passing verdict has no failure and its summary is every comparison
    ok = decide({"ndcg_at_10": 0.70}, BASE, {"ndcg_at_10": 0.69}, GATE)
    assert ok.failures == () and ok.summary == "; ".join(ok.reasons)


def test_a_failed_verdict_names_the_blockers_and_the_small_holdout_as_failures():
    v = decide({"ndcg_at_10": 0.70}, BASE, None, GATE, blockers=["2 broken days in the window"])
    assert v.failures == ("2 broken days in the window",)
    assert v.summary.startswith("failed: 2 broken days in the window")
