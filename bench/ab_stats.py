"""A/A and A/B analyses on a simulated impression log: false positives and power, measured.

Run from the repository root::

    python bench/ab_stats.py [--users 2000] [--days 10] [--salts 500] [--lift 0.05]

A simulated world (``--users`` users, ``--days`` days) is generated once; its last three
days are the experiment, the days before them the pre-period for CUPED. Then:

* A/A: the same log split by ``--salts`` salts, as serving splits users (a stable hash of
  salt and user id), at a 50% and a 10% treatment share. The share of analyses whose 95%
  interval excludes zero is the false-positive rate (nominal 0.05).
* A/B: for each salt, treatment turns ``--lift`` of its non-engaged impressions into
  completions (the truth); the share of analyses that find it is the power, with and
  without CUPED, beside the median interval width.

Nothing here asserts: it prints figures for a person to judge.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.analysis import CONTROL, TREATMENT, aa_false_positive_rate, analyse, user_table
from ingest.lake import read_table
from ingest.pipeline import ingest_simulated
from reelrank.settings import get_settings
from serving.experiments import user_bucket


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--salts", type=int, default=500)
    p.add_argument("--lift", type=float, default=0.05)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        s = get_settings(
            home=Path(tmp) / "var",
            sim={
                "n_users": a.users,
                "n_creators": max(a.users // 20, 10),
                "n_videos": a.users * 2,
                "days": a.days,
                "catalog_history_days": 30,
            },
        )
        t0 = time.perf_counter()
        ingest_simulated(s, s.sim.end_date)
        imp = read_table(s.lake_dir, "impressions")
    start = s.sim.end_date - timedelta(days=3)
    day = imp["ts"].dt.date
    during, before = imp[day >= start].reset_index(drop=True), imp[day < start]
    print(
        f"world: {a.users:,} users, {len(during):,} impressions of "
        f"{during['user_id'].nunique():,} users in the experiment's 3 days "
        f"(generated in {time.perf_counter() - t0:.1f}s)\n"
    )
    print(f"{'analysis':<34} {'rate':>6}  {'runs':>5}")
    for share in (0.5, 0.1):
        rate, runs = aa_false_positive_rate(
            during, (f"aa-{i}" for i in range(a.salts)), share, user_bucket, pre=before
        )
        print(f"{f'A/A false positives, share {share:.0%}':<34} {rate:>6.3f}  {runs:>5}")
    rng = np.random.default_rng(0)
    found = {True: 0, False: 0}
    widths: dict[bool, list[float]] = {True: [], False: []}
    runs = min(a.salts, 200)
    for i in range(runs):
        salt = f"ab-{i}"
        treated = during["user_id"].map(lambda u, s=salt: user_bucket(u, s) < 0.5).to_numpy()
        lifted = during.copy()
        flip = treated & ~during["completed"].to_numpy() & (rng.random(len(during)) < a.lift)
        lifted.loc[flip, "completed"] = True
        users = user_table(
            lifted, lambda u, s=salt: TREATMENT if user_bucket(u, s) < 0.5 else CONTROL, before
        )
        for use in (True, False):
            r = analyse(users, 0.5, use_cuped=use)
            found[use] += r.primary.low > 0
            widths[use].append(r.primary.high - r.primary.low)
    for use in (True, False):
        label = f"A/B power, lift {a.lift:.0%}" + (" + CUPED" if use else "")
        print(
            f"{label:<34} {found[use] / runs:>6.3f}  {runs:>5}   median 95% width "
            f"{np.median(widths[use]):.4f}"
        )


if __name__ == "__main__":
    main()
