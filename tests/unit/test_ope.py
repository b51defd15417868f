"""Off-policy estimators: exact on hand-computed logs, unbiased on a bandit whose truth is known.

The simulated bandit has a finite set of contexts, so the target policy's true value is an
exact sum. Each user keeps one context for all their rows, so rows of a user are correlated
(the reason the user is the unit of the intervals).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments.ope import dr, ips, snips

pytestmark = pytest.mark.unit

# a hand-computed log of five rows
R = np.array([1.0, 0.0, 1.0, 0.0, 1.0])
P = np.array([0.5, 0.25, 0.5, 0.8, 0.2])
PI = np.array([1.0, 0.5, 0.25, 0.4, 0.1])  # weights 2, 2, 0.5, 0.5, 0.5
Q = np.array([0.6, 0.2, 0.6, 0.1, 0.5])  # a reward model's prediction of the logged action
V = np.array([0.7, 0.3, 0.4, 0.2, 0.5])  # its expectation under the target policy


def test_ips_by_hand():
    e = ips(R, P, PI)
    # w r = 2, 0, 0.5, 0, 0.5: mean 0.6; squared deviations sum to 2.7, variance 2.7 / 4
    assert e.value == pytest.approx(0.6)
    assert e.se == pytest.approx(math.sqrt(0.675 / 5))
    assert e.low == pytest.approx(0.6 - 1.959964 * e.se, abs=1e-6)
    assert e.high == pytest.approx(0.6 + 1.959964 * e.se, abs=1e-6)
    assert e.ess == pytest.approx(5.5**2 / 8.75)  # (sum w)^2 / sum w^2
    assert (e.n_rows, e.n_users, e.clip, e.clipped_share) == (5, 5, None, 0.0)
    assert e.mean_weight == pytest.approx(1.1)
    assert e.estimator == "ips"


def test_clipped_ips_by_hand_reports_its_clip():
    e = ips(R, P, PI, clip=1.0)
    # weights 1, 1, 0.5, 0.5, 0.5: w r = 1, 0, 0.5, 0, 0.5
    assert e.value == pytest.approx(0.4)
    assert e.clip == 1.0 and e.clipped_share == pytest.approx(0.4)
    assert e.ess == pytest.approx(3.5**2 / 2.75)


def test_ips_with_users_as_the_unit_by_hand():
    users = np.array(["a", "a", "b", "c", "c"])
    e = ips(R, P, PI, users=users)
    # per user: sum w r = 2, 0.5, 0.5 over rows 2, 1, 2; the value is 3 / 5
    # delta method: residuals S - 0.6 N = 0.8, -0.1, -0.7 (variance 0.57), mean rows 5 / 3
    assert e.value == pytest.approx(0.6)
    assert e.n_users == 3
    assert e.se == pytest.approx(math.sqrt(0.57 / (3 * (5 / 3) ** 2)))


def test_snips_by_hand():
    e = snips(R, P, PI)
    # sum w r = 3, sum w = 5.5
    assert e.value == pytest.approx(3 / 5.5)
    # delta method over rows: residuals w (r - value), variance over n, divided by mean w^2
    res = np.array([2, 2, 0.5, 0.5, 0.5]) * (R - 3 / 5.5)
    assert e.se == pytest.approx(math.sqrt(res.var(ddof=1) / 5 / 1.1**2))
    assert e.estimator == "snips"


def test_dr_by_hand():
    e = dr(R, P, PI, Q, V)
    # v + w (r - q) = 0.7 + 2 * 0.4, 0.3 + 2 * -0.2, 0.4 + 0.5 * 0.4, 0.2 + 0.5 * -0.1,
    #                 0.5 + 0.5 * 0.5  =  1.5, -0.1, 0.6, 0.15, 0.75
    terms = np.array([1.5, -0.1, 0.6, 0.15, 0.75])
    assert e.value == pytest.approx(terms.mean())
    assert e.se == pytest.approx(terms.std(ddof=1) / math.sqrt(5))
    assert e.estimator == "dr"


def test_snips_is_the_on_policy_mean_when_the_target_is_the_logging_policy():
    rng = np.random.default_rng(0)
    r = rng.binomial(1, 0.3, 400).astype(float)
    p = rng.uniform(0.05, 0.9, 400)
    users = rng.integers(0, 80, 400)
    same = snips(r, p, p, users=users)
    assert same.value == pytest.approx(r.mean())
    # SNIPS ignores a constant factor on the weights: half the logging policy's probabilities
    assert snips(r, p, 0.5 * p, users=users).value == pytest.approx(r.mean())
    assert same.ess == pytest.approx(400) and same.mean_weight == pytest.approx(1.0)
    plain = ips(r, p, p, users=users)  # weights of 1: IPS is the plain mean, with the same se
    assert plain.value == pytest.approx(r.mean()) and plain.se == pytest.approx(same.se)


class Bandit:
    """Ten contexts, five actions, Bernoulli rewards with a known mean per (context, action)
    (contexts differ a lot in their level, so the rows of a user are strongly correlated);
    a softmax logging policy and a different softmax target policy."""

    def __init__(self, seed: int = 11) -> None:
        rng = np.random.default_rng(seed)
        self.n_ctx, self.n_act = 10, 5
        self.ctx_p = rng.dirichlet(np.ones(self.n_ctx))
        level = rng.normal(0.0, 2.0, (self.n_ctx, 1))
        self.mean = 1 / (1 + np.exp(-level - rng.normal(-0.5, 1.2, (self.n_ctx, self.n_act))))
        self.logging = _softmax(rng.normal(0, 0.8, (self.n_ctx, self.n_act)))
        self.target = _softmax(3.0 * self.mean + rng.normal(0, 0.3, (self.n_ctx, self.n_act)))
        self.truth = float(self.ctx_p @ (self.target * self.mean).sum(axis=1))

    def log(
        self, rng: np.random.Generator, n_users: int, rows_per_user: int
    ) -> dict[str, np.ndarray]:
        """One logged data set: each user has one context for all their rows."""
        ctx_u = rng.choice(self.n_ctx, n_users, p=self.ctx_p)
        ctx = np.repeat(ctx_u, rows_per_user)
        cum = self.logging[ctx].cumsum(axis=1)
        act = (rng.random(len(ctx))[:, None] > cum).sum(axis=1)
        reward = (rng.random(len(ctx)) < self.mean[ctx, act]).astype(float)
        return {
            "reward": reward,
            "propensity": self.logging[ctx, act],
            "target": self.target[ctx, act],
            "users": np.repeat(np.arange(n_users), rows_per_user),
            "q": self.mean[ctx, act],  # the perfect reward model
            "v": (self.target * self.mean)[ctx].sum(axis=1),
        }


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_ips_and_dr_are_unbiased_and_their_intervals_cover_the_truth():
    bandit = Bandit()
    rng = np.random.default_rng(1)
    sims = 300
    names = ("ips", "snips", "dr", "dr_bad", "naive", "clip")
    found: dict[str, list[float]] = {k: [] for k in names}
    covered = dict.fromkeys(found, 0)
    for _ in range(sims):
        d = bandit.log(rng, n_users=80, rows_per_user=15)
        args = (d["reward"], d["propensity"], d["target"])
        estimates = {
            "ips": ips(*args, users=d["users"]),
            "snips": snips(*args, users=d["users"]),
            "dr": dr(*args, d["q"], d["v"], users=d["users"]),
            # a wrong reward model (everything 0.3 too high): still unbiased, propensities known
            "dr_bad": dr(*args, d["q"] + 0.3, d["v"] + 0.3, users=d["users"]),
            "naive": ips(*args),  # every row its own unit: the wrong unit here
            "clip": ips(*args, clip=2.0, users=d["users"]),
        }
        for k, e in estimates.items():
            found[k].append(e.value)
            covered[k] += e.low <= bandit.truth <= e.high
    for k in ("ips", "dr", "dr_bad"):
        values = np.array(found[k])
        tolerance = 4 * values.std() / math.sqrt(sims)
        assert abs(values.mean() - bandit.truth) < tolerance, (k, values.mean(), bandit.truth)
        assert 0.90 <= covered[k] / sims <= 0.98, (k, covered[k] / sims)
    assert 0.90 <= covered["snips"] / sims <= 0.98  # its bias is of order 1 / n: negligible
    assert covered["naive"] / sims < 0.88  # rows of a user are not independent
    clipped = np.array(found["clip"])  # clipping trades variance for a bias the test sees
    assert clipped.mean() < bandit.truth - 4 * clipped.std() / math.sqrt(sims)


def test_dr_with_a_perfect_reward_model_beats_ips_on_variance():
    bandit = Bandit()
    rng = np.random.default_rng(2)
    by_ips, by_dr, se_ratio = [], [], []
    for _ in range(200):
        d = bandit.log(rng, n_users=1200, rows_per_user=1)  # one context per row
        args = (d["reward"], d["propensity"], d["target"])
        a = ips(*args, users=d["users"])
        b = dr(*args, d["q"], d["v"], users=d["users"])
        by_ips.append(a.value)
        by_dr.append(b.value)
        se_ratio.append(b.se / a.se)
    assert np.std(by_dr) < 0.7 * np.std(by_ips)
    assert np.median(se_ratio) < 0.7


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"propensity": [0.5, 0.0, 0.5]}, "propensit"),
        ({"propensity": [0.5, 1.2, 0.5]}, "propensit"),
        ({"target": [0.5, -0.1, 0.5]}, "target"),
        ({"target": [0.5, 1.5, 0.5]}, "target"),
        ({"reward": [1.0, float("nan"), 0.0]}, "NaN"),
        ({"propensity": [0.5, float("nan"), 0.5]}, "NaN"),
        ({"reward": [1.0, 0.0]}, "length"),
        ({"users": ["a", "b"]}, "length"),
        ({"users": ["a", "a", "a"]}, "two users"),
        ({"clip": 0.0}, "clip"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(change, message):
    kwargs: dict[str, object] = {
        "reward": [1.0, 0.0, 1.0],
        "propensity": [0.5, 0.5, 0.5],
        "target": [0.5, 0.5, 0.5],
        "users": None,
        "clip": None,
    }
    kwargs.update(change)
    for estimator in (ips, snips):
        with pytest.raises(ValueError, match=message):
            estimator(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        dr(q=[0.5, 0.5, 0.5], v=[0.5, 0.5, 0.5], **kwargs)  # type: ignore[arg-type]


def test_dr_refuses_a_bad_reward_model():
    with pytest.raises(ValueError, match="q"):
        dr([1.0, 0.0], [0.5, 0.5], [0.5, 0.5], [0.5], [0.5, 0.5])
    with pytest.raises(ValueError, match="NaN"):
        dr([1.0, 0.0], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, float("inf")])
