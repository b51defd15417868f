"""KuaiRec's fully observed block: an unbiased, full-catalog test of every retrieval model.

KuaiRec (Gao et al., CIKM 2022, CC BY-SA 4.0) pairs a big, sparse, exposure-biased log with
a block of 1,411 users x 3,327 videos in which nearly every cell was shown and labelled.
Models learn from the big log's positives (``split == "train"``; ``"valid"`` tunes them) and
are then asked to rank *all* 3,327 block videos for every block user: every block cell that
is not a positive is a negative, so no exposure bias flatters a model that merely repeats
what the old recommender showed. No block cell is ever in training, so nothing is excluded
from the block rankings.

Models, each tuned on the valid split over a small grid, then refitted on train + valid:

* popularity: count of positives per video (ties broken at random), the bar to clear;
* item-kNN: cosine similarity of videos' user sets in the training matrix;
* matrix factorisation: implicit-feedback ALS from the ``implicit`` library;
* the project's pooled two-tower (:mod:`models.two_tower`), with caption embeddings, KuaiRec's
  category ids and its users' profile features.

Cold start: 20% of the block videos (seeded) lose every training positive, so only their
content (caption, categories) can place them; they are ranked among themselves for every
block user, and Recall@50 is compared with a random order's ``50 / n_held_out``.
"""

from __future__ import annotations

import ast
import hashlib
import io
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits

from features.content import encoder_dim, text_encoder
from models.metrics import full_catalog_topk
from models.two_tower import (
    Catalog,
    TowerConfig,
    TrainData,
    TwoTower,
    all_item_vectors,
    compress_user_features,
    fit,
    stable_bucket,
    user_vectors,
)
from reelrank.errors import InvalidDataError, MissingDataError

log = logging.getLogger(__name__)

FILES = (
    "big_positives_train_valid.csv",
    "small_users.csv",
    "small_items.csv",
    "small_positives_wr_ge2.csv",
    "kuairec_caption_category.csv",
    "item_categories.csv",
    "user_features.csv",
)
PRECISION_K, RECALL_K, NDCG_K = 10, 50, 10
ACTIVITY = {"full_active": 3.0, "high_active": 2.0, "middle_active": 1.0, "low_active": 0.0}
NUMERIC_USER = (
    "is_lowactive_period",
    "is_live_streamer",
    "is_video_author",
    "follow_user_num",
    "fans_user_num",
    "friend_user_num",
    "register_days",
)
# an anonymised onehot_feat column with at most this many values becomes indicators; the
# wider ones are high-cardinality ids that one dense column could only misrepresent
MAX_ONEHOT_VALUES = 10


# -- data -----------------------------------------------------------------------------------
@dataclass
class KuaiRecData:
    """The files of the KuaiRec folder, indexed by their integer ids (rows = ids)."""

    train: pd.DataFrame  # user_id, video_id
    valid: pd.DataFrame  # user_id, video_id
    block_users: np.ndarray  # int64 user ids of the block
    block_items: np.ndarray  # int64 video ids of the block
    block_relevant: np.ndarray  # bool (block users, block items)
    videos: pd.DataFrame  # one row per video id 0..n_items-1: text, topic, group, categories
    user_x: np.ndarray  # (n_users, user_dim) float32, compressed profile features
    n_users: int
    n_items: int

    def pairs(self, splits: Sequence[str] = ("train",)) -> pd.DataFrame:
        """Positive pairs of the given splits of the big log."""
        parts = {"train": self.train, "valid": self.valid}
        return pd.concat([parts[s] for s in splits], ignore_index=True)


def _text(row: pd.Series) -> str:
    """What the caption encoder reads: cover text, caption and topic tags, where present."""
    parts = []
    for col in ("manual_cover_text", "caption"):
        v = row[col]
        if isinstance(v, str) and v.strip() and v != "UNKNOWN":
            parts.append(v.strip())
    tags = row["topic_tag"]  # "[tag1,tag2]", the tags unquoted
    if isinstance(tags, str):
        parts.extend(t.strip() for t in tags.strip("[]").split(",") if t.strip())
    return " ".join(parts)


def _user_features(users: pd.DataFrame, n_users: int) -> np.ndarray:
    """Activity level, counts and flags (log-compressed) plus indicators of the anonymised
    low-cardinality one-hot columns; users without a row get zeros."""
    cols: list[np.ndarray] = [users["user_active_degree"].map(ACTIVITY).fillna(-1.0).to_numpy()]
    cols += [users[c].fillna(0).to_numpy(np.float64) for c in NUMERIC_USER]
    for c in sorted(c for c in users.columns if c.startswith("onehot_feat")):
        values = np.sort(users[c].dropna().unique())
        if len(values) <= MAX_ONEHOT_VALUES:
            cols += [(users[c] == v).to_numpy(np.float64) for v in values]
    x = np.zeros((n_users, len(cols)), np.float32)
    x[users["user_id"].to_numpy()] = np.stack(cols, axis=1)
    return compress_user_features(x)


def read_captions(path: Path) -> pd.DataFrame:
    """The caption and category file. A few captions hold a bare carriage return, unquoted,
    which CSV readers take for the end of a row; inside a caption it is only a line break,
    so it becomes a space before parsing."""
    text = path.read_bytes().decode("utf-8").replace("\r\n", "\n").replace("\r", " ")
    return pd.read_csv(io.StringIO(text))


def load_kuairec(root: Path) -> KuaiRecData:
    """Read and check the KuaiRec folder (see its README for what each file holds)."""
    missing = [f for f in FILES if not (root / f).exists()]
    if missing:
        raise MissingDataError(f"KuaiRec files missing under {root}: {', '.join(missing)}")
    big = pd.read_csv(root / "big_positives_train_valid.csv")
    users = pd.read_csv(root / "user_features.csv")
    meta = read_captions(root / "kuairec_caption_category.csv")
    cats = pd.read_csv(root / "item_categories.csv")
    block_users = pd.read_csv(root / "small_users.csv")["user_id"].to_numpy(np.int64)
    block_items = pd.read_csv(root / "small_items.csv")["video_id"].to_numpy(np.int64)
    block_pos = pd.read_csv(root / "small_positives_wr_ge2.csv")

    n_users = int(max(users["user_id"].max(), big["user_id"].max(), block_users.max())) + 1
    n_items = int(max(meta["video_id"].max(), big["video_id"].max(), block_items.max())) + 1
    u_row = pd.Series(np.arange(len(block_users)), index=block_users)
    i_row = pd.Series(np.arange(len(block_items)), index=block_items)
    if not (block_pos["user_id"].isin(u_row.index) & block_pos["video_id"].isin(i_row.index)).all():
        raise InvalidDataError("a block positive lies outside the block's users x videos")
    relevant = np.zeros((len(block_users), len(block_items)), dtype=bool)
    relevant[u_row[block_pos["user_id"]].to_numpy(), i_row[block_pos["video_id"]].to_numpy()] = True
    in_block = big["user_id"].isin(u_row.index) & big["video_id"].isin(i_row.index)
    if in_block.any():
        raise InvalidDataError(f"{int(in_block.sum())} training pairs fall inside the block")

    videos = pd.DataFrame({"video_id": np.arange(n_items)})
    meta = meta.assign(
        text=meta.apply(_text, axis=1),
        topic=meta["first_level_category_id"].astype(str),
        group=meta["second_level_category_id"].astype(str),
    )
    cats = cats.assign(categories=cats["feat"].map(lambda s: [int(c) for c in ast.literal_eval(s)]))
    videos = videos.merge(meta[["video_id", "text", "topic", "group"]], on="video_id", how="left")
    videos = videos.merge(cats[["video_id", "categories"]], on="video_id", how="left")
    videos["text"] = videos["text"].fillna("")
    videos["categories"] = videos["categories"].map(lambda c: c if isinstance(c, list) else [])
    pairs = big[["user_id", "video_id"]].astype(np.int64)
    return KuaiRecData(
        train=pairs[big["split"] == "train"].drop_duplicates().reset_index(drop=True),
        valid=pairs[big["split"] == "valid"].drop_duplicates().reset_index(drop=True),
        block_users=block_users,
        block_items=block_items,
        block_relevant=relevant,
        videos=videos,
        user_x=_user_features(users, n_users),
        n_users=n_users,
        n_items=n_items,
    )


def interactions(pairs: pd.DataFrame, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary users x videos matrix of positive pairs (duplicates count once)."""
    m = sp.csr_matrix(
        (np.ones(len(pairs), np.float32), (pairs["user_id"], pairs["video_id"])),
        shape=(n_users, n_items),
    )
    m.data[:] = 1.0
    return m


# -- models ---------------------------------------------------------------------------------
class Scorer(Protocol):
    """A fitted model: a score for every (user, video) asked about, higher ranks first."""

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray: ...


class Popularity:
    """Positives per video in the training pairs: the same list for everyone."""

    def __init__(self, matrix: sp.csr_matrix) -> None:
        self.counts = np.asarray(matrix.sum(axis=0)).ravel().astype(np.float64)

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.counts[items], (len(users), len(items))).copy()


class ItemKNN:
    """Item-based kNN: a video scores its summed similarity to the user's positives.

    Similarity is the (asymmetric) cosine between videos' user sets in the training matrix,
    kept to each video's ``neighbours`` most similar videos (a sparse, denoised
    neighbourhood), with ``shrink`` added to the denominator so that pairs seen by one or two
    users count less.
    """

    def __init__(
        self,
        matrix: sp.csr_matrix,
        neighbours: int = 100,
        shrink: float = 0.0,
        alpha: float = 0.5,
    ) -> None:
        self.matrix = matrix.tocsr()
        x = self.matrix.tocsc()
        co = (x.T @ x).tocoo()
        count = np.maximum(np.asarray(x.sum(axis=0)).ravel().astype(np.float64), 1.0)
        off = co.row != co.col
        rows, cols = co.row[off], co.col[off]
        # asymmetric cosine: alpha 0.5 is plain cosine; alpha 1 is P(candidate | history
        # video), which keeps the candidate's popularity in the score
        denom = count[rows] ** alpha * count[cols] ** (1.0 - alpha) + shrink
        vals = co.data[off].astype(np.float64) / denom
        sim = sp.csc_matrix((vals, (rows, cols)), shape=co.shape)
        self.sim = _keep_top_per_column(sim, neighbours)

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.asarray((self.matrix[users] @ self.sim[:, items]).toarray(), np.float64)


def _keep_top_per_column(m: sp.csc_matrix, k: int) -> sp.csc_matrix:
    """Zero all but each column's ``k`` largest entries."""
    m = m.tocsc()
    m.sort_indices()
    keep = np.zeros(m.nnz, dtype=bool)
    for j in range(m.shape[1]):
        lo, hi = m.indptr[j], m.indptr[j + 1]
        if hi - lo <= k:
            keep[lo:hi] = True
        else:
            keep[lo + np.argpartition(-m.data[lo:hi], k - 1)[:k]] = True
    out = m.copy()
    out.data = np.where(keep, out.data, 0.0)
    out.eliminate_zeros()
    return out


class ALS:
    """Implicit-feedback matrix factorisation (Hu, Koren & Volinsky), ``implicit``'s CPU ALS."""

    def __init__(
        self,
        matrix: sp.csr_matrix,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 10.0,
        iterations: int = 15,
        seed: int = 17,
        threads: int = 2,
    ) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=iterations,
            random_state=seed,
            num_threads=threads,
        )
        # implicit runs its own threads; a second BLAS thread pool under them only thrashes
        with threadpool_limits(1, "blas"):
            model.fit(matrix.tocsr().astype(np.float32), show_progress=False)
        self.users = np.asarray(model.user_factors, np.float64)
        self.items = np.asarray(model.item_factors, np.float64)

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.users[users] @ self.items[items].T


# -- the project's two-tower ----------------------------------------------------------------
def tower_catalog(data: KuaiRecData, captions: np.ndarray, cfg: TowerConfig) -> Catalog:
    """Every KuaiRec video as a two-tower catalog row (row = video id).

    KuaiRec has no visual embedding, creator id, duration or upload time. The tower's dense
    side vector (its ``visual`` slot) carries the multi-hot of the video's category ids
    instead, its topic is the first-level category, and its creator embedding is given the
    second-level category, the finer grouping the data does have; duration and upload time
    are constant.
    """
    n = data.n_items
    ids = data.videos["video_id"].astype(str).to_numpy()
    side = np.zeros((n, cfg.visual_dim + 1), np.float32)
    for row, categories in enumerate(data.videos["categories"]):
        side[row, [c for c in categories if c < cfg.visual_dim]] = 1.0
    side[:, -1] = 1.0
    topic_of = {t: i + 1 for i, t in enumerate(cfg.topics)}
    return Catalog(
        video_ids=ids,
        id_bucket=stable_bucket(list(ids), cfg.id_buckets),
        id_known=np.zeros(n, np.float32),
        caption=captions.astype(np.float32),
        visual=side,
        topic=np.array([topic_of.get(t, 0) for t in data.videos["topic"]], np.int64),
        creator_bucket=stable_bucket(list(data.videos["group"].astype(str)), cfg.creator_buckets),
        log_duration=np.zeros(n, np.float32),
        upload_ts=np.zeros(n, "datetime64[ns]"),
    )


def user_histories(
    pairs: pd.DataFrame, n_users: int, length: int, rng: np.random.Generator
) -> np.ndarray:
    """(n_users, length) of each user's positives (a random ``length`` of them), -1 padded.

    The log has no timestamps, so "recent" positives are a random sample of the user's set.
    """
    out = np.full((n_users, length), -1, np.int64)
    for user, items in pairs.groupby("user_id")["video_id"]:
        v = items.to_numpy()
        pick = v if len(v) <= length else rng.choice(v, length, replace=False)
        out[int(user), : len(pick)] = pick
    return out


def tower_examples(
    pairs: pd.DataFrame, user_x: np.ndarray, length: int, rng: np.random.Generator
) -> TrainData:
    """One example per positive pair; its history is the user's *other* positives, so the
    user tower never sees the video it is asked to predict."""
    users, items, hists = [], [], []
    for user, group in pairs.groupby("user_id")["video_id"]:
        videos = group.to_numpy()
        for i, target in enumerate(videos):
            others = np.delete(videos, i)
            if len(others) > length:
                others = rng.choice(others, length, replace=False)
            row = np.full(length, -1, np.int64)
            row[: len(others)] = others
            users.append(int(user))
            items.append(int(target))
            hists.append(row)
    u = np.asarray(users, np.int64)
    return TrainData(
        user_x=user_x[u],
        history=np.stack(hists) if hists else np.zeros((0, length), np.int64),
        item_rows=np.asarray(items, np.int64),
    )


@dataclass
class TwoTowerParams:
    """What the valid split tunes: the softmax temperature and the id dropout."""

    temperature: float = 0.07
    id_dropout: float = 0.25
    max_epochs: int = 5
    history_len: int = 20
    dim: int = 64
    batch_size: int = 1024
    learning_rate: float = 2e-3
    # caption embeddings are projected onto their top principal components: the user tower
    # pools 20 of them per example, and 512 dimensions of it made training memory-bound
    caption_components: int = 64


def project_captions(captions: np.ndarray, components: int) -> np.ndarray:
    """Rows projected onto the top ``components`` principal axes of all captions, then
    L2-normalised (the towers expect unit-length caption vectors)."""
    if captions.shape[1] <= components:
        return captions.astype(np.float32)
    centred = captions - captions.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    out = centred @ vt[:components].T
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.where(norms > 0, norms, 1.0)).astype(np.float32)


class TwoTowerScorer:
    """The pooled two-tower of :mod:`models.two_tower`, trained by its own ``fit``."""

    def __init__(self, model: TwoTower, catalog: Catalog, user_x: np.ndarray, hist: np.ndarray):
        self.user_vecs = user_vectors(model, catalog, user_x, hist).astype(np.float64)
        self.item_vecs = all_item_vectors(model, catalog).astype(np.float64)

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.user_vecs[users] @ self.item_vecs[items].T


def fit_two_tower(
    data: KuaiRecData,
    captions: np.ndarray,
    pairs: pd.DataFrame,
    params: TwoTowerParams,
    *,
    validate: Callable[[Scorer], float] | None = None,
    epochs: int | None = None,
    history_pairs: pd.DataFrame | None = None,
    seed: int = 17,
    threads: int = 2,
) -> tuple[TwoTowerScorer, int, list[float]]:
    """Train on ``pairs``: early stopping on ``validate`` (higher is better) when given, else
    exactly ``epochs`` epochs. The returned scorer describes users by ``history_pairs``
    (default ``pairs``): positives it may read but was not trained on, such as the valid
    split once tuning is over. Returns the scorer, the epoch kept and the validation curve."""
    n_cats = max((max(c) for c in data.videos["categories"] if c), default=-1) + 1
    captions = project_captions(captions, params.caption_components)
    cfg = TowerConfig(
        caption_dim=captions.shape[1],
        visual_dim=n_cats,
        topics=sorted(data.videos["topic"].dropna().unique().tolist()),
        dim=params.dim,
        id_buckets=1 << 15,
        creator_buckets=1024,
        history_len=params.history_len,
        temperature=params.temperature,
        user_dim=data.user_x.shape[1],
    )
    catalog = tower_catalog(data, captions, cfg)
    rng = np.random.default_rng(seed)
    examples = tower_examples(pairs, data.user_x, params.history_len, rng)
    hist = user_histories(pairs, data.n_users, params.history_len, rng)
    if validate is None:
        counter = itertools.count()

        def check(model: TwoTower) -> float:  # a rising score keeps the last epoch
            return float(next(counter))

        max_epochs, patience = epochs or params.max_epochs, 10**6
    else:
        guard = validate

        def check(model: TwoTower) -> float:
            return guard(TwoTowerScorer(model, catalog, data.user_x, hist))

        max_epochs, patience = params.max_epochs, 2
    result = fit(
        catalog,
        examples,
        cfg,
        validate=check,
        batch_size=params.batch_size,
        learning_rate=params.learning_rate,
        max_epochs=max_epochs,
        patience=patience,
        id_dropout=params.id_dropout,
        seed=seed,
        threads=threads,
    )
    if history_pairs is not None:
        hist = user_histories(history_pairs, data.n_users, params.history_len, rng)
    scorer = TwoTowerScorer(result.model, catalog, data.user_x, hist)
    return scorer, result.best_epoch, result.curves["retrieval_valid_recall"]


# -- evaluation -----------------------------------------------------------------------------
def evaluate_block(scorer: Scorer, data: KuaiRecData, seed: int = 0) -> dict[str, float]:
    """P@10, R@50, NDCG@10 per block user over all block videos, averaged (random ties)."""
    scores = scorer.score(data.block_users, data.block_items)
    return full_catalog_topk(
        scores,
        data.block_relevant,
        precision_k=PRECISION_K,
        recall_k=RECALL_K,
        ndcg_k=NDCG_K,
        seed=seed,
    ).means()


@dataclass
class ValidSet:
    """A sample of the valid split's users; their training positives are masked out."""

    users: np.ndarray
    relevant: np.ndarray  # bool (users, n_items)
    seen: sp.csr_matrix  # their training positives

    def ndcg(self, scorer: Scorer) -> float:
        scores = scorer.score(self.users, np.arange(self.relevant.shape[1]))
        scores = np.where(self.seen.toarray() > 0, -np.inf, scores)
        return full_catalog_topk(scores, self.relevant, ndcg_k=NDCG_K, seed=0).means()[
            f"ndcg_at_{NDCG_K}"
        ]


def valid_set(data: KuaiRecData, max_users: int = 1500, seed: int = 0) -> ValidSet:
    users = np.sort(data.valid["user_id"].unique())
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    rel = interactions(data.valid, data.n_users, data.n_items)[users].toarray() > 0
    seen = interactions(data.train, data.n_users, data.n_items)[users]
    return ValidSet(users=users, relevant=rel, seen=seen)


# -- tuning ---------------------------------------------------------------------------------
KNN_GRID: tuple[dict[str, Any], ...] = tuple(
    {"neighbours": k, "alpha": a} for k in (100, 1000) for a in (0.5, 0.75, 1.0)
)
ALS_GRID: tuple[dict[str, Any], ...] = tuple(
    {"factors": f, "regularization": r, "alpha": a}
    for f in (32, 128)
    for r in (0.05, 1.0)
    for a in (1.0, 10.0)
)


@dataclass
class Tuned:
    """The chosen parameters of one model and the valid NDCG@10 of every grid point."""

    params: dict[str, Any]
    valid_ndcg: float
    grid: list[tuple[dict[str, Any], float]] = field(default_factory=list)


def tune(build: Callable[..., Scorer], grid: Sequence[dict[str, Any]], vs: ValidSet) -> Tuned:
    """Fit ``build(**params)`` for every grid point and keep the best valid NDCG@10."""
    tried = [(p, vs.ndcg(build(**p))) for p in grid]
    best = max(tried, key=lambda t: t[1])
    return Tuned(params=best[0], valid_ndcg=best[1], grid=tried)


# -- the whole study ------------------------------------------------------------------------
def embed_captions(data: KuaiRecData, encoder: str, cache_dir: Path | None = None) -> np.ndarray:
    """Caption embeddings of every video with a project encoder ("multilingual", ...).

    Encoding 10,728 captions takes minutes on two cores, so with ``cache_dir`` they are kept
    there, keyed by the encoder and a digest of the texts (changed captions re-encode).
    ``"none"`` gives one zero column: a tower that sees categories but no caption.
    """
    if encoder == "none":
        return np.zeros((data.n_items, 1), np.float32)
    texts = data.videos["text"].tolist()
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = None if cache_dir is None else cache_dir / f"kuairec-{encoder}-{digest}.npy"
    if path is not None and path.exists():
        return np.load(path)
    emb = text_encoder(encoder).encode(texts)
    if emb.shape[1] != encoder_dim(encoder):
        raise InvalidDataError(f"encoder {encoder} gave {emb.shape[1]} dims")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, emb)
    return emb


def cold_items(data: KuaiRecData, share: float = 0.2, seed: int = 17) -> np.ndarray:
    """A seeded ``share`` of the block's videos, to be withheld from training entirely."""
    rng = np.random.default_rng(seed)
    n = round(share * len(data.block_items))
    return np.sort(rng.choice(data.block_items, n, replace=False))


@dataclass
class ColdStart:
    """Content-only Recall@50 on held-out videos ranked among themselves, vs random."""

    encoder: str
    recall: float
    random_recall: float
    n_items: int
    n_users: int

    @property
    def lift(self) -> float:
        return self.recall / self.random_recall


def cold_start(
    data: KuaiRecData,
    captions: np.ndarray,
    encoder: str,
    params: TwoTowerParams,
    epochs: int,
    seed: int = 17,
    max_pairs: int | None = None,
) -> ColdStart:
    """Withhold 20% of the block videos from training (every train and valid positive of
    them is dropped), train the two-tower as the main one (train split, ``epochs``), and
    rank the held-out videos for each block user by content alone: their ids were never
    trained, so the id part is off. ``max_pairs`` subsamples training (bounded tests)."""
    held = cold_items(data, seed=seed)
    train = data.train[~data.train["video_id"].isin(held)]
    if max_pairs is not None and len(train) > max_pairs:
        train = train.sample(max_pairs, random_state=seed)
    seen = data.pairs(("train", "valid"))
    seen = seen[~seen["video_id"].isin(held)]
    scorer, _, _ = fit_two_tower(
        data, captions, train, params, epochs=epochs, history_pairs=seen, seed=seed
    )
    cols = np.searchsorted(data.block_items, held)
    relevant = data.block_relevant[:, cols]
    has = relevant.any(axis=1)
    scores = scorer.score(data.block_users[has], held)
    got = full_catalog_topk(scores, relevant[has], recall_k=RECALL_K, seed=seed).means()
    return ColdStart(
        encoder=encoder,
        recall=got[f"recall_at_{RECALL_K}"],
        # a random order puts each relevant video in the top K with probability K / N
        random_recall=min(RECALL_K, len(held)) / len(held),
        n_items=len(held),
        n_users=int(has.sum()),
    )


@dataclass
class KuaiRecReport:
    """Everything the quality table and MLflow need about one run of the study."""

    metrics: dict[str, dict[str, float]]  # model -> P@10 / R@50 / NDCG@10 on the block
    tuned: dict[str, Tuned]
    cold: list[ColdStart]
    encoder: str
    seconds: dict[str, float]


def run_study(
    root: Path,
    encoder: str = "multilingual",
    cold_encoders: Sequence[str] = ("multilingual",),
    seed: int = 17,
    progress: Callable[[str], None] | None = None,
    cache_dir: Path | None = None,
) -> KuaiRecReport:
    """Tune every model on the valid split, refit on train + valid, score on the block."""

    def say(msg: str) -> None:
        log.info(msg)
        if progress is not None:
            progress(msg)

    torch.set_num_threads(2)
    data = load_kuairec(root)
    vs = valid_set(data, seed=seed)
    train = interactions(data.train, data.n_users, data.n_items)
    full_pairs = data.pairs(("train", "valid"))
    full = interactions(full_pairs, data.n_users, data.n_items)
    metrics: dict[str, dict[str, float]] = {}
    tuned: dict[str, Tuned] = {}
    seconds: dict[str, float] = {}

    def timed(name: str, step: Callable[[], None]) -> None:
        t0 = time.perf_counter()
        step()
        seconds[name] = time.perf_counter() - t0
        say(f"{name}: {metrics.get(name, {})} ({seconds[name]:.0f} s)")

    def random_step() -> None:
        metrics["random"] = evaluate_block(Popularity(full * 0.0), data, seed)

    def popularity_step() -> None:
        tuned["popularity"] = Tuned(params={}, valid_ndcg=vs.ndcg(Popularity(train)))
        metrics["popularity"] = evaluate_block(Popularity(full), data, seed)

    def knn_step() -> None:
        tuned["item_knn"] = tune(lambda **p: ItemKNN(train, **p), KNN_GRID, vs)
        metrics["item_knn"] = evaluate_block(ItemKNN(full, **tuned["item_knn"].params), data, seed)

    def als_step() -> None:
        tuned["mf_als"] = tune(lambda **p: ALS(train, seed=seed, **p), ALS_GRID, vs)
        best = ALS(full, seed=seed, **tuned["mf_als"].params)
        metrics["mf_als"] = evaluate_block(best, data, seed)

    captions: dict[str, np.ndarray] = {}
    tower: dict[str, Any] = {}

    def tower_step() -> None:
        # Training is the slow part on two cores, so the grid is the number of epochs (early
        # stopping on the valid split) and the tuned model is not refitted: it is trained on
        # the train split only, and reads each user's train + valid positives when scoring.
        captions[encoder] = embed_captions(data, encoder, cache_dir)
        params = TwoTowerParams()
        scorer, epoch, curve = fit_two_tower(
            data, captions[encoder], data.train, params, validate=vs.ndcg,
            history_pairs=full_pairs, seed=seed,
        )  # fmt: skip
        tuned["two_tower"] = Tuned(
            params={"epochs": epoch, "caption_encoder": encoder},
            valid_ndcg=max(curve),
            grid=[({"epochs": i + 1}, v) for i, v in enumerate(curve)],
        )
        tower["params"], tower["epochs"] = params, epoch
        metrics["two_tower"] = evaluate_block(scorer, data, seed)

    timed("random", random_step)
    timed("popularity", popularity_step)
    timed("item_knn", knn_step)
    timed("mf_als", als_step)
    timed("two_tower", tower_step)
    cold: list[ColdStart] = []
    for enc in cold_encoders:
        t0 = time.perf_counter()
        if enc not in captions:
            captions[enc] = embed_captions(data, enc, cache_dir)
        cs = cold_start(data, captions[enc], enc, tower["params"], tower["epochs"], seed)
        cold.append(cs)
        seconds[f"cold_start_{enc}"] = time.perf_counter() - t0
        say(f"cold start ({enc}): R@50 {cs.recall:.3f} vs random {cs.random_recall:.3f}")
    return KuaiRecReport(metrics=metrics, tuned=tuned, cold=cold, encoder=encoder, seconds=seconds)
