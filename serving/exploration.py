"""Exploration with exact propensities: which of the re-ranked list the user is shown.

Re-ranking ends in one ordered list of candidates (the *ranked list*, best first, at least as
long as the feed). Serving it as is would make every other list unobservable: an off-policy
estimate (IPS, doubly robust) of a challenger's value needs, for each shown item, the
probability that the serving policy showed it in its slot, and that probability must be
positive wherever the challenger might put an item. So the feed is drawn from the ranked
list by a small stochastic policy whose probabilities are computed exactly, and logged.

The policy fills the slots ``j = 0 .. k-1`` in order. Before slot ``j``, ``R_j`` is the ranked
list without the items already served (in ranked order) and the *window* ``W_j`` its first
``min(M, |R_j|)`` items (``M``: ``top_m``). The item of slot ``j`` is drawn from ``W_j``:

- ``epsilon_greedy``: with probability ``1 - eps`` the best remaining item, ``R_j[0]``; with
  probability ``eps`` one of ``W_j`` uniformly, so that

      P(i at slot j | slots before) = (1 - eps) * [i = R_j[0]] + eps * [i in W_j] / |W_j|

- ``plackett_luce``: Plackett-Luce sampling over the window, each item weighted by its place
  ``r_i`` (0-based) in the ranked list, ``w_i = exp(-r_i / T)`` (``T``: ``temperature``):

      P(i at slot j | slots before) = [i in W_j] * w_i / sum_{l in W_j} w_l

  Weights come from places, not from the ranker's scores: the ranked list's order already
  holds the diversity and fresh-upload decisions that raw scores would undo.

Either way an item outside the window has probability 0, the probabilities of a slot sum to
one over its window, and the slate's probability is the product over its slots. ``eps = 0``,
``T = 0`` or ``M = 1`` is the deterministic policy: the first ``k`` of the ranked list, each
with probability 1. Only the first ``k + M - 1`` places of the ranked list can ever be served.

Randomness is one uniform number per slot from a :class:`numpy.random.Generator` the caller
passes in; :func:`request_rng` seeds it from the request id, so a logged request is replayed
exactly. The cost is ``O(k * M)`` per request. Numpy only, nothing here knows of serving.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Literal

import numpy as np

ExplorationKind = Literal["epsilon_greedy", "plackett_luce"]
KINDS: tuple[ExplorationKind, ...] = ("epsilon_greedy", "plackett_luce")


@dataclass(frozen=True)
class ExplorationPolicy:
    """How the feed is drawn from the ranked list (see the module docstring).

    ``epsilon`` is read by ``epsilon_greedy`` only, ``temperature`` by ``plackett_luce``
    only; ``top_m`` (the window) by both."""

    kind: ExplorationKind = "epsilon_greedy"
    epsilon: float = 0.05
    temperature: float = 1.0
    top_m: int = 10

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)}, got {self.kind!r}")
        if not 0.0 <= self.epsilon <= 1.0:  # NaN fails too
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon!r}")
        if not 0.0 <= self.temperature < np.inf:
            raise ValueError(f"temperature must be finite and >= 0, got {self.temperature!r}")
        if not isinstance(self.top_m, Integral) or isinstance(self.top_m, bool) or self.top_m < 1:
            raise ValueError(f"top_m must be an integer >= 1, got {self.top_m!r}")

    @property
    def deterministic(self) -> bool:
        """True when the policy always serves the first ``k`` of the ranked list."""
        if self.top_m == 1:
            return True
        if self.kind == "epsilon_greedy":
            return self.epsilon == 0.0
        return self.temperature == 0.0

    def span(self, k: int) -> int:
        """How many places of the ranked list a ``k``-slot feed can reach: ``k`` for the
        deterministic policy, ``k + top_m - 1`` otherwise (what re-ranking must order)."""
        _check_k(k)
        return k if self.deterministic or k == 0 else k + self.top_m - 1

    def window_probabilities(self, places: np.ndarray) -> np.ndarray:
        """The probability of each item of one slot's window, given the items' places in the
        ranked list (ascending: the first is the best remaining item)."""
        places = np.asarray(places)
        n = len(places)
        if n == 0:
            return np.zeros(0)
        if self.deterministic or n == 1:
            p = np.zeros(n)
            p[0] = 1.0
            return p
        if self.kind == "epsilon_greedy":
            p = np.full(n, self.epsilon / n)
            p[0] += 1.0 - self.epsilon
            return p
        # exp(-(r - r_0) / T): shifted by the first place, so the largest weight is 1
        w = np.exp(-(places - places[0]).astype(np.float64) / self.temperature)
        return w / w.sum()


GREEDY = ExplorationPolicy(epsilon=0.0)
"""The deterministic policy: the first ``k`` of the ranked list, each with probability 1."""


@dataclass(frozen=True)
class Slate:
    """A served feed as places in the ranked list, in slot order.

    ``propensities[j]``: the probability that the policy put ``places[j]`` in slot ``j`` given
    the slots before it; ``explored[j]``: that item was not the best remaining one."""

    places: np.ndarray  # (k,) intp
    propensities: np.ndarray  # (k,) float64
    explored: np.ndarray  # (k,) bool

    @property
    def probability(self) -> float:
        """The probability of the whole slate: the product over its slots."""
        return float(np.prod(self.propensities))


def _check_k(k: int) -> None:
    if not isinstance(k, Integral) or isinstance(k, bool) or k < 0:
        raise ValueError(f"k must be an integer >= 0, got {k!r}")


def request_rng(request_id: str) -> np.random.Generator:
    """A generator seeded from a request id (64 bits of its BLAKE2b digest): the same id
    draws the same feed from the same ranked list."""
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "big"))


def draw_slate(
    policy: ExplorationPolicy, n_ranked: int, k: int, rng: np.random.Generator | None
) -> Slate:
    """Draw ``min(k, n_ranked)`` slots from a ranked list of ``n_ranked`` items.

    One uniform number per slot picks the item by the inverse of the window's cumulative
    probabilities, so the draw is a function of ``rng``'s state alone. The deterministic
    policy consumes nothing and needs no ``rng``."""
    _check_k(k)
    _check_k(n_ranked)
    k = min(k, n_ranked)
    if policy.deterministic:
        return Slate(np.arange(k, dtype=np.intp), np.ones(k), np.zeros(k, dtype=bool))
    if rng is None:
        raise ValueError("an exploring policy needs a random generator (see request_rng)")
    remaining = list(range(min(n_ranked, policy.span(k))))
    places = np.empty(k, dtype=np.intp)
    propensities = np.empty(k)
    explored = np.zeros(k, dtype=bool)
    for slot in range(k):
        window = np.asarray(remaining[: policy.top_m])
        p = policy.window_probabilities(window)
        pick = min(int(np.searchsorted(np.cumsum(p), rng.random(), side="right")), len(p) - 1)
        while p[pick] == 0.0:  # rounding at a boundary: never serve an impossible item
            pick -= 1
        places[slot] = window[pick]
        propensities[slot] = p[pick]
        explored[slot] = pick != 0
        remaining.pop(pick)
    return Slate(places, propensities, explored)


def slate_propensities(
    policy: ExplorationPolicy, ranked: Sequence[Hashable], slate: Sequence[Hashable]
) -> np.ndarray:
    """For each slot of ``slate`` (items in served order), the probability that ``policy``,
    serving from ``ranked`` (items, best first), would have put that item in that slot given
    that the slate's earlier items filled the slots before it.

    This is the target-policy probability of an off-policy estimate: ``ranked`` is another
    model's list, ``slate`` what was logged. An item that ``ranked`` lacks, or that lies
    outside its slot's window, gets 0; the slate's probability under the policy is the
    product. With the deterministic policy each slot is 1 when it holds the best remaining
    item of ``ranked`` and 0 otherwise."""
    place_of: dict[Hashable, int] = {}
    for place, item in enumerate(ranked):
        place_of.setdefault(item, place)  # a repeated item keeps its best place
    remaining = sorted(place_of.values())
    out = np.zeros(len(slate))
    for slot, item in enumerate(slate):
        at = place_of.get(item)
        if at is None or at not in remaining:  # unknown, or served twice
            continue
        window = np.asarray(remaining[: policy.top_m])
        hit = np.flatnonzero(window == at)
        if len(hit):
            out[slot] = policy.window_probabilities(window)[hit[0]]
        remaining.remove(at)
    return out
