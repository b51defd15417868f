"""Exact vs HNSW candidate search on a synthetic catalog: recall@k against latency.

Run from the repository root::

    python bench/ann.py [--n 1000000] [--dim 64] [--queries 500] [--threads 1]

Why synthetic *clustered* vectors: uniform random vectors in 64-d have almost no neighbourhood
structure, which makes every ANN method look worse (and exact search look no different) than
on real embeddings, where items bunch up around topics. Here items are drawn around 1000
gaussian centres with uneven cluster sizes, then L2-normalized; queries are drawn the same way
but are not items, as a user embedding would not be.

Latency is measured one query at a time on ``--threads`` OpenMP threads (1 by default),
because the serving path answers one request at a time and a single core is what a replica
can count on. The HNSW side goes through :class:`models.index.CandidateIndex`, so the figures
include the shipped wrapper (input checks, merging with the empty fresh index). The graph build
may use more threads (``--build-threads``) since it happens offline.

Nothing here asserts on time: it prints figures for a person to judge.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

# bench/ is not a package: make the repository root importable when run as a script.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from models.index import CandidateIndex, set_search_threads  # noqa: E402

TARGET_RECALL = 0.95
TARGET_SPEEDUP = 10.0
WARMUP_QUERIES = 20


@dataclass(frozen=True)
class Row:
    """One line of the result table."""

    method: str
    ef_search: int | None
    recall: float
    p50_ms: float
    p99_ms: float
    mean_ms: float

    def speedup(self, exact: Row) -> float:
        return exact.mean_ms / self.mean_ms


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="catalog size")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1, help="OpenMP threads for search")
    parser.add_argument(
        "--build-threads",
        type=int,
        default=os.cpu_count() or 1,
        help="OpenMP threads for the HNSW build (offline work; default: all cores)",
    )
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument(
        "--noise", type=float, default=0.08, help="per-dimension std of points around a centre"
    )
    parser.add_argument("--k", type=int, default=100, help="neighbours per query (recall@k)")
    parser.add_argument("--m", type=int, default=32, help="HNSW links per node")
    parser.add_argument("--ef-construction", type=int, default=80)
    parser.add_argument(
        "--ef-search",
        type=lambda s: [int(v) for v in s.split(",")],
        default=[128, 192, 256, 384],
        help="comma-separated efSearch values to try",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


class ClusteredSource:
    """Draws normalized points around fixed unit centres with uneven cluster popularity."""

    def __init__(self, dim: int, clusters: int, noise: float, seed: int) -> None:
        rng = np.random.default_rng(seed)
        centres = rng.standard_normal((clusters, dim)).astype(np.float32)
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        weights = rng.lognormal(0.0, 1.0, clusters)  # some topics are far bigger than others
        self.weights = weights / weights.sum()
        self.noise = np.float32(noise)

    def draw(self, n: int, seed: int, chunk: int = 100_000) -> np.ndarray:
        """``n`` points, generated in chunks so the peak memory stays near the output size."""
        rng = np.random.default_rng(seed)
        out = np.empty((n, self.centres.shape[1]), dtype=np.float32)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            which = rng.choice(len(self.centres), size=stop - start, p=self.weights)
            block = out[start:stop]
            rng.standard_normal(block.shape, dtype=np.float32, out=block)
            block *= self.noise
            block += self.centres[which]
            block /= np.linalg.norm(block, axis=1, keepdims=True)
        return out


def time_queries(
    queries: np.ndarray, search: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per-query latencies in ms, and each query's result, one query at a time."""
    for q in queries[:WARMUP_QUERIES]:
        search(q)
    latencies = np.empty(len(queries))
    results: list[np.ndarray] = []
    for i, q in enumerate(queries):
        start = time.perf_counter()
        result = search(q)
        latencies[i] = (time.perf_counter() - start) * 1e3
        results.append(result)
    return latencies, results


def make_row(method: str, ef_search: int | None, latencies: np.ndarray, recall: float) -> Row:
    return Row(
        method=method,
        ef_search=ef_search,
        recall=recall,
        p50_ms=float(np.percentile(latencies, 50)),
        p99_ms=float(np.percentile(latencies, 99)),
        mean_ms=float(latencies.mean()),
    )


def print_table(rows: list[Row], exact: Row, k: int) -> None:
    header = (
        f"{'method':<8} {'efSearch':>8} {f'recall@{k}':>10} {'p50 ms':>9} {'p99 ms':>9} "
        f"{'mean ms':>9} {'speedup':>8}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        ef = "-" if row.ef_search is None else str(row.ef_search)
        print(
            f"{row.method:<8} {ef:>8} {row.recall:>10.4f} {row.p50_ms:>9.3f} {row.p99_ms:>9.3f} "
            f"{row.mean_ms:>9.3f} {row.speedup(exact):>7.1f}x"
        )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    k = args.k
    print(
        f"n={args.n:,} dim={args.dim} queries={args.queries} k={k} clusters={args.clusters} "
        f"noise={args.noise} seed={args.seed}"
    )
    print(
        f"search threads={args.threads} build threads={args.build_threads} "
        f"faiss={faiss.__version__} hnsw M={args.m} efConstruction={args.ef_construction}"
    )

    start = time.perf_counter()
    source = ClusteredSource(args.dim, args.clusters, args.noise, args.seed)
    items = source.draw(args.n, seed=args.seed + 1)
    queries = source.draw(args.queries, seed=args.seed + 2)
    video_ids = [f"v{i}" for i in range(args.n)]
    print(f"data generated in {time.perf_counter() - start:.1f} s")

    set_search_threads(args.threads)
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(items)
    exact_lat, exact_labels = time_queries(queries, lambda q: flat.search(q[None, :], k)[1][0])
    truth = [{f"v{label}" for label in labels if label >= 0} for labels in exact_labels]
    exact = make_row("exact", None, exact_lat, 1.0)
    print(f"exact search timed ({args.queries} queries, one at a time)")

    set_search_threads(args.build_threads)
    start = time.perf_counter()
    index = CandidateIndex.build(
        video_ids,
        items,
        exact_below=0,
        hnsw_m=args.m,
        ef_construction=args.ef_construction,
        ef_search=min(args.ef_search),
    )
    build_s = time.perf_counter() - start
    print(f"hnsw built in {build_s:.1f} s on {args.build_threads} thread(s)")
    set_search_threads(args.threads)

    rows = [exact]
    for ef in args.ef_search:
        lat, results = time_queries(queries, lambda q, ef=ef: index.search(q, k, ef_search=ef)[0])
        hits = [len(want & set(got.tolist())) for want, got in zip(truth, results, strict=True)]
        recall = sum(hits) / (k * len(results))
        rows.append(make_row("hnsw", ef, lat, recall))

    print()
    print_table(rows, exact, k)
    print()
    print(f"hnsw build: {build_s:.1f} s ({args.build_threads} thread(s))")
    met = [
        r
        for r in rows[1:]
        if r.recall >= TARGET_RECALL and r.mean_ms <= exact.mean_ms / TARGET_SPEEDUP
    ]
    target = f"recall@{k} >= {TARGET_RECALL} at <= 1/{TARGET_SPEEDUP:g} of exact mean query time"
    if met:
        best = min(met, key=lambda r: r.ef_search or 0)
        print(
            f"target ({target}): smallest efSearch meeting it = {best.ef_search} "
            f"(recall {best.recall:.4f}, {best.speedup(exact):.1f}x faster than exact)"
        )
    else:
        tried = ", ".join(str(ef) for ef in args.ef_search)
        print(f"target ({target}): none of efSearch {tried} met it")


if __name__ == "__main__":
    main()
