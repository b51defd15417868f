"""Off-policy estimates of a ranking policy's per-slot value from feeds another policy served.

A served feed is a slate: slots ``0 .. k-1`` filled in order, each item drawn given the
items of the slots before it. The serving policy logs, for each slot, the probability
``p_j = mu(a_j | a_0 .. a_{j-1})`` it gave the item it served there; a challenger ranking,
run through the same exploration policy (or deterministic), gives ``pi_j = pi(a_j | a_0 ..
a_{j-1})`` for the same logged item and the same logged earlier slots. The caller computes
the probabilities a weighting reads (serving's ``slate_propensities`` gives the conditional
ones for a ranked list; :func:`slot_marginals` turns drawn slates into marginal ones); this
module only turns the arrays into weights and calls the estimators of
:mod:`experiments.ope` (it imports nothing of serving: the stages are siblings). The estimand is the
challenger's mean reward per shown slot (e.g. completion), the user is the unit of the
intervals.

Three weightings, picked by ``weighting``:

- ``"prefix"``: the weight of slot ``j`` is the product of the conditional ratios of slots
  ``0 .. j``, ``W_j = prod_{l <= j} pi_l / p_l``. ``E_mu[W_j r_j] = E_pi[r_j]`` exactly
  (wherever the logging policy covers the challenger's slates): unbiased for every slot,
  even when a slot's reward depends on what was shown before it (boredom, repeats). But
  the product of ``j + 1`` ratios has a variance that grows geometrically with ``j``: when
  the two rankings disagree, deep slots' weights are almost all 0 and a few are huge, and
  in practice the estimate is far off (``bench/experiments.py`` shows it).

- ``"conditional"``: the weight of slot ``j`` is its own conditional ratio,
  ``w_j = pi_j / p_j``, the numbers serving logs. Its expectation is the reward of a
  *hybrid* policy: the earlier slots as the logging policy filled them, slot ``j`` as the
  challenger would fill it after them. That is not the challenger's value: the
  challenger's choice at slot ``j`` is "its best item not yet shown", and the shown items
  are the champion's, so the challenger's top items the champion did not show stay
  available at every slot and count again and again. The estimate is pulled towards the
  reward of the challenger's *top* items (too high for a ranking whose top is good, better
  or worse than the champion), and a reward that depends on earlier slots is judged after
  the champion's prefix. Zero bias only when the challenger agrees with the logging policy
  on the prefix. Measured against the truth (expected completion per slot, 0.82-0.97) it
  is up to +0.05 (+0.09 under narrow exploration), with intervals that often miss the
  truth, so this weighting is kept for comparison, not for decisions.

- ``"marginal"`` (the default, and the one to use): the item-position estimator. The
  weight of slot ``j`` is ``pi(a_j at slot j) / mu(a_j at slot j)``, the *marginal*
  probabilities that each policy puts that item in that slot, whatever it put before (the
  caller computes them from the policies and the ranked lists, e.g. by drawing many
  slates: :func:`slot_marginals`). Unbiased for the mean reward per slot when a slot's
  reward depends on the user, the item and the slot only (the item-position model of Li et
  al., "Offline evaluation of ranking policies with click models", KDD 2018); what the
  earlier slots did to it (a topic already shown in the same feed) is the remaining bias,
  measured at -0.005 to +0.03 of completion per slot. Its variance is a one-step bandit's:
  the weights are bounded by ``1 / mu``. It needs the logging policy's marginals to cover
  the challenger's: where the challenger puts items in slots the logging policy (almost)
  never does, the mean weight falls below 1 and IPS and DR fall with it (a narrow
  exploration, epsilon 0.05 over the top 10, gives mean weights of 0.3 to 0.6 for a
  re-ranking of 50 candidates; epsilon 0.3 over all 50 gives about 1).

Doubly robust takes a reward model's ``q_j`` (for the logged item at slot ``j``) and
``v_j = sum_a pi(a | logged earlier slots) q(a, j)`` (its expectation under the challenger's
conditional at slot ``j``). With ``"conditional"`` or ``"marginal"`` it is
:func:`experiments.ope.dr` as is (``v`` under the matching conditional or marginal
distribution of slot ``j``). With ``"prefix"`` it is the sequential form
``W_{j-1} v_j + W_j (r_j - q_j)`` (``W_{-1} = 1``), unbiased for any reward model when the
propensities are right: the model term is weighted by the prefix before the slot, the
residual by the prefix through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np

from experiments.ope import ArrayLike, Ids, OpeEstimate, dr, ips, snips

Weighting: TypeAlias = Literal["marginal", "conditional", "prefix"]
WEIGHTINGS: tuple[Weighting, ...] = ("marginal", "conditional", "prefix")


@dataclass(frozen=True)
class SlateLog:
    """Per-row arrays of a slate log, rows of a request contiguous and in slot order.

    ``request``: one id per row (rows of a request are its slots, first slot first);
    ``propensity``: the logging policy's probability of the logged item in its slot;
    ``target``: the challenger's probability of the same item in the same slot: both
    conditional on the logged earlier slots (weightings ``"conditional"`` and
    ``"prefix"``), or both marginal (``"marginal"``); ``reward``: the observed reward;
    ``users``: the unit of the intervals (one id per row)."""

    request: np.ndarray
    reward: np.ndarray
    propensity: np.ndarray
    target: np.ndarray
    users: np.ndarray


def slate_log(
    request: Ids,
    reward: ArrayLike,
    propensity: ArrayLike,
    target: ArrayLike,
    users: Ids,
) -> SlateLog:
    """Checks the arrays' lengths and that every request's rows are contiguous."""
    req = np.asarray(request)
    n = len(req)
    arrays = {
        "reward": np.asarray(reward, dtype=np.float64),
        "propensity": np.asarray(propensity, dtype=np.float64),
        "target": np.asarray(target, dtype=np.float64),
    }
    user = np.asarray(users)
    for name, a in (*arrays.items(), ("users", user)):
        if a.ndim != 1 or len(a) != n:
            raise ValueError(f"{name} has shape {a.shape}, but the log has {n} rows")
    if n:
        starts = _starts(req)
        if len(np.unique(req[starts])) != len(starts):
            raise ValueError(
                "the rows of a request must be contiguous (its slots in order, first slot "
                "first): sort the log by request and position"
            )
    return SlateLog(req, arrays["reward"], arrays["propensity"], arrays["target"], user)


def _starts(request: np.ndarray) -> np.ndarray:
    change = np.r_[True, request[1:] != request[:-1]]
    return np.flatnonzero(change)


def prefix_product(x: ArrayLike, request: Ids) -> np.ndarray:
    """The running product of ``x`` within each request (rows contiguous, in slot order):
    row ``j`` of a request holds ``x_0 * ... * x_j``."""
    a = np.asarray(x, dtype=np.float64)
    req = np.asarray(request)
    if len(a) != len(req):
        raise ValueError(f"x has length {len(a)}, request {len(req)}")
    if len(a) == 0:
        return a.copy()
    out = np.empty_like(a)
    starts = _starts(req)
    for lo, hi in zip(starts, np.r_[starts[1:], len(a)], strict=True):
        out[lo:hi] = np.cumprod(a[lo:hi])
    return out


def _previous_prefix(weight: np.ndarray, request: np.ndarray) -> np.ndarray:
    """``W_{j-1}`` per row: the prefix weight before the slot, 1 at a request's first slot."""
    prev = np.r_[1.0, weight[:-1]]
    prev[_starts(request)] = 1.0
    return prev


def slot_marginals(places: np.ndarray, n_places: int) -> np.ndarray:
    """The share of ``places`` (draws x slots: the place in the ranked list of each slot's
    item, one row per drawn slate) that put place ``i`` in slot ``j``, as an
    ``(n_places, slots)`` array: a Monte Carlo estimate of the marginal probabilities of
    one policy on one ranked list. Each column sums to one."""
    draws = np.asarray(places)
    if draws.ndim != 2 or len(draws) == 0:
        raise ValueError(f"places must be a non-empty (draws, slots) array, got {draws.shape}")
    if draws.min() < 0 or draws.max() >= n_places:
        raise ValueError(f"places must lie in [0, {n_places})")
    n, k = draws.shape
    flat = draws * k + np.arange(k)[None, :]
    counts = np.bincount(flat.reshape(-1), minlength=n_places * k).reshape(n_places, k)
    return counts / n


def slate_estimates(
    log: SlateLog,
    weighting: Weighting = "marginal",
    q: ArrayLike | None = None,
    v: ArrayLike | None = None,
    clip: float | None = None,
    confidence: float = 0.95,
) -> dict[str, OpeEstimate]:
    """IPS, SNIPS and (given a reward model's ``q`` and ``v``) DR of the challenger's mean
    reward per slot, with ``weighting`` ``"marginal"``, ``"conditional"`` or ``"prefix"``
    (see the module docstring for what each estimates and its bias; the log's
    probabilities must be the ones the weighting reads). ``clip`` caps the importance weight
    (the prefix product, for ``"prefix"``); for prefix DR the model term's weight
    ``W_{j-1}`` is left unclipped."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {list(WEIGHTINGS)}, got {weighting!r}")
    if (q is None) != (v is None):
        raise ValueError("doubly robust needs both q and v (or neither)")
    p, pi = log.propensity, log.target
    if weighting == "prefix":
        p, pi = prefix_product(p, log.request), prefix_product(pi, log.request)
    args = (log.reward, p, pi)
    out = {
        "ips": ips(*args, users=log.users, clip=clip, confidence=confidence),
        "snips": snips(*args, users=log.users, clip=clip, confidence=confidence),
    }
    if q is not None and v is not None:
        va = np.asarray(v, dtype=np.float64)
        if va.shape != log.reward.shape:
            raise ValueError(f"v has shape {va.shape}, but the log has {len(log.reward)} rows")
        if weighting == "prefix":
            with np.errstate(divide="ignore", invalid="ignore"):
                w = np.where(p > 0, pi / p, 0.0)
            va = _previous_prefix(w, log.request) * va
        out["dr"] = dr(*args, q, va, users=log.users, clip=clip, confidence=confidence)
    return out
