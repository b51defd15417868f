"""Off-policy estimates of ranking policies, checked by hand and against the simulator's truth.

The truth of a challenger is what the closed loop measures when the challenger itself serves
the same day (the same requests, on a fresh world): the oracle's expected completion per
shown slot. The estimates come from the day the champion served with exploration, through
the policy plumbing of ``bench/experiments.py`` (ranked lists, the serving exploration
policy, its exact conditional propensities and sampled marginal ones).
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from experiments.offpolicy import prefix_product, slate_estimates, slate_log, slot_marginals
from reelrank.settings import SimulationSettings
from serving.exploration import ExplorationPolicy, slate_propensities

pytestmark = pytest.mark.unit


def load_bench() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "experiments.py"
    spec = importlib.util.spec_from_file_location("bench_experiments", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_experiments"] = module
    spec.loader.exec_module(module)
    return module


# two requests of two slots: (reward, logged p, target pi) per row
REQUEST = np.array(["r1", "r1", "r2", "r2"])
USERS = np.array(["a", "a", "b", "c"])
R = np.array([1.0, 0.0, 1.0, 1.0])
P = np.array([0.5, 0.8, 0.25, 0.5])
PI = np.array([1.0, 0.4, 0.5, 0.25])
Q = np.array([0.6, 0.2, 0.5, 0.4])
V = np.array([0.7, 0.3, 0.6, 0.5])


def test_prefix_weights_and_sequential_dr_by_hand() -> None:
    np.testing.assert_allclose(prefix_product(PI / P, REQUEST), [2.0, 1.0, 2.0, 1.0])
    log = slate_log(REQUEST, R, P, PI, USERS)
    prefix = slate_estimates(log, "prefix", q=Q, v=V)
    # W = 2, 1, 2, 1: IPS = (2 + 0 + 2 + 1) / 4
    assert prefix["ips"].value == pytest.approx(5 / 4)
    assert prefix["snips"].value == pytest.approx(5 / 6)
    # W_{j-1} v + W_j (r - q): 0.7 + 2 * 0.4, 2 * 0.3 + 1 * -0.2, 0.6 + 2 * 0.5, 2 * 0.5 + 0.6
    assert prefix["dr"].value == pytest.approx((1.5 + 0.4 + 1.6 + 1.6) / 4)
    # per-slot ratios 2, 0.5, 2, 0.5: the conditional (and marginal) weighting reads them as is
    for weighting in ("conditional", "marginal"):
        one = slate_estimates(log, weighting, q=Q, v=V)
        assert one["ips"].value == pytest.approx((2 + 0 + 2 + 0.5) / 4)
        assert one["dr"].value == pytest.approx((1.5 + 0.2 + 1.6 + 0.8) / 4)
        assert one["ips"].n_users == 3


def test_a_log_whose_requests_are_interleaved_is_refused() -> None:
    with pytest.raises(ValueError, match="contiguous"):
        slate_log(["r1", "r2", "r1"], [1, 0, 1], [0.5] * 3, [0.5] * 3, ["a", "b", "a"])
    with pytest.raises(ValueError, match="weighting"):
        slate_estimates(slate_log(REQUEST, R, P, PI, USERS), "slots")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="both q and v"):
        slate_estimates(slate_log(REQUEST, R, P, PI, USERS), q=Q)


@pytest.mark.parametrize(
    "policy",
    [ExplorationPolicy(epsilon=0.4, top_m=3), ExplorationPolicy("plackett_luce", 0.0, 1.0, 3)],
)
def test_sampled_marginals_match_the_exact_ones_of_the_serving_policy(
    policy: ExplorationPolicy,
) -> None:
    """The bench's vectorised sampler draws what ``draw_slate`` draws: its marginal of each
    (place, slot) matches the exact one, summed from serving's conditional probabilities
    over every prefix that ends with that place in that slot."""
    bench = load_bench()
    n, k = 6, 3
    places = bench.sample_places(policy, n, k, 40_000, np.random.default_rng(3))
    sampled = slot_marginals(places, n)
    ranked = list(range(n))
    # the marginal of slot j sums the probability of every prefix through slot j
    exact = np.zeros((n, k))
    for j in range(k):
        for prefix in itertools.permutations(ranked, j + 1):
            exact[prefix[-1], j] += float(np.prod(slate_propensities(policy, ranked, prefix)))
    np.testing.assert_allclose(exact.sum(axis=0), 1.0)
    np.testing.assert_allclose(sampled, exact, atol=0.01)


def test_estimates_from_champion_days_agree_with_the_challengers_served_truth() -> None:
    """A champion (the oracle's utility plus noise) serves a day with wide exploration; from
    its log, the marginal-weighted DR and SNIPS intervals cover the true value of a better
    and of a noisier challenger (the day served by each, through the serving exploration),
    and a deliberately worse one (the champion's own list upside down) comes out below the
    champion, as it truly is. The conditional weighting, the numbers serving logs, overstates
    the better challenger: the bias its docstring describes."""
    bench = load_bench()
    sim = SimulationSettings(
        seed=0, n_users=300, n_creators=15, n_videos=600, days=4, catalog_history_days=30
    )
    logging = ExplorationPolicy(epsilon=0.3, top_m=20)
    target = ExplorationPolicy(epsilon=0.05, top_m=10)
    noise = {"champion": 1.0, "better": 0.5, "older": 2.0}
    day = bench.evaluate_day(sim, 3, [logging], target, 20, noise, "completed", 0, draws=1000)
    runs = {(r.target, r.weighting, r.estimator): r for r in day.runs}
    truth = day.truths
    assert truth["better"] > truth["champion"] + 0.05  # the challengers do differ
    assert truth["reversed"] < truth["champion"] - 0.05
    for name in ("better", "older"):
        for est in ("dr", "snips"):
            r = runs[(name, "marginal", est)]
            assert r.low <= truth[name] <= r.high, (name, est, r)
            assert r.high - r.low < 0.2  # an interval that says something
    worse, champion = runs[("reversed", "marginal", "dr")], runs[("champion", "marginal", "dr")]
    assert worse.high < champion.high and worse.value < champion.value
    biased = runs[("better", "conditional", "snips")]
    assert biased.low > truth["better"]
