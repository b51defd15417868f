from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from models.metrics import (
    CalibrationResult,
    D2QLabeler,
    GaucResult,
    SliceMetrics,
    by_slice,
    coverage,
    creator_diversity,
    expected_calibration_error,
    gauc,
    ndcg_at_k,
    xauc,
)

pytestmark = pytest.mark.unit


# ----------------------------------------------------------------------------------------------
# D2Q
# ----------------------------------------------------------------------------------------------


def _two_duration_world() -> tuple[np.ndarray, np.ndarray]:
    """Five 10 s videos and five 60 s videos; watches spread evenly up to full completion."""
    duration = np.array([10.0] * 5 + [60.0] * 5)
    watch = np.array([2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 24.0, 36.0, 48.0, 60.0])
    return duration, watch


def test_d2q_full_watch_of_short_and_long_video_get_same_label():
    duration, watch = _two_duration_world()
    labeler = D2QLabeler().fit(duration, watch, n_buckets=2)
    # Boundary = sorted durations at row 10 * 1 // 2 = 5 -> 60 s, so {10 s} and {60 s} buckets.
    assert labeler.n_buckets == 2
    assert labeler.bucket_of([10.0, 60.0]).tolist() == [0, 1]

    got = labeler.transform([10.0, 60.0, 10.0, 60.0, 10.0], [10.0, 60.0, 6.0, 36.0, 4.0])
    # Full watch: top of each bucket -> 1.0 for both, though raw seconds are 10 vs 60.
    # Median watch (6 s of 10 s, 36 s of 60 s): middle of 5 sorted values -> 0.5 for both.
    # 4 s is the 2nd of 5 sorted values -> 1 / 4 = 0.25.
    np.testing.assert_allclose(got, [1.0, 1.0, 0.5, 0.5, 0.25])


def test_d2q_interpolates_between_training_values():
    duration, watch = _two_duration_world()
    labeler = D2QLabeler().fit(duration, watch, n_buckets=2)
    # 5 s in the 10 s bucket lies halfway between 4 s (q = 0.25) and 6 s (q = 0.50): 0.375.
    # 30 s in the 60 s bucket lies halfway between 24 s (0.25) and 36 s (0.50): 0.375.
    np.testing.assert_allclose(labeler.transform([10.0, 60.0], [5.0, 30.0]), [0.375, 0.375])


def test_d2q_clips_watch_time_and_routes_out_of_range_durations():
    duration, watch = _two_duration_world()
    labeler = D2QLabeler().fit(duration, watch, n_buckets=2)
    # Watch times beyond the bucket's training range clip to its ends.
    np.testing.assert_allclose(labeler.transform([10.0, 10.0], [-1.0, 100.0]), [0.0, 1.0])
    # A 3 s video goes to the first (10 s) bucket: 6 s there is the median -> 0.5.
    # A 600 s video goes to the last (60 s) bucket: 6 s is below its 12 s minimum -> 0.0.
    assert labeler.bucket_of([3.0, 600.0]).tolist() == [0, 1]
    np.testing.assert_allclose(labeler.transform([3.0, 600.0], [6.0, 6.0]), [0.5, 0.0])
    # Missing values yield NaN rather than a bucket guess.
    out = labeler.transform([np.nan, 10.0], [5.0, np.nan])
    assert np.isnan(out).all()


def test_d2q_handles_duplicated_edges_and_ties():
    # Durations: 8 rows of 15 s, 2 of 30 s. Asking for 5 buckets gives boundaries
    # sorted[2, 4, 6, 8] = 15, 15, 15, 30 -> unique {15, 30} -> 15 equals the minimum and is
    # dropped, leaving one boundary (30) and two non-empty buckets.
    duration = np.array([15.0] * 8 + [30.0] * 2)
    watch = np.array([0.0, 0.0, 0.0, 0.0, 5.0, 6.0, 7.0, 8.0, 10.0, 20.0])
    labeler = D2QLabeler().fit(duration, watch, n_buckets=5)
    assert labeler.n_buckets == 2
    assert labeler.boundaries is not None and labeler.boundaries.tolist() == [30.0]
    # A zero-second skip: half the 15 s bucket watched 0 s, quantile grid is 0 for p in
    # [0, 3/7] (linear quantiles of 8 values, positions 0..3 of 7) -> mid of the tie run.
    zero = labeler.transform([15.0], [0.0])[0]
    assert zero == pytest.approx(0.5 * (0.0 + 0.42), abs=0.01)
    out = labeler.transform(duration, watch)
    assert ((out >= 0.0) & (out <= 1.0)).all()


def test_d2q_round_trips_through_json():
    rng = np.random.default_rng(3)
    duration = rng.uniform(5, 120, size=2_000)
    watch = duration * rng.beta(2, 3, size=2_000)
    labeler = D2QLabeler().fit(duration, watch, n_buckets=20, n_quantiles=101)
    state = json.loads(json.dumps(labeler.to_dict()))
    restored = D2QLabeler.from_dict(state)
    assert restored.n_buckets == labeler.n_buckets == 20
    np.testing.assert_array_equal(
        restored.transform(duration, watch), labeler.transform(duration, watch)
    )
    # Debiased labels are roughly uniform, with no trend in duration.
    labels = labeler.transform(duration, watch)
    assert abs(labels.mean() - 0.5) < 0.02
    assert abs(np.corrcoef(duration, labels)[0, 1]) < 0.05
    assert np.corrcoef(duration, watch)[0, 1] > 0.5


def test_d2q_rejects_bad_input():
    with pytest.raises(ValueError, match="same length"):
        D2QLabeler().fit([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="not fitted"):
        D2QLabeler().transform([1.0], [1.0])
    with pytest.raises(ValueError, match="zero rows"):
        D2QLabeler().fit([], [])
    labeler = D2QLabeler().fit([1.0, 2.0], [1.0, 2.0], n_buckets=1)
    with pytest.raises(ValueError, match="same length"):
        labeler.transform([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="one quantile row per bucket"):
        D2QLabeler(boundaries=[10.0], quantiles=[[0.0, 1.0]])


# ----------------------------------------------------------------------------------------------
# GAUC
# ----------------------------------------------------------------------------------------------


def test_gauc_two_users_weighted_by_impressions():
    groups = ["a", "a", "a", "b", "b", "b", "b", "c", "c"]
    labels = [1, 0, 0, 1, 1, 0, 0, 0, 0]
    scores = [0.9, 0.5, 0.7, 0.2, 0.6, 0.4, 0.6, 0.1, 0.3]
    result = gauc(groups, labels, scores)
    # a: positive 0.9 beats both negatives -> AUC 2/2 = 1.0 (3 impressions)
    # b: pos {0.2, 0.6} vs neg {0.4, 0.6}: (0.2,0.4)=0 (0.2,0.6)=0 (0.6,0.4)=1 (0.6,0.6)=0.5
    #    -> 1.5 / 4 = 0.375 (4 impressions)
    # c: only negatives -> skipped
    # weighted = (3 * 1.0 + 4 * 0.375) / 7 = 4.5 / 7; unweighted = (1.0 + 0.375) / 2
    assert isinstance(result, GaucResult)
    assert result.value == pytest.approx(4.5 / 7)  # 0.642857...
    assert result.unweighted == pytest.approx(0.6875)
    assert result.n_groups == 2
    assert result.n_skipped == 1


def test_gauc_single_group_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=500)
    scores = np.round(rng.normal(size=500) + labels, 1)  # rounding creates many ties
    result = gauc(np.zeros(500), labels, scores)
    assert result.value == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert result.unweighted == pytest.approx(result.value)


def test_gauc_matches_per_group_reference_on_200k_rows():
    rng = np.random.default_rng(1)
    n = 200_000
    groups = rng.integers(0, 2_000, size=n)
    labels = (rng.random(n) < 0.3).astype(int)
    scores = np.round(rng.random(n) + 0.3 * labels, 2)
    result = gauc(groups, labels, scores)

    sub = groups < 20
    frame = pd.DataFrame({"g": groups[sub], "y": labels[sub], "s": scores[sub]})
    aucs = {g: roc_auc_score(p["y"], p["s"]) for g, p in frame.groupby("g")}
    sizes = frame.groupby("g").size()
    expected = sum(aucs[g] * sizes[g] for g in aucs) / sizes.sum()
    assert gauc(groups[sub], labels[sub], scores[sub]).value == pytest.approx(expected)
    assert result.n_groups + result.n_skipped == 2_000
    assert 0.5 < result.value < 1.0


def test_gauc_undefined_and_invalid():
    one_class = gauc(["a", "a", "b"], [1, 1, 0], [0.1, 0.2, 0.3])
    assert math.isnan(one_class.value) and math.isnan(one_class.unweighted)
    assert (one_class.n_groups, one_class.n_skipped) == (0, 2)
    assert math.isnan(gauc([], [], []).value)
    with pytest.raises(ValueError, match="same length"):
        gauc(["a", "a"], [1, 0], [0.1])
    with pytest.raises(ValueError, match="0/1"):
        gauc(["a", "a"], [2, 0], [0.1, 0.2])


# ----------------------------------------------------------------------------------------------
# XAUC
# ----------------------------------------------------------------------------------------------


def test_xauc_four_items_six_pairs():
    targets = [1.0, 2.0, 3.0, 4.0]
    scores = [0.1, 0.3, 0.2, 0.3]
    # (1,2) 0.1<0.3 -> 1   (1,3) 0.1<0.2 -> 1   (1,4) 0.1<0.3 -> 1
    # (2,3) 0.3>0.2 -> 0   (2,4) 0.3=0.3 -> 0.5 (3,4) 0.2<0.3 -> 1
    # 4.5 / 6 = 0.75
    assert xauc(targets, scores) == pytest.approx(0.75)


def test_xauc_skips_equal_targets():
    # (0,1) equal targets -> skipped; (0,2) 1<2 but 0.5>0.3 -> 0; (1,2) 0.1<0.3 -> 1
    # 1 / 2 = 0.5
    assert xauc([1.0, 1.0, 2.0], [0.5, 0.1, 0.3]) == pytest.approx(0.5)


def test_xauc_within_groups_only():
    targets = [1.0, 2.0, 10.0, 20.0]
    scores = [0.1, 0.2, 0.9, 0.8]
    # Per request: a (1 vs 2) concordant -> 1; b (10 vs 20) reversed -> 0; 1 / 2 = 0.5
    assert xauc(targets, scores, groups=["a", "a", "b", "b"]) == pytest.approx(0.5)
    # Globally only (10, 20) of the 6 pairs is reversed: 5 / 6
    assert xauc(targets, scores) == pytest.approx(5 / 6)


def test_xauc_exact_and_sampled_agree():
    rng = np.random.default_rng(7)
    targets = rng.exponential(20.0, size=2_000)
    scores = targets + rng.normal(scale=20.0, size=2_000)
    exact = xauc(targets, scores, max_pairs=2_000 * 1_999 // 2)
    sampled = xauc(targets, scores, max_pairs=200_000, seed=1)
    assert abs(exact - sampled) < 0.02
    assert sampled == xauc(targets, scores, max_pairs=200_000, seed=1)  # reproducible

    groups = rng.integers(0, 50, size=2_000)
    exact_g = xauc(targets, scores, max_pairs=10**6, groups=groups)
    sampled_g = xauc(targets, scores, max_pairs=50_000, groups=groups)
    assert abs(exact_g - sampled_g) < 0.02


def test_xauc_undefined_and_invalid():
    assert math.isnan(xauc([3.0, 3.0, 3.0], [0.1, 0.2, 0.3]))  # no pair with different targets
    assert math.isnan(xauc([1.0], [0.1]))
    assert math.isnan(xauc([1.0, 2.0], [0.1, 0.2], groups=["a", "b"]))  # no within-group pair
    with pytest.raises(ValueError, match="same length"):
        xauc([1.0, 2.0], [0.1])
    with pytest.raises(ValueError, match="same length"):
        xauc([1.0, 2.0], [0.1, 0.2], groups=["a"])
    with pytest.raises(ValueError, match="finite"):
        xauc([1.0, 2.0], [0.1, np.nan])


# ----------------------------------------------------------------------------------------------
# Calibration
# ----------------------------------------------------------------------------------------------


def test_ece_two_bins():
    labels = [0, 1, 1, 0, 1]
    probs = [0.1, 0.3, 0.5, 0.8, 1.0]
    result = expected_calibration_error(labels, probs, n_bins=2)
    # bin [0, 0.5): p 0.1, 0.3 -> mean 0.2; labels 0, 1 -> 0.5; gap 0.3, weight 2/5
    # bin [0.5, 1]: p 0.5, 0.8, 1.0 -> mean 2.3/3; labels 1, 0, 1 -> 2/3; gap 0.1, weight 3/5
    # ECE = 0.4 * 0.3 + 0.6 * 0.1 = 0.18
    assert isinstance(result, CalibrationResult)
    assert result.ece == pytest.approx(0.18)
    assert result.bin_lower == [0.0, 0.5]
    assert result.bin_upper == [0.5, 1.0]
    assert result.count == [2, 3]
    assert result.mean_prob == pytest.approx([0.2, 2.3 / 3])
    assert result.frac_positive == pytest.approx([0.5, 2 / 3])


def test_ece_empty_bins_and_edge_values():
    # 0.3 belongs to [0.3, 0.4) despite float edges; bins without rows report count 0 and NaN.
    result = expected_calibration_error([1, 0], [0.3, 0.3], n_bins=10)
    assert result.count[3] == 2 and sum(result.count) == 2
    assert math.isnan(result.mean_prob[0]) and math.isnan(result.frac_positive[9])
    # one bin: mean 0.3, positive rate 0.5 -> ECE = |0.5 - 0.3| = 0.2
    assert result.ece == pytest.approx(0.2)
    # perfectly calibrated
    assert expected_calibration_error([0, 1], [0.0, 1.0], n_bins=4).ece == pytest.approx(0.0)


def test_ece_undefined_and_invalid():
    empty = expected_calibration_error([], [], n_bins=3)
    assert math.isnan(empty.ece) and empty.count == [0, 0, 0]
    with pytest.raises(ValueError, match="same length"):
        expected_calibration_error([0, 1], [0.5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([0, 1], [0.5, 1.2])


# ----------------------------------------------------------------------------------------------
# Coverage and creator diversity
# ----------------------------------------------------------------------------------------------


def test_coverage_counts_distinct_items():
    # distinct {a, b, c} = 3 of a 10-video catalogue -> 0.3
    assert coverage([["a", "b"], ["b", "c"], []], catalog_size=10) == pytest.approx(0.3)
    assert coverage([], catalog_size=10) == 0.0
    assert math.isnan(coverage([], catalog_size=0))
    with pytest.raises(ValueError, match="catalog_size"):
        coverage([["a", "b", "c"]], catalog_size=2)


def test_creator_diversity_skips_empty_lists():
    lists = [["c1", "c1", "c2"], ["c1", "c2"], []]
    # list 1: 2 distinct / 3 slots; list 2: 2 / 2; empty list skipped
    # mean = (2/3 + 1) / 2 = 0.8333...
    assert creator_diversity(lists) == pytest.approx(5 / 6)
    assert math.isnan(creator_diversity([[], []]))
    assert math.isnan(creator_diversity([]))


# ----------------------------------------------------------------------------------------------
# NDCG
# ----------------------------------------------------------------------------------------------


def test_ndcg_gains_three_one_zero():
    groups = ["r"] * 3
    relevance = [2.0, 1.0, 0.0]  # gains 2^2-1 = 3, 2^1-1 = 1, 0
    scores = [0.5, 0.9, 0.1]  # model ranks: rel 1, rel 2, rel 0
    # DCG  = 1/log2(2) + 3/log2(3) + 0 = 1 + 1.89279 = 2.89279
    # IDCG = 3/log2(2) + 1/log2(3) + 0 = 3 + 0.63093 = 3.63093
    # NDCG = 2.89279 / 3.63093 = 0.79671
    expected = (1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3))
    assert expected == pytest.approx(0.79671, abs=1e-5)
    assert ndcg_at_k(groups, relevance, scores) == pytest.approx(expected)
    assert ndcg_at_k(groups, relevance, [3.0, 2.0, 1.0]) == pytest.approx(1.0)


def test_ndcg_ties_broken_by_row_order():
    # Tied scores keep row order. Relevant item second: DCG = 1/log2(3) = 0.63093, IDCG = 1.
    assert ndcg_at_k(["r", "r"], [0.0, 1.0], [0.5, 0.5]) == pytest.approx(1 / math.log2(3))
    # Relevant item first: ranked first -> 1.0.
    assert ndcg_at_k(["r", "r"], [1.0, 0.0], [0.5, 0.5]) == pytest.approx(1.0)


def test_ndcg_cut_at_k_and_skips_groups_without_relevance():
    groups = ["a", "a", "a", "b", "b"]
    relevance = [0.0, 0.0, 1.0, 0.0, 0.0]
    scores = [3.0, 2.0, 1.0, 5.0, 4.0]
    # a: the relevant item is ranked 3rd -> nothing in the top 2 -> 0.0; b has no relevance
    assert ndcg_at_k(groups, relevance, scores, k=2) == 0.0
    # k=3: DCG = 1/log2(4) = 0.5, IDCG = 1 -> 0.5
    assert ndcg_at_k(groups, relevance, scores, k=3) == pytest.approx(0.5)


def test_ndcg_undefined_and_invalid():
    assert math.isnan(ndcg_at_k(["a", "a"], [0.0, 0.0], [0.1, 0.2]))
    assert math.isnan(ndcg_at_k([], [], []))
    with pytest.raises(ValueError, match="same length"):
        ndcg_at_k(["a", "a"], [1.0], [0.1, 0.2])
    with pytest.raises(ValueError, match="k must"):
        ndcg_at_k(["a"], [1.0], [0.1], k=0)


# ----------------------------------------------------------------------------------------------
# Slices
# ----------------------------------------------------------------------------------------------


def test_by_slice_computes_metric_and_rows_per_surface():
    frame = pd.DataFrame(
        {
            "surface": ["feed", "feed", "feed", "search", "search"],
            "positive": [1, 0, 1, 1, 1],
        }
    )
    result = by_slice(frame, "surface", lambda part: part["positive"].mean())
    # feed: 2 positives / 3 rows = 0.6667; search: 2 / 2 = 1.0
    assert isinstance(result, SliceMetrics)
    assert result.values == pytest.approx({"feed": 2 / 3, "search": 1.0})
    assert result.rows == {"feed": 3, "search": 2}
    with pytest.raises(ValueError, match="not in frame"):
        by_slice(frame, "country", lambda part: 0.0)
