"""What real-time feedback adds to a /recommend: prints figures, asserts nothing.

Per request the recommender reads the user's recent engagement events from the served state
(one read) and, when there are new ones, merges them into the online state
(:func:`serving.pipeline.with_recent_events`). Timed here, one thread, per backend: a user
with no recent events (the common case), and one with ``--recent`` events newer than an
online sequence of ``--seq-len`` events (a merge). SQLite on a temporary directory (the
service puts it on a memory filesystem when the host has one); Redis where one answers at
``REELRANK_BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``).

    python bench/realtime.py [--recent 5] [--seq-len 50] [--repeats 5000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from features.sequence import COMPLETED, LIKED, SKIPPED
from serving.pipeline import USER_FEATURES, UserState, with_recent_events
from serving.served_state import Events, MemoryEvents, RedisState, SqliteState


def _median_us(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median and 99th percentile of one call, in microseconds."""
    for _ in range(50):
        fn()
    times = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t0
    return float(np.median(times)) * 1e6, float(np.quantile(times, 0.99)) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recent", type=int, default=5, help="recent events of the engaged user")
    ap.add_argument("--seq-len", type=int, default=50, help="events of the online sequence")
    ap.add_argument("--repeats", type=int, default=5000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = args.seq_len
    t_last = 1.75e9
    online = UserState(
        np.zeros(len(USER_FEATURES), np.float32),
        history=[f"h{i}" for i in range(20)],
        events=(
            [f"s{i}" for i in range(n)],
            rng.choice([COMPLETED, SKIPPED, LIKED], n).tolist(),
            (t_last - np.arange(n)[::-1] * 60.0).tolist(),
        ),
    )
    recent = [
        (f"r{i}", int(rng.choice([COMPLETED, SKIPPED, LIKED])), t_last + 30.0 * (i + 1))
        for i in range(args.recent)
    ]
    defaults = np.zeros(len(USER_FEATURES), np.float32)

    stores: list[tuple[str, Events, Any]] = [("memory", MemoryEvents(), None)]
    tmp = tempfile.TemporaryDirectory()
    sq = SqliteState(Path(tmp.name) / "state" / "served_state.sqlite")
    stores.append(("sqlite", sq.events, sq))
    url = os.environ.get("REELRANK_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        rs: RedisState | None = RedisState(url, prefix=f"bench-{uuid.uuid4().hex}:")
    except Exception as err:  # no Redis here: the other backends still tell
        print(f"(no Redis at {url}: {err})")
        rs = None
    if rs is not None:
        stores.append(("redis", rs.events, rs))

    print(f"online sequence {n} events, history 20; engaged user: {args.recent} recent events")
    print(f"one thread, {args.repeats} requests; median / p99 in microseconds")
    print(f"{'backend':8} {'no recent events':>20} {'recent events + merge':>24}")
    for name, store, _ in stores:
        # the engaged user's events plus a crowd of other users', as a live store holds
        for u in range(200):
            store.add(f"other-{u}", recent)
        store.add("engaged", recent)

        def idle(store: Events = store) -> object:
            got = store.get("idle")
            return online if not got else with_recent_events(online, got, defaults, 20, n)

        def engaged(store: Events = store) -> object:
            return with_recent_events(online, store.get("engaged"), defaults, 20, n)

        a, a99 = _median_us(idle, args.repeats)
        b, b99 = _median_us(engaged, args.repeats)
        print(f"{name:8} {a:10.1f} / {a99:7.1f} {b:13.1f} / {b99:7.1f}")
    merge, merge99 = _median_us(lambda: with_recent_events(online, recent, defaults, 20, n), 5000)
    print(f"the merge alone: {merge:.1f} / {merge99:.1f} us")
    sq.close()
    if rs is not None:
        for key in rs.client.scan_iter(f"{rs.prefix}*"):
            rs.client.delete(key)
        rs.close()
    tmp.cleanup()


if __name__ == "__main__":
    main()
