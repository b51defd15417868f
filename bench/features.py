"""One day's feature tables, pandas reference vs DuckDB: wall time and peak memory.

For each size a simulated world of ``--history`` + 1 days is ingested (once; kept under
``--root``), then the six tables of its last day are computed twice, each time in a fresh
process so its wall time and peak memory (max RSS) are its own:

- ``pandas``: the reference builders of ``features.batch`` on the 28-day window read into
  one frame and enriched (what the pipeline did before DuckDB);
- ``duckdb``: ``features.batch_sql``, what ``compute_features`` runs now.

Both write the six Parquet tables to a scratch folder. Prints figures only.

    python bench/features.py                       # 0.25M and 1M impressions a day
    python bench/features.py --users 75000 --engines duckdb
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from features.pipeline import UC_HISTORY_LEN, VIEWS  # noqa: E402
from reelrank.settings import Settings, get_settings  # noqa: E402

ENGINES = ("pandas", "duckdb")


def world(root: Path, users: int, history: int) -> Settings:
    """A world whose last day has ``history`` days before it (sizes as in bench/scale.py)."""
    return get_settings(
        home=root / f"u{users}-h{history}",
        sim={
            "n_users": users,
            "n_videos": users // 4,
            "n_creators": max(users // 200, 1),
            "days": history + 1,
        },
        training={"train_days": min(7, history)},
    )


def run_pandas(s: Settings, out: Path) -> dict[str, float]:
    from features import batch
    from ingest.lake import read_table

    day, seconds = s.sim.end_date, {}
    t = time.perf_counter()
    videos = read_table(s.lake_dir, "videos", end=day)
    vocab = batch.topic_vocabulary(videos["topic"])
    imp = read_table(s.lake_dir, "impressions", start=day - timedelta(days=27), end=day)
    imp = batch.enrich_impressions(imp, videos, vocab)
    seconds["read+enrich"] = time.perf_counter() - t
    builders = {
        "user_engagement": lambda: batch.user_engagement(imp, day),
        "user_topic_affinity": lambda: batch.user_topic_affinity(imp, day, len(vocab)),
        "video_stats": lambda: batch.video_stats(imp, videos, day, vocab),
        "creator_stats": lambda: batch.creator_stats(imp, videos, day),
        "user_history": lambda: batch.user_history(imp, day, s.retrieval.history_len),
        "user_creator_history": lambda: batch.user_creator_history(imp, day, UC_HISTORY_LEN),
    }
    for view, build in builders.items():
        t = time.perf_counter()
        build().to_parquet(out / f"{view}.parquet", index=False)
        seconds[view] = time.perf_counter() - t
    return seconds


def run_duckdb(s: Settings, out: Path) -> dict[str, float]:
    from features.batch import topic_vocabulary
    from features.batch_sql import FeatureSQL
    from ingest.lake import read_table

    day, seconds = s.sim.end_date, {}
    t = time.perf_counter()
    topics = read_table(s.lake_dir, "videos", end=day, columns=["topic"])["topic"]
    vocab = topic_vocabulary(topics)
    with FeatureSQL(s.lake_dir, vocab, through=day, threads=s.training.nthread) as sql:
        seconds["catalog"] = time.perf_counter() - t
        for view in VIEWS:
            t = time.perf_counter()
            sql.write(view, day, out / f"{view}.parquet", s.retrieval.history_len, UC_HISTORY_LEN)
            seconds[view] = time.perf_counter() - t
    return seconds


def child(engine: str, root: Path, users: int, history: int) -> None:
    """Compute one day's tables and print wall time and peak RSS as JSON."""
    s = world(root, users, history)
    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        t = time.perf_counter()
        seconds = (run_pandas if engine == "pandas" else run_duckdb)(s, Path(tmp))
        wall = time.perf_counter() - t
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"wall_s": wall, "peak_gib": peak_kib / 2**20, "steps": seconds}))


def prepare(root: Path, users: int, history: int) -> int:
    """Ingest the world if needed (in a subprocess); impressions on its last day."""
    import pyarrow.parquet as pq

    from ingest.lake import partition_path

    args = ["--ingest", "--root", str(root), "--users", str(users), "--history", str(history)]
    subprocess.run([sys.executable, __file__, *args], check=True)
    s = world(root, users, history)
    return pq.read_metadata(partition_path(s.lake_dir, "impressions", s.sim.end_date)).num_rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", default="18800,75000", help="world sizes (users), comma-separated")
    p.add_argument("--history", type=int, default=8, help="days before the computed day")
    p.add_argument("--engines", default=",".join(ENGINES))
    p.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "bench-features")
    p.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    p.add_argument("--ingest", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.ingest:
        from ingest.lake import partition_days
        from ingest.pipeline import ingest_simulated

        s = world(a.root, int(a.users), a.history)
        if len(partition_days(s.lake_dir, "impressions")) < s.sim.days:  # else: a lake is there
            ingest_simulated(s, s.sim.end_date)
        return
    if a.child:
        child(a.child, a.root, int(a.users), a.history)
        return
    print(f"{'users':>8} {'imp/day':>10} {'engine':>7} {'wall s':>8} {'peak GiB':>9}  steps (s)")
    for users in (int(u) for u in a.users.split(",")):
        n = prepare(a.root, users, a.history)
        for engine in a.engines.split(","):
            args = ["--child", engine, "--root", str(a.root), "--users", str(users)]
            args += ["--history", str(a.history)]
            res = subprocess.run(
                [sys.executable, __file__, *args], check=True, capture_output=True, text=True
            )
            r = json.loads(res.stdout.strip().splitlines()[-1])
            steps = " ".join(f"{k}={v:.1f}" for k, v in r["steps"].items())
            figures = f"{r['wall_s']:>8.1f} {r['peak_gib']:>9.2f}"
            print(f"{users:>8} {n:>10,} {engine:>7} {figures}  {steps}", flush=True)


if __name__ == "__main__":
    main()
