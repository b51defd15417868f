"""Tests for monitoring.evidently_extras: embedding drift and Evidently's recsys metrics.

Timings measured on the 2-core dev box (another job running), Evidently 0.7.23, 2,000 x 384
rows per side (a small shift on 5 dimensions), not asserted:
* ``embedding_drift(ref, cur)`` (ModelDriftMethod called directly): 0.3 s (plus about 3 s
  for the first import of Evidently), ROC AUC 0.585 standardized, 0.582 raw.
* ``embedding_drift(ref, cur, out_dir)`` (the Report, for its HTML): 27-29 s with
  OMP_NUM_THREADS=1, 67 s with the default OpenMP threads, with the same ROC AUC to the last
  digit. Building the two Datasets took 0.8 s and saving the HTML 0.02 s; the rest is the
  t-SNE plot EmbeddingsDrift always draws.
So the tests only ask for an HTML report on a few hundred rows, with one OpenMP thread.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from monitoring.evidently_extras import EmbeddingDrift, embedding_drift, ranking_report

pytestmark = pytest.mark.unit

DIM = 32


# --------------------------------------------------------------------------------------------
# Embedding drift
# --------------------------------------------------------------------------------------------


def mixture(n: int, centers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """n rows from a Gaussian mixture: a random center plus unit noise."""
    return centers[rng.integers(0, len(centers), n)] + rng.normal(size=(n, centers.shape[1]))


@pytest.fixture(scope="module")
def topics() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference, current from the same mixture, and current where half of the rows moved to
    a new cluster (a new trending topic)."""
    rng = np.random.default_rng(7)
    centers = rng.normal(scale=3.0, size=(4, DIM))
    reference = mixture(1500, centers, rng)
    same = mixture(1500, centers, rng)
    trending = rng.normal(scale=3.0, size=DIM)
    shifted = same.copy()
    shifted[::2] = trending + rng.normal(size=(len(shifted[::2]), DIM))
    return reference, same, shifted


def test_same_distribution_is_not_drift(topics) -> None:
    reference, same, _ = topics
    result = embedding_drift(reference, same)
    assert isinstance(result, EmbeddingDrift)
    assert not result.drifted
    assert abs(result.score - 0.5) < 0.05
    assert result.method == "model"
    assert result.column == "caption_embedding"
    assert (result.n_reference, result.n_current) == (1500, 1500)
    assert result.report_html is None


def test_new_trending_cluster_is_drift(topics) -> None:
    reference, _, shifted = topics
    result = embedding_drift(reference, shifted)
    # half of the rows moved: the ROC AUC ceiling is about 0.5 + 0.5 / 2 = 0.75
    assert result.drifted
    assert 0.7 < result.score <= 0.76
    assert result.to_dict()["drifted"] is True
    assert result.to_dict()["score"] == result.score


def test_sampling_is_seeded(topics) -> None:
    reference, _, shifted = topics
    a = embedding_drift(reference, shifted, sample_rows=400, seed=3)
    b = embedding_drift(reference, shifted, sample_rows=400, seed=3)
    assert (a.n_reference, a.n_current) == (400, 400)
    assert a.score == b.score
    assert a.drifted


def test_threshold_decides(topics) -> None:
    reference, same, _ = topics
    score = embedding_drift(reference, same).score
    assert embedding_drift(reference, same, threshold=score - 0.01).drifted
    assert not embedding_drift(reference, same, threshold=score + 0.01).drifted


def test_raw_features_still_use_evidently(topics) -> None:
    reference, same, shifted = topics
    assert embedding_drift(reference, shifted, standardize=False).drifted
    assert not embedding_drift(reference, same, standardize=False).drifted


def test_report_matches_direct_method_and_saves_html(topics, tmp_path) -> None:
    reference, _, shifted = topics
    direct = embedding_drift(reference, shifted, sample_rows=150, seed=1)
    # 150 + 150 rows keep Evidently's t-SNE plot short; one OpenMP thread, because on two
    # busy cores its threads slow it down about 6x (300 rows: 8.9 s against 1.4 s)
    with threadpool_limits(limits=1, user_api="openmp"):
        reported = embedding_drift(reference, shifted, tmp_path / "drift", sample_rows=150, seed=1)
    html = tmp_path / "drift" / "embedding_drift.html"
    assert reported.report_html == str(html)
    assert html.is_file() and html.stat().st_size > 10_000
    assert reported.score == pytest.approx(direct.score, abs=1e-12)
    assert reported.drifted == direct.drifted is True


@pytest.mark.parametrize(
    ("reference", "current", "message"),
    [
        (np.zeros((20, 4)), np.zeros((20, 5)), "dimensions differ"),
        (np.zeros((9, 4)), np.zeros((20, 4)), "at least 10"),
        (np.zeros((20, 4)), np.zeros((3, 4)), "at least 10"),
        (np.zeros(20), np.zeros((20, 4)), "2-D"),
        (np.zeros((20, 4)), np.full((20, 4), np.nan), "non-finite"),
        (np.zeros((20, 4)), np.full((20, 4), np.inf), "non-finite"),
    ],
)
def test_embedding_errors(reference: np.ndarray, current: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        embedding_drift(reference, current)


def test_embedding_bad_parameters(tmp_path) -> None:
    data = np.random.default_rng(0).normal(size=(12, 4))
    with pytest.raises(ValueError, match="sample_rows"):
        embedding_drift(data, data, sample_rows=5)
    with pytest.raises(ValueError, match="threshold"):
        embedding_drift(data, data, threshold=1.5)
    with pytest.raises(ValueError, match="HTML report needs more than 30 rows"):
        embedding_drift(data, data, tmp_path)


# --------------------------------------------------------------------------------------------
# Ranking report
# --------------------------------------------------------------------------------------------


def served_frame(lists: dict[str, list[float]]) -> pd.DataFrame:
    """One row per served item; positions 0-based in list order, scores decreasing."""
    rows = [
        {
            "request_id": request,
            "user_id": f"user-{request}",
            "video_id": f"{request}-v{pos}",
            "position": pos,
            "score": 1.0 - pos / 100,
            "relevance": float(rel),
        }
        for request, rels in lists.items()
        for pos, rel in enumerate(rels)
    ]
    return pd.DataFrame(rows)


def ndcg(rels: list[float], k: int, gain: str = "linear") -> float:
    """Independent NDCG@k of one list in served order (None when nothing is relevant)."""
    g = np.asarray(rels, dtype=float)
    g = g if gain == "linear" else np.power(2.0, g) - 1.0
    disc = 1.0 / np.log2(np.arange(2, len(g) + 2))
    ideal = float(np.sort(g)[::-1][:k] @ disc[:k])
    return float(g[:k] @ disc[:k]) / ideal if ideal > 0 else math.nan


def average_precision(rels: list[float], k: int) -> float:
    """Evidently's AP@k: precision at each relevant rank <= k over all relevant in the list."""
    hit = np.asarray(rels) > 0
    prec = np.cumsum(hit) / np.arange(1, len(hit) + 1)
    return float((prec * hit)[:k].sum() / hit.sum())


HAND = {"a": [0, 1, 0, 0, 2], "b": [1, 1, 0, 0, 0], "c": [0, 0, 0, 0, 0]}


def test_hand_computed_lists() -> None:
    out = ranking_report(served_frame(HAND), k=5)
    # request c has no engagement: left out of the means (Evidently's no_feedback_users=False)
    ndcg_a = (1 / math.log2(3) + 2 / math.log2(6)) / (2 + 1 / math.log2(3))
    assert out["evidently_ndcg_at_5"] == pytest.approx((ndcg_a + 1.0) / 2, abs=1e-6)
    assert out["evidently_ndcg_at_5"] == pytest.approx(
        (ndcg(HAND["a"], 5) + ndcg(HAND["b"], 5)) / 2, abs=1e-6
    )
    assert out["evidently_map_at_5"] == pytest.approx(((0.5 + 0.4) / 2 + 1.0) / 2)
    assert out["evidently_mrr_at_5"] == pytest.approx((1 / 2 + 1) / 2)
    assert out["evidently_hit_rate_at_5"] == pytest.approx(1.0)
    assert out["evidently_precision_at_5"] == pytest.approx(2 / 5)
    assert out["evidently_recall_at_5"] == pytest.approx(1.0)
    assert out["evidently_requests"] == 3.0
    assert out["evidently_requests_with_feedback"] == 2.0
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())


def test_hand_computed_lists_at_3() -> None:
    # k below the list length: checks the value is read at k (NDCG and MRR come back from
    # Evidently with rank labels shifted by one)
    out = ranking_report(served_frame(HAND), k=3)
    ndcg_a = (1 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert out["evidently_ndcg_at_3"] == pytest.approx((ndcg_a + 1.0) / 2, abs=1e-6)
    assert out["evidently_map_at_3"] == pytest.approx((0.5 / 2 + 1.0) / 2)
    assert out["evidently_mrr_at_3"] == pytest.approx(0.75)
    assert out["evidently_hit_rate_at_3"] == pytest.approx(1.0)
    assert out["evidently_precision_at_3"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert out["evidently_recall_at_3"] == pytest.approx((1 / 2 + 1) / 2)


def test_include_no_feedback_averages_over_all_requests() -> None:
    base = ranking_report(served_frame(HAND), k=5)
    out = ranking_report(served_frame(HAND), k=5, include_no_feedback=True)
    for name in ("ndcg", "map", "mrr", "hit_rate", "precision", "recall"):
        key = f"evidently_{name}_at_5"
        assert out[key] == pytest.approx(base[key] * 2 / 3), key


def test_ndcg_uses_linear_gain_and_matches_standard_on_binary() -> None:
    rng = np.random.default_rng(11)
    graded = {f"r{i:02d}": list(rng.choice([0, 0, 0, 1, 2, 3], size=8)) for i in range(40)}
    binary = {r: [float(x > 0) for x in rels] for r, rels in graded.items()}
    k = 5

    def mean(values: list[float]) -> float:
        return float(np.nanmean(values))

    out = ranking_report(served_frame(graded), k=k)
    linear = mean([ndcg(rels, k) for rels in graded.values()])
    exponential = mean([ndcg(rels, k, gain="exp") for rels in graded.values()])
    assert out[f"evidently_ndcg_at_{k}"] == pytest.approx(linear, abs=1e-6)
    assert abs(linear - exponential) > 1e-3  # the definitions differ on graded relevance

    out_bin = ranking_report(served_frame(binary), k=k)
    assert out_bin[f"evidently_ndcg_at_{k}"] == pytest.approx(
        mean([ndcg(rels, k, gain="exp") for rels in binary.values()]), abs=1e-6
    )
    # binary metrics on the graded lists: relevance > 0 counts as relevant
    engaged = [rels for rels in graded.values() if any(r > 0 for r in rels)]
    hits = [np.asarray(rels) > 0 for rels in engaged]
    assert out[f"evidently_map_at_{k}"] == pytest.approx(
        np.mean([average_precision(rels, k) for rels in engaged]), abs=1e-9
    )
    assert out[f"evidently_hit_rate_at_{k}"] == pytest.approx(
        np.mean([h[:k].any() for h in hits]), abs=1e-9
    )
    assert out[f"evidently_precision_at_{k}"] == pytest.approx(
        np.mean([h[:k].mean() for h in hits]), abs=1e-9
    )
    assert out[f"evidently_recall_at_{k}"] == pytest.approx(
        np.mean([h[:k].sum() / h.sum() for h in hits]), abs=1e-9
    )
    mrr = [1 / (np.argmax(h[:k]) + 1) if h[:k].any() else 0.0 for h in hits]
    assert out[f"evidently_mrr_at_{k}"] == pytest.approx(np.mean(mrr), abs=1e-9)
    # the served row order does not matter: lists are rebuilt from request_id and position
    shuffled = served_frame(graded).sample(frac=1.0, random_state=0)
    assert ranking_report(shuffled, k=k) == pytest.approx(out, abs=1e-12)


def test_perfect_ranking_and_k_beyond_list_length() -> None:
    lists = {"a": [3, 2, 1, 0, 0], "b": [1, 0, 0, 0, 0], "c": [2, 2, 0, 0, 0]}
    out = ranking_report(served_frame(lists), k=10)  # lists have 5 items: evaluated at 5
    assert out["evidently_ndcg_at_10"] == pytest.approx(1.0)
    assert out["evidently_hit_rate_at_10"] == pytest.approx(1.0)
    assert out["evidently_mrr_at_10"] == pytest.approx(1.0)
    assert out["evidently_map_at_10"] == pytest.approx(1.0)
    assert out["evidently_recall_at_10"] == pytest.approx(1.0)


def test_served_order_is_position_not_score() -> None:
    served = served_frame({"a": [0, 1], "b": [1, 0]})
    served["score"] = served["score"].to_numpy()[::-1]  # scores disagree with the served order
    out = ranking_report(served, k=1)
    assert out["evidently_hit_rate_at_1"] == pytest.approx(0.5)
    assert out["evidently_ndcg_at_1"] == pytest.approx(0.5)


def test_no_engagement_at_all() -> None:
    out = ranking_report(served_frame({"a": [0, 0, 0], "b": [0, 0, 0]}), k=3)
    assert out == {"evidently_requests": 2.0, "evidently_requests_with_feedback": 0.0}


def test_html_and_train_metrics(tmp_path) -> None:
    served = served_frame(HAND)
    train = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", "u3", "u1"],
            "video_id": ["a-v0", "a-v0", "a-v0", "b-v1", "a-v0"],  # a duplicate row
        }
    )
    out = ranking_report(served, tmp_path / "rank", k=3, train=train)
    html = tmp_path / "rank" / "ranking_report.html"
    assert html.is_file() and html.stat().st_size > 10_000
    # ARP: per list, the mean number of training users of its top-k items known to training
    # (a: a-v0 with 3 users; b: b-v1 with 1; c: none, so left out), averaged over lists
    assert out["evidently_popularity_arp_at_3"] == pytest.approx((3 + 1) / 2)
    assert out["evidently_coverage_at_3"] == pytest.approx(1.0)  # both training items served
    # novelty: -log2(share of the 3 training users): a-v0 -> 0, b-v1 -> log2(3)
    assert out["evidently_novelty_at_3"] == pytest.approx(math.log2(3) / 2)
    assert "evidently_gini_at_3" in out
    assert out["evidently_ndcg_at_3"] == ranking_report(served, k=3)["evidently_ndcg_at_3"]
    # k beyond the lists' length: popularity metrics take every item, top-k metrics clamp
    wide = ranking_report(served, k=10, train=train)
    assert wide["evidently_novelty_at_10"] == pytest.approx(math.log2(3) / 2)  # same items
    assert wide["evidently_ndcg_at_10"] == pytest.approx(
        ranking_report(served, k=5)["evidently_ndcg_at_5"], abs=1e-12
    )


def test_lists_of_different_lengths(caplog) -> None:
    lists = {"a": [0, 1, 0, 0, 1], "b": [1, 0, 0], "c": [0, 0, 1, 0]}
    with caplog.at_level(logging.WARNING, logger="monitoring.evidently_extras"):
        out = ranking_report(served_frame(lists), k=3)  # every list has at least 3 items
    assert not caplog.records
    assert out["evidently_ndcg_at_3"] == pytest.approx(
        np.mean([ndcg(rels, 3) for rels in lists.values()]), abs=1e-6
    )
    assert out["evidently_map_at_3"] == pytest.approx(
        np.mean([average_precision(rels, 3) for rels in lists.values()]), abs=1e-9
    )
    with caplog.at_level(logging.WARNING, logger="monitoring.evidently_extras"):
        ranking_report(served_frame(lists), k=5)
    assert "over-counts" in caplog.text


def test_ranking_errors() -> None:
    served = served_frame(HAND)
    with pytest.raises(ValueError, match="lacks columns"):
        ranking_report(served.drop(columns=["relevance"]))
    with pytest.raises(ValueError, match="negative"):
        ranking_report(served.assign(relevance=-1.0))
    with pytest.raises(ValueError, match="finite"):
        ranking_report(served.assign(relevance=np.nan))
    with pytest.raises(ValueError, match="empty"):
        ranking_report(served.iloc[:0])
    with pytest.raises(ValueError, match="k must be"):
        ranking_report(served, k=0)
    with pytest.raises(ValueError, match="train frame lacks"):
        ranking_report(served, k=3, train=pd.DataFrame({"video_id": ["a-v0"]}))
