"""Exploration with exact propensities (serving/exploration.py): the probabilities of every
slot sum to one, draws follow them, the deterministic policy is the ranked list, a request id
replays its feed, and a slate's probability under another ranked list is right by hand."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from serving.exploration import (
    GREEDY,
    ExplorationPolicy,
    draw_slate,
    request_rng,
    slate_propensities,
)

pytestmark = pytest.mark.unit

POLICIES = [
    ExplorationPolicy("epsilon_greedy", epsilon=0.3, top_m=3),
    ExplorationPolicy("epsilon_greedy", epsilon=1.0, top_m=4),
    ExplorationPolicy("plackett_luce", temperature=1.5, top_m=3),
    ExplorationPolicy("plackett_luce", temperature=0.4, top_m=5),
]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: f"{p.kind}-{p.top_m}")
def test_each_slot_sums_to_one_over_the_items_that_could_fill_it(policy):
    ranked = list("abcdefg")
    for prefix_len in range(4):
        for prefix in itertools.permutations(ranked, prefix_len):
            slot = [
                slate_propensities(policy, ranked, [*prefix, item])[-1]
                for item in ranked
                if item not in prefix
            ]
            assert sum(slot) == pytest.approx(1.0, abs=1e-12)
            # only the window (the first top_m remaining) can fill the slot
            assert sum(p > 0 for p in slot) == min(policy.top_m, len(ranked) - prefix_len)


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: f"{p.kind}-{p.top_m}")
def test_drawn_slates_follow_the_computed_probabilities(policy):
    """Chi-square of 20,000 seeded draws of 3 slots from 6 items against the product of the
    per-slot propensities; and the logged propensities are those slot probabilities."""
    ranked, k, n_draws = list("abcdef"), 3, 20_000
    rng = np.random.default_rng(11)
    counts: Counter[tuple[str, ...]] = Counter()
    for _ in range(n_draws):
        slate = draw_slate(policy, len(ranked), k, rng)
        served = tuple(ranked[i] for i in slate.places)
        counts[served] += 1
        if counts[served] == 1:  # what serving logs is what the policy says of it
            np.testing.assert_allclose(
                slate.propensities, slate_propensities(policy, ranked, served), rtol=1e-12
            )
            assert list(slate.explored) == [
                served[j] != next(x for x in ranked if x not in served[:j]) for j in range(k)
            ]
    possible = {
        s: float(np.prod(slate_propensities(policy, ranked, s)))
        for s in itertools.permutations(ranked, k)
    }
    possible = {s: p for s, p in possible.items() if p > 0}
    assert sum(possible.values()) == pytest.approx(1.0)
    assert set(counts) <= set(possible)  # nothing impossible was ever served
    observed = np.array([counts[s] for s in possible], dtype=float)
    expected = n_draws * np.array(list(possible.values()))
    # pool the rare slates so every cell expects at least 5 draws
    rare = expected < 5
    observed = np.append(observed[~rare], observed[rare].sum())
    expected = np.append(expected[~rare], expected[rare].sum())
    if expected[-1] == 0:
        observed, expected = observed[:-1], expected[:-1]
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < stats.chi2.ppf(0.999, len(expected) - 1), chi2


def test_epsilon_greedy_first_slot_by_hand():
    policy = ExplorationPolicy("epsilon_greedy", epsilon=0.3, top_m=3)
    p = policy.window_probabilities(np.arange(3))
    np.testing.assert_allclose(p, [0.7 + 0.1, 0.1, 0.1])
    draws = [draw_slate(policy, 10, 1, np.random.default_rng(s)).places[0] for s in range(4000)]
    freq = np.bincount(draws, minlength=10) / len(draws)
    np.testing.assert_allclose(freq[:3], [0.8, 0.1, 0.1], atol=0.02)
    assert freq[3:].sum() == 0.0  # beyond the window: never


@pytest.mark.parametrize(
    "policy",
    [
        GREEDY,
        ExplorationPolicy("epsilon_greedy", epsilon=0.0),
        ExplorationPolicy("plackett_luce", temperature=0.0),
        ExplorationPolicy("epsilon_greedy", epsilon=0.5, top_m=1),
    ],
)
def test_the_deterministic_policy_serves_the_ranked_list_with_probability_one(policy):
    assert policy.deterministic and policy.span(10) == 10
    slate = draw_slate(policy, 25, 10, None)  # needs no randomness
    np.testing.assert_array_equal(slate.places, np.arange(10))
    np.testing.assert_array_equal(slate.propensities, np.ones(10))
    assert not slate.explored.any() and slate.probability == 1.0
    ranked = [f"v{i}" for i in range(25)]
    assert slate_propensities(policy, ranked, ranked[:10]).tolist() == [1.0] * 10
    # another slate is impossible at its first departure from the list, and 1 where it agrees
    assert slate_propensities(policy, ranked, ["v0", "v2", "v1"]).tolist() == [1.0, 0.0, 1.0]
    short = draw_slate(policy, 3, 10, None)  # fewer items than slots: all of them
    np.testing.assert_array_equal(short.places, np.arange(3))


def test_an_exploring_policy_only_reaches_the_first_k_plus_m_minus_one_places():
    policy = ExplorationPolicy("epsilon_greedy", epsilon=1.0, top_m=4)
    assert policy.span(5) == 8
    reached = {
        int(p)
        for seed in range(300)
        for p in draw_slate(policy, 50, 5, np.random.default_rng(seed)).places
    }
    assert reached == set(range(8))


def test_the_same_request_id_replays_the_same_slate():
    policy = ExplorationPolicy("epsilon_greedy", epsilon=0.5, top_m=6)
    first = draw_slate(policy, 40, 10, request_rng("3f9c2a7e5b1d4c8e"))
    again = draw_slate(policy, 40, 10, request_rng("3f9c2a7e5b1d4c8e"))
    np.testing.assert_array_equal(first.places, again.places)
    np.testing.assert_array_equal(first.propensities, again.propensities)
    others = {
        tuple(draw_slate(policy, 40, 10, request_rng(f"request-{i}")).places) for i in range(20)
    }
    assert len(others) > 1  # different requests draw different feeds


def test_target_probability_of_a_logged_slate_under_another_ranked_list_by_hand():
    """The logged slate (c, a, e) under a challenger that ranked a, b, c, d, e."""
    ranked, slate = list("abcde"), ["c", "a", "e"]
    eg = ExplorationPolicy("epsilon_greedy", epsilon=0.2, top_m=3)
    # slot 0: window a b c, c is not the best: eps/3
    # slot 1: remaining a b d e, window a b d, a is the best: 1 - eps + eps/3
    # slot 2: remaining b d e, window b d e, e is not the best: eps/3
    np.testing.assert_allclose(
        slate_propensities(eg, ranked, slate), [0.2 / 3, 0.8 + 0.2 / 3, 0.2 / 3]
    )
    pl = ExplorationPolicy("plackett_luce", temperature=1.0, top_m=3)
    e = math.exp
    # places: a0 b1 c2 d3 e4; weights exp(-place) over each window
    np.testing.assert_allclose(
        slate_propensities(pl, ranked, slate),
        [
            e(-2) / (1 + e(-1) + e(-2)),  # window a b c
            1 / (1 + e(-1) + e(-3)),  # window a b d
            e(-4) / (e(-1) + e(-3) + e(-4)),  # window b d e
        ],
    )
    # an item the challenger did not rank, or ranked below the window, is impossible
    assert slate_propensities(eg, ranked, ["x", "a"]).tolist() == pytest.approx(
        [0.0, 0.8 + 0.2 / 3]
    )
    assert slate_propensities(eg, ranked, ["d"]).tolist() == [0.0]


def test_invalid_policies_are_refused():
    for bad in (
        {"epsilon": -0.1},
        {"epsilon": 1.5},
        {"epsilon": float("nan")},
        {"temperature": -1.0},
        {"temperature": float("inf")},
        {"top_m": 0},
        {"kind": "thompson"},
    ):
        with pytest.raises(ValueError):
            ExplorationPolicy(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="random generator"):
        draw_slate(ExplorationPolicy(epsilon=0.1), 10, 3, None)


def test_logged_propensities_give_an_unbiased_off_policy_estimate_of_another_ranking():
    """What the propensities are for: the value of a challenger's ranked list, estimated by
    slate IPS from feeds the champion's policy served, matches its exact value."""
    relevance = {"a": 0.1, "b": 0.9, "c": 0.3, "d": 0.7, "e": 0.0}
    champion, challenger = list("abcde"), list("bdcae")
    logging = ExplorationPolicy("epsilon_greedy", epsilon=0.5, top_m=5)  # covers every slate
    target = ExplorationPolicy("epsilon_greedy", epsilon=0.1, top_m=3)
    k = 2

    def reward(slate: tuple[str, ...]) -> float:
        return sum(relevance[v] / math.log2(j + 2) for j, v in enumerate(slate))

    exact = sum(
        reward(s) * float(np.prod(slate_propensities(target, challenger, s)))
        for s in itertools.permutations(challenger, k)
    )
    rng = np.random.default_rng(5)
    weighted = []
    for _ in range(50_000):
        logged = draw_slate(logging, len(champion), k, rng)
        served = tuple(champion[i] for i in logged.places)
        weight = np.prod(slate_propensities(target, challenger, served)) / logged.probability
        weighted.append(weight * reward(served))
    estimate, se = np.mean(weighted), np.std(weighted) / math.sqrt(len(weighted))
    assert abs(estimate - exact) < 4 * se, (estimate, exact, se)
    assert abs(exact - reward(tuple(champion[:k]))) > 10 * se  # a different value, told apart
