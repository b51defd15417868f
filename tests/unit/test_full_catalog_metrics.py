"""Full-catalog Precision/Recall/NDCG on hand-made matrices whose values are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.metrics import full_catalog_topk, top_k_rows

pytestmark = pytest.mark.unit

SCORES = np.array(
    [
        [0.9, 0.8, 0.7, 0.1],  # ranks items 0, 1, 2, 3
        [0.1, 0.2, 0.3, 0.4],  # ranks items 3, 2, 1, 0
        [0.5, 0.4, 0.3, 0.2],  # no relevant item: left out of the means
    ]
)
RELEVANT = np.array(
    [
        [True, False, True, False],
        [False, False, False, True],
        [False, False, False, False],
    ]
)


def test_per_user_values_match_hand_computation() -> None:
    m = full_catalog_topk(SCORES, RELEVANT, precision_k=2, recall_k=3, ndcg_k=2)
    # user 0: hits at ranks 1 and 3; user 1: hit at rank 1 of its single positive
    np.testing.assert_allclose(m.precision[:2], [0.5, 0.5])
    np.testing.assert_allclose(m.recall[:2], [1.0, 1.0])
    ideal_two = 1.0 + 1.0 / math.log2(3.0)
    np.testing.assert_allclose(m.ndcg[:2], [1.0 / ideal_two, 1.0])
    assert np.isnan(m.precision[2]) and np.isnan(m.recall[2]) and np.isnan(m.ndcg[2])
    means = m.means()
    assert means == pytest.approx(
        {"precision_at_2": 0.5, "recall_at_3": 1.0, "ndcg_at_2": (1.0 / ideal_two + 1.0) / 2}
    )


def test_recall_divides_by_all_positives_and_precision_by_k() -> None:
    rel = np.array([[True, True, True, False, False]])
    scores = np.array([[5.0, 0.0, 4.0, 3.0, 2.0]])  # order: 0, 2, 3, 4, 1
    m = full_catalog_topk(scores, rel, precision_k=3, recall_k=2, ndcg_k=3)
    assert m.precision[0] == pytest.approx(2 / 3)
    assert m.recall[0] == pytest.approx(2 / 3)
    dcg = 1.0 + 1.0 / math.log2(3.0)
    idcg = 1.0 + 1.0 / math.log2(3.0) + 0.5
    assert m.ndcg[0] == pytest.approx(dcg / idcg)


def test_ties_keep_column_order_without_seed_and_are_random_with_one() -> None:
    flat = np.zeros((2, 6))
    np.testing.assert_array_equal(top_k_rows(flat, 3), [[0, 1, 2], [0, 1, 2]])
    a, b = top_k_rows(flat, 6, seed=1), top_k_rows(flat, 6, seed=1)
    np.testing.assert_array_equal(a, b)
    assert sorted(a[0].tolist()) == list(range(6))
    draws = np.stack([top_k_rows(np.zeros((1, 6)), 1, seed=s)[0, 0] for s in range(60)])
    assert len(set(draws.tolist())) > 1  # not always the first column
    # a strictly better score still wins whatever the seed
    assert top_k_rows(np.array([[0.0, 0.0, 1.0]]), 1, seed=3)[0, 0] == 2


def test_k_beyond_catalog_and_bad_input() -> None:
    m = full_catalog_topk(SCORES[:1], RELEVANT[:1], precision_k=10, recall_k=50, ndcg_k=10)
    # four items: every hit is inside any k, precision still divides by k
    assert m.recall[0] == 1.0 and m.precision[0] == pytest.approx(0.2)
    assert m.ndcg[0] == pytest.approx((1.0 + 0.5) / (1.0 + 1.0 / math.log2(3.0)))
    with pytest.raises(ValueError, match="same shape"):
        full_catalog_topk(SCORES, RELEVANT[:2])
    with pytest.raises(ValueError, match="NaN"):
        full_catalog_topk(np.array([[np.nan, 1.0]]), np.array([[True, False]]))
