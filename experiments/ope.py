"""Off-policy evaluation: a target policy's value estimated from another policy's log.

A log row is one shown action: in a feed, one (request, slot) with the video shown there.
Each row carries the observed reward ``r`` (e.g. 1 when the impression brought value), the
logging policy's probability ``p`` of the action it logged (its propensity, in (0, 1]), and
the target policy's probability ``pi`` of that same action; the doubly robust estimator also
takes a reward model's prediction ``q`` for the logged action and its expectation ``v`` under
the target policy (``sum over actions of pi(a) q(a)`` for that slot). The importance weight
is ``w = pi / p``. The estimand is the target policy's mean reward per row (per shown slot);
times the slots of a request it is the value per request.

- :func:`ips`: inverse propensity scoring, ``sum(w r) / n``; unbiased when every action the
  target may take had a positive logging propensity, but its variance grows with the weights.
- :func:`snips`: self-normalised IPS, ``sum(w r) / sum(w)``; a ratio, slightly biased in
  small samples but far steadier when weights are large; its interval is the delta method's.
- :func:`dr`: doubly robust, ``sum(v + w (r - q)) / n``; unbiased when the propensities are
  right whatever the reward model, and with a good reward model its variance is far below
  IPS's (only the model's residuals are weighted).

Weights can be clipped at ``clip`` (``min(w, clip)``): less variance for a downward bias
when rewards are positive; the clip and the share of rows it touched are reported with the
estimate, never silent.

The unit of the intervals is the user, as in :mod:`experiments.stats`: the rows of one user
are correlated (the same tastes, the same session), so each estimate is a ratio of per-user
sums (its numerator, and the user's rows or weights as its denominator) and its standard
error comes from the delta method over users. Passing no ``users`` treats every row as its
own unit, which is right only for independent rows (the unit test shows how far intervals
fall short otherwise). The effective sample size ``(sum w)^2 / sum w^2`` says how many rows
of the target policy's own log the weighted log is worth: far below the row count, the
estimate rests on a few rows.

References: Horvitz and Thompson (1952) for IPS, Swaminathan and Joachims, "The
self-normalized estimator for counterfactual learning" (NeurIPS 2015), Dudik, Langford and
Li, "Doubly robust policy evaluation and learning" (ICML 2011). The formulas are a few lines
each (the ``obp`` library does not install on this project's Python).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TypeAlias

import numpy as np
from scipy import stats

ArrayLike: TypeAlias = np.ndarray | Sequence[float]
Ids: TypeAlias = np.ndarray | Sequence[object]  # one user id per row, of any kind


@dataclass(frozen=True)
class OpeEstimate:
    """One estimate of a target policy's mean reward per row, with its interval.

    ``ess``: the effective sample size of the (clipped) weights; ``mean_weight``: their mean,
    near 1 when the target policy stays where the logging policy went (far from 1: support
    the log lacks, or propensities that are wrong); ``clip``: the weight cap, None for none;
    ``clipped_share``: the share of rows whose weight it lowered."""

    estimator: str
    value: float
    se: float
    low: float
    high: float
    confidence: float
    n_rows: int
    n_users: int
    ess: float
    mean_weight: float
    clip: float | None
    clipped_share: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _array(name: str, x: ArrayLike, n: int | None = None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    if n is not None and len(a) != n:
        raise ValueError(f"{name} has length {len(a)}, but the log has {n} rows")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or infinite values (rows {_bad_rows(a)})")
    return a


def _bad_rows(a: np.ndarray) -> str:
    rows = np.flatnonzero(~np.isfinite(a))
    return ", ".join(str(i) for i in rows[:5]) + (" ..." if len(rows) > 5 else "")


@dataclass(frozen=True)
class _Log:
    reward: np.ndarray
    weight: np.ndarray  # pi / p, clipped
    user: np.ndarray  # 0 .. n_users - 1 per row
    n_users: int
    clip: float | None
    clipped_share: float


def _log(
    reward: ArrayLike,
    propensity: ArrayLike,
    target: ArrayLike,
    users: Ids | None,
    clip: float | None,
) -> _Log:
    r = _array("reward", reward)
    n = len(r)
    if n == 0:
        raise ValueError("the log is empty")
    p = _array("propensity", propensity, n)
    pi = _array("target", target, n)
    if ((p <= 0) | (p > 1)).any():
        bad = np.flatnonzero((p <= 0) | (p > 1))
        raise ValueError(
            f"logging propensities must be in (0, 1]: {len(bad)} rows are not (first: row "
            f"{bad[0]}, {p[bad[0]]}); a zero propensity means the log cannot say anything "
            "about that action"
        )
    if ((pi < 0) | (pi > 1)).any():
        bad = np.flatnonzero((pi < 0) | (pi > 1))
        raise ValueError(
            f"target-policy probabilities must be in [0, 1]: {len(bad)} rows are not "
            f"(first: row {bad[0]}, {pi[bad[0]]})"
        )
    if clip is not None and not (math.isfinite(clip) and clip > 0):
        raise ValueError(f"the weight clip must be a positive number, got {clip}")
    if users is None:
        user, n_users = np.arange(n), n
    else:
        ids = np.asarray(users)
        if ids.ndim != 1 or len(ids) != n:
            raise ValueError(f"users has length {len(ids)}, but the log has {n} rows")
        uniq, user = np.unique(ids, return_inverse=True)
        n_users = len(uniq)
    if n_users < 2:
        raise ValueError("an interval needs at least two users (units) in the log")
    w = pi / p
    clipped_share = 0.0
    if clip is not None:
        clipped_share = float((w > clip).mean())
        w = np.minimum(w, clip)
    return _Log(r, w, user, n_users, clip, clipped_share)


def _per_user(log: _Log, x: np.ndarray) -> np.ndarray:
    return np.bincount(log.user, weights=x, minlength=log.n_users)


def _estimate(
    name: str, log: _Log, numerator: np.ndarray, denominator: np.ndarray, confidence: float
) -> OpeEstimate:
    """``sum(numerator) / sum(denominator)`` (per row), with the delta method's standard
    error over users: the variance of each user's ``num - value * den`` over the squared
    mean denominator."""
    if not 0 < confidence < 1:
        raise ValueError(f"the confidence must be in (0, 1), got {confidence}")
    num, den = _per_user(log, numerator), _per_user(log, denominator)
    if den.sum() <= 0:
        raise ValueError(
            f"{name}: the weights sum to zero: the target policy takes none of the logged actions"
        )
    value = float(num.sum() / den.sum())
    residual = num - value * den
    se = float(math.sqrt(residual.var(ddof=1) / (log.n_users * den.mean() ** 2)))
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    w = log.weight
    return OpeEstimate(
        estimator=name,
        value=value,
        se=se,
        low=value - z * se,
        high=value + z * se,
        confidence=confidence,
        n_rows=len(w),
        n_users=log.n_users,
        ess=float(w.sum() ** 2 / (w * w).sum()) if (w > 0).any() else 0.0,
        mean_weight=float(w.mean()),
        clip=log.clip,
        clipped_share=log.clipped_share,
    )


def ips(
    reward: ArrayLike,
    propensity: ArrayLike,
    target: ArrayLike,
    users: Ids | None = None,
    clip: float | None = None,
    confidence: float = 0.95,
) -> OpeEstimate:
    """Inverse propensity scoring: ``sum(w r) / n`` with ``w = target / propensity``.

    ``users``: one id per row (the unit of the interval); None treats rows as independent.
    ``clip``: cap the weights at this value (reported in the result)."""
    log = _log(reward, propensity, target, users, clip)
    return _estimate("ips", log, log.weight * log.reward, np.ones_like(log.reward), confidence)


def snips(
    reward: ArrayLike,
    propensity: ArrayLike,
    target: ArrayLike,
    users: Ids | None = None,
    clip: float | None = None,
    confidence: float = 0.95,
) -> OpeEstimate:
    """Self-normalised IPS: ``sum(w r) / sum(w)``, with the delta method's interval.

    Equal to the logged mean reward when the target is the logging policy (all weights 1),
    and unchanged by any constant factor on the weights."""
    log = _log(reward, propensity, target, users, clip)
    return _estimate("snips", log, log.weight * log.reward, log.weight, confidence)


def dr(
    reward: ArrayLike,
    propensity: ArrayLike,
    target: ArrayLike,
    q: ArrayLike,
    v: ArrayLike,
    users: Ids | None = None,
    clip: float | None = None,
    confidence: float = 0.95,
) -> OpeEstimate:
    """Doubly robust: ``sum(v + w (r - q)) / n``.

    ``q``: the reward model's prediction for the logged action; ``v``: the model's expected
    reward of the row's slot under the target policy. The model carries the estimate and
    the weights only correct its residuals, so a good model means a narrow interval; with
    right propensities the estimate stays unbiased however wrong the model is."""
    log = _log(reward, propensity, target, users, clip)
    n = len(log.reward)
    qa, va = _array("q", q, n), _array("v", v, n)
    terms = va + log.weight * (log.reward - qa)
    return _estimate("dr", log, terms, np.ones(n), confidence)
