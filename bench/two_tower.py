"""Throughput of the retrieval stack on this machine: prints figures, asserts nothing.

1. Catalog embedding: videos/s through all-MiniLM-L6-v2 (captions + hashtags of the
   simulator's catalog), the cost paid once per new video.
2. Two-tower training: examples/s of in-batch softmax with log-Q correction, at the default
   model size and batch, on synthetic positives over that catalog.
3. Serving-side: user-tower latency for one request, and adding a fresh video to the index.

    python bench/two_tower.py [--videos 4000] [--examples 100000] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
import torch

from feature_repo.columns import USER_COLUMNS
from features.content import content_text, embed_videos, text_encoder
from ingest.simulator import TOPICS, generate_world
from models.retriever import Retriever
from models.two_tower import (
    Catalog,
    TowerConfig,
    TrainData,
    fit,
    user_matrix,
)
from reelrank.settings import RetrievalSettings, SimulationSettings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=4000)
    ap.add_argument("--examples", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--encoder", default="minilm", choices=["minilm", "hashing"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    r = RetrievalSettings()

    world = generate_world(SimulationSettings(n_videos=args.videos, n_users=10))
    videos = world.videos
    t0 = time.perf_counter()
    encoder = text_encoder(args.encoder)
    load_s = time.perf_counter() - t0
    texts = [content_text(c, h) for c, h in zip(videos["caption"], videos["hashtags"], strict=True)]
    encoder.encode(texts[:64])  # warm
    t0 = time.perf_counter()
    content = embed_videos(videos, encoder, pd.Timestamp("2025-06-01").date())
    embed_s = time.perf_counter() - t0

    cfg = TowerConfig(
        caption_dim=384, visual_dim=16, topics=list(TOPICS), dim=r.dim, id_buckets=r.id_buckets
    )
    cat = Catalog.from_frames(videos, content, cfg)
    rng = np.random.default_rng(0)
    n = args.examples
    pop = rng.zipf(1.3, n) % len(cat)
    users = pd.DataFrame(rng.random((n, len(USER_COLUMNS))) * 10, columns=list(USER_COLUMNS))
    hist = rng.integers(-1, len(cat), (n, cfg.history_len))
    data = TrainData(user_matrix(users), hist, pop.astype(np.int64))
    t0 = time.perf_counter()
    res = fit(
        cat,
        data,
        cfg,
        validate=lambda m: 0.0,
        batch_size=r.batch_size,
        max_epochs=1,
        threads=args.threads,
    )
    train_s = time.perf_counter() - t0

    ret = Retriever.build(res.model, cat, np.arange(len(cat)), exact_below=r.exact_below)
    feats = users.iloc[0].to_numpy(np.float32)
    history = list(cat.video_ids[:20])
    for _ in range(20):
        ret.user_vector(feats, history)
    lat = []
    for _ in range(300):
        t = time.perf_counter()
        ret.retrieve(ret.user_vector(feats, history), 500)
        lat.append((time.perf_counter() - t) * 1e3)
    fresh = videos.iloc[:50].assign(video_id=[f"new{i}" for i in range(50)])
    fresh_content = content.iloc[:50].assign(video_id=fresh["video_id"].to_numpy())
    t = time.perf_counter()
    ret.add_videos(fresh, fresh_content)
    add_ms = (time.perf_counter() - t) * 1e3 / 50

    print(f"threads={args.threads} torch={torch.__version__} encoder={encoder.name}")
    print(f"{'measure':48s} {'value':>12s}")
    print(f"{'encoder load (s)':48s} {load_s:12.2f}")
    print(f"{'catalog embedding (videos/s)':48s} {len(videos) / embed_s:12.1f}")
    print(f"{'  videos embedded':48s} {len(videos):12d}")
    print(f"{'two-tower training (examples/s, 1 epoch)':48s} {n / train_s:12.0f}")
    print(f"{'  examples':48s} {n:12d}")
    print(f"{'user tower + exact top-500 over catalog, p50 (ms)':48s} {np.median(lat):12.3f}")
    print(
        f"{'user tower + exact top-500 over catalog, p99 (ms)':48s} {np.quantile(lat, 0.99):12.3f}"
    )
    print(f"{'add a fresh video to the index (ms/video)':48s} {add_ms:12.3f}")


if __name__ == "__main__":
    main()
