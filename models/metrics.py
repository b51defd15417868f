"""Offline ranking metrics for short-video feeds: pure, vectorised, no I/O.

A single global AUC or mean watch time hides most of what matters in a short-video feed: users
differ wildly in how much they engage, long videos collect more raw watch time whatever their
quality, and a ranker can look good while showing the same few creators to everyone. The
metrics here each answer one of those questions:

* ``D2QLabeler`` turns watch time into a duration-debiased label (its quantile among videos of
  similar length), so that neither training nor evaluation simply rewards long videos.
* ``gauc`` averages AUC per user (or per request), so heavy users cannot dominate the score and
  a model is judged on how it orders items *for the same person*.
* ``xauc`` measures whether scores order watch times correctly, pair by pair, without assuming
  any particular scale for the target.
* ``expected_calibration_error`` checks that predicted probabilities can be read as rates,
  which downstream blending of several heads relies on.
* ``coverage`` and ``creator_diversity`` guard the catalogue and creator side of the feed.
* ``ndcg_at_k`` scores graded relevance within each feed request.
* ``full_catalog_topk`` scores a whole users x items score matrix against a fully labelled
  relevance matrix (Precision@k, Recall@k, NDCG@k per user), for offline data such as
  KuaiRec's fully observed block where every cell is known.
* ``by_slice`` repeats any of the above per surface, country, cohort and so on.

Undefined metrics (one class only, no comparable pairs, no relevant item) come back as NaN
rather than raising, so that a thin slice never aborts a whole evaluation run; malformed input
(mismatched lengths, labels that are not 0/1, NaN scores) raises ``ValueError`` because it is a
bug upstream, not a property of the data.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

__all__ = [
    "CalibrationResult",
    "D2QLabeler",
    "FullCatalogMetrics",
    "GaucResult",
    "SliceMetrics",
    "by_slice",
    "coverage",
    "creator_diversity",
    "expected_calibration_error",
    "full_catalog_topk",
    "gauc",
    "ndcg_at_k",
    "ndcg_by_group",
    "top_k_rows",
    "xauc",
]

_NAN = float("nan")


# --------------------------------------------------------------------------------------------
# Input checks shared by every metric
# --------------------------------------------------------------------------------------------


def _vector(name: str, values: ArrayLike) -> np.ndarray:
    """One-dimensional view of an input, so that 2-D arrays never broadcast silently."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _same_length(**arrays: np.ndarray) -> int:
    """Common length of the inputs; mismatches would otherwise pair the wrong rows."""
    lengths = {name: len(arr) for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise ValueError(f"inputs must have the same length, got {detail}")
    return next(iter(lengths.values()), 0)


def _finite(name: str, values: ArrayLike) -> np.ndarray:
    """Float copy that refuses NaN/inf, which would otherwise sort or rank arbitrarily."""
    arr = _vector(name, values).astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return arr


def _binary(name: str, values: ArrayLike) -> np.ndarray:
    """0/1 float labels; anything else means a graded label slipped into a binary metric."""
    arr = _vector(name, values).astype(np.float64)
    if not np.isin(arr, (0.0, 1.0)).all():
        raise ValueError(f"{name} must contain only 0/1 (or booleans)")
    return arr


def _group_codes(name: str, groups: ArrayLike) -> np.ndarray:
    """Dense integer codes for group keys; a missing key is its own group, not dropped."""
    codes, _ = pd.factorize(_vector(name, groups), use_na_sentinel=False)
    return codes.astype(np.int64)


# --------------------------------------------------------------------------------------------
# D2Q: duration-debiased watch-time labels
# --------------------------------------------------------------------------------------------


class D2QLabeler:
    """Watch time expressed as its quantile among videos of similar duration (D2Q).

    Raw watch time is confounded by duration: a 60 s video gets more seconds than a 10 s one
    even when viewers like it less, so a ranker trained or judged on seconds learns to push
    long videos. Following Kuaishou's duration-deconfounding idea (D2Q, KDD 2022), videos are
    split into equal-frequency duration buckets and each watch is replaced by its quantile
    within its bucket's training watch-time distribution. The label then says "how well did
    this video hold attention compared with others of its length", in [0, 1].

    Only the bucket boundaries and a fixed grid of watch-time quantiles per bucket are kept,
    so the fitted labeller is small enough to store as JSON next to the model it trained.
    """

    def __init__(
        self,
        boundaries: Sequence[float] | None = None,
        quantiles: Sequence[Sequence[float]] | None = None,
    ) -> None:
        self.boundaries: np.ndarray | None = None
        self.quantiles: np.ndarray | None = None
        if boundaries is not None or quantiles is not None:
            if boundaries is None or quantiles is None:
                raise ValueError("boundaries and quantiles must be given together")
            self._set_state(np.asarray(boundaries, float), np.asarray(quantiles, float))

    def _set_state(self, boundaries: np.ndarray, quantiles: np.ndarray) -> None:
        """Validate fitted state, since it may come from a hand-edited or stale JSON file."""
        if boundaries.ndim != 1 or quantiles.ndim != 2:
            raise ValueError("boundaries must be 1-D and quantiles 2-D")
        if quantiles.shape[0] != len(boundaries) + 1:
            raise ValueError(
                f"need one quantile row per bucket: {len(boundaries) + 1} buckets, "
                f"got {quantiles.shape[0]} rows"
            )
        if quantiles.shape[1] < 2:
            raise ValueError("each bucket needs at least 2 quantile points")
        if np.any(np.diff(boundaries) <= 0) or np.any(np.diff(quantiles, axis=1) < 0):
            raise ValueError("boundaries must increase strictly and quantiles must not decrease")
        self.boundaries = boundaries
        self.quantiles = quantiles

    @property
    def is_fitted(self) -> bool:
        return self.quantiles is not None

    @property
    def n_buckets(self) -> int:
        return 0 if self.quantiles is None else int(self.quantiles.shape[0])

    def fit(
        self,
        duration_s: ArrayLike,
        watch_time_s: ArrayLike,
        n_buckets: int = 20,
        n_quantiles: int = 101,
    ) -> D2QLabeler:
        """Learn duration buckets and per-bucket watch-time quantiles from training rows.

        Boundaries are order statistics at every ``1/n_buckets`` of the sorted durations, so
        buckets hold about the same number of rows. When many videos share a duration some
        boundaries coincide; duplicates (and any boundary at the minimum, which would leave
        the first bucket empty) are dropped, so there may be fewer buckets than asked for but
        none is empty.
        """
        if n_buckets < 1:
            raise ValueError("n_buckets must be at least 1")
        if n_quantiles < 2:
            raise ValueError("n_quantiles must be at least 2")
        duration = _finite("duration_s", duration_s)
        watch = _finite("watch_time_s", watch_time_s)
        n = _same_length(duration_s=duration, watch_time_s=watch)
        if n == 0:
            raise ValueError("cannot fit D2QLabeler on zero rows")

        ordered = np.sort(duration)
        cut_rows = (n * np.arange(1, n_buckets)) // n_buckets
        boundaries = np.unique(ordered[cut_rows])
        boundaries = boundaries[boundaries > ordered[0]]

        bucket = np.searchsorted(boundaries, duration, side="right")
        probs = np.linspace(0.0, 1.0, n_quantiles)
        grid = np.empty((len(boundaries) + 1, n_quantiles))
        for b in range(len(boundaries) + 1):
            grid[b] = np.quantile(watch[bucket == b], probs)
        self._set_state(boundaries, grid)
        return self

    def bucket_of(self, duration_s: ArrayLike) -> np.ndarray:
        """Bucket index per row; durations beyond the training range join the end buckets."""
        if self.boundaries is None:
            raise ValueError("D2QLabeler is not fitted")
        duration = _vector("duration_s", duration_s).astype(np.float64)
        return np.searchsorted(self.boundaries, duration, side="right")

    def transform(self, duration_s: ArrayLike, watch_time_s: ArrayLike) -> np.ndarray:
        """Each row's watch-time quantile within its duration bucket, in [0, 1].

        Between grid points the quantile is interpolated linearly. A watch time equal to a
        run of tied grid values (say many zero-second skips) gets the middle of that run, the
        same "average rank" convention used for ties elsewhere in this module. Watch times
        below or above the bucket's training range clip to 0 and 1. Rows with a missing
        duration or watch time get NaN.
        """
        if self.quantiles is None:
            raise ValueError("D2QLabeler is not fitted")
        duration = _vector("duration_s", duration_s).astype(np.float64)
        watch = _vector("watch_time_s", watch_time_s).astype(np.float64)
        _same_length(duration_s=duration, watch_time_s=watch)

        out = np.full(len(watch), np.nan)
        known = np.isfinite(duration) & np.isfinite(watch)
        bucket = self.bucket_of(duration)
        probs = np.linspace(0.0, 1.0, self.quantiles.shape[1])
        for b in np.unique(bucket[known]):
            rows = known & (bucket == b)
            out[rows] = _grid_quantile(self.quantiles[b], probs, watch[rows])
        return out

    def fit_transform(
        self,
        duration_s: ArrayLike,
        watch_time_s: ArrayLike,
        n_buckets: int = 20,
        n_quantiles: int = 101,
    ) -> np.ndarray:
        return self.fit(duration_s, watch_time_s, n_buckets, n_quantiles).transform(
            duration_s, watch_time_s
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready state, stored alongside the model that was trained on the labels."""
        if self.boundaries is None or self.quantiles is None:
            raise ValueError("D2QLabeler is not fitted")
        return {
            "kind": "d2q",
            "version": 1,
            "boundaries": [float(x) for x in self.boundaries],
            "quantiles": [[float(x) for x in row] for row in self.quantiles],
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> D2QLabeler:
        if state.get("kind", "d2q") != "d2q" or state.get("version", 1) != 1:
            raise ValueError(f"unsupported D2Q state: kind={state.get('kind')!r}")
        return cls(boundaries=state["boundaries"], quantiles=state["quantiles"])


def _grid_quantile(grid: np.ndarray, probs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Invert a non-decreasing quantile grid, giving tied runs their mid probability."""
    left = np.searchsorted(grid, values, side="left")
    right = np.searchsorted(grid, values, side="right")
    last = len(grid) - 1

    # Strictly between two grid points: linear interpolation on that segment.
    lo = np.clip(left - 1, 0, last)
    hi = np.clip(left, 0, last)
    span = grid[hi] - grid[lo]
    frac = np.divide(values - grid[lo], span, out=np.zeros_like(values), where=span > 0)
    result = probs[lo] + frac * (probs[hi] - probs[lo])

    # On one or more grid points: middle of the tied run.
    on_grid = right > left
    tie_mid = 0.5 * (probs[np.clip(left, 0, last)] + probs[np.clip(right - 1, 0, last)])
    result = np.where(on_grid, tie_mid, result)
    result = np.where(~on_grid & (left == 0), 0.0, result)
    result = np.where(~on_grid & (left > last), 1.0, result)
    return np.clip(result, 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# GAUC
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GaucResult:
    """Group AUC and how much of the data could contribute to it.

    ``value`` weights each group by its impressions, the usual industry convention, so it
    tracks what most impressions experience; ``unweighted`` gives every user the same vote.
    ``n_skipped`` counts groups with only positives or only negatives, which have no AUC; a
    large share of them means the value rests on few users.
    """

    value: float
    unweighted: float
    n_groups: int
    n_skipped: int


def gauc(groups: ArrayLike, labels: ArrayLike, scores: ArrayLike) -> GaucResult:
    """Impression-weighted mean of per-group ROC AUC.

    Each group's AUC is the Mann-Whitney statistic computed from within-group ranks, with
    tied scores given their average rank; that counts a tied positive/negative pair as half
    concordant, exactly like ``sklearn.metrics.roc_auc_score``.
    """
    g = _vector("groups", groups)
    y = _binary("labels", labels)
    s = _finite("scores", scores)
    _same_length(groups=g, labels=y, scores=s)
    if len(y) == 0:
        return GaucResult(value=_NAN, unweighted=_NAN, n_groups=0, n_skipped=0)

    codes = _group_codes("groups", g)
    n_codes = int(codes.max()) + 1
    ranks = pd.Series(s).groupby(codes).rank(method="average").to_numpy()

    size = np.bincount(codes, minlength=n_codes).astype(np.float64)
    n_pos = np.bincount(codes, weights=y, minlength=n_codes)
    rank_sum_pos = np.bincount(codes, weights=ranks * y, minlength=n_codes)
    n_neg = size - n_pos
    usable = (n_pos > 0) & (n_neg > 0)
    n_used = int(usable.sum())
    if n_used == 0:
        return GaucResult(value=_NAN, unweighted=_NAN, n_groups=0, n_skipped=n_codes)

    pos, neg = n_pos[usable], n_neg[usable]
    auc = (rank_sum_pos[usable] - pos * (pos + 1.0) / 2.0) / (pos * neg)
    weights = size[usable]
    return GaucResult(
        value=float(np.sum(auc * weights) / np.sum(weights)),
        unweighted=float(np.mean(auc)),
        n_groups=n_used,
        n_skipped=n_codes - n_used,
    )


# --------------------------------------------------------------------------------------------
# XAUC
# --------------------------------------------------------------------------------------------


def xauc(
    targets: ArrayLike,
    scores: ArrayLike,
    max_pairs: int = 200_000,
    seed: int = 0,
    groups: ArrayLike | None = None,
) -> float:
    """Share of pairs with different targets that the scores put in the same order.

    XAUC generalises AUC to a continuous target such as watch time: for two items with
    different targets, a pair counts 1 when the higher-scored item has the higher target, 0
    when reversed and 0.5 when the scores tie. Pairs with equal targets carry no ordering
    information and are skipped, not counted.

    All pairs are evaluated when there are at most ``max_pairs`` of them; otherwise
    ``max_pairs`` pairs are drawn uniformly (with replacement) using
    ``np.random.default_rng(seed)``, so results are reproducible and cost stays bounded on
    large holdouts. Sampled pairs that turn out to have equal targets are dropped, so fewer
    than ``max_pairs`` pairs may end up counted.

    With ``groups`` (for example request ids) pairs are only formed within a group: this is
    per-request XAUC, which asks whether the model orders the videos *one feed* showed rather
    than comparing a heavy user's watch with a light user's. Every within-group pair has the
    same weight, so large groups count for more.
    """
    t = _finite("targets", targets)
    s = _finite("scores", scores)
    if groups is None:
        n = _same_length(targets=t, scores=s)
        codes = np.zeros(n, dtype=np.int64)
    else:
        g = _vector("groups", groups)
        n = _same_length(targets=t, scores=s, groups=g)
        codes = _group_codes("groups", g)
    if max_pairs < 1:
        raise ValueError("max_pairs must be at least 1")
    if n < 2:
        return _NAN

    order = np.argsort(codes, kind="stable")
    size = np.bincount(codes)
    start = np.cumsum(size) - size
    pairs_per_group = size.astype(np.float64) * (size - 1) / 2.0
    total_pairs = float(pairs_per_group.sum())
    if total_pairs == 0:
        return _NAN

    if total_pairs <= max_pairs:
        first, second = _all_pairs(order, size, start)
    else:
        first, second = _sample_pairs(order, size, start, pairs_per_group, max_pairs, seed)

    target_sign = np.sign(t[first] - t[second])
    score_sign = np.sign(s[first] - s[second])
    comparable = target_sign != 0
    if not comparable.any():
        return _NAN
    credit = np.where(score_sign == 0, 0.5, (score_sign == target_sign).astype(np.float64))
    return float(credit[comparable].mean())


def _all_pairs(
    order: np.ndarray, size: np.ndarray, start: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every unordered within-group pair, built once per distinct group size (not per group)."""
    firsts: list[np.ndarray] = []
    seconds: list[np.ndarray] = []
    for m in np.unique(size[size >= 2]):
        local_i, local_j = np.triu_indices(int(m), k=1)
        offsets = start[size == m][:, None]
        firsts.append(order[(offsets + local_i).ravel()])
        seconds.append(order[(offsets + local_j).ravel()])
    return np.concatenate(firsts), np.concatenate(seconds)


def _sample_pairs(
    order: np.ndarray,
    size: np.ndarray,
    start: np.ndarray,
    pairs_per_group: np.ndarray,
    n_pairs: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random within-group pairs: pick a group by its pair count, then two members."""
    rng = np.random.default_rng(seed)
    group = rng.choice(len(size), size=n_pairs, p=pairs_per_group / pairs_per_group.sum())
    m = size[group]
    a = rng.integers(0, m)
    b = rng.integers(0, m - 1)
    b = b + (b >= a)  # a second, distinct member
    return order[start[group] + a], order[start[group] + b]


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationResult:
    """ECE plus the per-bin table behind it, ready for a reliability diagram.

    Every bin is listed, empty ones with ``count`` 0 and NaN means, so plots keep a fixed x
    axis across models and days.
    """

    ece: float
    bin_lower: list[float]
    bin_upper: list[float]
    mean_prob: list[float]
    frac_positive: list[float]
    count: list[int]


def expected_calibration_error(
    labels: ArrayLike, probs: ArrayLike, n_bins: int = 10
) -> CalibrationResult:
    """Expected calibration error over equal-width probability bins.

    Bins are ``[i/n, (i+1)/n)`` with the last one closed so that a probability of exactly 1
    is counted. ECE is the row-weighted mean gap between the mean predicted probability and
    the observed positive rate in each non-empty bin.
    """
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    y = _binary("labels", labels)
    p = _finite("probs", probs)
    n = _same_length(labels=y, probs=p)
    if ((p < 0.0) | (p > 1.0)).any():
        raise ValueError("probs must lie in [0, 1]")

    # floor(p * n) rather than a search over float edges, so 0.3 lands in [0.3, 0.4).
    bin_index = np.minimum(np.floor(p * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(bin_index, minlength=n_bins)
    prob_sum = np.bincount(bin_index, weights=p, minlength=n_bins)
    pos_sum = np.bincount(bin_index, weights=y, minlength=n_bins)
    filled = count > 0
    safe = np.maximum(count, 1)
    mean_prob = np.where(filled, prob_sum / safe, np.nan)
    frac_positive = np.where(filled, pos_sum / safe, np.nan)
    ece = (
        float(np.sum(count[filled] / n * np.abs(frac_positive[filled] - mean_prob[filled])))
        if n > 0
        else _NAN
    )
    edges = np.arange(n_bins + 1) / n_bins
    return CalibrationResult(
        ece=ece,
        bin_lower=[float(x) for x in edges[:-1]],
        bin_upper=[float(x) for x in edges[1:]],
        mean_prob=[float(x) for x in mean_prob],
        frac_positive=[float(x) for x in frac_positive],
        count=[int(x) for x in count],
    )


# --------------------------------------------------------------------------------------------
# Catalogue and creator side
# --------------------------------------------------------------------------------------------


def coverage(top_lists: Sequence[Sequence[str]], catalog_size: int) -> float:
    """Share of the catalogue that appears in at least one recommended list.

    Low coverage means the ranker keeps recycling a small head of videos, which starves new
    uploads of the impressions they need to be learned about. More distinct items than the
    catalogue holds means the catalogue size is wrong, so it raises.
    """
    if catalog_size < 0:
        raise ValueError("catalog_size must not be negative")
    distinct = len(set(itertools.chain.from_iterable(top_lists)))
    if catalog_size == 0:
        return _NAN
    if distinct > catalog_size:
        raise ValueError(
            f"{distinct} distinct items recommended but catalog_size is {catalog_size}"
        )
    return distinct / catalog_size


def creator_diversity(top_lists_creators: Sequence[Sequence[str]]) -> float:
    """Mean share of distinct creators per list (1.0: every slot is a different creator).

    A feed of ten videos by two creators feels repetitive even when each video is relevant.
    Empty lists have no diversity to speak of and are skipped; with none left it is NaN.
    """
    shares = [len(set(creators)) / len(creators) for creators in top_lists_creators if creators]
    return float(np.mean(shares)) if shares else _NAN


# --------------------------------------------------------------------------------------------
# NDCG
# --------------------------------------------------------------------------------------------


def ndcg_at_k(groups: ArrayLike, relevance: ArrayLike, scores: ArrayLike, k: int = 10) -> float:
    """Mean NDCG@k over groups that contain at least one relevant item.

    Gains are ``2**rel - 1`` with a ``log2(rank + 1)`` discount. Tied scores keep the input
    row order, so the result is deterministic and a constant scorer is judged by the order
    the feed was logged in rather than by sort-implementation accidents. Groups with no
    relevant item have no ideal ordering and are left out; if none remains it is NaN.
    """
    per_group = ndcg_by_group(groups, relevance, scores, k)
    relevant = ~np.isnan(per_group)
    if not relevant.any():
        return _NAN
    return float(np.mean(per_group[relevant]))


def ndcg_by_group(
    groups: ArrayLike, relevance: ArrayLike, scores: ArrayLike, k: int = 10
) -> np.ndarray:
    """NDCG@k of each group, in the order groups first appear (``pd.factorize`` order);
    NaN for a group with no relevant item. :func:`ndcg_at_k` is their mean; the gate's
    bootstrap resamples them by user."""
    if k < 1:
        raise ValueError("k must be at least 1")
    g = _vector("groups", groups)
    rel = _finite("relevance", relevance)
    s = _finite("scores", scores)
    n = _same_length(groups=g, relevance=rel, scores=s)
    if (rel < 0).any():
        raise ValueError("relevance must not be negative")
    if n == 0:
        return np.empty(0)

    codes = _group_codes("groups", g)
    n_codes = int(codes.max()) + 1
    size = np.bincount(codes, minlength=n_codes)
    start = np.cumsum(size) - size
    gain = np.power(2.0, rel) - 1.0
    row = np.arange(n)

    def discounted_gain(order: np.ndarray) -> np.ndarray:
        code_sorted = codes[order]
        rank = row - start[code_sorted]
        discount = np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0)
        return np.bincount(code_sorted, weights=gain[order] * discount, minlength=n_codes)

    dcg = discounted_gain(np.lexsort((row, -s, codes)))
    idcg = discounted_gain(np.lexsort((row, -rel, codes)))
    out = np.full(n_codes, _NAN)
    relevant = idcg > 0
    out[relevant] = dcg[relevant] / idcg[relevant]
    return out


def list_ndcg(
    ranked: Sequence[str], gains: Mapping[str, float], k: int = 10, exponential: bool = True
) -> float:
    """NDCG@k of one ranked list judged by ``gains`` (item -> graded relevance; an item not
    in it counts zero); the ideal is the best k of all ``gains``, listed or not. NaN when no
    item has a gain.

    ``exponential``: gains ``2**rel - 1``, as :func:`ndcg_at_k` (graded labels); otherwise
    the relevance itself (a continuous judgement such as the simulator's hidden utility).
    The discount is ``log2(rank + 1)`` in both, as in :func:`ndcg_at_k`."""

    def gain(rel: float) -> float:
        return 2.0**rel - 1.0 if exponential else rel

    dcg = sum(gain(gains.get(v, 0.0)) / math.log2(i + 2) for i, v in enumerate(ranked[:k]))
    ideal = sorted(gains.values(), reverse=True)[:k]
    idcg = sum(gain(g) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else float("nan")


# --------------------------------------------------------------------------------------------
# Full-catalog top-k metrics (every cell labelled)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FullCatalogMetrics:
    """Per-user Precision@k, Recall@k and NDCG@k (binary gains) of full-catalog rankings.

    Kept per user (NaN for a user without any relevant item) so that a caller can average,
    bootstrap or slice them; :meth:`means` is the usual "per user, averaged" summary.
    """

    precision: np.ndarray
    recall: np.ndarray
    ndcg: np.ndarray
    precision_k: int
    recall_k: int
    ndcg_k: int

    def means(self) -> dict[str, float]:
        """Mean of each metric over users with at least one relevant item."""

        def mean(x: np.ndarray) -> float:
            return float(np.nanmean(x)) if np.isfinite(x).any() else _NAN

        return {
            f"precision_at_{self.precision_k}": mean(self.precision),
            f"recall_at_{self.recall_k}": mean(self.recall),
            f"ndcg_at_{self.ndcg_k}": mean(self.ndcg),
        }


def top_k_rows(scores: np.ndarray, k: int, seed: int | None = None) -> np.ndarray:
    """Column indices of each row's ``k`` highest scores, best first.

    Ties are broken by column order when ``seed`` is None (deterministic), else at random
    with ``np.random.default_rng(seed)``: a constant scorer such as global popularity has
    many exact ties, and breaking them by id order would reward or punish it by accident.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be two-dimensional, got shape {s.shape}")
    if np.isnan(s).any():
        raise ValueError("scores must not contain NaN")
    k = min(k, s.shape[1])
    tie = (
        np.broadcast_to(np.arange(s.shape[1], dtype=np.float64), s.shape)
        if seed is None
        else np.random.default_rng(seed).random(s.shape)
    )
    order = np.lexsort((tie, -s), axis=1)
    return order[:, :k]


def full_catalog_topk(
    scores: np.ndarray,
    relevant: np.ndarray,
    *,
    precision_k: int = 10,
    recall_k: int = 50,
    ndcg_k: int = 10,
    seed: int | None = None,
) -> FullCatalogMetrics:
    """Score every user's ranking of the whole catalog against a fully labelled matrix.

    ``scores`` and ``relevant`` are (users, items): a higher score ranks first, and
    ``relevant`` is True where the user's cell is a positive. Every other cell counts as a
    negative, which is only sound when the matrix is (nearly) fully observed. Precision@k
    divides hits by k, Recall@k by the user's number of positives, and NDCG@k uses gains of 1
    with a ``log2(rank + 1)`` discount against the ideal list of ``min(k, positives)`` hits.
    ``seed`` breaks ties at random (see :func:`top_k_rows`).
    """
    s = np.asarray(scores)
    rel = np.asarray(relevant, dtype=bool)
    if s.shape != rel.shape:
        raise ValueError(f"scores {s.shape} and relevant {rel.shape} must have the same shape")
    if min(precision_k, recall_k, ndcg_k) < 1:
        raise ValueError("every k must be at least 1")
    top = top_k_rows(s, max(precision_k, recall_k, ndcg_k), seed)
    hits = np.take_along_axis(rel, top, axis=1).astype(np.float64)
    n_rel = rel.sum(axis=1).astype(np.float64)
    has = n_rel > 0
    nan = np.full(len(s), _NAN)

    precision = np.where(has, hits[:, :precision_k].sum(axis=1) / precision_k, nan)
    recall = np.where(has, hits[:, :recall_k].sum(axis=1) / np.maximum(n_rel, 1.0), nan)
    discount = 1.0 / np.log2(np.arange(ndcg_k) + 2.0)
    dcg = hits[:, :ndcg_k] @ discount[: hits[:, :ndcg_k].shape[1]]
    ideal_hits = np.minimum(n_rel, ndcg_k).astype(np.int64)
    idcg = np.concatenate([[0.0], np.cumsum(discount)])[ideal_hits]
    ndcg = np.where(has, dcg / np.where(idcg > 0, idcg, 1.0), nan)
    return FullCatalogMetrics(
        precision=precision,
        recall=recall,
        ndcg=ndcg,
        precision_k=precision_k,
        recall_k=recall_k,
        ndcg_k=ndcg_k,
    )


# --------------------------------------------------------------------------------------------
# Slicing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SliceMetrics:
    """A metric per slice value, with row counts so thin slices can be spotted and ignored."""

    values: dict[str, float]
    rows: dict[str, int]


def by_slice(
    frame: pd.DataFrame, slice_col: str, fn: Callable[[pd.DataFrame], float]
) -> SliceMetrics:
    """Apply ``fn`` to each slice of ``frame`` (e.g. per surface or country).

    Keys are the slice values as strings so the result can be logged or stored as JSON as
    is; a missing slice value is kept as its own slice ("nan") rather than silently dropped.
    """
    if slice_col not in frame.columns:
        raise ValueError(f"slice column {slice_col!r} not in frame")
    values: dict[str, float] = {}
    rows: dict[str, int] = {}
    for key, part in frame.groupby(slice_col, sort=True, dropna=False, observed=True):
        name = str(key)
        values[name] = float(fn(part))
        rows[name] = len(part)
    return SliceMetrics(values=values, rows=rows)
