"""Interleaving against an A/B test: the users each needs to detect the same known difference.

Run from the repository root::

    python bench/interleaving.py [--users 2000] [--noise 1.0] [--replicates 200]

A simulated world (``--users`` users) is drawn, and on its last day every user makes
``1 + Poisson(2)`` feed requests. Each request retrieves ``--candidates`` random videos of
the live catalog, which two rankers order:

* B, the challenger: the simulator's oracle (each video's hidden utility for the user);
* A, the champion: the oracle's utility plus normal noise of standard deviation ``--noise``
  drawn per request and video, a ranker a little worse than the oracle (the larger the
  noise, the larger the difference).

A user's reaction to a feed of ``--k`` videos follows the simulator: the video in slot j is
completed (the value) with probability ``P(utility - POSITION_DECAY * j + noise > threshold)``,
the ``completion_probability`` of :mod:`ingest.simulator` with the attention lost down the
feed. So the truth is known: B's and A's expected value per request, and their difference.

For each method the users needed at 80% power (two-sided, alpha 0.05) come from its own
formula with variances measured on one large simulated run of the whole population:

* A/B test: users split 50/50, value per request (a ratio metric) by the delta method over
  users, ``experiments.stats.required_users`` with the per-user standard deviation of the
  linearised metric;
* interleaving: every user sees team-draft feeds of A and B, and the sign test over users
  with a preference (``experiments.interleaving.preference_test``) needs
  ``((z_alpha/2 / 2 + z_power sqrt(q (1 - q))) / (q - 1/2))^2`` users with a preference,
  ``q`` the share of them preferring B, so that over the share of users with one.

Both sizes are then checked by simulation: at 0.5, 0.75, 1, 1.5 and 2 times each formula's
size, ``--replicates`` experiments of that many users (drawn with replacement from the
population) each; the share that detects B is the power, and where the simulated power
curve reaches 80% is the simulated size. The ratio of the two methods' sizes is printed by
formula and by simulation. Nothing here asserts: it prints figures.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import ndtr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.interleaving import credit, preference_test, team_draft
from experiments.stats import diff_of_ratios, required_users
from ingest.simulator import COMPLETE_AT, POSITION_DECAY, UTILITY_NOISE, World, generate_world
from reelrank.settings import SimulationSettings

ALPHA, POWER = 0.05, 0.8
GRID = (0.5, 0.75, 1.0, 1.5, 2.0)  # multiples of the formula's size where power is simulated
THRESHOLD = math.log(COMPLETE_AT / (1.0 - COMPLETE_AT)) / 1.4 - 0.3  # as the simulator's


@dataclass(frozen=True)
class Requests:
    """Every request of the population: its user, the candidates' hidden utilities, and the
    two rankers' top ``k`` (candidate indices, best first)."""

    user: np.ndarray  # (n_req,) user index, requests of a user contiguous
    utility: np.ndarray  # (n_req, n_candidates)
    top_a: np.ndarray  # (n_req, k)
    top_b: np.ndarray  # (n_req, k)
    first: np.ndarray  # (n_users + 1,) each user's first request (offsets)

    @property
    def n_users(self) -> int:
        return len(self.first) - 1

    def complete_p(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """P(completed) of candidate ``items[:, j]`` of request ``rows`` shown in slot j."""
        u = np.take_along_axis(self.utility[rows], items, axis=1)
        slot = np.arange(items.shape[1])
        return ndtr((u - POSITION_DECAY * slot - THRESHOLD) / UTILITY_NOISE)


def build(world: World, a: argparse.Namespace, rng: np.random.Generator) -> Requests:
    sim = world.sim
    day_idx = sim.days - 1
    day = world.day(day_idx)
    start = pd.Timestamp(day, tz="UTC")
    uploaded = world.videos["upload_ts"]
    live = (
        (uploaded < start) & (uploaded >= start - pd.Timedelta(days=sim.catalog_history_days))
    ).to_numpy()
    catalog = world.videos["video_id"].to_numpy()[live]
    n_users = len(world.users)
    n_req = rng.poisson(2.0, n_users) + 1
    user = np.repeat(np.arange(n_users), n_req)
    cand = np.stack([rng.choice(len(catalog), a.candidates, replace=False) for _ in user])
    utility = world.oracle_utility(
        np.repeat(world.users["user_id"].to_numpy()[user], a.candidates),
        catalog[cand.ravel()],
        day,
    ).reshape(cand.shape)
    score_a = utility + rng.normal(0.0, a.noise, cand.shape)
    return Requests(
        user=user,
        utility=utility,
        top_a=np.argsort(-score_a, axis=1)[:, : a.k],
        top_b=np.argsort(-utility, axis=1)[:, : a.k],
        first=np.r_[0, np.cumsum(n_req)],
    )


def _rows_of(req: Requests, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(request rows of ``users`` in turn, the position in ``users`` of each row)."""
    counts = req.first[users + 1] - req.first[users]
    owner = np.repeat(np.arange(len(users)), counts)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return req.first[users][owner] + offset, owner


def ab_once(
    req: Requests, users: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One A/B experiment on ``users``: (arm of each user (1 = B), value, requests)."""
    arm = rng.random(len(users)) < 0.5
    rows, owner = _rows_of(req, users)
    top = np.where(arm[owner][:, None], req.top_b[rows], req.top_a[rows])
    done = rng.random(top.shape) < req.complete_p(rows, top)
    value = np.bincount(owner, weights=done.sum(axis=1), minlength=len(users))
    n = np.bincount(owner, minlength=len(users)).astype(float)
    return arm, value, n


def interleave_once(req: Requests, users: np.ndarray, rng: np.random.Generator) -> list[int]:
    """One interleaving experiment on ``users``: one outcome per shown feed, in the order of
    ``_rows_of`` (so the caller knows each outcome's user)."""
    rows, _ = _rows_of(req, users)
    feeds = [
        team_draft(req.top_a[r].tolist(), req.top_b[r].tolist(), req.top_a.shape[1], rng)
        for r in rows
    ]
    items = np.array([f.items for f in feeds])
    done = rng.random(items.shape) < req.complete_p(rows, items)
    return [int(credit(f, d)) for f, d in zip(feeds, done, strict=True)]


def _sign_test_users(q: float, with_preference: float) -> int:
    za, zb = stats.norm.ppf(1 - ALPHA / 2), stats.norm.ppf(POWER)
    deciding = ((za * 0.5 + zb * math.sqrt(q * (1 - q))) / (q - 0.5)) ** 2
    return math.ceil(deciding / with_preference)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=2000, help="users of the simulated world")
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--k", type=int, default=10, help="videos per feed")
    p.add_argument("--noise", type=float, default=0.2, help="std of ranker A's noise")
    p.add_argument("--replicates", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    t0 = time.perf_counter()
    sim = SimulationSettings(
        n_users=a.users,
        n_creators=max(a.users // 20, 10),
        n_videos=a.users * 2,
        days=3,
        catalog_history_days=30,
    )
    req = build(generate_world(sim), a, rng)
    everyone = np.arange(req.n_users)
    rows, _ = _rows_of(req, everyone)
    value_a = req.complete_p(rows, req.top_a).sum(axis=1).mean()
    value_b = req.complete_p(rows, req.top_b).sum(axis=1).mean()
    effect = value_b - value_a
    name_a = f"oracle + noise {a.noise:g}"
    print(
        f"world: {req.n_users:,} users, {len(req.user):,} requests of {a.k} videos from "
        f"{a.candidates} candidates (built in {time.perf_counter() - t0:.1f}s)\n"
        f"truth, expected value (completions) per request: A ({name_a}) {value_a:.4f}, "
        f"B (oracle) {value_b:.4f}, difference {effect:+.4f} ({effect / value_a:+.1%})\n"
    )
    if effect <= 0:
        print("B is not better than A: nothing to detect")
        return

    # the variances, from one large run of the population (each user counted 4 times)
    big = np.tile(everyone, 4)
    arm, value, n = ab_once(req, big, rng)
    r = value.sum() / n.sum()
    linear = (value - r * n) / n.mean()
    sd = float(np.sqrt((linear[arm].var(ddof=1) + linear[~arm].var(ddof=1)) / 2))
    n_ab = required_users(effect, sd)
    outcomes = interleave_once(req, big, rng)
    _, owner = _rows_of(req, big)
    pref = preference_test(owner, outcomes)
    with_pref = 1 - pref.users_without_preference / pref.n_users
    q = pref.share_preferring_b
    n_il = _sign_test_users(q, with_pref)

    print(
        f"A/B test: per-user sd of value per request (linearised) {sd:.3f}\n"
        f"interleaving: {with_pref:.1%} of users have a preference, {q:.1%} of them for B; "
        f"mean preference {pref.preference.estimate:+.3f}\n"
    )
    print(
        f"{'method':<14} {'formula':>9} {'simulated':>10}   power at formula x "
        + " ".join(f"{m:>5g}" for m in GRID)
    )
    needed = {}
    for name, detects, n0 in (("A/B test", ab_detects, n_ab), ("interleaving", il_detects, n_il)):
        t1 = time.perf_counter()
        sizes = [max(round(n0 * m), 4) for m in GRID]
        powers = [
            float(np.mean([detects(req, n, rng) for _ in range(a.replicates)])) for n in sizes
        ]
        needed[name] = _crossing(sizes, powers)
        shown = f"{needed[name]:,.0f}" if math.isfinite(needed[name]) else "off grid"
        print(
            f"{name:<14} {n0:>9,} {shown:>10}   {'':>18} "
            + " ".join(f"{x:>5.2f}" for x in powers)
            + f"  ({time.perf_counter() - t1:.0f}s, {a.replicates} runs each)"
        )
    print(
        f"\nusers for 80% power, A/B test / interleaving: {n_ab / n_il:.1f}x by the formulas, "
        f"{needed['A/B test'] / needed['interleaving']:.1f}x by simulation"
    )


def ab_detects(req: Requests, n: int, rng: np.random.Generator) -> bool:
    """One A/B test of ``n`` users (drawn with replacement) finds B better (95%, two-sided)."""
    arm, value, reqs = ab_once(req, rng.integers(0, req.n_users, n), rng)
    return diff_of_ratios(value[~arm], reqs[~arm], value[arm], reqs[arm], 1 - ALPHA).low > 0


def il_detects(req: Requests, n: int, rng: np.random.Generator) -> bool:
    """One interleaving experiment of ``n`` users finds B preferred (sign test, alpha)."""
    users = rng.integers(0, req.n_users, n)
    _, owner = _rows_of(req, users)
    return preference_test(owner, interleave_once(req, users, rng), ALPHA).b_preferred


def _crossing(sizes: list[int], powers: list[float]) -> float:
    """Where the simulated power curve first reaches ``POWER`` (linear in log users between
    the grid's points); inf when it never does on the grid."""
    for (n0, p0), (n1, p1) in zip(
        zip(sizes, powers, strict=True), zip(sizes[1:], powers[1:], strict=True), strict=True
    ):
        if p0 >= POWER:
            return float(n0)
        if p1 >= POWER:
            t = (POWER - p0) / (p1 - p0)
            return float(math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0))))
    return float(sizes[-1]) if powers[-1] >= POWER else math.inf


if __name__ == "__main__":
    main()
