"""The sequential user model: a small causal transformer over the user's last N events.

The pooled two-tower averages the content of a user's recent positives, so it cannot tell
what the user watched *last* from what they watched three weeks ago, nor a skip from a
like. This model (SASRec-style) reads the user's last ``seq_len`` impressions in order. Each
event is embedded as

    the video (hashed id embedding, shared with the item tower, + caption + topic)
  + what the user did (completed / liked / shared / skipped bits, watch-ratio bucket)
  + the time since the previous event (log2 buckets)
  + a learned position,

then pre-norm transformer blocks with a causal mask (no event sees a later one) and a
padding mask (sequences are left-padded, so the last position is always the newest event).
The output at each position is a user vector in the item tower's space; it is trained to
score the *next* event when that event is a positive, with the same in-batch sampled
softmax and log-Q correction as the pooled tower (:func:`models.two_tower.sampled_softmax_loss`).
The user vector served is the output at the last position.

The item tower is inherited unchanged from :class:`TwoTower`, so a sequence-kind bundle
indexes, adds fresh videos and scores exactly like a pooled one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from features.sequence import RATIO_BUCKETS, RATIO_SHIFT, is_positive
from models.two_tower import (
    ID_DIM,
    TOPIC_DIM,
    Catalog,
    FitResult,
    TowerConfig,
    TwoTower,
    sampled_softmax_loss,
)

log = logging.getLogger(__name__)
N_ACTION_BITS = 4
GAP_BUCKETS = 24  # 0: padding / first event; then 1 + floor(log2(1 + gap seconds)), capped
POOLED, SEQUENCE = "pooled", "sequence"
KINDS = (POOLED, SEQUENCE)


def gap_buckets(ts: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Bucketed log time since the previous event, per position of (n, L) epoch seconds;
    0 for padding and for the first real event of a row."""
    ts = np.asarray(ts, np.float64)
    prev = np.concatenate([ts[:, :1], ts[:, :-1]], axis=1)
    prev_valid = np.concatenate([np.zeros_like(valid[:, :1]), valid[:, :-1]], axis=1)
    gap = np.clip(ts - prev, 0.0, None)
    b = 1 + np.minimum(np.floor(np.log2(1.0 + gap)), GAP_BUCKETS - 2).astype(np.int64)
    return np.where(valid & prev_valid, b, 0).astype(np.int64)


@dataclass
class SequenceInputs:
    """Left-padded (n, seq_len) model inputs: catalog rows (-1 = padding or an unknown
    video), action codes and gap buckets."""

    rows: np.ndarray
    actions: np.ndarray
    gaps: np.ndarray

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (
            torch.from_numpy(self.rows),
            torch.from_numpy(self.actions),
            torch.from_numpy(self.gaps),
        )


def sequence_inputs(
    catalog: Catalog,
    sequences: Sequence[tuple[Sequence[str], Sequence[int], Sequence[float]]],
    length: int,
) -> SequenceInputs:
    """Encode (video ids, action codes, epoch seconds) lists, oldest first, into the model's
    left-padded arrays; only the newest ``length`` events are kept. Videos the catalog does
    not know are dropped (their gap is measured from the event before them)."""
    n = len(sequences)
    rows = np.full((n, length), -1, np.int64)
    actions = np.zeros((n, length), np.int64)
    ts = np.zeros((n, length), np.float64)
    for i, (ids, acts, times) in enumerate(sequences):
        if not len(ids):
            continue
        r = catalog.rows(list(ids))
        keep = r >= 0
        r = r[keep][-length:]
        a = np.asarray(acts, np.int64)[keep][-length:]
        t = np.asarray(times, np.float64)[keep][-length:]
        k = len(r)
        if k:
            rows[i, length - k :], actions[i, length - k :], ts[i, length - k :] = r, a, t
    return SequenceInputs(rows, actions, gap_buckets(ts, rows >= 0))


def _action_bits(actions: torch.Tensor) -> torch.Tensor:
    shifts = torch.arange(N_ACTION_BITS, device=actions.device)
    return ((actions.unsqueeze(-1) >> shifts) & 1).float()


class _Block(nn.Module):
    """Pre-norm self-attention + feed-forward, written out so numpy can mirror it."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ff1, self.ff2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        hd = d // self.heads
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, hd).transpose(1, 2)  # (B, H, N, hd)

        s = heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(hd)
        s = s.masked_fill(~allowed.unsqueeze(1), float("-inf"))
        a = torch.softmax(s, dim=-1) @ heads(v)
        x = x + self.out(a.transpose(1, 2).reshape(b, n, d))
        return x + self.ff2(torch.relu(self.ff1(self.ln2(x))))


class SequenceTower(TwoTower):
    """:class:`TwoTower`'s item tower with a causal-transformer user side."""

    def __init__(self, cfg: TowerConfig) -> None:
        super().__init__(cfg)
        del self.user_mlp  # the pooled user side is not used by this kind
        d = cfg.seq_dim
        self.content = nn.Linear(ID_DIM + cfg.caption_dim + TOPIC_DIM, d)
        self.action = nn.Linear(N_ACTION_BITS, d, bias=False)
        self.ratio_emb = nn.Embedding(RATIO_BUCKETS, d)
        self.gap_emb = nn.Embedding(GAP_BUCKETS, d)
        self.pos_emb = nn.Embedding(cfg.seq_len, d)
        for e in (self.ratio_emb, self.gap_emb, self.pos_emb):
            nn.init.normal_(e.weight, std=0.02)
        self.blocks = nn.ModuleList(_Block(d, cfg.seq_heads) for _ in range(cfg.seq_layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.dim)

    def embed(
        self,
        items: dict[str, torch.Tensor],
        rows: torch.Tensor,
        actions: torch.Tensor,
        gaps: torch.Tensor,
    ) -> torch.Tensor:
        valid = (rows >= 0).float().unsqueeze(-1)
        r = rows.clamp(min=0)
        content = torch.cat(
            [self._id_part(items, r), items["caption"][r], self.topic_emb(items["topic"][r])],
            dim=-1,
        )
        x = self.content(content * valid) + self.action(_action_bits(actions) * valid)
        ratio = (actions >> RATIO_SHIFT).clamp(0, RATIO_BUCKETS - 1)
        x = x + self.ratio_emb(ratio) * valid + self.gap_emb(gaps)
        return x + self.pos_emb.weight.unsqueeze(0)

    def sequence_outputs(
        self,
        items: dict[str, torch.Tensor],
        rows: torch.Tensor,
        actions: torch.Tensor,
        gaps: torch.Tensor,
    ) -> torch.Tensor:
        """(B, L, dim) unit user vectors, one per position, each from events up to it."""
        n = rows.shape[1]
        valid = rows >= 0
        causal = torch.ones(n, n, dtype=torch.bool, device=rows.device).tril()
        # a padded position sees only itself, so no softmax row is empty
        eye = torch.eye(n, dtype=torch.bool, device=rows.device)
        allowed = causal & (valid.unsqueeze(1) | eye)
        x = self.embed(items, rows, actions, gaps)
        for block in self.blocks:
            x = block(x, allowed)
        return nn.functional.normalize(self.head(self.ln_f(x)), dim=-1)

    def sequence_user_vectors(
        self,
        items: dict[str, torch.Tensor],
        rows: torch.Tensor,
        actions: torch.Tensor,
        gaps: torch.Tensor,
    ) -> torch.Tensor:
        """The served user vector: the output at the last (newest) position."""
        return self.sequence_outputs(items, rows, actions, gaps)[:, -1]


@torch.no_grad()
def sequence_user_vectors(
    model: SequenceTower, catalog: Catalog, inputs: SequenceInputs, chunk: int = 1024
) -> np.ndarray:
    items = catalog.tensors()
    rows, actions, gaps = inputs.tensors()
    out = [
        model.sequence_user_vectors(
            items, rows[s : s + chunk], actions[s : s + chunk], gaps[s : s + chunk]
        )
        for s in range(0, len(rows), chunk)
    ]
    if not out:
        return np.zeros((0, model.cfg.dim), np.float32)
    return torch.cat(out).numpy().astype(np.float32)


class NumpySequenceTower:
    """:meth:`SequenceTower.sequence_user_vectors` for one user in numpy (the request path).

    Only the real events are computed (padding can never reach them through the masks), and
    the last block computes its query for the newest position only: that is all serving
    needs. Tested equal to the torch forward to float precision."""

    def __init__(self, model: SequenceTower) -> None:
        def arr(t: torch.Tensor) -> np.ndarray:
            return t.detach().numpy().astype(np.float32)

        def lin(layer: nn.Linear) -> tuple[np.ndarray, np.ndarray]:
            bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
            return arr(layer.weight).T.copy(), arr(bias)

        def ln(layer: nn.LayerNorm) -> tuple[np.ndarray, np.ndarray, float]:
            return arr(layer.weight), arr(layer.bias), float(layer.eps)

        self.len = model.cfg.seq_len
        w, self.content_b = lin(model.content)
        # the content projection folded into the id and topic tables: a lookup, not a matmul
        n_id, n_cap = ID_DIM, model.cfg.caption_dim
        self.id_proj = arr(model.id_emb.weight) @ w[:n_id]
        self.caption_w = w[n_id : n_id + n_cap].copy()
        self.topic_proj = arr(model.topic_emb.weight) @ w[n_id + n_cap :]
        self.action_w = arr(model.action.weight).T.copy()
        self.ratio_emb, self.gap_emb = arr(model.ratio_emb.weight), arr(model.gap_emb.weight)
        self.pos_emb = arr(model.pos_emb.weight)
        self.blocks = [
            (b.heads, ln(b.ln1), lin(b.qkv), lin(b.out), ln(b.ln2), lin(b.ff1), lin(b.ff2))
            for b in model.blocks
            if isinstance(b, _Block)
        ]
        self.ln_f, self.head = ln(model.ln_f), lin(model.head)
        # additive causal mask: 0 where a position may look, -inf where it may not
        self.neg = np.where(np.tri(self.len, dtype=bool), 0.0, -np.inf).astype(np.float32)
        self.bits = np.arange(N_ACTION_BITS)
        # each catalog row's caption projected once (64 floats beside its 384): the largest
        # matmul of a request becomes a lookup; grown when the catalog grows
        self._caption_proj = np.zeros((0, len(self.content_b)), np.float32)

    def _captions(self, catalog: Catalog, rows: np.ndarray) -> np.ndarray:
        proj = self._caption_proj  # one snapshot: another request may grow it meanwhile
        if len(proj) < len(catalog.caption):
            new = catalog.caption[len(proj) :] @ self.caption_w
            proj = np.concatenate([proj, new.astype(np.float32)])
            self._caption_proj = proj
        return proj[rows]

    @staticmethod
    def _ln(x: np.ndarray, p: tuple[np.ndarray, np.ndarray, float]) -> np.ndarray:
        d = x.shape[-1]
        xc = x - np.add.reduce(x, axis=-1, keepdims=True) / d
        var = np.add.reduce(xc * xc, axis=-1, keepdims=True) / d
        return xc / np.sqrt(var + p[2]) * p[0] + p[1]

    def __call__(
        self, catalog: Catalog, rows: np.ndarray, actions: np.ndarray, gaps: np.ndarray
    ) -> np.ndarray:
        """One user's left-padded (seq_len,) rows, action codes and gap buckets."""
        keep = np.flatnonzero(rows >= 0)
        if not len(keep):  # no events: the padding embedding of the last position alone
            x = (self.content_b + self.gap_emb[0] + self.pos_emb[-1])[None, :]
        else:
            r, a = rows[keep], actions[keep]
            x = (
                self.id_proj[catalog.id_bucket[r]] * catalog.id_known[r][:, None]
                + self._captions(catalog, r)
                + self.topic_proj[catalog.topic[r]]
                + self.content_b
                + ((a[:, None] >> self.bits) & 1).astype(np.float32) @ self.action_w
                + self.ratio_emb[np.clip(a >> RATIO_SHIFT, 0, RATIO_BUCKETS - 1)]
                + self.gap_emb[gaps[keep]]
                + self.pos_emb[keep]
            )
        n = len(x)
        neg = self.neg[:n, :n]
        for i, (h, ln1, qkv, out, ln2, ff1, ff2) in enumerate(self.blocks):
            d = x.shape[1]
            hd = d // h
            y = self._ln(x, ln1) @ qkv[0] + qkv[1]
            q, k, v = y[:, :d], y[:, d : 2 * d], y[:, 2 * d :]
            mask = neg
            if i == len(self.blocks) - 1:  # only the newest position matters from here on
                q, mask, x = q[-1:], neg[-1:], x[-1:]
            qh = q.reshape(len(q), h, hd).transpose(1, 0, 2)
            kh, vh = k.reshape(n, h, hd).transpose(1, 0, 2), v.reshape(n, h, hd).transpose(1, 0, 2)
            s = qh @ kh.transpose(0, 2, 1) * (1.0 / math.sqrt(hd)) + mask
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            att = (s / np.add.reduce(s, axis=-1, keepdims=True)) @ vh
            x = x + att.transpose(1, 0, 2).reshape(len(q), d) @ out[0] + out[1]
            f = np.maximum(self._ln(x, ln2) @ ff1[0] + ff1[1], 0.0)
            x = x + f @ ff2[0] + ff2[1]
        u = (self._ln(x[-1], self.ln_f) @ self.head[0] + self.head[1]).astype(np.float32)
        return (u / max(float(np.linalg.norm(u)), 1e-12)).astype(np.float32)


# -- training -------------------------------------------------------------------------------
@dataclass
class SequenceTrainData:
    """Left-padded training sequences: inputs and, per position, the catalog row of the next
    event when it is a positive (-1 otherwise: nothing to predict there)."""

    inputs: SequenceInputs
    targets: np.ndarray  # (n, seq_len) int64


def training_sequences(
    catalog: Catalog,
    users: Sequence[tuple[Sequence[str], Sequence[int], Sequence[float]]],
    length: int,
    first_target_t: float = -math.inf,
) -> SequenceTrainData:
    """Cut each user's whole ordered event list into windows of ``length + 1`` events (the
    newest window first, stepping back ``length`` events); in each, the first ``length``
    events are inputs and the next event of each position is its target when positive.
    Targets before ``first_target_t`` (epoch s) are context only, never predicted."""
    seqs: list[tuple[list[str], list[int], list[float]]] = []
    tgt_ids: list[list[str]] = []
    for ids, acts, times in users:
        ids_l, acts_l, t_l = list(ids), list(acts), list(times)
        end = len(ids_l)
        while end >= 2:
            lo = max(0, end - length - 1)
            seqs.append((ids_l[lo : end - 1], acts_l[lo : end - 1], t_l[lo : end - 1]))
            nxt = range(lo + 1, end)
            tgt_ids.append(
                [
                    ids_l[j] if is_positive(acts_l[j]) and t_l[j] >= first_target_t else ""
                    for j in nxt
                ]
            )
            end -= length
            if lo == 0:
                break
    inputs = sequence_inputs(catalog, seqs, length)
    targets = np.full((len(seqs), length), -1, np.int64)
    for i, (s, t) in enumerate(zip(seqs, tgt_ids, strict=True)):
        # targets align with the inputs' positions; unknown input videos were dropped, so
        # realign through the rows kept
        r_in = catalog.rows(list(s[0]))
        r_t = catalog.rows(t)
        r_t[np.array([x == "" for x in t], dtype=bool)] = -1
        kept = r_t[r_in >= 0][-length:]
        targets[i, length - len(kept) :] = kept
    keep = (targets >= 0).any(axis=1)
    return SequenceTrainData(
        SequenceInputs(inputs.rows[keep], inputs.actions[keep], inputs.gaps[keep]),
        targets[keep],
    )


def fit_sequence(
    catalog: Catalog,
    train: SequenceTrainData,
    cfg: TowerConfig,
    *,
    validate: Callable[[SequenceTower], float],
    batch_size: int = 128,
    max_targets: int = 2048,
    learning_rate: float = 2e-3,
    max_epochs: int = 12,
    patience: int = 2,
    id_dropout: float = 0.25,
    seed: int = 17,
    threads: int = 2,
    device: str = "cpu",
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> FitResult:
    """Train with early stopping on ``validate`` (higher is better); keep the best epoch.

    Every position whose next event is a positive is a training example; at most
    ``max_targets`` of a batch's positions enter the in-batch softmax (its logits are
    targets x targets). Runs on ``device`` (``cpu`` or ``cuda``), the same code either way;
    the model comes back on the CPU."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    dev = torch.device(device)
    tg = train.targets[train.targets >= 0]
    counts = np.bincount(tg, minlength=len(catalog)).astype(np.float64)
    catalog.id_known[:] = (counts > 0).astype(np.float32)
    log_q_all = torch.from_numpy(
        np.log(np.maximum(counts, 1.0) / max(counts.sum(), 1.0)).astype(np.float32)
    ).to(dev)
    model = SequenceTower(cfg).to(dev)
    items = {k: v.to(dev) for k, v in catalog.tensors().items()}
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    rows, actions, gaps = (t.to(dev) for t in train.inputs.tensors())
    targets = torch.from_numpy(train.targets).to(dev)
    curves: dict[str, list[float]] = {"retrieval_train_loss": [], "retrieval_valid_recall": []}
    best, best_epoch, best_state, seen, started = -math.inf, 0, None, 0, time.perf_counter()
    n, epoch = len(targets), 0
    for epoch in range(1, max_epochs + 1):
        model.train()
        order = torch.from_numpy(rng.permutation(n)).to(dev)
        total, count = 0.0, 0
        for start in range(0, n, batch_size):
            b = order[start : start + batch_size]
            out = model.sequence_outputs(items, rows[b], actions[b], gaps[b])
            t = targets[b]
            where = (t >= 0).nonzero(as_tuple=False)
            if len(where) > max_targets:
                pick = torch.from_numpy(rng.choice(len(where), max_targets, replace=False))
                where = where[pick.to(dev)]
            if len(where) < 2:
                continue
            u = out[where[:, 0], where[:, 1]]
            tr = t[where[:, 0], where[:, 1]]
            v = model.item_vectors(items, tr, id_dropout=id_dropout)
            loss = sampled_softmax_loss(u, v, tr, log_q_all[tr], cfg.temperature)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(tr)
            count += len(tr)
            seen += len(tr)
        model.eval()
        model.cpu()
        with torch.no_grad():
            score = float(validate(model))
        model.to(dev)
        loss_mean = total / max(count, 1)
        curves["retrieval_train_loss"].append(loss_mean)
        curves["retrieval_valid_recall"].append(score)
        log.info("sequence epoch %d: loss %.4f, valid recall %.4f", epoch, loss_mean, score)
        if on_epoch is not None:
            on_epoch(epoch, loss_mean, score)
        if score > best:
            best, best_epoch = score, epoch
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= patience:
            break
    model.cpu()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    rate = seen / max(time.perf_counter() - started, 1e-9)
    return FitResult(model, epoch, best_epoch, curves, rate)
