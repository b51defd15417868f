"""Team-draft interleaving: the draft's invariants, the credit by hand, an A/A at its nominal
rate and a clearly better ranking found, on simulated users whose tastes are known."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.interleaving import Outcome, Team, credit, preference_test, team_draft

pytestmark = pytest.mark.unit


def _lists(rng: np.random.Generator, pool: int = 30, length: int = 20) -> tuple[list, list]:
    """Two rankings of overlapping items from one pool."""
    return (
        [int(x) for x in rng.permutation(pool)[:length]],
        [int(x) for x in rng.permutation(pool)[:length]],
    )


def test_team_draft_keeps_its_invariants():
    for seed in range(300):
        rng = np.random.default_rng(seed)
        a, b = _lists(rng)
        k = int(rng.integers(1, 16))
        feed = team_draft(a, b, k, rng)
        assert len(feed.items) == len(feed.teams) == k
        assert len(set(feed.items)) == k  # no duplicates
        picks = {
            team: [x for x, t in zip(feed.items, feed.teams, strict=True) if t is team]
            for team in Team
        }
        for team, source in ((Team.A, a), (Team.B, b)):
            positions = [source.index(x) for x in picks[team]]  # each pick is from its own list
            assert positions == sorted(positions)  # in its list's order
        assert abs(len(picks[Team.A]) - len(picks[Team.B])) <= 1
        for i, (item, team) in enumerate(zip(feed.items, feed.teams, strict=True)):
            source = a if team is Team.A else b
            # the team took its best item not already in the feed
            assert item == next(x for x in source if x not in feed.items[:i])
        for j in range(0, k - 1, 2):  # every round, one pick each
            assert {feed.teams[j], feed.teams[j + 1]} == {Team.A, Team.B}


def test_the_coin_decides_who_picks_first():
    firsts = []
    for seed in range(2000):
        a, b = [1, 2, 3, 4], [5, 6, 7, 8]  # disjoint: the first item names the first picker
        feed = team_draft(a, b, 4, np.random.default_rng(seed))
        assert feed.items[0] == (1 if feed.teams[0] is Team.A else 5)
        firsts.append(feed.teams[0] is Team.A)
        again = team_draft(a, b, 4, np.random.default_rng(seed))
        assert again == feed  # the generator passed in is the only randomness
    assert 0.46 <= np.mean(firsts) <= 0.54


def test_a_short_list_leaves_the_rest_to_the_other_team():
    feed = team_draft([1], [2, 3, 4, 5], 4, np.random.default_rng(0))
    assert sorted(feed.items) == [1, 2, 3, 4]
    assert feed.teams.count(Team.A) == 1
    assert len(team_draft([1, 2], [2, 1], 5, np.random.default_rng(0)).items) == 2


def test_credit_by_hand():
    feed = team_draft([1, 2, 3], [4, 5, 6], 4, np.random.default_rng(3))
    on_a = [t is Team.A for t in feed.teams]
    assert credit(feed, on_a) is Outcome.A_WINS
    assert credit(feed, [not x for x in on_a]) is Outcome.B_WINS
    assert credit(feed, [False] * 4) is Outcome.TIE
    assert credit(feed, [True] * 4) is Outcome.TIE  # two each
    with pytest.raises(ValueError, match="engagement"):
        credit(feed, [True] * 3)


def test_the_preference_statistic_by_hand():
    users = ["u1", "u1", "u1", "u2", "u3", "u4", "u4"]
    outcomes = [Outcome.B_WINS, Outcome.B_WINS, Outcome.A_WINS, Outcome.A_WINS, Outcome.TIE]
    outcomes += [Outcome.B_WINS, Outcome.TIE]
    r = preference_test(users, outcomes)
    assert (r.n_users, r.n_impressions) == (4, 7)
    assert (r.users_preferring_a, r.users_preferring_b, r.users_without_preference) == (1, 2, 1)
    assert r.share_preferring_b == pytest.approx(2 / 3)
    assert r.p_value == pytest.approx(1.0)  # 2 of 3 under a fair coin: two-sided p = 1
    # per user (wins of B - wins of A) / impressions: 1/3, -1, 0, 1/2
    scores = np.array([1 / 3, -1, 0, 1 / 2])
    assert r.preference.estimate == pytest.approx(scores.mean())
    assert r.preference.se == pytest.approx(scores.std(ddof=1) / 2)
    assert not r.b_preferred


def _simulated_users(
    rng: np.random.Generator, n_users: int, noise_a: float | None, impressions: int = 3
) -> tuple[list[int], list[Outcome]]:
    """Users with a hidden utility per item; B ranks by it, A by it plus ``noise_a`` (None:
    A's list is B's). A user engages with an item with a probability rising with its utility
    and falling down the feed."""
    users, outcomes = [], []
    k = 8
    for u in range(n_users):
        utility = rng.normal(0.0, 1.0, 40)
        b = [int(x) for x in np.argsort(-utility)]
        a = (
            b
            if noise_a is None
            else [int(x) for x in np.argsort(-(utility + rng.normal(0.0, noise_a, 40)))]
        )
        for _ in range(impressions):
            feed = team_draft(a, b, k, rng)
            p = 1 / (1 + np.exp(-(utility[list(feed.items)] - 1.0))) * 0.9 ** np.arange(k)
            outcomes.append(credit(feed, rng.random(k) < p))
            users.append(u)
    return users, outcomes


def test_identical_lists_show_no_preference_beyond_the_nominal_rate():
    rng = np.random.default_rng(5)
    sims = 300
    found = 0
    covered = 0
    for _ in range(sims):
        r = preference_test(*_simulated_users(rng, 60, None))
        found += r.p_value < 0.05
        covered += r.preference.low <= 0 <= r.preference.high
    assert found / sims <= 0.07  # nominal 0.05 (the sign test is conservative)
    assert covered / sims >= 0.92


def test_a_clearly_better_ranking_wins():
    r = preference_test(*_simulated_users(np.random.default_rng(6), 150, noise_a=1.5))
    assert r.b_preferred and r.p_value < 1e-3
    assert r.share_preferring_b > 0.6 and r.preference.low > 0
    # the mirror image: the better ranking as A
    users, outcomes = _simulated_users(np.random.default_rng(7), 150, noise_a=1.5)
    flipped = preference_test(users, [Outcome(-int(o)) for o in outcomes])
    assert not flipped.b_preferred and flipped.preference.high < 0
