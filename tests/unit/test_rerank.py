"""Re-ranking: MMR by hand and against a direct implementation, exploration slot, filters."""

from __future__ import annotations

import time

import numpy as np
import pytest

from serving.rerank import exploration_slot, filter_candidates, mmr_rerank

pytestmark = pytest.mark.unit

# Six candidates, best first: three by creator A, then three by creator B, every topic distinct.
SCORES = np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.0])  # min-max scaled: 1, .8, .6, .4, .2, 0
CREATORS = np.array(["A", "A", "A", "B", "B", "B"])
TOPICS = np.array(["t0", "t1", "t2", "t3", "t4", "t5"])


def reference_mmr(
    scores: np.ndarray, creators: np.ndarray, topics: np.ndarray, k: int, diversity: float
) -> list[int]:
    """The documented rule written out directly, one candidate at a time."""
    n = len(scores)
    lo, hi = min(scores), max(scores)
    norm = [(s - lo) / (hi - lo) if hi > lo else 0.0 for s in scores]
    by_score = sorted(range(n), key=lambda i: (-scores[i], i))
    picked: list[int] = []
    for _ in range(min(k, n)):
        best, best_value = -1, -np.inf
        for i in by_score:  # strict > keeps the better-scored candidate on ties
            if i in picked:
                continue
            # 0.5 * same_creator / picked + 0.5 * same_topic / picked, summed as counts first
            # so that equal redundancies are exactly equal floats.
            same_c = sum(creators[j] == creators[i] for j in picked)
            same_t = sum(topics[j] == topics[i] for j in picked)
            redundancy = (same_c + same_t) / (2 * len(picked)) if picked else 0.0
            value = (1 - diversity) * norm[i] - diversity * redundancy
            if value > best_value:
                best, best_value = i, value
        picked.append(best)
    return picked


def test_no_diversity_keeps_creators_clustered() -> None:
    assert mmr_rerank(SCORES, CREATORS, TOPICS, 6, 0.0).tolist() == [0, 1, 2, 3, 4, 5]


def test_half_diversity_interleaves_creators_by_hand() -> None:
    # pick 1: no redundancy yet -> best score, 0 (A).
    # pick 2: A items carry .5*1/1 = .5: 1 -> .5*.8-.5*.5 = .15, 3 -> .5*.4 = .20 -> 3 (B).
    # pick 3: one A, one B: every item carries .25, so the best score wins -> 1 (A).
    # pick 4: A carries .5*2/3, B .5*1/3: 2 -> .30-.167 = .133, 4 -> .10-.083 = .017 -> 2.
    # pick 5: A carries .375, B .125: 4 -> .10-.0625 = .0375, 5 -> 0-.0625 -> 4, then 5.
    assert mmr_rerank(SCORES, CREATORS, TOPICS, 6, 0.5).tolist() == [0, 3, 1, 2, 4, 5]
    assert mmr_rerank(SCORES, CREATORS, TOPICS, 4, 0.5).tolist() == [0, 3, 1, 2]
    assert mmr_rerank(SCORES, CREATORS, TOPICS, 4, 0.0).tolist() == [0, 1, 2, 3]


def test_full_diversity_alternates_creators_ties_to_the_better_score() -> None:
    picked = mmr_rerank(SCORES, CREATORS, TOPICS, 6, 1.0)
    assert picked.tolist() == [0, 3, 1, 4, 2, 5]
    assert CREATORS[picked].tolist() == ["A", "B", "A", "B", "A", "B"]


def test_diversity_does_not_pull_up_far_worse_items() -> None:
    scores = np.array([10.0, 9.9, 9.8, 1.0, 0.9, 0.8])
    # pick 2: 1 -> .5*.989-.25 = .245 beats 3 -> .5*.022 = .011; pick 3 likewise.
    assert mmr_rerank(scores, CREATORS, TOPICS, 4, 0.5).tolist() == [0, 1, 2, 3]


def test_topics_count_like_creators() -> None:
    same_creator = np.array(["A"] * 6)
    topics = np.array(["x", "x", "x", "y", "y", "y"])
    assert mmr_rerank(SCORES, same_creator, topics, 6, 1.0).tolist() == [0, 3, 1, 4, 2, 5]


def test_matches_the_rule_written_out_on_random_inputs() -> None:
    rng = np.random.default_rng(7)
    for trial in range(40):
        n = int(rng.integers(1, 40))
        scores = rng.normal(size=n)
        creators = rng.integers(0, 5, n).astype(str)
        topics = rng.integers(0, 4, n)
        k = int(rng.integers(0, n + 3))
        for diversity in (0.0, 0.2, 0.5, 0.8, 1.0):
            got = mmr_rerank(scores, creators, topics, k, diversity).tolist()
            want = reference_mmr(scores, creators, topics, k, diversity)
            assert got == want, (trial, diversity)


def test_no_diversity_is_the_stable_top_k() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, 200).astype(float)  # many ties
    creators = rng.integers(0, 9, 200)
    want = sorted(range(200), key=lambda i: (-scores[i], i))[:30]
    assert mmr_rerank(scores, creators, creators, 30, 0.0).tolist() == want


def test_k_larger_than_n_returns_every_item_once() -> None:
    for diversity in (0.0, 0.5):
        picked = mmr_rerank(SCORES, CREATORS, TOPICS, 50, diversity)
        assert sorted(picked.tolist()) == list(range(6))
    assert mmr_rerank(SCORES, CREATORS, TOPICS, 0, 0.5).tolist() == []
    assert mmr_rerank(np.array([]), np.array([]), np.array([]), 5, 0.5).tolist() == []


def test_equal_scores_break_ties_by_position() -> None:
    scores = np.ones(4)
    creators = np.array(["A", "A", "B", "B"])
    assert mmr_rerank(scores, creators, np.arange(4), 4, 0.3).tolist() == [0, 2, 1, 3]


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="k must be"):
        mmr_rerank(SCORES, CREATORS, TOPICS, -1, 0.5)
    with pytest.raises(ValueError, match="diversity must be in"):
        mmr_rerank(SCORES, CREATORS, TOPICS, 3, 1.5)
    with pytest.raises(ValueError, match="diversity must be in"):
        mmr_rerank(SCORES, CREATORS, TOPICS, 3, float("nan"))
    with pytest.raises(ValueError, match="equal length"):
        mmr_rerank(SCORES, CREATORS[:5], TOPICS, 3, 0.5)
    with pytest.raises(ValueError, match="NaN"):
        mmr_rerank(np.array([1.0, np.nan]), CREATORS[:2], TOPICS[:2], 2, 0.5)


def test_is_fast_for_a_serving_sized_list() -> None:
    rng = np.random.default_rng(0)
    n = 500
    scores = rng.random(n)
    creators = rng.integers(0, 80, n).astype(str)
    topics = rng.integers(0, 20, n).astype(str)
    best = np.inf
    for _ in range(20):
        start = time.perf_counter()
        picked = mmr_rerank(scores, creators, topics, 50, 0.3)
        best = min(best, time.perf_counter() - start)
    assert len(set(picked.tolist())) == 50
    assert best < 0.005  # about 0.3 ms on a laptop core; generous for shared runners


# -- exploration slot ---------------------------------------------------------------------------

CHOSEN = np.array([10, 11, 12, 13, 14])


def test_exploration_inserts_the_best_fresh_item_and_drops_the_last() -> None:
    out = exploration_slot(CHOSEN, np.array([20, 21]), 2)
    assert out.tolist() == [10, 11, 20, 12, 13]
    scores = np.zeros(30)
    scores[21] = 1.0
    by_score = exploration_slot(CHOSEN, np.array([20, 21]), 2, scores=scores)
    assert by_score.tolist() == [10, 11, 21, 12, 13]
    assert CHOSEN.tolist() == [10, 11, 12, 13, 14]  # input untouched


def test_exploration_is_a_no_op_when_fresh_is_already_high_enough() -> None:
    for already_at in (0, 2):
        chosen = CHOSEN.copy()
        chosen[already_at] = 21
        assert exploration_slot(chosen, np.array([20, 21]), 2).tolist() == chosen.tolist()


def test_exploration_moves_a_lower_fresh_item_up_instead_of_duplicating() -> None:
    chosen = np.array([10, 11, 20, 12, 13])
    assert exploration_slot(chosen, np.array([20, 21]), 1).tolist() == [10, 20, 11, 12, 13]
    assert exploration_slot(chosen, np.array([20, 21]), 0).tolist() == [20, 10, 11, 12, 13]


def test_exploration_without_fresh_items_or_slot_is_a_no_op() -> None:
    assert exploration_slot(CHOSEN, np.array([], dtype=int), 1).tolist() == CHOSEN.tolist()
    assert exploration_slot(CHOSEN, np.array([20]), 5).tolist() == CHOSEN.tolist()
    with pytest.raises(ValueError, match="position"):
        exploration_slot(CHOSEN, np.array([20]), -1)


def test_exploration_with_a_key_is_reproducible_and_varies() -> None:
    fresh = np.arange(20, 40)
    picks = {int(exploration_slot(CHOSEN, fresh, 0, f"req-{i}")[0]) for i in range(200)}
    assert picks <= set(fresh.tolist()) and len(picks) > 10  # drawn among all fresh items
    once = exploration_slot(CHOSEN, fresh, 0, "req-7")
    assert exploration_slot(CHOSEN, fresh, 0, "req-7").tolist() == once.tolist()
    a = exploration_slot(CHOSEN, fresh, 0, np.random.default_rng(5))
    b = exploration_slot(CHOSEN, fresh, 0, np.random.default_rng(5))
    assert a.tolist() == b.tolist() and len(a) == len(CHOSEN)


# -- filters -----------------------------------------------------------------------------------


def test_filter_counts_each_removal_once_in_reason_order() -> None:
    ids = np.array(["v0", "v1", "v2", "v3", "v4", "v5"])
    creators = np.array(["c0", "bad", "c1", "bad", "c2", "c3"])
    available = np.array([True, True, True, False, True, False])
    keep, counts = filter_candidates(ids, {"v1", "v2", "v5"}, {"bad"}, creators, available)
    # v3 and v5 are unavailable (v5 also seen), v1 is blocked (also seen), v2 is only seen.
    assert keep.tolist() == [True, False, False, False, True, False]
    assert counts == {"unavailable": 2, "blocked_creator": 1, "seen": 1}
    assert sum(counts.values()) == int((~keep).sum())


def test_filter_with_nothing_to_apply_keeps_everything() -> None:
    ids = np.array(["v0", "v1"])
    keep, counts = filter_candidates(ids, None, set(), np.array(["a", "b"]), None)
    assert keep.tolist() == [True, True]
    assert counts == {"unavailable": 0, "blocked_creator": 0, "seen": 0}


def test_filter_rejects_mismatched_inputs() -> None:
    ids = np.array(["v0", "v1"])
    with pytest.raises(ValueError, match="creators"):
        filter_candidates(ids, None, None, np.array(["a"]), None)
    with pytest.raises(ValueError, match="available"):
        filter_candidates(ids, None, None, np.array(["a", "b"]), np.array([1, 0]))


def test_mmr_picks_the_same_with_ids_or_integer_codes():
    """The serving path passes creator codes; the picks are those of the creator ids."""
    rng = np.random.default_rng(11)
    for _ in range(20):
        n = int(rng.integers(2, 60))
        creators = rng.choice([f"c{i}" for i in range(7)], n).astype(object)
        codes = np.unique(creators, return_inverse=True)[1].astype(np.int64)
        topics = rng.integers(0, 4, n).astype(np.float32)
        scores = np.round(rng.random(n), 2)  # ties included
        for diversity in (0.0, 0.3, 1.0):
            by_id = mmr_rerank(scores, creators, topics.astype(object), 10, diversity)
            by_code = mmr_rerank(scores, codes, topics, 10, diversity)
            assert by_id.tolist() == by_code.tolist()
