"""The statistics of an A/B test, with the user as the unit of analysis.

Every function takes per-user aggregates (one row per user of each arm: a metric's sum, and
for a ratio metric its denominator, e.g. requests), never per-impression rows: impressions of
one user are correlated, and treating them as independent makes intervals too narrow (the
unit test shows it). What is here, and why:

- :func:`diff_of_means`: the difference of two arms' per-user means, with a normal (Welch)
  interval; users are many, so the central limit theorem holds.
- :func:`diff_of_ratios`: the difference of ratio metrics (sum of numerators over sum of
  denominators, e.g. value per request) by the delta method over users.
- :func:`srm`: the sample-ratio-mismatch check, a chi-square test of the users per arm
  against the configured split; a mismatch (p < 0.001) makes the experiment invalid, since
  the assignment or the logging is broken and no effect can be trusted.
- :func:`cuped`: CUPED variance reduction with each user's pre-experiment value of the
  metric as the covariate (one theta pooled over both arms, so it stays unbiased).
- :func:`required_users` and :func:`mde`: the fixed-horizon power calculation.
- :func:`always_valid`: a confidence sequence (the normal-mixture mSPRT of Johari et al.,
  "Peeking at A/B tests", KDD 2017) that stays valid however often it is looked at, so a
  daily report may stop an experiment early without inflating false positives.

scipy provides the distributions; the formulas are short enough to own, which keeps every
figure explainable in the report (statsmodels and the A/B libraries would add dependencies
for a few lines each).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import StrEnum

import numpy as np
from scipy import stats

SRM_P_VALUE = 0.001  # below this the split is not what was configured: the test is invalid


@dataclass(frozen=True)
class Interval:
    """An estimate of (treatment - control) with its standard error and interval."""

    estimate: float
    se: float
    low: float
    high: float
    confidence: float

    @property
    def significant(self) -> bool:
        """The interval excludes zero."""
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _normal(estimate: float, se: float, confidence: float) -> Interval:
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    return Interval(estimate, se, estimate - z * se, estimate + z * se, confidence)


def diff_of_means(control: np.ndarray, treatment: np.ndarray, confidence: float = 0.95) -> Interval:
    """mean(treatment) - mean(control) of per-user values, with a Welch normal interval."""
    a, b = np.asarray(control, np.float64), np.asarray(treatment, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("each arm needs at least two users")
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return _normal(float(b.mean() - a.mean()), se, confidence)


def _ratio_var(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    """(ratio, variance of the ratio estimate) by the delta method over users."""
    n = len(num)
    mx, my = num.mean(), den.mean()
    if my <= 0:
        raise ValueError("a ratio metric needs a positive denominator on average")
    vx, vy = num.var(ddof=1), den.var(ddof=1)
    cxy = float(np.cov(num, den, ddof=1)[0, 1])
    r = mx / my
    var = (vx - 2 * r * cxy + r * r * vy) / (my * my * n)
    return float(r), float(max(var, 0.0))


def diff_of_ratios(
    num_control: np.ndarray,
    den_control: np.ndarray,
    num_treatment: np.ndarray,
    den_treatment: np.ndarray,
    confidence: float = 0.95,
) -> Interval:
    """sum(num)/sum(den) of treatment minus control's, users as the unit (delta method)."""
    arrays = [np.asarray(x, np.float64) for x in (num_control, den_control)]
    ra, va = _ratio_var(*arrays)
    rb, vb = _ratio_var(
        np.asarray(num_treatment, np.float64), np.asarray(den_treatment, np.float64)
    )
    return _normal(rb - ra, math.sqrt(va + vb), confidence)


@dataclass(frozen=True)
class SrmResult:
    users: tuple[int, int]
    expected_share: float  # of the treatment arm
    chi2: float
    p_value: float

    @property
    def mismatch(self) -> bool:
        return self.p_value < SRM_P_VALUE

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "mismatch": self.mismatch}


def srm(n_control: int, n_treatment: int, treatment_share: float) -> SrmResult:
    """Chi-square test of the users per arm against the configured treatment share."""
    if not 0 < treatment_share < 1:
        raise ValueError("the treatment share must be strictly between 0 and 1")
    total = n_control + n_treatment
    expected = np.array([total * (1 - treatment_share), total * treatment_share])
    chi2, p = stats.chisquare([n_control, n_treatment], expected)
    return SrmResult((n_control, n_treatment), treatment_share, float(chi2), float(p))


def cuped(y: np.ndarray, x: np.ndarray, theta: float | None = None) -> tuple[np.ndarray, float]:
    """``y - theta (x - mean x)``: the metric adjusted by its pre-experiment covariate.

    Pass every user of both arms at once (theta pooled over arms keeps the difference of
    means unbiased, since assignment is independent of ``x``); users without a
    pre-experiment value should carry 0 in ``x``."""
    y, x = np.asarray(y, np.float64), np.asarray(x, np.float64)
    if theta is None:
        vx = x.var(ddof=1)
        theta = float(np.cov(y, x, ddof=1)[0, 1] / vx) if vx > 0 else 0.0
    return y - theta * (x - x.mean()), theta


def _z(alpha: float, power: float) -> float:
    return float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))


def required_users(
    effect: float, sd: float, treatment_share: float = 0.5, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Users in total for a two-sided test at ``alpha`` to detect ``effect`` with ``power``,
    given the per-user standard deviation ``sd`` of the metric."""
    if effect <= 0 or sd <= 0:
        raise ValueError("effect and sd must be positive")
    p = treatment_share
    n = (_z(alpha, power) * sd / effect) ** 2 * (1 / p + 1 / (1 - p))
    return math.ceil(n)


def mde(
    n_users: int, sd: float, treatment_share: float = 0.5, alpha: float = 0.05, power: float = 0.8
) -> float:
    """The smallest effect ``n_users`` in total detect with ``power`` (the inverse of
    :func:`required_users`)."""
    p = treatment_share
    return _z(alpha, power) * sd * math.sqrt((1 / p + 1 / (1 - p)) / n_users)


def always_valid(estimate: float, se: float, tau2: float, alpha: float = 0.05) -> Interval:
    """A confidence sequence for (treatment - control): valid at every look at once.

    With the estimate's variance ``V = se**2`` and a normal mixing distribution of variance
    ``tau2`` over the effect, the mSPRT rejects zero exactly when zero is outside
    ``estimate +- sqrt(V (V + tau2) / tau2 * (2 log(1/alpha) + log((V + tau2) / V)))``.
    ``tau2`` sets where the sequence is tightest: the squared effect one hopes to detect, or
    the estimate's variance at the planned horizon, are the usual choices.

    An estimate without variance (``se`` 0: e.g. a guardrail no user of either arm moved)
    is its own zero-width interval."""
    if se < 0 or tau2 < 0 or not (math.isfinite(se) and math.isfinite(tau2)):
        raise ValueError(f"se and tau2 must be finite and not negative, got {se!r}, {tau2!r}")
    if se == 0:
        return Interval(estimate, 0.0, estimate, estimate, 1 - alpha)
    if tau2 == 0:
        raise ValueError("tau2 must be positive when the estimate has a variance")
    v = se * se
    half = math.sqrt(v * (v + tau2) / tau2 * (2 * math.log(1 / alpha) + math.log((v + tau2) / v)))
    return Interval(estimate, se, estimate - half, estimate + half, 1 - alpha)


class Decision(StrEnum):
    SHIP = "ship"
    KEEP_RUNNING = "keep running"
    STOP_FOR_HARM = "stop for harm"
    INVALID = "invalid"
    NO_EFFECT = "no detectable effect"


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"decision": str(self.decision), "reasons": list(self.reasons)}


def decide(
    primary: Interval,
    guardrails: dict[str, Interval],
    check: SrmResult,
    horizon_reached: bool,
) -> Verdict:
    """The typed decision from always-valid intervals (so it may be taken at any look).

    ``primary``: treatment - control of the metric to raise. ``guardrails``: treatment -
    control of metrics that must not get worse, each oriented so that negative is harm
    (negate a metric where lower is better, e.g. skip rate or latency). Order: an SRM
    invalidates everything; significant harm on the primary or a guardrail stops; a primary
    significantly up with no harmed guardrail ships; otherwise keep running until the
    horizon, where the answer is "no detectable effect"."""
    if check.mismatch:
        n0, n1 = check.users
        return Verdict(
            Decision.INVALID,
            (
                f"sample ratio mismatch: {n0:,} control vs {n1:,} treatment users for a "
                f"{check.expected_share:.0%} treatment share (chi-square p = "
                f"{check.p_value:.2g} < {SRM_P_VALUE})",
            ),
        )
    harmed = [
        f"{name} got worse: {iv.estimate:+.4g} ({iv.low:+.4g} .. {iv.high:+.4g})"
        for name, iv in {"primary": primary, **guardrails}.items()
        if iv.high < 0
    ]
    if harmed:
        return Verdict(Decision.STOP_FOR_HARM, tuple(harmed))
    text = f"primary {primary.estimate:+.4g} ({primary.low:+.4g} .. {primary.high:+.4g})"
    if primary.low > 0:
        return Verdict(Decision.SHIP, (f"{text}: significantly up, no guardrail harmed",))
    if horizon_reached:
        return Verdict(Decision.NO_EFFECT, (f"{text}: the horizon is reached",))
    return Verdict(Decision.KEEP_RUNNING, (f"{text}: not significant yet",))
