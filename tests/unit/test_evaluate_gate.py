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
