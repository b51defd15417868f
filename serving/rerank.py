"""Re-ranking after scoring: filter, diversify (MMR over creator and topic), explore.

Pure numpy over candidate arrays, so the serving path calls it per request and tests check
it by hand. Every function returns indices into (or a mask over) its inputs; ties always go
to the higher score, then to the earlier candidate, so results are deterministic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Set
from numbers import Integral

import numpy as np
import pandas as pd

REMOVAL_REASONS: tuple[str, ...] = ("unavailable", "blocked_creator", "seen")


def _check_k(k: int) -> None:
    if not isinstance(k, Integral) or isinstance(k, bool) or k < 0:
        raise ValueError(f"k must be an integer >= 0, got {k!r}")


def _groups(values: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """A group code per item (equal values share one) and each group's member positions."""
    if values.dtype.kind in "biuf":  # numbers (creator codes, topic slots): numpy is enough
        uniques, codes = np.unique(values, return_inverse=True)
        codes = codes.reshape(-1).astype(np.intp)
    else:  # ids as objects, None included
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
        codes = codes.astype(np.intp)
    members = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=len(uniques)))[:-1]
    return codes, np.split(members, bounds)


def mmr_rerank(
    scores: np.ndarray,
    creators: np.ndarray,
    topics: np.ndarray,
    k: int,
    diversity: float,
) -> np.ndarray:
    """Greedy maximal-marginal-relevance pick of ``min(k, n)`` items; indices in pick order.

    Each step takes the argmax over the unpicked items of
    ``(1 - diversity) * norm_score - diversity * redundancy``, where ``norm_score`` is the
    score min-max scaled over all candidates (0 everywhere when the scores are all equal) and
    ``redundancy = 0.5 * same_creator / picked + 0.5 * same_topic / picked``: the shares of the
    items picked so far that have the item's creator and topic (0 for the first pick).
    ``diversity=0`` is exactly the stable top-k by score; ``diversity=1`` only spreads
    creators and topics, ties going to the higher score. O(n * k) with one vectorised pass
    over the candidates per step.
    """
    s = np.asarray(scores, dtype=np.float64)
    creators = np.asarray(creators)
    topics = np.asarray(topics)
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {s.shape}")
    n = len(s)
    if creators.shape != (n,) or topics.shape != (n,):
        raise ValueError(
            "scores, creators and topics must be 1-D of equal length, got shapes "
            f"{s.shape}, {creators.shape} and {topics.shape}"
        )
    _check_k(k)
    if not 0.0 <= diversity <= 1.0:  # NaN fails too
        raise ValueError(f"diversity must be in [0, 1], got {diversity!r}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    order = np.argsort(-s, kind="stable")  # rank -> candidate; ties by candidate index
    k = min(int(k), n)
    if diversity == 0.0 or k <= 1:
        return order[:k].copy()

    # Work in rank space: argmax returns the first maximum, i.e. the best-scored tie.
    ranked = s[order]
    spread = ranked[0] - ranked[-1]
    norm = (ranked - ranked[-1]) / spread if spread > 0 else np.zeros(n)
    if not np.isfinite(norm).all():  # infinite scores: rank position stands in for the score
        norm = np.linspace(1.0, 0.0, n)
    # A pick updates only the counters of its creator's and its topic's members.
    creator_code, by_creator = _groups(creators[order])
    topic_code, by_topic = _groups(topics[order])

    relevance = (1.0 - diversity) * norm
    shared = np.zeros(n)  # same_creator + same_topic among the picked, per candidate
    picked = np.empty(k, dtype=np.intp)
    for step in range(k):
        objective = relevance - (0.5 * diversity / step) * shared if step else relevance
        best = int(np.argmax(objective))
        picked[step] = best
        relevance[best] = -np.inf
        shared[by_creator[creator_code[best]]] += 1.0
        shared[by_topic[topic_code[best]]] += 1.0
    return order[picked]


def _seed(rng_or_key: np.random.Generator | int | str) -> np.random.Generator:
    if isinstance(rng_or_key, np.random.Generator):
        return rng_or_key
    if isinstance(rng_or_key, str):
        digest = hashlib.blake2b(rng_or_key.encode(), digest_size=8).digest()
        return np.random.default_rng(int.from_bytes(digest, "big"))
    return np.random.default_rng(rng_or_key)


def exploration_slot(
    chosen: np.ndarray,
    fresh_candidates: np.ndarray,
    position: int,
    rng_or_key: np.random.Generator | int | str | None = None,
    *,
    scores: np.ndarray | None = None,
) -> np.ndarray:
    """Guarantee one fresh item at or above ``position`` in the list, keeping its length.

    ``chosen`` and ``fresh_candidates`` are candidate indices; fresh candidates are taken in
    the order given, or best first by ``scores`` (indexed by candidate) when given. A no-op
    when there is no fresh candidate, a fresh item already sits at or above ``position``, or
    the list is too short to have that slot. Otherwise the pick goes to ``position``: a fresh
    item already lower in the list is moved up, any other is inserted and the last item is
    dropped. With ``rng_or_key=None`` the pick is the first (best) fresh candidate; with a
    Generator, an int seed or a string key (e.g. the request id) it is drawn uniformly among
    the fresh candidates, reproducibly for the same key.
    """
    if not isinstance(position, Integral) or isinstance(position, bool) or position < 0:
        raise ValueError(f"position must be an integer >= 0, got {position!r}")
    out = np.asarray(chosen).astype(np.intp, copy=True).reshape(-1)
    fresh = np.asarray(fresh_candidates).astype(np.intp, copy=False).reshape(-1)
    if position >= len(out) or len(fresh) == 0:
        return out
    if np.isin(out[: position + 1], fresh).any():
        return out
    if scores is not None:
        fresh = fresh[np.argsort(-np.asarray(scores, dtype=np.float64)[fresh], kind="stable")]
    fresh = fresh[np.sort(np.unique(fresh, return_index=True)[1])]  # dedupe, keep order
    pick = fresh[0] if rng_or_key is None else fresh[_seed(rng_or_key).integers(len(fresh))]
    lower = np.flatnonzero(out == pick)
    rest = np.delete(out, lower[0]) if len(lower) else out[:-1]
    return np.insert(rest, position, pick)


def filter_candidates(
    video_ids: np.ndarray,
    seen: Set[str] | None,
    blocked_creators: Set[str] | None,
    creators: np.ndarray,
    available: np.ndarray | None,
) -> tuple[np.ndarray, dict[str, int]]:
    """A keep-mask over the candidates and how many were removed for each reason.

    Reasons are ``"unavailable"`` (``available`` is False: taken down, private, region
    locked), ``"blocked_creator"`` and ``"seen"``. A candidate removed for several reasons is
    counted once, under the first in that order, so the counts add up to the removed total.
    Membership is a set lookup per candidate, so large ``seen`` sets stay cheap.
    """
    ids = np.asarray(video_ids).reshape(-1)
    creators = np.asarray(creators).reshape(-1)
    n = len(ids)
    if len(creators) != n:
        raise ValueError(f"{n} video ids but {len(creators)} creators")
    unavailable = np.zeros(n, dtype=bool)
    if available is not None:
        avail = np.asarray(available)
        if avail.shape != (n,) or avail.dtype != np.bool_:
            raise ValueError(f"available must be a boolean array of length {n}")
        unavailable = ~avail
    blocked = (
        np.fromiter((c in blocked_creators for c in creators), dtype=bool, count=n)
        if blocked_creators
        else np.zeros(n, dtype=bool)
    )
    seen_mask = (
        np.fromiter((v in seen for v in ids), dtype=bool, count=n)
        if seen
        else np.zeros(n, dtype=bool)
    )
    return removals(unavailable, blocked, seen_mask)


def removals(
    unavailable: np.ndarray, blocked: np.ndarray, seen: np.ndarray
) -> tuple[np.ndarray, dict[str, int]]:
    """The keep-mask and per-reason counts of :func:`filter_candidates` from its three
    boolean masks (for callers that computed them, e.g. over integer rows)."""
    counts = {
        "unavailable": int(unavailable.sum()),
        "blocked_creator": int((blocked & ~unavailable).sum()),
        "seen": int((seen & ~unavailable & ~blocked).sum()),
    }
    return ~(unavailable | blocked | seen), counts
