"""The A/B statistics hold their promises on worlds whose truth is known (simulated users)."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.stats import (
    Decision,
    always_valid,
    cuped,
    decide,
    diff_of_means,
    diff_of_ratios,
    mde,
    required_users,
    srm,
)

pytestmark = pytest.mark.unit


def _users(rng: np.random.Generator, n: int, lift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-user (value sum, requests): users differ in activity and in their own taste, so
    one user's requests are correlated (the reason the user is the unit)."""
    requests = rng.poisson(20, n) + 1
    taste = rng.normal(0.3, 0.15, n) + lift
    value = rng.binomial(requests, np.clip(taste, 0, 1)).astype(float)
    return value, requests.astype(float)


def test_the_mean_interval_covers_the_truth_at_its_nominal_rate():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(1000):
        a, b = rng.exponential(1.0, 300), rng.exponential(1.0, 300) + 0.1
        iv = diff_of_means(a, b)
        hits += iv.low <= 0.1 <= iv.high
    assert 0.93 <= hits / 1000 <= 0.97


def test_a_ratio_metric_needs_the_user_as_its_unit():
    """An A/A on value per request: the delta method over users keeps 5% false positives;
    treating each request as independent (the wrong unit) gives far more."""
    rng = np.random.default_rng(1)
    delta_fp = naive_fp = 0
    sims = 600
    for _ in range(sims):
        va, ra = _users(rng, 400)
        vb, rb = _users(rng, 400)
        delta_fp += diff_of_ratios(va, ra, vb, rb).significant
        # per request: a Bernoulli rate with n = all requests
        pa, pb = va.sum() / ra.sum(), vb.sum() / rb.sum()
        se = np.sqrt(pa * (1 - pa) / ra.sum() + pb * (1 - pb) / rb.sum())
        naive_fp += abs(pb - pa) > 1.96 * se
    assert delta_fp / sims <= 0.075
    assert naive_fp / sims >= 0.15  # why the unit matters


def test_srm_blocks_a_broken_split_and_passes_a_fair_one():
    assert srm(10_000, 10_600, 0.5).mismatch
    assert not srm(10_000, 10_050, 0.5).mismatch
    assert not srm(9_000, 1_000, 0.1).mismatch
    with pytest.raises(ValueError):
        srm(1, 1, 1.0)


def test_cuped_shrinks_the_variance_and_keeps_the_estimate_unbiased():
    rng = np.random.default_rng(2)
    raw, adjusted, widths = [], [], []
    for _ in range(400):
        pre = rng.normal(1.0, 1.0, 1000)  # last month's value per user
        arm = rng.integers(0, 2, 1000)
        y = 0.8 * pre + rng.normal(0, 0.5, 1000) + 0.05 * arm
        y_adj, theta = cuped(y, pre)
        assert 0.7 < theta < 0.9
        plain = diff_of_means(y[arm == 0], y[arm == 1])
        cup = diff_of_means(y_adj[arm == 0], y_adj[arm == 1])
        raw.append(plain.estimate)
        adjusted.append(cup.estimate)
        widths.append(cup.se / plain.se)
    assert abs(np.mean(adjusted) - 0.05) < 0.004  # unbiased
    assert np.std(adjusted) < 0.6 * np.std(raw) and np.median(widths) < 0.6


def test_the_power_calculation_gives_the_power_it_promises():
    rng = np.random.default_rng(3)
    effect, sd = 0.1, 1.0
    n = required_users(effect, sd)
    assert mde(n, sd) == pytest.approx(effect, rel=0.01)
    detected = 0
    for _ in range(500):
        a, b = rng.normal(0, sd, n // 2), rng.normal(effect, sd, n // 2)
        detected += diff_of_means(a, b).low > 0
    assert 0.74 <= detected / 500 <= 0.86


def test_always_valid_intervals_survive_daily_peeking():
    """An A/A looked at every day for 14 days: the fixed-horizon interval, peeked at daily,
    finds an "effect" far more often than 5%; the confidence sequence does not."""
    rng = np.random.default_rng(4)
    sims, days, per_day = 600, 14, 100
    naive = sequential = 0
    for _ in range(sims):
        a, b = rng.normal(0, 1, (days, per_day)), rng.normal(0, 1, (days, per_day))
        horizon_se = np.sqrt(2 / (days * per_day))
        seen_naive = seen_seq = False
        for d in range(1, days + 1):
            iv = diff_of_means(a[:d].ravel(), b[:d].ravel())
            seen_naive |= iv.significant
            seen_seq |= always_valid(iv.estimate, iv.se, tau2=horizon_se**2).significant
        naive += seen_naive
        sequential += seen_seq
    assert sequential / sims <= 0.05
    assert naive / sims >= 0.12


def test_the_decision_follows_srm_harm_and_significance():
    up = always_valid(0.05, 0.01, tau2=1e-4)
    flat = always_valid(0.0, 0.01, tau2=1e-4)
    down = always_valid(-0.05, 0.01, tau2=1e-4)
    fair, broken = srm(1000, 1000, 0.5), srm(1000, 1300, 0.5)
    assert decide(up, {}, broken, False).decision is Decision.INVALID
    assert "sample ratio mismatch" in decide(up, {}, broken, False).reasons[0]
    harm = decide(up, {"skip rate (lower is better)": down}, fair, False)
    assert harm.decision is Decision.STOP_FOR_HARM and "skip rate" in harm.reasons[0]
    assert decide(down, {}, fair, False).decision is Decision.STOP_FOR_HARM
    assert decide(up, {"latency": flat}, fair, False).decision is Decision.SHIP
    assert decide(flat, {}, fair, False).decision is Decision.KEEP_RUNNING
    assert decide(flat, {}, fair, True).decision is Decision.NO_EFFECT
