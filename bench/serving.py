"""The real HTTP server under fixed request rates, beside a naive path and the compute floor.

Run from the repository root::

    python bench/serving.py [--rates 50,100,200,400] [--seconds 20] [--home var/bench-serving]
    python bench/serving.py --quick        # small world, short runs: checks the script end to end

What runs, in one process (the server is its own process tree):

1. **World** (cached in ``--home``; ``--rebuild`` starts over): a simulated world with a
   100k-video catalog is ingested through its last day, featurized, materialized into the
   Feast online store, and a retrieval model, a ranker and the gate are trained, by the same
   functions ``reelrank simulate``, ``features`` and ``train`` call. Videos are uploaded at a
   constant rate over ``catalog_history_days`` before day 0 and the simulated days, and the
   feed retires videos older than ``catalog_history_days``; a long history (ten years) keeps
   nearly the whole catalog servable, so the candidate index holds ~100k videos. Captions use
   the hashing encoder (no language model to load), which changes retrieval quality, not what
   a request costs. The retrieval model is made champion before the ranker trains (as
   ``reelrank train`` does when the retrieval gate passes), so the ranker is fitted on the
   retrieval features it is served with; should a gate reject a model on this world, the
   script promotes it anyway and says so: the figures are about serving cost, not quality.
   3000 users: the retrieval validator holds an (active users x 10**6) int64 array, about
   8 MB per user, so much larger worlds need more memory than a small machine has.
2. **Compute floor**: :func:`serving.loader.build_recommender` in this process, then
   ``Recommender.recommend(user, 10)`` one request after another: the same steps the server
   runs per request (one Feast online read for the user, retrieval of ``serving.n_candidates``
   candidates, filters, the in-memory item table, one ``inplace_predict``, re-ranking),
   without HTTP, JSON, the web framework, the served-request log or metrics.
3. **Naive path**, also in this process: per request, the user's online read, the same
   candidates, then Feast ``get_online_features`` for all candidates' video and creator
   features, a pandas DataFrame, :func:`features.cross.model_matrix` and
   :func:`training.ranker.predict` on the champion loaded with ``mlflow.xgboost.load_model``,
   sort, top 10: how one would first write it (without the filters and re-ranking, which
   only flatters it). As a check that it scores what the service scores, its top 10 is
   compared with ``Recommender.rank`` on the same candidates.
4. **HTTP**: ``bentoml serve`` through :func:`serving.server.start_server` with the same
   settings, warmed with a few requests, then for each rate an *open-loop* load: request ``i``
   is scheduled at ``i / rate`` seconds whatever happened to earlier ones (asyncio +
   aiohttp, keep-alive pool), and its latency is measured from its *scheduled* send time, so
   time spent queueing (in the server, or in this client when it falls behind) is counted
   instead of hidden (no coordinated omission). ``send lag p99`` shows how late the client
   itself sent: a large value means the load generator, not the server, was short of CPU.
   Throughput is OK answers over the time from the first scheduled send to the last answer.

Every path draws users the same way: known users of the lake, and 5% user ids the store has
never seen (the cold-start path). The served state (recently served videos per user) lives in
the world's home and outlasts a run, so after a few runs users arrive with up to 200 recently
served videos each, as an active scroller does: the seen filter is exercised at full size.
The load generator shares the machine with the server, as the compute-floor and naive
references do when they run (before the server starts).

Targets (for 2 cores): zero errors at 200 req/s; p99 at 200 req/s <= 3x the floor's p99;
the server's p50 at 200 req/s >= 10x faster than the naive path's p50. Nothing here asserts:
it prints figures (and PASS/MISS beside each target) for a person to judge.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import shutil
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

# bench/ is not a package: make the repository root importable when run as a script.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from reelrank.settings import Settings, get_settings  # noqa: E402

TARGET_RATE = 200.0
TARGET_P99_OVER_FLOOR = 3.0
TARGET_NAIVE_SPEEDUP = 10.0
UNKNOWN_SHARE = 0.05
K = 10
SURFACE = "spotlight"
WARMUP_REQUESTS = 50
PAUSE_BETWEEN_RATES_S = 3.0
MARKER = ".bench-serving"  # written into a home this script built; --rebuild deletes only those

# The world: a 100k-video catalog nearly all servable (see the module docstring).
FULL_WORLD: dict[str, Any] = {
    "sim": {
        "n_users": 3000,
        "n_creators": 1000,
        "n_videos": 100_000,
        "days": 30,
        "catalog_history_days": 3650,
    },
}
QUICK_WORLD: dict[str, Any] = {
    "sim": {
        "n_users": 600,
        "n_creators": 80,
        "n_videos": 5000,
        "days": 10,
        "catalog_history_days": 3650,
    },
    "training": {"train_days": 3, "n_estimators": 60, "reference_sample_rows": 2000},
    "retrieval": {"train_days": 5, "max_epochs": 3},
}


def world_settings(home: Path, quick: bool, workers: int | None = None) -> Settings:
    """The settings of the benchmark's world; the server gets exactly these.

    ``workers``: server worker processes (default: ``serving.workers`` from the environment
    or settings); the world itself does not depend on it."""
    base = QUICK_WORLD if quick else FULL_WORLD
    overrides: dict[str, Any] = {
        "home": home,
        "sim": dict(base["sim"]),
        "training": dict(base.get("training", {})),
        "retrieval": {**base.get("retrieval", {}), "text_encoder": "hashing"},
        # a 100k-row online read for the item table at start-up takes longer than the default
        "serving": {"n_candidates": 500, "startup_timeout_s": 900.0},
    }
    if workers is not None:
        overrides["serving"]["workers"] = workers
    return get_settings(**overrides)


# -- the world -------------------------------------------------------------------------------
def _champion(settings: Settings, name: str) -> str | None:
    from models.registry import CHAMPION, alias_version, client

    return alias_version(client(settings), name, CHAMPION)


def _ensure_champion(settings: Settings, name: str, console: Console) -> None:
    """Promote the latest challenger when the gate rejected it: serving cost is measured."""
    from models.registry import CHALLENGER, alias_version, client
    from training.review import promote

    if _champion(settings, name) is not None:
        return
    c = client(settings)
    version = alias_version(c, name, CHALLENGER)
    if version is None:
        raise RuntimeError(f"training registered no {name} challenger in {settings.home}")
    promote(c, name, version, "bench/serving.py", "benchmark world: serving cost, not quality")
    console.print(f"[yellow]the gate kept {name} v{version} back; promoted for the benchmark[/]")


def prepare_world(settings: Settings, rebuild: bool, console: Console) -> float | None:
    """Build the world unless a champion is already registered there; seconds spent or None."""
    home = settings.home
    if rebuild and home.exists():
        if not (home / MARKER).exists():
            raise SystemExit(f"{home} was not built by this benchmark: refusing to delete it")
        shutil.rmtree(home)
    if home.exists() and _champion(settings, settings.ranker_model_name) is not None:
        from ingest.pipeline import check_world_manifest

        check_world_manifest(settings)  # the cached world must be the one these settings describe
        return None

    from features.pipeline import latest_feature_day, run_features
    from ingest.pipeline import ingest_simulated
    from reelrank.loop import evaluate_and_gate
    from training.pipeline import build_datasets, train_and_register
    from training.retrieval import train_retrieval

    home.mkdir(parents=True, exist_ok=True)
    (home / MARKER).write_text("built by bench/serving.py; --rebuild deletes this directory\n")
    last = settings.sim.end_date

    def train() -> None:
        # reelrank.loop.run_training's steps, with the retrieval model made champion
        # before the ranker trains: the ranker is fitted on the retrieval features it is served
        holdout = latest_feature_day(settings)
        build_datasets(settings, holdout)
        train_retrieval(settings, holdout)
        _ensure_champion(settings, settings.retrieval_model_name, console)
        evaluate_and_gate(settings, train_and_register(settings, holdout))
        _ensure_champion(settings, settings.ranker_model_name, console)

    steps: list[tuple[str, Callable[[], object]]] = [
        (f"simulate through {last}", lambda: ingest_simulated(settings, last)),
        ("features, caption embeddings, Feast materialize", lambda: run_features(settings, last)),
        ("train retrieval + ranker, gate", train),
    ]
    t_all = time.perf_counter()
    for what, step in steps:
        t0 = time.perf_counter()
        with console.status(f"preparing the world: {what}"):
            step()
        console.print(f"  {what}: {time.perf_counter() - t0:.0f}s")
    return time.perf_counter() - t_all


def request_users(settings: Settings, n: int, seed: int) -> list[str]:
    """``n`` user ids: known users of the lake, with ``UNKNOWN_SHARE`` never-seen ids."""
    from ingest.lake import read_table

    known = read_table(settings.lake_dir, "users", columns=["user_id"])["user_id"].to_numpy()
    rng = np.random.default_rng(seed)
    picks = rng.choice(known, size=n)
    unknown = rng.random(n) < UNKNOWN_SHARE
    return [
        f"bench-unknown-{i}" if u else str(p)
        for i, (p, u) in enumerate(zip(picks, unknown, strict=True))
    ]


# -- figures ---------------------------------------------------------------------------------
@dataclass
class Row:
    """One line of the result table."""

    path: str
    sent: int
    ok: int
    errors: int
    throughput: float | None  # OK answers per second; None for sequential in-process paths
    latencies_ms: np.ndarray  # of the OK answers
    send_lag_p99_ms: float | None = None
    error_kinds: dict[str, int] = field(default_factory=dict)  # HTTP status or exception

    def pct(self, q: float) -> float:
        if not len(self.latencies_ms):
            return float("nan")
        return float(np.percentile(self.latencies_ms, q))


def time_sequential(name: str, fn: Callable[[str], object], users: Sequence[str]) -> Row:
    """Call ``fn`` for each user one after another; a raised exception counts as an error."""
    lat: list[float] = []
    errors = 0
    for user in users:
        t0 = time.perf_counter()
        try:
            fn(user)
        except Exception as err:  # counted and reported, never fatal
            if not errors:
                logging.getLogger(__name__).error("%s: first error: %r", name, err)
            errors += 1
            continue
        lat.append((time.perf_counter() - t0) * 1e3)
    return Row(name, len(users), len(lat), errors, None, np.asarray(lat))


def user_vector(rec: Any, state: Any) -> Any:
    """The user tower's vector, as the recommender computes it (None without a retriever)."""
    from feature_repo.columns import USER_COLUMNS

    if rec.retriever is None:
        return None
    if state is None:
        return rec.retriever.user_vector(None, [])
    return rec.retriever.user_vector(state.features[: len(USER_COLUMNS)], state.history)


# -- the naive path ----------------------------------------------------------------------------
class NaivePath:
    """The recommendation with per-request Feast reads for every candidate, pandas and predict.

    Only retrieve -> features -> score -> top k: the serving path's filters (seen lately) and
    re-ranking (MMR, fresh slot) cost little beside the rest and are left out, which can only
    flatter this path. ``last_candidates`` keeps the candidates of the latest call, so the
    top k can be checked against ``Recommender.rank`` on the same candidates.
    """

    def __init__(self, settings: Settings, rec: Any) -> None:
        import mlflow

        from features.store import feature_store
        from models.registry import CHAMPION, client
        from serving.loader import FeastUserReader, _view_of
        from serving.pipeline import ITEM_FEATURES

        self.rec = rec
        self.store = feature_store(settings)
        self.users = FeastUserReader(self.store)
        self.item_refs = [f"{_view_of(c)}:{c}" for c in ITEM_FEATURES]
        mv = client(settings).get_model_version_by_alias(settings.ranker_model_name, CHAMPION)
        self.model = mlflow.xgboost.load_model(f"models:/{settings.ranker_model_name}/{mv.version}")
        self.creator_of = dict(zip(rec.items.video_ids, rec.items.creator_ids, strict=True))
        self.last_candidates: list[str] = []

    def __call__(self, user_id: str) -> list[str]:
        from features.batch import FEATURE_DEFAULTS
        from features.cross import creator_affinity
        from serving.pipeline import ITEM_FEATURES, USER_FEATURES
        from training.ranker import predict

        rec, retriever = self.rec, self.rec.retriever
        state = self.users(user_id)  # get_online_features for the user's views
        user_vec = user_vector(rec, state)
        ids, retrieved = rec.candidates(state, user_vec)
        self.last_candidates = ids
        if not ids:
            return []
        rows = [{"video_id": v, "creator_id": self.creator_of.get(v, "")} for v in ids]
        got = self.store.get_online_features(features=self.item_refs, entity_rows=rows).to_dict()
        df = pd.DataFrame(
            {c: pd.to_numeric(pd.Series(got[c]), errors="coerce") for c in ITEM_FEATURES}
        )
        df = df.astype("float64").fillna({c: FEATURE_DEFAULTS[c] for c in ITEM_FEATURES})
        user = rec.default_user if state is None else state.features
        for c, v in zip(USER_FEATURES, user, strict=True):
            df[c] = float(v)
        df["video_id"] = ids
        df["creator_id"] = [r["creator_id"] for r in rows]
        df["surface"] = SURFACE
        df["position"] = 0
        if state is not None and state.creator_ids:
            imp, rate = creator_affinity(
                state.creator_ids, state.creator_imp, state.creator_pos, df["creator_id"].tolist()
            )
        else:
            imp, rate = creator_affinity([], [], [], df["creator_id"].tolist())
        df["x_creator_imp_28d"], df["x_creator_pos_rate"] = imp, rate
        if retriever is None:
            df["x_retrieval_score"], df["x_content_similarity"] = np.nan, np.nan
        else:
            scores = retrieved if retrieved is not None else retriever.scores(user_vec, ids)
            centroid = retriever.history_caption([] if state is None else state.history)
            df["x_retrieval_score"] = np.asarray(scores, np.float32)
            df["x_content_similarity"] = retriever.caption_similarity(centroid, ids)
        value = predict(self.model, df)
        top = np.argsort(-value, kind="stable")[:K]
        return [ids[i] for i in top]


# -- HTTP load -------------------------------------------------------------------------------
async def _open_loop(
    url: str,
    headers: dict[str, str],
    rate: float,
    users: Sequence[str],
    timeout_s: float,
    max_connections: int,
) -> Row:
    import aiohttp

    n = len(users)
    latency = np.full(n, np.nan)
    lag = np.full(n, np.nan)
    status: list[int | str] = ["not sent"] * n
    connector = aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds
        clock = time.perf_counter
        t0 = clock() + 0.05

        async def one(i: int, scheduled: float) -> None:
            lag[i] = clock() - scheduled
            body = {"user_id": users[i], "k": K, "surface": SURFACE}
            try:
                async with session.post(f"{url}/recommend", json=body, headers=headers) as resp:
                    await resp.read()
                    status[i] = resp.status
            except (aiohttp.ClientError, TimeoutError) as err:
                status[i] = type(err).__name__
            latency[i] = clock() - scheduled

        tasks = []
        for i in range(n):
            scheduled = t0 + i / rate
            delay = scheduled - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*tasks)
        finished = clock()
    ok = np.array([s == 200 for s in status])
    elapsed = max(finished - t0, 1e-9)
    return Row(
        f"HTTP {rate:g} req/s",
        n,
        int(ok.sum()),
        int((~ok).sum()),
        float(ok.sum() / elapsed),
        latency[ok] * 1e3,
        float(np.percentile(lag, 99) * 1e3),
        dict(Counter(str(s) for s in status if s != 200)),
    )


def run_rate(
    url: str,
    headers: dict[str, str],
    rate: float,
    users: Sequence[str],
    timeout_s: float,
    max_connections: int,
) -> Row:
    try:  # uvloop (a dependency of the server) costs the load generator less CPU per request
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_open_loop(url, headers, rate, users, timeout_s, max_connections))


def auth_headers(settings: Settings) -> dict[str, str]:
    """The API key header when the service requires one (``serving.api_key``)."""
    key = settings.serving.api_key
    return {} if key is None else {"x-api-key": key.get_secret_value()}


def warm_up(url: str, headers: dict[str, str], users: Sequence[str]) -> None:
    import httpx

    with httpx.Client(timeout=60.0, headers=headers) as client:
        for user in users:
            body = {"user_id": user, "k": K, "surface": SURFACE}
            client.post(f"{url}/recommend", json=body).raise_for_status()


# -- main ------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--home", type=Path, default=None, help="the world's home (default var/bench-serving)"
    )
    parser.add_argument("--rates", default="50,100,200,400", help="requests/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="load duration per rate")
    parser.add_argument("--rebuild", action="store_true", help="build the world again")
    parser.add_argument("--floor-requests", type=int, default=2000)
    parser.add_argument("--naive-requests", type=int, default=100)
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="client timeout per request (s)"
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=512,
        help="keep-alive pool size; a send waiting for a connection counts in its latency",
    )
    parser.add_argument("--port", type=int, default=None, help="server port (default: a free one)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a 5k-video world, few requests and 3 s per rate: checks the script end to end",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="server worker processes (serving.workers)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="log the loop's steps (INFO)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = min(args.seconds, 3.0)
        args.floor_requests = min(args.floor_requests, 200)
        args.naive_requests = min(args.naive_requests, 20)
    if args.home is None:
        args.home = REPO_ROOT / "var" / ("bench-serving-quick" if args.quick else "bench-serving")
    args.rates = [float(r) for r in str(args.rates).split(",") if r.strip()]
    return args


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _ms(v: float) -> str:
    return "n/a" if np.isnan(v) else f"{v:.1f}"


def print_table(console: Console, rows: list[Row]) -> None:
    table = Table(title="POST /recommend latency (ms), k=10")
    for col in ("path", "sent", "ok", "errors", "achieved req/s", "p50", "p95", "p99"):
        table.add_column(col, justify="left" if col == "path" else "right")
    table.add_column("send lag p99", justify="right")
    for r in rows:
        table.add_row(
            r.path,
            str(r.sent),
            str(r.ok),
            str(r.errors),
            "sequential" if r.throughput is None else f"{r.throughput:.1f}",
            _ms(r.pct(50)),
            _ms(r.pct(95)),
            _ms(r.pct(99)),
            "" if r.send_lag_p99_ms is None else _ms(r.send_lag_p99_ms),
        )
    console.print(table)


def print_targets(console: Console, floor: Row, naive: Row, http: dict[float, Row]) -> None:
    def verdict(ok: bool) -> str:
        return "[green]PASS[/]" if ok else "[red]MISS[/]"

    at = http.get(TARGET_RATE)
    if at is None:
        console.print(f"targets need a run at {TARGET_RATE:g} req/s (add it to --rates)")
        return
    console.print(
        f"errors at {TARGET_RATE:g} req/s = {at.errors} of {at.sent} (target 0): "
        f"{verdict(at.errors == 0)}"
    )
    ratio = at.pct(99) / floor.pct(99)
    console.print(
        f"p99 at {TARGET_RATE:g} req/s / floor p99 = {_ms(at.pct(99))} / {_ms(floor.pct(99))} ms "
        f"= {ratio:.1f}x (target <= {TARGET_P99_OVER_FLOOR:g}x): "
        f"{verdict(ratio <= TARGET_P99_OVER_FLOOR)}"
    )
    speedup = naive.pct(50) / at.pct(50)
    console.print(
        f"naive p50 / server p50 at {TARGET_RATE:g} req/s = {_ms(naive.pct(50))} / "
        f"{_ms(at.pct(50))} ms = {speedup:.1f}x (target >= {TARGET_NAIVE_SPEEDUP:g}x): "
        f"{verdict(speedup >= TARGET_NAIVE_SPEEDUP)}"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    console = Console(width=150)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    os.environ.setdefault("FEAST_USAGE", "False")
    if not args.verbose:  # the libraries' deprecation notices are not figures
        warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = world_settings(args.home, args.quick, args.workers)
    sim = settings.sim

    console.print(
        f"world: {sim.n_videos:,} videos, {sim.n_users:,} users, {sim.n_creators:,} creators, "
        f"{sim.days} days, catalog_history_days={sim.catalog_history_days}, captions: "
        f"{settings.retrieval.text_encoder} encoder (no language model; retrieval quality "
        f"differs, per-request cost does not); home {settings.home}"
    )
    seconds = prepare_world(settings, args.rebuild, console)
    console.print(
        "world reused from its home (--rebuild to build again)"
        if seconds is None
        else f"world prepared in {seconds:.0f}s ({seconds / 60:.1f} min)"
    )

    from ingest.lake import read_table
    from serving.loader import build_recommender

    with console.status("loading the recommender in-process"):
        t0 = time.perf_counter()
        rec = build_recommender(settings)
        load_s = time.perf_counter() - t0
    lake_videos = len(read_table(settings.lake_dir, "videos", columns=["video_id"]))
    index_size = rec.retriever.index.size if rec.retriever is not None else 0
    index_kind = rec.retriever.index.kind if rec.retriever is not None else "none"
    probe = request_users(settings, 200, args.seed + 99)
    n_cand = [len(rec.candidates(s, user_vector(rec, s))[0]) for s in map(rec.users, probe)]
    cpus = os.cpu_count() or 0
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    console.print(
        f"machine: {platform.machine()}, {cpus} CPUs ({affinity} usable), "
        f"Python {platform.python_version()}; server workers: {settings.serving.workers}; "
        f"load average {_load()} (other work on the machine skews every figure)"
    )
    console.print(
        f"catalog: {lake_videos:,} videos in the lake, {len(rec.items.video_ids):,} in the item "
        f"table; candidate index: {index_size:,} videos ({index_kind}); candidates per request: "
        f"n_candidates={rec.n_candidates}, got median {int(np.median(n_cand))} "
        f"(min {min(n_cand)}, max {max(n_cand)}) over {len(probe)} users; "
        f"ranker {rec.model.name} v{rec.model.version}, heads {list(rec.model.heads.heads)}; "
        f"in-process load {load_s:.1f}s"
    )

    floor_users = request_users(settings, args.floor_requests, args.seed)
    with console.status(f"compute floor: {len(floor_users)} sequential requests"):
        floor = time_sequential(
            "floor (in-process recommend)", lambda u: rec.recommend(u, K, SURFACE), floor_users
        )

    naive_users = request_users(settings, args.naive_requests, args.seed + 1)
    naive_fn = NaivePath(settings, rec)
    naive_fn(naive_users[0])  # first-call set-up is not a request
    with console.status(f"naive path: {len(naive_users)} sequential requests"):
        naive = time_sequential("naive (Feast per candidate + pandas)", naive_fn, naive_users)
    same = []
    for user in naive_users[:50]:
        top = naive_fn(user)
        ranked = rec.rank(user, naive_fn.last_candidates, SURFACE).video_ids[:K]
        same.append(set(top) == set(ranked))
    console.print(
        f"naive top {K} = Recommender.rank's top {K} of the same candidates for {sum(same)} of "
        f"{len(same)} users (the served feed then also drops seen videos and re-ranks)"
    )

    from serving.server import free_port, start_server

    rows = [floor, naive]
    http: dict[float, Row] = {}
    t0 = time.perf_counter()
    with console.status("starting bentoml serve"):
        server = start_server(settings, port=args.port or free_port())
    try:
        console.print(f"server ready at {server.url} in {time.perf_counter() - t0:.0f}s")
        headers = auth_headers(settings)
        warm_up(server.url, headers, request_users(settings, WARMUP_REQUESTS, args.seed + 2))
        for i, rate in enumerate(args.rates):
            users = request_users(settings, max(1, round(rate * args.seconds)), args.seed + 10 + i)
            with console.status(f"open-loop load: {rate:g} req/s for {args.seconds:g}s"):
                row = run_rate(server.url, headers, rate, users, args.timeout, args.max_connections)
            console.print(
                f"  {row.path}: {row.ok}/{row.sent} OK, p50 {_ms(row.pct(50))} ms, "
                f"p99 {_ms(row.pct(99))} ms"
                + (f"; errors: {row.error_kinds}" if row.error_kinds else "")
            )
            http[rate] = row
            rows.append(row)
            time.sleep(PAUSE_BETWEEN_RATES_S)  # let a backlog drain before the next rate
    finally:
        server.stop()

    console.print()
    print_table(console, rows)
    print_targets(console, floor, naive, http)
    console.print(
        f"(the load generator shares the {cpus} CPUs with the server; load average now "
        f"{_load()}; server log: {server.log_path})"
    )


if __name__ == "__main__":
    main()
