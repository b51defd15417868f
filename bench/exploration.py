"""The cost of exploration: expected NDCG@10 of the served feed against the ranked list.

Run from the repository root::

    python bench/exploration.py [--users 300] [--videos 1500] [--draws 100] [--noise 0.5]

A simulated world is drawn (``ingest.simulator``: its oracle knows every user's hidden
utility for every video). For each user, a ranker's list is the top ``--ranked`` videos by
utility plus Gaussian noise (``--noise`` times the utility's spread: an imperfect model; 0
is the oracle's own order). Each exploration policy then serves ``k = 10`` from that list
(``serving.exploration.draw_slate``), ``--draws`` times per user, with the same request-id
seeds for every policy (common random numbers), and each feed is judged by NDCG@10 twice:

- ``utility``: gains are the hidden utility shifted so the user's worst video is 0, as the
  oracle-judged offline evaluation does (a lenient judge: every video has some gain);
- ``top 5%``: gains are the utility above the user's 95th percentile, 0 below (a sharp one).

The table gives, per policy and judge, the expected NDCG@10 and its ratio to the
deterministic policy (eps = 0) with the ratio's standard error over users, and the smallest
propensity the policy logs (the largest importance weight an off-policy estimate will use is
its inverse).

Nothing here asserts: it prints figures for a person to judge.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.simulator import world_for
from models.metrics import list_ndcg
from reelrank.settings import get_settings
from serving.exploration import ExplorationPolicy, draw_slate, request_rng

K = 10
EPSILONS = (0.0, 0.02, 0.05, 0.1, 0.2)
TEMPERATURES = (0.5, 1.0, 2.0)


def policies(top_m: int) -> list[tuple[str, ExplorationPolicy]]:
    out = [
        (f"epsilon_greedy eps={e:<4} M={top_m}", ExplorationPolicy(epsilon=e, top_m=top_m))
        for e in EPSILONS
    ]
    out += [
        (
            f"plackett_luce  T={t:<4}   M={top_m}",
            ExplorationPolicy("plackett_luce", temperature=t, top_m=top_m),
        )
        for t in TEMPERATURES
    ]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=300)
    p.add_argument("--videos", type=int, default=1500)
    p.add_argument("--draws", type=int, default=100, help="seeded feeds per user and policy")
    p.add_argument("--ranked", type=int, default=50, help="length of the ranker's list")
    p.add_argument("--noise", type=float, default=0.5, help="ranker noise, x utility's std")
    p.add_argument("--top-m", type=int, default=10)
    a = p.parse_args()
    s = get_settings(
        sim={
            "n_users": a.users,
            "n_creators": max(a.users // 10, 10),
            "n_videos": a.videos,
            "days": 5,
            "catalog_history_days": 30,
        }
    )
    t0 = time.perf_counter()
    world = world_for(s.sim)
    day = s.sim.start_date
    videos = world.videos.loc[world.videos["upload_ts"] < pd.Timestamp(day, tz="UTC"), "video_id"]
    video_ids = videos.to_numpy()
    rng = np.random.default_rng(0)
    chosen = policies(a.top_m)
    per_user = np.zeros((2, a.users, len(chosen)))  # (judge, user, policy)
    users = world.users["user_id"].to_numpy()[: a.users]
    for u, user in enumerate(users):
        _, util = world.oracle_top(user, video_ids, day, 1)
        judges = [
            dict(zip(video_ids.tolist(), (util - util.min()).tolist(), strict=True)),
            dict(
                zip(
                    video_ids.tolist(),
                    np.maximum(util - np.quantile(util, 0.95), 0.0).tolist(),
                    strict=True,
                )
            ),
        ]
        model = util + a.noise * util.std() * rng.standard_normal(len(util))
        ranked = video_ids[np.argsort(-model, kind="stable")[: a.ranked]]
        for j, (_, policy) in enumerate(chosen):
            total = np.zeros(len(judges))
            for d in range(a.draws):
                slate = draw_slate(policy, len(ranked), K, request_rng(f"{user}-{d}"))
                feed = ranked[slate.places].tolist()
                total += [list_ndcg(feed, g, K, exponential=False) for g in judges]
            per_user[:, u, j] = total / a.draws
    elapsed = time.perf_counter() - t0
    print(
        f"{a.users} users, {len(video_ids)} videos, {a.draws} feeds per user and policy, "
        f"ranker noise {a.noise} x std(utility), list of {a.ranked}, k={K} ({elapsed:.1f} s)"
    )
    head = f"{'E[NDCG@10]':>10} {'ratio':>7} {'+-se':>7}"
    print(f"{'':<34} {'judge: utility':^26} {'judge: top 5%':^26}")
    print(f"{'policy':<34} {head} {head} {'min propensity':>15}")
    for j, (name, policy) in enumerate(chosen):
        cells = []
        for judge in per_user:
            base = judge[:, 0]  # eps = 0: the ranked list as is
            ratio = judge[:, j].mean() / base.mean()
            # the ratio's standard error from per-user paired differences (delta method)
            se = (judge[:, j] - ratio * base).std(ddof=1) / np.sqrt(a.users) / base.mean()
            cells.append(f"{judge[:, j].mean():>10.4f} {ratio:>7.4f} {se:>7.4f}")
        print(f"{name:<34} {' '.join(cells)} {min_propensity(policy):>15.4g}")


def min_propensity(policy: ExplorationPolicy) -> float:
    """The smallest probability the policy gives an item it can serve (a full window)."""
    p = policy.window_probabilities(np.arange(policy.top_m))
    return float(p[p > 0].min())


if __name__ == "__main__":
    main()
