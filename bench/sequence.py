"""Request-path cost of the sequence user model beside the pooled tower: prints figures,
asserts nothing.

The user vector is computed once per /recommend, on one thread, by the numpy forwards of
serving (:class:`models.sequence.NumpySequenceTower`, :class:`models.retriever.NumpyUserTower`),
from the raw feature lists to the unit vector (encoding included). Untrained weights: the
cost does not depend on their values.

    python bench/sequence.py [--videos 20000] [--seq-len 50] [--repeats 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one request, one thread
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
import torch

from feature_repo.columns import USER_COLUMNS
from features.sequence import COMPLETED, SKIPPED
from models.retriever import NumpyUserTower
from models.sequence import NumpySequenceTower, SequenceTower, sequence_inputs
from models.two_tower import Catalog, TowerConfig, TwoTower, compress_user_features, history_rows
from reelrank.settings import RetrievalSettings


def _catalog(n: int, cfg: TowerConfig) -> Catalog:
    rng = np.random.default_rng(0)
    ids = [f"v{i}" for i in range(n)]
    videos = pd.DataFrame(
        {
            "video_id": ids,
            "creator_id": [f"c{i % 500}" for i in range(n)],
            "topic": [cfg.topics[i % len(cfg.topics)] for i in range(n)],
            "duration_s": rng.uniform(5, 60, n),
            "upload_ts": pd.Timestamp("2025-06-01", tz="UTC"),
        }
    )
    content = pd.DataFrame(
        {
            "video_id": ids,
            "caption_embedding": list(rng.standard_normal((n, cfg.caption_dim), np.float32)),
            "visual_embedding": list(rng.standard_normal((n, cfg.visual_dim), np.float32)),
            "has_visual": 1.0,
        }
    )
    cat = Catalog.from_frames(videos, content, cfg)
    cat.id_known[:] = 1.0
    return cat


def _median_us(fn, repeats: int) -> float:
    for _ in range(50):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=20_000)
    ap.add_argument("--seq-len", type=int, default=RetrievalSettings().seq_len)
    ap.add_argument("--repeats", type=int, default=2000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    r = RetrievalSettings()
    cfg = TowerConfig(
        caption_dim=384,
        visual_dim=32,
        topics=[f"t{i}" for i in range(15)],
        dim=r.dim,
        id_buckets=r.id_buckets,
        history_len=r.history_len,
        seq_len=args.seq_len,
        seq_dim=r.seq_dim,
        seq_layers=r.seq_layers,
        seq_heads=r.seq_heads,
    )
    cat = _catalog(args.videos, cfg)
    rng = np.random.default_rng(1)
    n = args.seq_len
    events = (
        list(cat.video_ids[rng.integers(0, len(cat), n)]),
        rng.choice([COMPLETED, SKIPPED, COMPLETED | (4 << 4)], n).tolist(),
        np.cumsum(rng.uniform(1, 600, n)).tolist(),
    )
    history = [v for v, a in zip(events[0][::-1], events[1][::-1], strict=True) if a & 1]

    torch.manual_seed(0)
    seq_model = SequenceTower(cfg).eval()
    seq_np = NumpySequenceTower(seq_model)
    pooled_np = NumpyUserTower(TwoTower(cfg).eval())
    raw = np.abs(rng.normal(3, 2, len(USER_COLUMNS))).astype(np.float32)

    def sequence() -> np.ndarray:
        x = sequence_inputs(cat, [events], n)
        return seq_np(cat, x.rows[0], x.actions[0], x.gaps[0])

    def pooled() -> np.ndarray:
        hist = history_rows(cat, [history], cfg.history_len)[0]
        return pooled_np(cat, compress_user_features(raw), hist)

    x = sequence_inputs(cat, [events], n)
    with torch.no_grad():
        torch_vec = seq_model.sequence_user_vectors(cat.tensors(), *x.tensors())[0].numpy()
    gap = float(np.abs(sequence() - torch_vec).max())
    items = cat.tensors()
    rows, acts, gaps = x.tensors()

    def sequence_torch() -> None:
        with torch.no_grad():
            seq_model.sequence_user_vectors(items, rows, acts, gaps)

    user_side = ("content", "action", "ratio_emb", "gap_emb", "pos_emb", "blocks", "ln_f", "head")
    params = sum(
        p.numel() for n_, p in seq_model.named_parameters() if n_.split(".")[0] in user_side
    )
    print(f"catalog {len(cat)} videos; sequence model: seq_len {n}, width {cfg.seq_dim},")
    print(f"  {cfg.seq_layers} blocks x {cfg.seq_heads} heads, {params:,} parameters of its own")
    print(f"numpy vs torch forward, max |diff|: {gap:.2e}")
    print(f"median one-thread user vector, {args.repeats} requests:")
    print(f"  sequence (numpy, N={n})        {_median_us(sequence, args.repeats):8.1f} us")
    print(f"  pooled tower (numpy, 20 pos)   {_median_us(pooled, args.repeats):8.1f} us")
    torch_us = _median_us(sequence_torch, args.repeats // 4)
    print(f"  sequence (torch, for scale)    {torch_us:8.1f} us")


if __name__ == "__main__":
    main()
