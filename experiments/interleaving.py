"""Team-draft interleaving: two rankers judged in one feed, each user against themselves.

An A/B test shows each user one ranker and compares groups of users, so the differences
between users (how active they are, how easily they engage) are noise the test must average
away. Interleaving shows each user one feed drawn from both rankers and asks which ranker's
videos the user engaged with more: the comparison is within the user, and far fewer users
detect the same difference (``bench/interleaving.py`` measures how many fewer).

- :func:`team_draft` (Radlinski, Kurup and Joachims, "How does clickthrough data reflect
  retrieval quality?", CIKM 2008): in each round a coin decides which ranker picks first;
  each then adds its highest-ranked video not yet in the feed, and the slot records whose
  pick it was (its team). A ranker behind by one pick picks next, so the teams' sizes differ
  by at most one until a list runs out (the other ranker then fills the feed).
- :func:`credit`: one shown feed (an impression of the interleaved list) is won by the team
  whose videos got more engagements, or tied.
- :func:`preference_test`: the user is the unit. Each user's score is (feeds won by B -
  feeds won by A) / feeds shown, in [-1, 1]; its mean over users, with a normal interval,
  is the preference for B (the challenger). The test of "B preferred" is the sign test over
  users with a preference (more wins for one ranker): a two-sided binomial test of the share
  preferring B against one half. Ties carry no information about the direction and are left
  out of the test, not counted against either ranker.

The coin flips come from the ``numpy.random.Generator`` passed in, so a seeded generator
gives the same feed.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Generic, TypeVar

import numpy as np
from scipy import stats

from experiments.stats import Interval

T = TypeVar("T", bound=Hashable)


class Team(StrEnum):
    """Whose pick a slot is: A the champion's, B the challenger's."""

    A = "A"
    B = "B"


class Outcome(IntEnum):
    """Which team won one shown feed; the value is its sign for B."""

    A_WINS = -1
    TIE = 0
    B_WINS = 1


@dataclass(frozen=True)
class Interleaved(Generic[T]):
    """One interleaved feed: the items in feed order and the team of each slot."""

    items: tuple[T, ...]
    teams: tuple[Team, ...]


def team_draft(a: Sequence[T], b: Sequence[T], k: int, rng: np.random.Generator) -> Interleaved[T]:
    """Interleave ranking ``a`` (champion) and ``b`` (challenger), best first, into a feed of
    at most ``k`` items (fewer only when the two lists together hold fewer distinct ones)."""
    if k < 0:
        raise ValueError(f"the feed length must be non-negative, got {k}")
    items: list[T] = []
    teams: list[Team] = []
    taken: set[T] = set()
    at = {Team.A: 0, Team.B: 0}  # the next position of each list to look at
    picks = {Team.A: 0, Team.B: 0}
    lists: dict[Team, Sequence[T]] = {Team.A: a, Team.B: b}

    def next_of(team: Team) -> T | None:
        source, i = lists[team], at[team]
        while i < len(source) and source[i] in taken:
            i += 1
        at[team] = i
        return source[i] if i < len(source) else None

    while len(items) < k:
        if picks[Team.A] == picks[Team.B]:
            team = Team.A if rng.random() < 0.5 else Team.B  # the round's coin
        else:
            team = Team.A if picks[Team.A] < picks[Team.B] else Team.B
        item = next_of(team)
        if item is None:  # this list ran out: the other one fills the feed
            team = Team.B if team is Team.A else Team.A
            item = next_of(team)
            if item is None:
                break
        items.append(item)
        teams.append(team)
        taken.add(item)
        picks[team] += 1
    return Interleaved(tuple(items), tuple(teams))


def credit(feed: Interleaved[T], engaged: Sequence[bool] | np.ndarray) -> Outcome:
    """The winner of one shown feed: the team with more engaged slots (``engaged``: one
    flag per slot, e.g. completed, liked or shared)."""
    flags = np.asarray(engaged, dtype=bool)
    if flags.shape != (len(feed.teams),):
        raise ValueError(
            f"one engagement flag per slot is needed: {len(feed.teams)} slots, {flags.size} flags"
        )
    on_b = np.fromiter((t is Team.B for t in feed.teams), dtype=bool, count=len(feed.teams))
    wins_b, wins_a = int((flags & on_b).sum()), int((flags & ~on_b).sum())
    if wins_b == wins_a:
        return Outcome.TIE
    return Outcome.B_WINS if wins_b > wins_a else Outcome.A_WINS


@dataclass(frozen=True)
class PreferenceResult:
    """The users' preference between A and B, and the test of "B preferred".

    ``preference``: the mean over users of (feeds won by B - feeds won by A) / feeds, with
    its interval (positive: B preferred); ``p_value``: the two-sided sign test over users
    with a preference; ``b_preferred``: B is significantly preferred at ``alpha``."""

    n_users: int
    n_impressions: int
    users_preferring_a: int
    users_preferring_b: int
    users_without_preference: int
    preference: Interval
    p_value: float
    alpha: float

    @property
    def share_preferring_b(self) -> float:
        """Of users with a preference, the share preferring B (nan when none has one)."""
        n = self.users_preferring_a + self.users_preferring_b
        return self.users_preferring_b / n if n else float("nan")

    @property
    def b_preferred(self) -> bool:
        return self.p_value < self.alpha and self.users_preferring_b > self.users_preferring_a

    def to_dict(self) -> dict[str, object]:
        return {
            "n_users": self.n_users,
            "n_impressions": self.n_impressions,
            "users_preferring_a": self.users_preferring_a,
            "users_preferring_b": self.users_preferring_b,
            "users_without_preference": self.users_without_preference,
            "share_preferring_b": self.share_preferring_b,
            "preference": self.preference.to_dict(),
            "p_value": self.p_value,
            "alpha": self.alpha,
            "b_preferred": self.b_preferred,
        }


def preference_test(
    users: Sequence[object] | np.ndarray,
    outcomes: Sequence[Outcome | int] | np.ndarray,
    alpha: float = 0.05,
) -> PreferenceResult:
    """The preference of users for B over A from one outcome per shown feed (``users``: the
    user of each feed)."""
    ids = np.asarray(users)
    signs = np.asarray([int(o) for o in outcomes], dtype=np.int64)
    if ids.ndim != 1 or len(ids) != len(signs):
        raise ValueError(f"one user per outcome is needed: {len(ids)} users, {len(signs)} outcomes")
    if not np.isin(signs, (-1, 0, 1)).all():
        raise ValueError("outcomes must be -1 (A wins), 0 (tie) or 1 (B wins)")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    uniq, user = np.unique(ids, return_inverse=True)
    n = len(uniq)
    if n < 2:
        raise ValueError("a preference test needs at least two users")
    net = np.bincount(user, weights=signs, minlength=n)  # wins of B - wins of A
    feeds = np.bincount(user, minlength=n)
    score = net / feeds
    prefer_b, prefer_a = int((net > 0).sum()), int((net < 0).sum())
    se = float(score.std(ddof=1) / math.sqrt(n))
    z = float(stats.norm.ppf(1 - alpha / 2))
    mean = float(score.mean())
    deciding = prefer_a + prefer_b
    p = float(stats.binomtest(prefer_b, deciding, 0.5).pvalue) if deciding else 1.0
    return PreferenceResult(
        n_users=n,
        n_impressions=len(signs),
        users_preferring_a=prefer_a,
        users_preferring_b=prefer_b,
        users_without_preference=n - deciding,
        preference=Interval(mean, se, mean - z * se, mean + z * se, 1 - alpha),
        p_value=p,
        alpha=alpha,
    )
