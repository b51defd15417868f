"""The two-tower retrieval model: a user tower and an item tower meeting in one vector space.

Item tower: hashed video-id embedding + caption embedding (MiniLM) + visual embedding + topic
+ hashed creator + log duration. A video the model never saw in training has no trained id
embedding, so its id part is switched off ("unknown") and the tower answers from content
alone; training switches ids off at random (``id_dropout``) so that this path is learned.
That is what makes a video retrievable the minute it is uploaded.

User tower: the user's engagement rates + the pooled item-side inputs (id, topic, caption) of
their recent positive videos.

Training: in-batch sampled softmax over positive engagements. In-batch negatives are drawn in
proportion to item frequency, which would push popular items down; the log-Q correction
subtracts log(sampling probability) from each logit to undo that (Yi et al., RecSys'19).
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from feature_repo.columns import USER_COLUMNS

log = logging.getLogger(__name__)
ID_DIM, TOPIC_DIM, CREATOR_DIM, HIDDEN = 32, 16, 16, 256


def stable_bucket(ids: Sequence[str], buckets: int, salt: str = "") -> np.ndarray:
    """A hash of each id that is the same in every process (Python's hash() is not)."""
    return np.fromiter(
        (zlib.crc32(f"{salt}{x}".encode()) % buckets for x in ids), dtype=np.int64, count=len(ids)
    )


@dataclass
class TowerConfig:
    """Everything needed to rebuild the towers; stored with the model."""

    caption_dim: int
    visual_dim: int
    topics: list[str]
    dim: int = 64
    id_buckets: int = 1 << 15
    creator_buckets: int = 4096
    history_len: int = 20
    temperature: float = 0.07
    user_mean: list[float] = field(default_factory=list)
    user_std: list[float] = field(default_factory=list)
    # which user side: "pooled" (this module) or "sequence" (models.sequence); the item
    # tower is the same for both
    kind: str = "pooled"
    seq_len: int = 50
    seq_dim: int = 64
    seq_layers: int = 2
    seq_heads: int = 2
    # width of the user tower's dense features: ``USER_COLUMNS`` in the loop; a dataset that
    # describes its users otherwise (KuaiRec's profile columns) sets its own
    user_dim: int = len(USER_COLUMNS)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


CATALOG_ARRAYS = (
    "video_ids",
    "id_bucket",
    "id_known",
    "caption",
    "visual",
    "topic",
    "creator_bucket",
    "log_duration",
    "upload_ts",
)


@dataclass
class Catalog:
    """Item-side inputs of every known video, one array each, row-aligned."""

    video_ids: np.ndarray
    id_bucket: np.ndarray  # int64
    id_known: np.ndarray  # float32: 1 if the id embedding was trained
    caption: np.ndarray  # (n, caption_dim) float32
    visual: np.ndarray  # (n, visual_dim + 1) float32, last column = has_visual
    topic: np.ndarray  # int64, 0 = unknown topic
    creator_bucket: np.ndarray  # int64
    log_duration: np.ndarray  # float32
    upload_ts: np.ndarray  # datetime64[ns], UTC-naive
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {v: i for i, v in enumerate(self.video_ids)}

    def __len__(self) -> int:
        return len(self.video_ids)

    @classmethod
    def from_frames(cls, videos: pd.DataFrame, content: pd.DataFrame, cfg: TowerConfig) -> Catalog:
        """Videos (lake contract) joined with their ``video_content`` rows; videos without
        an embedding yet get zeros (counted by the caller)."""
        meta = ["video_id", "creator_id", "topic", "duration_s", "upload_ts"]
        body = ["video_id", "caption_embedding", "visual_embedding", "has_visual"]
        df = (
            videos[meta]
            .drop_duplicates("video_id", keep="last")
            .merge(content[body], on="video_id", how="left", validate="one_to_one")
        )
        n = len(df)
        caption = np.zeros((n, cfg.caption_dim), np.float32)
        visual = np.zeros((n, cfg.visual_dim + 1), np.float32)
        for i, (c, v, h) in enumerate(
            zip(df["caption_embedding"], df["visual_embedding"], df["has_visual"], strict=True)
        ):
            if isinstance(c, np.ndarray | list) and len(c) == cfg.caption_dim:
                caption[i] = c
            if h == 1.0 and isinstance(v, np.ndarray | list) and len(v) == cfg.visual_dim:
                visual[i, :-1] = v
                visual[i, -1] = 1.0
        topic_of = {t: i + 1 for i, t in enumerate(cfg.topics)}
        ids = df["video_id"].astype(str).to_numpy()
        upload = pd.to_datetime(df["upload_ts"], utc=True).dt.tz_localize(None).to_numpy()
        return cls(
            video_ids=ids,
            id_bucket=stable_bucket(ids, cfg.id_buckets),
            id_known=np.zeros(n, np.float32),
            caption=caption,
            visual=visual,
            topic=np.array([topic_of.get(t, 0) for t in df["topic"]], dtype=np.int64),
            creator_bucket=stable_bucket(df["creator_id"].astype(str), cfg.creator_buckets, "c:"),
            log_duration=np.log1p(df["duration_s"].to_numpy(np.float32)) / 5.0,
            upload_ts=upload,
        )

    def rows(self, video_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Catalog rows of ids; -1 where unknown."""
        return np.fromiter((self.index.get(v, -1) for v in video_ids), np.int64, len(video_ids))

    def extend(self, other: Catalog) -> np.ndarray:
        """Append the rows of ``other`` whose ids are new; return their new row numbers."""
        new = np.array([v not in self.index for v in other.video_ids], dtype=bool)
        start = len(self)
        for name in CATALOG_ARRAYS:
            setattr(self, name, np.concatenate([getattr(self, name), getattr(other, name)[new]]))
        for i, v in enumerate(self.video_ids[start:], start):
            self.index[v] = i
        return np.arange(start, len(self))

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "id_bucket": torch.from_numpy(self.id_bucket),
            "id_known": torch.from_numpy(self.id_known),
            "caption": torch.from_numpy(self.caption),
            "visual": torch.from_numpy(self.visual),
            "topic": torch.from_numpy(self.topic),
            "creator_bucket": torch.from_numpy(self.creator_bucket),
            "log_duration": torch.from_numpy(self.log_duration),
        }


def history_rows(catalog: Catalog, histories: Sequence[Sequence[str] | None], length: int):
    """(n, length) catalog rows of each user's recent positives, -1 padded."""
    out = np.full((len(histories), length), -1, dtype=np.int64)
    for i, h in enumerate(histories):
        if h is None or len(h) == 0:
            continue
        rows = catalog.rows(list(h)[:length])
        rows = rows[rows >= 0]
        out[i, : len(rows)] = rows
    return out


def compress_user_features(x: np.ndarray) -> np.ndarray:
    """Log-compress raw ``USER_COLUMNS`` values (counts are heavy tailed); the tower then
    standardises them with statistics from training. Plain numpy: serving calls it per
    request."""
    x = np.asarray(x, dtype=np.float32)
    return np.sign(x) * np.log1p(np.abs(x))


def user_matrix(frame: pd.DataFrame) -> np.ndarray:
    """User engagement features of a frame in ``USER_COLUMNS`` order, compressed."""
    return compress_user_features(frame[list(USER_COLUMNS)].to_numpy(np.float32))


def _mlp(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
        nn.Linear(HIDDEN, n_out),
    )  # fmt: skip


class TwoTower(nn.Module):
    def __init__(self, cfg: TowerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.id_emb = nn.Embedding(cfg.id_buckets, ID_DIM)
        self.topic_emb = nn.Embedding(len(cfg.topics) + 1, TOPIC_DIM)
        self.creator_emb = nn.Embedding(cfg.creator_buckets, CREATOR_DIM)
        nn.init.normal_(self.id_emb.weight, std=0.05)
        item_in = ID_DIM + cfg.caption_dim + cfg.visual_dim + 1 + TOPIC_DIM + CREATOR_DIM + 1
        user_in = cfg.user_dim + ID_DIM + TOPIC_DIM + cfg.caption_dim + 1
        self.item_mlp = _mlp(item_in, cfg.dim)
        self.user_mlp = _mlp(user_in, cfg.dim)
        n_user = cfg.user_dim
        mean = torch.tensor(cfg.user_mean or [0.0] * n_user, dtype=torch.float32)
        std = torch.tensor(cfg.user_std or [1.0] * n_user, dtype=torch.float32)
        self.user_mean: torch.Tensor
        self.user_std: torch.Tensor
        self.register_buffer("user_mean", mean)
        self.register_buffer("user_std", std)

    def _id_part(self, items: dict[str, torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        known = items["id_known"][rows].unsqueeze(-1)
        return self.id_emb(items["id_bucket"][rows]) * known

    def item_vectors(
        self, items: dict[str, torch.Tensor], rows: torch.Tensor, id_dropout: float = 0.0
    ) -> torch.Tensor:
        id_part = self._id_part(items, rows)
        if id_dropout > 0:
            keep = (torch.rand(len(rows), 1, device=rows.device) >= id_dropout).float()
            id_part = id_part * keep
        x = torch.cat(
            [
                id_part,
                items["caption"][rows],
                items["visual"][rows],
                self.topic_emb(items["topic"][rows]),
                self.creator_emb(items["creator_bucket"][rows]),
                items["log_duration"][rows].unsqueeze(-1),
            ],
            dim=-1,
        )
        return nn.functional.normalize(self.item_mlp(x), dim=-1)

    def user_vectors(
        self, items: dict[str, torch.Tensor], user_x: torch.Tensor, history: torch.Tensor
    ) -> torch.Tensor:
        mask = (history >= 0).float().unsqueeze(-1)  # (B, L, 1)
        rows = history.clamp(min=0)
        count = mask.sum(dim=1).clamp(min=1.0)

        def pool(t: torch.Tensor) -> torch.Tensor:
            return (t * mask).sum(dim=1) / count

        x = torch.cat(
            [
                ((user_x - self.user_mean) / self.user_std).clamp(-5.0, 5.0),
                pool(self._id_part(items, rows)),
                pool(self.topic_emb(items["topic"][rows])),
                pool(items["caption"][rows]),
                (mask.sum(dim=1) > 0).float(),
            ],
            dim=-1,
        )
        return nn.functional.normalize(self.user_mlp(x), dim=-1)


def sampled_softmax_loss(
    user: torch.Tensor,
    item: torch.Tensor,
    item_rows: torch.Tensor,
    log_q: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """In-batch softmax with log-Q correction.

    Row i's positive is item i; the other items of the batch are its negatives. ``log_q``
    is the log sampling probability of each batch item; subtracting it removes the
    popularity bias of in-batch negatives. Duplicates of a row's own positive elsewhere in
    the batch are masked, so a popular item is never its own negative.
    """
    logits = user @ item.T / temperature - log_q.unsqueeze(0)
    same = item_rows.unsqueeze(0) == item_rows.unsqueeze(1)
    eye = torch.eye(len(item_rows), dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(same & ~eye, float("-inf"))
    target = torch.arange(len(item_rows), device=logits.device)
    return nn.functional.cross_entropy(logits, target)


@dataclass
class TrainData:
    """Positive (user, item) pairs with the user's inputs as of the event's day."""

    user_x: np.ndarray  # (n, cfg.user_dim) float32
    history: np.ndarray  # (n, history_len) int64 catalog rows
    item_rows: np.ndarray  # (n,) int64 catalog rows


@dataclass
class FitResult:
    model: TwoTower
    epochs: int
    best_epoch: int
    curves: dict[str, list[float]]
    examples_per_s: float


def fit(
    catalog: Catalog,
    train: TrainData,
    cfg: TowerConfig,
    *,
    validate: Callable[[TwoTower], float],
    batch_size: int = 1024,
    learning_rate: float = 2e-3,
    max_epochs: int = 12,
    patience: int = 2,
    id_dropout: float = 0.25,
    seed: int = 17,
    threads: int = 2,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> FitResult:
    """Train with early stopping on ``validate`` (higher is better); keep the best epoch."""
    import time

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    counts = np.bincount(train.item_rows, minlength=len(catalog)).astype(np.float64)
    catalog.id_known[:] = (counts > 0).astype(np.float32)
    log_q_all = torch.from_numpy(
        np.log(np.maximum(counts, 1.0) / max(counts.sum(), 1.0)).astype(np.float32)
    )
    ux = user_matrix_stats(train.user_x, cfg)
    model = TwoTower(cfg)
    items = catalog.tensors()
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    hist, rows = torch.from_numpy(train.history), torch.from_numpy(train.item_rows)
    user_x = torch.from_numpy(ux)
    curves: dict[str, list[float]] = {"retrieval_train_loss": [], "retrieval_valid_recall": []}
    best, best_epoch, best_state, seen, started = -math.inf, 0, None, 0, time.perf_counter()
    n = len(rows)
    for epoch in range(1, max_epochs + 1):
        model.train()
        order = torch.from_numpy(rng.permutation(n))
        total = 0.0
        for start in range(0, n, batch_size):
            b = order[start : start + batch_size]
            if len(b) < 2:
                continue
            u = model.user_vectors(items, user_x[b], hist[b])
            v = model.item_vectors(items, rows[b], id_dropout=id_dropout)
            loss = sampled_softmax_loss(u, v, rows[b], log_q_all[rows[b]], cfg.temperature)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
            seen += len(b)
        model.eval()
        with torch.no_grad():
            score = float(validate(model))
        curves["retrieval_train_loss"].append(total / max(n, 1))
        curves["retrieval_valid_recall"].append(score)
        log.info("two-tower epoch %d: loss %.4f, valid recall %.4f", epoch, total / n, score)
        if on_epoch is not None:
            on_epoch(epoch, total / max(n, 1), score)
        if score > best:
            best, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    rate = seen / max(time.perf_counter() - started, 1e-9)
    return FitResult(model, epoch, best_epoch, curves, rate)


def user_matrix_stats(user_x: np.ndarray, cfg: TowerConfig) -> np.ndarray:
    """Record the training mean/std of the user features in the config (for serving)."""
    cfg.user_mean = user_x.mean(axis=0).astype(float).tolist()
    # a floor on the spread: a feature constant in training must not explode at serving
    cfg.user_std = np.maximum(user_x.std(axis=0), 0.1).astype(float).tolist()
    return user_x


@torch.no_grad()
def all_item_vectors(model: TwoTower, catalog: Catalog, chunk: int = 8192) -> np.ndarray:
    items = catalog.tensors()
    out = [
        model.item_vectors(items, torch.arange(s, min(s + chunk, len(catalog))))
        for s in range(0, len(catalog), chunk)
    ]
    if not out:
        return np.zeros((0, model.cfg.dim), np.float32)
    return torch.cat(out).numpy().astype(np.float32)


@torch.no_grad()
def user_vectors(
    model: TwoTower, catalog: Catalog, user_x: np.ndarray, history: np.ndarray
) -> np.ndarray:
    return (
        model.user_vectors(catalog.tensors(), torch.from_numpy(user_x), torch.from_numpy(history))
        .numpy()
        .astype(np.float32)
    )
