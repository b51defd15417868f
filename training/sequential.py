"""The standard sequential-recommendation protocol, for any timestamped impression log.

Leave-last-out (as in SASRec and its successors): for each user with at least three
positive events, the last positive is the test target, the one before it the validation
target (early stopping), and only what happened before the validation target is trained on.
Every model then ranks the whole catalog for each user from the events before the test
target, and the protocol reports HR@K (the target is in the top K) and NDCG@K (1/log2(rank+2)
when it is) for

- ``pooled``: the two-tower's pooled user side (recent positives, newest first; the user's
  daily rates are the documented defaults, since a bare log has no feature tables),
- ``sequence``: the causal transformer over the user's events (:mod:`models.sequence`),
- ``popularity``: training positives counted, the same list for every user.

The ranking is over the full catalog with nothing excluded, so the figures compare with the
published full-ranking numbers rather than the sampled-negatives ones. It trains its own
models and needs no Feast, MLflow or lake: a log frame and a catalog are enough.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from feature_repo.columns import USER_COLUMNS
from features.batch import FEATURE_DEFAULTS
from features.sequence import is_positive, ordered_events
from models.sequence import (
    SequenceTower,
    fit_sequence,
    sequence_inputs,
    sequence_user_vectors,
    training_sequences,
)
from models.two_tower import (
    CATALOG_ARRAYS,
    Catalog,
    TowerConfig,
    TrainData,
    TwoTower,
    all_item_vectors,
    fit,
    history_rows,
    user_matrix,
    user_vectors,
)

Events = tuple[list[str], list[int], list[float]]


def content_free_catalog(video_ids: list[str], cfg: TowerConfig) -> Catalog:
    """A catalog of ids only (zero content, one topic, unit duration): for logs that come
    without captions or visual embeddings; the id embeddings carry everything."""
    n = len(video_ids)
    videos = pd.DataFrame(
        {
            "video_id": video_ids,
            "creator_id": "unknown",
            "topic": "unknown",
            "duration_s": 1.0,
            "upload_ts": pd.Timestamp("2000-01-01", tz="UTC"),
        }
    )
    content = pd.DataFrame(
        {
            "video_id": video_ids,
            "caption_embedding": [np.zeros(cfg.caption_dim, np.float32)] * n,
            "visual_embedding": [np.zeros(cfg.visual_dim, np.float32)] * n,
            "has_visual": 0.0,
        }
    )
    return Catalog.from_frames(videos, content, cfg)


def split_leave_last_out(
    impressions: pd.DataFrame, catalog: Catalog
) -> tuple[dict[str, Events], dict[str, tuple[int, int]]]:
    """Each kept user's ordered events (catalog videos only) and the positions of their
    validation and test targets (the last two positive events)."""
    ev = ordered_events(impressions)
    ev = ev[ev["video_id"].isin(catalog.index)]
    users: dict[str, Events] = {}
    cuts: dict[str, tuple[int, int]] = {}
    for u, g in ev.groupby("user_id", sort=True):
        acts = g["action"].to_numpy()
        pos = np.flatnonzero(is_positive(acts))
        if len(pos) < 3:
            continue
        users[str(u)] = (g["video_id"].tolist(), acts.tolist(), g["t"].tolist())
        cuts[str(u)] = (int(pos[-2]), int(pos[-1]))
    return users, cuts


def _prefix(e: Events, end: int) -> Events:
    return (e[0][:end], e[1][:end], e[2][:end])


def _positives_newest_first(e: Events, end: int) -> list[str]:
    ids, acts = e[0][:end], e[1][:end]
    return [v for v, a in zip(ids[::-1], acts[::-1], strict=True) if is_positive(a)]


def hit_and_ndcg(scores: np.ndarray, target_rows: np.ndarray, k: int) -> tuple[float, float]:
    """Mean HR@k and NDCG@k of each row's target among all catalog scores (ties count
    against the target: a constant scorer gets no credit)."""
    target = scores[np.arange(len(scores)), target_rows][:, None]
    rank = (scores >= target).sum(axis=1) - 1  # items scoring at least as high, but itself
    hit = rank < k
    ndcg = np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0)
    return float(hit.mean()) if len(hit) else math.nan, float(ndcg.mean()) if len(hit) else 0.0


def _pooled_inputs(
    catalog: Catalog, histories: list[list[str]], cfg: TowerConfig
) -> tuple[np.ndarray, np.ndarray]:
    defaults = [FEATURE_DEFAULTS[c] for c in USER_COLUMNS]
    ux = user_matrix(pd.DataFrame([defaults] * len(histories), columns=list(USER_COLUMNS)))
    return ux, history_rows(catalog, histories, cfg.history_len)


def _scores_pooled(
    model: TwoTower, catalog: Catalog, histories: list[list[str]], cfg: TowerConfig
) -> np.ndarray:
    ux, hist = _pooled_inputs(catalog, histories, cfg)
    return user_vectors(model, catalog, ux, hist) @ all_item_vectors(model, catalog).T


def _scores_sequence(model: SequenceTower, catalog: Catalog, seqs: list[Events]) -> np.ndarray:
    inp = sequence_inputs(catalog, seqs, model.cfg.seq_len)
    return sequence_user_vectors(model, catalog, inp) @ all_item_vectors(model, catalog).T


def sequential_protocol(
    impressions: pd.DataFrame,
    catalog: Catalog,
    cfg: TowerConfig,
    *,
    k: int = 10,
    kinds: tuple[str, ...] = ("pooled", "sequence"),
    max_epochs: int = 20,
    patience: int = 3,
    learning_rate: float = 2e-3,
    batch_size: int = 256,
    seq_batch_size: int = 32,
    id_dropout: float = 0.0,
    seed: int = 17,
    threads: int = 2,
    device: str = "cpu",
) -> dict[str, Any]:
    """Leave-last-out HR@k / NDCG@k of popularity and each model kind in ``kinds``.

    ``impressions``: the lake's impression columns (user_id, video_id, ts, completed, liked,
    shared, skipped, watch_time_s, duration_s); ``catalog``: every video that may be ranked
    (:func:`content_free_catalog` when the log has no content); ``cfg``: the towers' sizes
    (``seq_len`` included). Batches are small by default: leave-last-out logs are small,
    and a model needs steps more than it needs wide batches there. Returns ``{"n_users",
    "n_items", "popularity_hr_at_k", "popularity_ndcg_at_k", "<kind>_hr_at_k",
    "<kind>_ndcg_at_k", "<kind>_epochs"}`` with ``k`` spelled out (e.g.
    ``sequence_hr_at_10``)."""
    # a copy: each fit sets which ids were trained (id_known)
    catalog = Catalog(**{n: getattr(catalog, n).copy() for n in CATALOG_ARRAYS})
    users, cuts = split_leave_last_out(impressions, catalog)
    names = sorted(users)
    if not names:
        raise ValueError("no user has three positive events: nothing to evaluate")
    val_rows = catalog.rows([users[u][0][cuts[u][0]] for u in names])
    test_rows = catalog.rows([users[u][0][cuts[u][1]] for u in names])
    out: dict[str, Any] = {"n_users": len(names), "n_items": len(catalog)}

    train_prefix = {u: _prefix(users[u], cuts[u][0]) for u in names}
    train_pos = [v for u in names for v in _positives_newest_first(train_prefix[u], 10**9)]
    counts = np.bincount(catalog.rows(train_pos), minlength=len(catalog)).astype(np.float64)
    pop = np.tile(counts, (len(names), 1))
    out[f"popularity_hr_at_{k}"], out[f"popularity_ndcg_at_{k}"] = hit_and_ndcg(pop, test_rows, k)

    common = {
        "learning_rate": learning_rate,
        "max_epochs": max_epochs,
        "patience": patience,
        "id_dropout": id_dropout,
        "seed": seed,
        "threads": threads,
    }

    def val_score(scorer: Callable[[], np.ndarray]) -> float:
        with torch.no_grad():
            return hit_and_ndcg(scorer(), val_rows, k)[1]

    if "pooled" in kinds:
        pcfg = replace(cfg, kind="pooled")
        hist, items = [], []
        for u in names:
            e = train_prefix[u]
            for j in np.flatnonzero(is_positive(np.asarray(e[1], np.int64))):
                hist.append(_positives_newest_first(e, int(j)))
                items.append(catalog.index[e[0][j]])
        ux, rows = _pooled_inputs(catalog, hist, pcfg)
        val_hist = [_positives_newest_first(users[u], cuts[u][0]) for u in names]
        test_hist = [_positives_newest_first(users[u], cuts[u][1]) for u in names]
        res = fit(
            catalog,
            TrainData(ux, rows, np.asarray(items, np.int64)),
            pcfg,
            validate=lambda m: val_score(lambda: _scores_pooled(m, catalog, val_hist, pcfg)),
            batch_size=batch_size,
            **common,  # type: ignore[arg-type]
        )
        scores = _scores_pooled(res.model, catalog, test_hist, pcfg)
        out[f"pooled_hr_at_{k}"], out[f"pooled_ndcg_at_{k}"] = hit_and_ndcg(scores, test_rows, k)
        out["pooled_epochs"] = res.best_epoch

    if "sequence" in kinds:
        scfg = replace(cfg, kind="sequence")
        train = training_sequences(catalog, [train_prefix[u] for u in names], scfg.seq_len)
        val_seq = [_prefix(users[u], cuts[u][0]) for u in names]
        test_seq = [_prefix(users[u], cuts[u][1]) for u in names]
        sres = fit_sequence(
            catalog,
            train,
            scfg,
            validate=lambda m: val_score(lambda: _scores_sequence(m, catalog, val_seq)),
            device=device,
            batch_size=seq_batch_size,
            **common,  # type: ignore[arg-type]
        )
        assert isinstance(sres.model, SequenceTower)
        scores = _scores_sequence(sres.model, catalog, test_seq)
        out[f"sequence_hr_at_{k}"], out[f"sequence_ndcg_at_{k}"] = hit_and_ndcg(
            scores, test_rows, k
        )
        out["sequence_epochs"] = sres.best_epoch
    return out
