"""How the daily loop's cost grows with traffic, in each profile: prints figures only.

For each volume (impressions per day) and profile, a simulated world is sized so that one day
holds about that many impressions, ``--history`` days of it are prepared (ingested,
featurized, embedded, materialized: what earlier daily runs would have left), and then one
more day goes through the daily loop, stage by stage, each stage in a fresh process so its
wall time and peak memory (max RSS) are its own:

    ingest -> features -> embed -> materialize -> datasets -> train+evaluate+register

(``datasets`` is the point-in-time join of the training window and holdout through Feast;
the last stage fits the ranker, evaluates it beside the baselines and the oracle, logs it to
MLflow, registers it and runs the gate.) The two-tower retrieval model is not part of it.

The ``cluster`` profile needs PostgreSQL and Redis on 127.0.0.1 (databases
``reelrank_bench_<volume>`` and Redis database 12 are reset first); it trains on a Dask
LocalCluster.

    python bench/scale.py                           # 0.25M, 1M, 4M; local and cluster
    python bench/scale.py --volumes 0.25,1 --profiles local --history 8
    python bench/scale.py --root var/bench-scale-2 --reuse-from var/bench-scale

Targets on 2 cores: 1M impressions/day through the daily loop in <= 10 minutes; 4M costs
<= 4.4x of 1M; peak memory under 8 GiB at 4M.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from reelrank.settings import Settings, get_settings  # noqa: E402

STAGES = ("ingest", "features", "embed", "materialize", "datasets", "train_eval_register")
# one day of the simulator holds about this many impressions per user (activity ~0.44 x
# ~3 requests x 10 impressions)
IMPRESSIONS_PER_USER = 13.3
TIMEOUT_S = 3600


def world_settings(volume: float, profile: str, history: int, home: Path) -> Settings:
    users = round(volume * 1e6 / IMPRESSIONS_PER_USER)
    overrides: dict[str, Any] = {
        "home": home,
        "profile": profile,
        "sim": {
            "n_users": users,
            "n_creators": max(150, users // 200),
            "n_videos": max(4000, users // 4),
            "days": history + 1,
        },
        "training": {"train_days": min(7, history - 1)},
    }
    if profile == "cluster":
        tag = str(volume).replace(".", "_")
        overrides |= {
            "postgres_url": f"postgresql+psycopg://postgres@127.0.0.1:5432/reelrank_bench_{tag}",
            "redis_url": "redis://127.0.0.1:6379/12",
        }
    return get_settings(**overrides)


def run_stage(stage: str, day: date) -> dict[str, Any]:
    """One stage, in this (child) process, on the settings in the environment."""
    s = get_settings()
    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    if stage == "prepare":
        from features.content import embed_catalog
        from features.pipeline import compute_features, register_and_materialize
        from ingest.datasets import ingest

        out["rows"] = ingest(s, day).impressions_rows
        compute_features(s, day)
        embed_catalog(s, day)
        register_and_materialize(s, day)
    elif stage == "ingest":
        from ingest.datasets import ingest

        out["rows"] = ingest(s, day).impressions_rows
    elif stage == "features":
        from features.pipeline import compute_features

        out["rows"] = sum(compute_features(s, day).rows.values())
    elif stage == "embed":
        from features.content import embed_catalog

        out["rows"] = embed_catalog(s, day).to_dict().get("videos_embedded", 0)
    elif stage == "materialize":
        from features.pipeline import register_and_materialize

        out["mode"] = register_and_materialize(s, day)
    elif stage == "datasets":
        from training.pipeline import build_datasets

        out["rows"] = build_datasets(s, day).rows
    elif stage == "train_eval_register":
        from reelrank.loop import evaluate_and_gate
        from training.pipeline import train_and_register

        trained, gated = evaluate_and_gate(s, train_and_register(s, day))
        out["gate"] = gated.promoted
        out["ndcg_at_10"] = trained.metrics["challenger"].ndcg_at_10
    else:
        raise SystemExit(f"unknown stage {stage}")
    out["seconds"] = time.perf_counter() - t0
    out["peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def child(stage: str, day: date, settings: Settings, log: Path) -> dict[str, Any]:
    env = {**os.environ, **settings.to_env(), "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, __file__, "--stage", stage, "--day", day.isoformat()]
    t0 = time.perf_counter()
    with open(log, "a") as fh:
        fh.write(f"\n=== {stage} {day}\n")
        fh.flush()
        try:
            proc = subprocess.run(
                cmd, env=env, stdout=subprocess.PIPE, stderr=fh, text=True, timeout=TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timeout after {TIMEOUT_S}s", "seconds": TIMEOUT_S}
    if proc.returncode != 0:
        why = "killed (out of memory?)" if proc.returncode < 0 else f"exit {proc.returncode}"
        return {"error": why, "seconds": time.perf_counter() - t0}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def reset_cluster(settings: Settings) -> None:
    import redis

    from reelrank.cluster import drop_databases, ensure_databases, redis_target

    drop_databases(settings)
    ensure_databases(settings)
    t = redis_target(settings)
    redis.Redis(host=t.host, port=t.port, db=t.db).flushdb()


def bench_one(
    volume: float,
    profile: str,
    history: int,
    root: Path,
    console: Console,
    reuse_from: Path | None = None,
) -> dict[str, Any]:
    home = root / f"{profile}-{volume}M"
    settings = world_settings(volume, profile, history, home)
    if profile == "cluster":
        reset_cluster(settings)
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    local = (reuse_from or root) / f"local-{volume}M"
    if (profile == "cluster" or reuse_from is not None) and (local / "prepared").exists():
        # the same world's files (lake, feature tables, caption embeddings) do not depend on
        # the profile: reuse them, so "prepare" only applies Feast and materializes here
        for part in ("lake", "features", "quarantine"):
            if (local / part).exists():
                shutil.copytree(local / part, home / part)
        day = settings.sim.end_date.isoformat()  # what the daily loop itself must produce
        for stale in [*home.glob(f"lake/*/day={day}"), *home.glob(f"features/*/{day}.parquet")]:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    log = home / "bench.log"
    last = settings.sim.end_date
    console.print(
        f"[bold]{profile} {volume}M/day[/]: {settings.sim.n_users:,} users, "
        f"{settings.sim.n_videos:,} videos; preparing {history} days (log: {log})"
    )
    prep = child("prepare", last - timedelta(days=1), settings, log)
    console.print(f"  prepared in {prep.get('seconds', 0):.0f}s {prep.get('error', '')}")
    if "error" not in prep:
        (home / "prepared").write_text(json.dumps(prep))
    result: dict[str, Any] = {"volume": volume, "profile": profile, "prepare": prep, "stages": {}}
    if "error" in prep:
        return result
    for stage in STAGES:
        r = child(stage, last, settings, log)
        result["stages"][stage] = r
        console.print(
            f"  {stage:<20} {r.get('seconds', 0):8.1f}s  {r.get('peak_gib', 0):5.2f} GiB  "
            f"{r.get('error', '')}"
        )
        if "error" in r:
            break
    return result


def report(results: list[dict[str, Any]], console: Console) -> None:
    for profile in sorted({r["profile"] for r in results}):
        rows = [r for r in results if r["profile"] == profile]
        vols = [r["volume"] for r in rows]
        t = Table(title=f"daily loop, {profile} profile (seconds / peak GiB)", title_justify="left")
        t.add_column("stage")
        for v in vols:
            t.add_column(f"{v}M/day", justify="right")
        for a, b in itertools.pairwise(vols):
            t.add_column(f"x {b}M/{a}M", justify="right")
        for stage in (*STAGES, "total"):
            cells: list[str] = []
            secs: list[float | None] = []
            for r in rows:
                if stage == "total":
                    st = r["stages"]
                    ok = len(st) == len(STAGES) and not any("error" in x for x in st.values())
                    s = sum(x["seconds"] for x in st.values()) if ok else None
                    peak = max((x.get("peak_gib", 0) for x in st.values()), default=0)
                else:
                    x = r["stages"].get(stage)
                    s = x["seconds"] if x and "error" not in x else None
                    peak = x.get("peak_gib", 0) if x else 0
                    if x and "error" in x:
                        cells.append(f"[red]{x['error']}[/]")
                        secs.append(None)
                        continue
                secs.append(s)
                cells.append("" if s is None else f"{s:.1f}s / {peak:.2f}")
            for (a, sa), (b, sb) in itertools.pairwise(zip(vols, secs, strict=True)):
                ratio = sb / sa if sa and sb else None
                growth = b / a
                flag = " [red](super-linear)[/]" if ratio and ratio > 1.1 * growth else ""
                cells.append("" if ratio is None else f"{ratio:.2f}{flag}")
            t.add_row(stage, *cells)
        console.print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--volumes", default="0.25,1,4", help="million impressions per day")
    ap.add_argument("--profiles", default="local,cluster")
    ap.add_argument("--history", type=int, default=8, help="days prepared before the day")
    ap.add_argument("--root", type=Path, default=ROOT / "var" / "bench-scale")
    ap.add_argument(
        "--reuse-from",
        type=Path,
        help="a --root of an earlier run: its prepared local worlds (lake, feature tables, "
        "embeddings before the last day) are copied instead of simulated again",
    )
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--day", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:  # a child: one stage, its figures as the last line of stdout
        print(json.dumps(run_stage(args.stage, date.fromisoformat(args.day)), default=str))
        return
    console = Console(width=140)  # the whole table, also when piped to a file
    results = []
    for profile in args.profiles.split(","):
        for volume in (float(v) for v in args.volumes.split(",")):
            results.append(
                bench_one(volume, profile, args.history, args.root, console, args.reuse_from)
            )
            (args.root / "results.json").write_text(json.dumps(results, indent=2, default=str))
    report(results, console)


if __name__ == "__main__":
    main()
