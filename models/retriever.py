"""Retrieval at serving time: the two-tower model, its candidate index and its id mapping.

The three travel as one bundle (a directory with a manifest of checksums); loading checks
every file against the manifest and the index against the catalog, so a model can never be
paired with an index or id mapping built for another model. In MLflow the bundle is the
artifact of the pyfunc model ``reelrank-retrieval``.

New videos (uploaded after the index was built) are embedded by the item tower from their
content and added to the index's fresh side part: retrievable without retraining.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel

from models.index import CandidateIndex
from models.sequence import SEQUENCE, NumpySequenceTower, SequenceTower, sequence_inputs
from models.two_tower import (
    CATALOG_ARRAYS,
    Catalog,
    TowerConfig,
    TwoTower,
    all_item_vectors,
    compress_user_features,
    history_rows,
)
from reelrank.errors import DataError

log = logging.getLogger(__name__)
FILES = ("model.pt", "config.json", "catalog.npz", "item_vectors.npy")
# a user's recent events as the user_sequence feature holds them: ids, action codes, seconds
SequenceEvents = tuple[Sequence[str], Sequence[int], Sequence[float]]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class BundleError(DataError, ValueError):
    """The files of a retrieval bundle do not belong together."""


class NumpyUserTower:
    """The trained user tower's forward pass in numpy, for one user per request.

    Serving embeds one user at a time, where torch's per-call overhead costs more than the
    arithmetic (about 3 ms against 0.1 ms); training and batch evaluation keep torch. Gives
    the same vector as :meth:`TwoTower.user_vectors` (tested to float precision).
    """

    def __init__(self, model: TwoTower) -> None:
        with torch.no_grad():
            self.mean = model.user_mean.numpy().astype(np.float32)
            self.std = model.user_std.numpy().astype(np.float32)
            self.id_emb = model.id_emb.weight.numpy().astype(np.float32)
            self.topic_emb = model.topic_emb.weight.numpy().astype(np.float32)
            self.layers = [
                (layer.weight.numpy().T.astype(np.float32), layer.bias.numpy().astype(np.float32))
                for layer in model.user_mlp
                if isinstance(layer, torch.nn.Linear)
            ]

    def __call__(self, catalog: Catalog, user_x: np.ndarray, history: np.ndarray) -> np.ndarray:
        """``user_x``: compressed ``USER_COLUMNS``; ``history``: catalog rows, -1 padded."""
        rows = history[history >= 0]
        x = np.clip((user_x - self.mean) / self.std, -5.0, 5.0)
        if len(rows):
            ids = self.id_emb[catalog.id_bucket[rows]] * catalog.id_known[rows][:, None]
            parts = [
                ids.mean(axis=0),
                self.topic_emb[catalog.topic[rows]].mean(axis=0),
                catalog.caption[rows].mean(axis=0),
                np.ones(1, np.float32),
            ]
        else:
            parts = [
                np.zeros(self.id_emb.shape[1], np.float32),
                np.zeros(self.topic_emb.shape[1], np.float32),
                np.zeros(catalog.caption.shape[1], np.float32),
                np.zeros(1, np.float32),
            ]
        h = np.concatenate([x, *parts]).astype(np.float32)
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return (h / max(float(np.linalg.norm(h)), 1e-12)).astype(np.float32)


class Retriever:
    """Model + catalog + item vectors + index; thread-safe for searches during ``add``."""

    def __init__(
        self,
        model: TwoTower,
        catalog: Catalog,
        item_vectors: np.ndarray,
        index: CandidateIndex,
        max_age_days: float | None = None,
        fresh_share: float = 0.0,
    ) -> None:
        if len(item_vectors) != len(catalog):
            raise BundleError(f"{len(item_vectors)} item vectors for {len(catalog)} videos")
        self.model = model.eval()
        self.version: str | None = None  # the registry's version, set by whoever loads it
        # one numpy forward per kind: the pooled tower or the sequence model's last position
        self._seq_tower: NumpySequenceTower | None = None
        self._user_tower: NumpyUserTower | None = None
        if isinstance(model, SequenceTower):
            self._seq_tower = NumpySequenceTower(model)
        else:
            self._user_tower = NumpyUserTower(self.model)
        self.catalog = catalog
        self.item_vectors = item_vectors
        self.index = index
        self.max_age_days = max_age_days
        self.fresh_share = fresh_share
        self.fresh_rows = np.zeros(0, dtype=np.int64)  # videos added after the index was built
        self._cutoff = self._age_cutoff()
        self._lock = threading.Lock()
        # the index's labels as catalog rows: a search never maps id strings per request
        self._label_rows = catalog.rows(index.label_ids())
        if (self._label_rows < 0).any():
            raise BundleError("the index holds videos the catalog does not know")
        self._row_labels = self._labels_of_rows(self._label_rows, len(catalog))

    @staticmethod
    def _labels_of_rows(label_rows: np.ndarray, n_rows: int) -> np.ndarray:
        """The inverse map: each catalog row's index label (-1: not indexed)."""
        out = np.full(n_rows, -1, dtype=np.int64)
        out[label_rows] = np.arange(len(label_rows))
        return out

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        model: TwoTower,
        catalog: Catalog,
        available: np.ndarray,
        *,
        exact_below: int,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 256,
        max_age_days: float | None = None,
        fresh_share: float = 0.0,
    ) -> Retriever:
        """Item vectors for the whole catalog; the index over the ``available`` rows."""
        vectors = all_item_vectors(model, catalog)
        index = CandidateIndex.build(
            catalog.video_ids[available],
            vectors[available],
            exact_below=exact_below,
            hnsw_m=hnsw_m,
            ef_construction=ef_construction,
            ef_search=ef_search,
        )
        return cls(model, catalog, vectors, index, max_age_days, fresh_share)

    # -- users ------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """``pooled`` or ``sequence``: which user side this bundle's model has."""
        return self.model.cfg.kind

    @property
    def history_len(self) -> int:
        """How many recent positives (newest first) the pooled user tower reads."""
        return int(self.model.cfg.history_len)

    @property
    def seq_len(self) -> int:
        """How many recent events (the newest) the sequence model reads."""
        return int(self.model.cfg.seq_len)

    def user_vector(
        self,
        user_features: np.ndarray | None,
        history: Sequence[str],
        events: SequenceEvents | None = None,
    ) -> np.ndarray:
        """The user tower's vector: a pooled model reads raw ``USER_COLUMNS`` values and
        recent positives; a sequence model reads ``events`` (the ``user_sequence`` feature:
        video ids, action codes, epoch seconds, oldest first; none = a user without events)."""
        cfg = self.model.cfg
        if self._seq_tower is not None:
            seq = sequence_inputs(self.catalog, [events or ([], [], [])], cfg.seq_len)
            return self._seq_tower(self.catalog, seq.rows[0], seq.actions[0], seq.gaps[0])
        if user_features is None:  # an unknown user: the documented defaults, as in training
            from features.batch import FEATURE_DEFAULTS

            user_features = np.array([FEATURE_DEFAULTS[c] for c in _user_columns()], np.float32)
        x = compress_user_features(user_features[: len(cfg.user_mean)])
        hist = history_rows(self.catalog, [history], cfg.history_len)[0]
        assert self._user_tower is not None
        return self._user_tower(self.catalog, x, hist)

    def history_caption(self, history: Sequence[str]) -> np.ndarray:
        """Mean caption embedding of the user's recent positives (unit length, or zeros)."""
        rows = self.catalog.rows(list(history))
        rows = rows[rows >= 0]
        if not len(rows):
            return np.zeros(self.catalog.caption.shape[1], np.float32)
        v = self.catalog.caption[rows].mean(axis=0)
        norm = float(np.linalg.norm(v))
        return (v / norm if norm > 0 else v).astype(np.float32)

    def caption_similarity(self, centroid: np.ndarray, video_ids: Sequence[str]) -> np.ndarray:
        """Cosine of each video's caption with a history centroid (NaN for unknown videos)."""
        return self.caption_similarity_rows(centroid, self.catalog.rows(video_ids))

    def caption_similarity_rows(self, centroid: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """:meth:`caption_similarity` of catalog rows (-1: unknown, NaN)."""
        caption = self.catalog.caption
        out = np.full(len(rows), np.nan, np.float32)
        ok = (rows >= 0) & (rows < len(caption))
        out[ok] = caption[rows[ok]] @ centroid
        return out

    # -- items ------------------------------------------------------------------------------
    def retrieve(self, user_vec: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` best available videos for a user vector, best first: ids and scores."""
        rows, scores = self.retrieve_rows(user_vec, n)
        return self.catalog.video_ids[rows], scores

    def retrieve_rows(
        self, user_vec: np.ndarray, n: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`retrieve` as catalog rows: the serving path carries integers, not ids.

        ``exclude``: catalog rows never to return (what the user has seen lately); the
        index skips them, so the ``n`` rows are the best of the others.

        Videos added after the index was built have no trained id embedding, so they score
        below established videos of the same topic; ``fresh_share`` of the slots are kept
        for the best of them (a fresh-content channel), so new uploads get seen at all.
        """
        label_rows, row_labels = self._label_rows, self._row_labels  # add_videos swaps them
        excluded_labels = None
        if exclude is not None and len(exclude):
            exclude = exclude[(exclude >= 0) & (exclude < len(row_labels))]
            excluded_labels = row_labels[exclude]
            excluded_labels = excluded_labels[excluded_labels >= 0]
        labels, scores = self.index.search_labels(
            user_vec.astype(np.float32), n, exclude=excluded_labels
        )
        known = labels < len(label_rows)  # a video indexed a moment ago may not be mapped yet
        rows = label_rows[labels[known]]
        scores = scores[known]
        quota = min(round(n * self.fresh_share), len(self.fresh_rows))
        if quota > 0:
            rows, scores = self._with_fresh(user_vec, rows, scores, n, quota, exclude)
        if self._cutoff is not None and len(rows):
            keep = self.catalog.upload_ts[rows] >= self._cutoff
            rows, scores = rows[keep], scores[keep]
        return rows, scores

    def _age_cutoff(self) -> np.datetime64 | None:
        """Oldest upload still servable, relative to the newest video known (computed when
        the catalog changes, not per request)."""
        if self.max_age_days is None or not len(self.catalog):
            return None
        newest = self.catalog.upload_ts.max()
        return newest - np.timedelta64(int(self.max_age_days * 86400), "s")

    def _with_fresh(
        self,
        user_vec: np.ndarray,
        rows: np.ndarray,
        scores: np.ndarray,
        n: int,
        quota: int,
        exclude: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        fresh, vectors = self.fresh_rows, self.item_vectors  # snapshots
        fresh = fresh[fresh < len(vectors)]
        if exclude is not None and len(exclude):
            fresh = fresh[~np.isin(fresh, exclude)]
        fresh_scores = vectors[fresh] @ user_vec
        best = np.argsort(-fresh_scores, kind="stable")[:quota]
        new = ~np.isin(fresh[best], rows)  # quota x len(rows): small
        extra_rows, extra_scores = fresh[best][new], fresh_scores[best][new]
        is_fresh = np.zeros(len(vectors), dtype=bool)  # a mask, not a sort of every fresh row
        is_fresh[fresh] = True
        need = max(0, quota - int(is_fresh[rows[rows < len(vectors)]].sum()))
        if not need or not len(extra_rows):
            return rows, scores
        extra_rows, extra_scores = extra_rows[:need], extra_scores[:need]
        # drop the weakest established videos to make room, then re-sort by score
        keep_n = max(0, min(len(rows), n - len(extra_rows)))
        all_rows = np.concatenate([rows[:keep_n], extra_rows])
        all_scores = np.concatenate([scores[:keep_n], extra_scores]).astype(np.float32)
        order = np.argsort(-all_scores, kind="stable")
        return all_rows[order], all_scores[order]

    def scores(self, user_vec: np.ndarray, video_ids: Sequence[str]) -> np.ndarray:
        """Dot products with given videos (NaN for videos the catalog does not hold)."""
        return self.scores_rows(user_vec, self.catalog.rows(video_ids))

    def scores_rows(self, user_vec: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """:meth:`scores` of catalog rows (-1: unknown, NaN)."""
        vectors = self.item_vectors  # one snapshot: add_videos may grow it meanwhile
        out = np.full(len(rows), np.nan, np.float32)
        ok = (rows >= 0) & (rows < len(vectors))
        out[ok] = vectors[rows[ok]] @ user_vec
        return out

    def add_videos(self, videos: pd.DataFrame, content: pd.DataFrame) -> int:
        """Embed new videos from their content and make them retrievable; returns how many."""
        fresh = Catalog.from_frames(videos, content, self.model.cfg)
        new = np.array([v not in self.catalog.index for v in fresh.video_ids], dtype=bool)
        if not new.any():
            return 0
        with self._lock:
            rows = self.catalog.extend(fresh)
            vectors = all_item_vectors_rows(self.model, self.catalog, rows)
            self.item_vectors = np.concatenate([self.item_vectors, vectors])
            added = self.index.add(self.catalog.video_ids[rows], vectors)
            self.fresh_rows = np.concatenate([self.fresh_rows, rows])
            self._cutoff = self._age_cutoff()
            n_mapped = len(self._label_rows)
            label_rows = np.concatenate(
                [self._label_rows, self.catalog.rows(self.index.label_ids()[n_mapped:])]
            )
            self._row_labels = self._labels_of_rows(label_rows, len(self.catalog))
            self._label_rows = label_rows
        log.info("added %d new videos to the fresh index", added)
        return int(added)

    # -- persistence ------------------------------------------------------------------------
    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), directory / "model.pt")
        (directory / "config.json").write_text(json.dumps(self.model.cfg.to_dict()))
        arrays = {name: getattr(self.catalog, name) for name in CATALOG_ARRAYS}
        arrays["video_ids"] = arrays["video_ids"].astype(str)
        arrays["upload_ts"] = arrays["upload_ts"].astype("datetime64[ns]").astype(np.int64)
        np.savez(directory / "catalog.npz", **arrays)
        np.save(directory / "item_vectors.npy", self.item_vectors)
        self.index.save(directory / "index")
        manifest = {
            "files": {f: _sha256(directory / f) for f in FILES},
            "index_files": {
                p.name: _sha256(p) for p in sorted((directory / "index").iterdir()) if p.is_file()
            },
            "n_catalog": len(self.catalog),
            "n_index": self.index.size,
            "dim": self.model.cfg.dim,
            "kind": self.model.cfg.kind,
            "max_age_days": self.max_age_days,
            "fresh_share": self.fresh_share,
            "fresh_rows": self.fresh_rows.tolist(),
        }
        tmp = directory / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=2))
        os.replace(tmp, directory / "manifest.json")
        return directory

    @classmethod
    def load(cls, directory: Path) -> Retriever:
        """Load a bundle; refuse it when any part does not match the manifest."""
        path = directory / "manifest.json"
        if not path.exists():
            raise BundleError(f"{directory} is not a retrieval bundle (no manifest.json)")
        manifest = json.loads(path.read_text())
        for name, digest in manifest["files"].items():
            if not (directory / name).exists() or _sha256(directory / name) != digest:
                raise BundleError(f"{name} is missing or does not match the bundle's manifest")
        for name, digest in manifest["index_files"].items():
            p = directory / "index" / name
            if not p.exists() or _sha256(p) != digest:
                raise BundleError(f"index/{name} is missing or does not match the manifest")
        cfg = TowerConfig(**json.loads((directory / "config.json").read_text()))
        model = SequenceTower(cfg) if cfg.kind == SEQUENCE else TwoTower(cfg)
        model.load_state_dict(torch.load(directory / "model.pt", weights_only=True))
        with np.load(directory / "catalog.npz", allow_pickle=False) as z:
            arrays: dict[str, Any] = {name: z[name] for name in CATALOG_ARRAYS}
        arrays["upload_ts"] = arrays["upload_ts"].astype("datetime64[ns]")
        arrays["video_ids"] = arrays["video_ids"].astype(object)
        catalog = Catalog(**arrays)
        vectors = np.load(directory / "item_vectors.npy")
        index = CandidateIndex.load(directory / "index")
        if index.size != manifest["n_index"] or len(catalog) != manifest["n_catalog"]:
            raise BundleError("index or catalog size differs from the manifest")
        out = cls(  # refuses an index holding videos the catalog does not know
            model,
            catalog,
            vectors,
            index,
            manifest.get("max_age_days"),
            manifest.get("fresh_share", 0.0),
        )
        out.fresh_rows = np.asarray(manifest.get("fresh_rows", []), dtype=np.int64)
        return out


def _user_columns() -> list[str]:
    from feature_repo.columns import USER_COLUMNS

    return list(USER_COLUMNS)


@torch.no_grad()
def all_item_vectors_rows(model: TwoTower, catalog: Catalog, rows: np.ndarray) -> np.ndarray:
    items = catalog.tensors()
    return model.item_vectors(items, torch.from_numpy(rows)).numpy().astype(np.float32)


class RetrievalModel(PythonModel):
    """``reelrank-retrieval`` in MLflow: the bundle is its one artifact.

    ``predict`` takes rows of user features (``USER_COLUMNS``) and ``hist_video_ids``
    (and, for a sequence-kind bundle, the ``user_sequence`` columns) and returns each
    row's top ``n`` video ids (``params={"n": ...}``).
    """

    def load_context(self, context: Any) -> None:
        self.retriever = Retriever.load(Path(context.artifacts["bundle"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        n = int((params or {}).get("n", 100))
        out = []
        for _, row in model_input.iterrows():
            feats = row[_user_columns()].to_numpy(np.float32)
            hist = row.get("hist_video_ids")
            hist_list = list(hist) if hist is not None else []
            events = _events_of(row)
            vec = self.retriever.user_vector(feats, hist_list, events)
            ids, _ = self.retriever.retrieve(vec, n)
            out.append(list(ids))
        return pd.Series(out, name="video_ids")


def _events_of(row: pd.Series) -> SequenceEvents | None:
    """The ``user_sequence`` lists of a row, when it carries them."""
    ids = row.get("seq_video_ids")
    if ids is None or (isinstance(ids, float) and np.isnan(ids)):
        return None
    return (list(ids), list(row.get("seq_actions", [])), list(row.get("seq_ts", [])))
