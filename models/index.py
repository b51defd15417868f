"""Candidate index for the retrieval stage: nearest items by cosine over normalized vectors.

The index holds two parts. The *main* index is built once from the catalog and never mutated,
so it is searched without a lock. The *fresh* index is a small exact index for items that
arrive after the main one was built (new uploads must be recommendable before the next
rebuild); it is mutated by :meth:`CandidateIndex.add` and therefore every read of it holds a
lock. Search results merge both parts by score.

Vectors are expected to be L2-normalized float32, so that inner product equals cosine. The
index does not normalize them itself: the embedding producer owns that decision, and silently
renormalizing would hide a bug upstream.

Threads: faiss and xgboost are linked against the same OpenMP runtime (libgomp), so
``faiss.omp_set_num_threads`` sets the pool size for xgboost too, for the whole process. For
that reason nothing in this module changes the global thread count; a process that wants to
cap search parallelism calls :func:`set_search_threads` once, knowing it caps ranking as well.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

IndexKind = Literal["exact", "hnsw"]

INDEX_FILE = "index.faiss"
IDS_FILE = "video_ids.json"
FRESH_INDEX_FILE = "fresh.faiss"
FRESH_IDS_FILE = "fresh_ids.json"
MANIFEST_FILE = "index.json"
FORMAT_VERSION = 1


def set_search_threads(n: int) -> None:
    """Set the OpenMP thread count that faiss searches (and builds) use.

    Caveat: faiss and xgboost share libgomp, so this also caps xgboost's threads for the whole
    process. It is a process-wide decision for the caller, which is why the index never calls
    it on its own.
    """
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    faiss.omp_set_num_threads(n)


def _as_vectors(vectors: Any, what: str) -> np.ndarray:
    """A C-contiguous float32 (rows, d) copy-or-view, or a ValueError saying what is wrong."""
    try:
        arr = np.ascontiguousarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be convertible to float32: {exc}") from exc
    if arr.ndim != 2:
        raise ValueError(f"{what} must be 2-D (rows, dim), got shape {arr.shape}")
    if arr.shape[1] < 1:
        raise ValueError(f"{what} must have at least one column, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return arr


def _as_ids(video_ids: Sequence[str], n_rows: int) -> list[str]:
    """The ids as a list of str, checked against the row count and for duplicates."""
    ids = [str(v) for v in video_ids]
    if len(ids) != n_rows:
        raise ValueError(f"got {len(ids)} video ids for {n_rows} vector rows")
    if len(set(ids)) != len(ids):
        dups = sorted(v for v, c in Counter(ids).items() if c > 1)
        raise ValueError(f"{len(dups)} duplicate video ids, e.g. {dups[:5]}")
    return ids


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temp file in the same directory, then rename over the target.

    A reader (or a crash mid-save) then sees either the old file or the new one, never a
    truncated one. The temp file lives in the target directory so os.replace stays a rename on
    one filesystem.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_id_list(path: Path) -> list[str]:
    ids = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(ids, list) or not all(isinstance(v, str) for v in ids):
        raise ValueError(f"{path}: expected a JSON list of string ids")
    return ids


def _write_json(path: Path, payload: Any) -> None:
    _atomic_write(path, lambda p: p.write_text(json.dumps(payload), encoding="utf-8"))


def _write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda p: p.write_bytes(data))


class CandidateIndex:
    """Cosine nearest-neighbour search over video vectors, with a side index for fresh items.

    Build it with :meth:`build` or :meth:`load`; the constructor is internal.
    """

    def __init__(
        self,
        main: faiss.Index,
        main_ids: list[str],
        *,
        kind: IndexKind,
        params: dict[str, int],
        fresh: faiss.IndexFlatIP | None = None,
        fresh_ids: list[str] | None = None,
    ) -> None:
        self._main = main
        self._kind: IndexKind = kind
        self._params = dict(params)
        self._ef_search = int(params["ef_search"])
        # A str array for the public property and for mapping faiss labels back to ids.
        self._main_ids = np.asarray(main_ids, dtype=str) if main_ids else np.array([], dtype=str)
        self._fresh = fresh if fresh is not None else faiss.IndexFlatIP(main.d)
        self._fresh_ids: list[str] = list(fresh_ids or [])
        self._known: set[str] = set(main_ids) | set(self._fresh_ids)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ construction

    @classmethod
    def build(
        cls,
        video_ids: Sequence[str],
        vectors: np.ndarray,
        *,
        exact_below: int = 50_000,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 128,
    ) -> CandidateIndex:
        """Index the catalog: exact below ``exact_below`` items, HNSW at or above it.

        Exact search over a small catalog is both fast enough and free of recall loss, so
        the approximate graph is only worth its build time and memory on large catalogs.
        """
        arr = _as_vectors(vectors, "vectors")
        ids = _as_ids(video_ids, arr.shape[0])
        if hnsw_m < 2 or ef_construction < 1 or ef_search < 1:
            raise ValueError(
                f"need hnsw_m >= 2, ef_construction >= 1 and ef_search >= 1, got "
                f"{hnsw_m}, {ef_construction}, {ef_search}"
            )
        d = arr.shape[1]
        kind: IndexKind
        if len(ids) < exact_below:
            kind = "exact"
            main: faiss.Index = faiss.IndexFlatIP(d)
        else:
            kind = "hnsw"
            main = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            main.hnsw.efConstruction = ef_construction
            main.hnsw.efSearch = ef_search
        if len(ids):
            main.add(arr)
        params = {
            "exact_below": exact_below,
            "hnsw_m": hnsw_m,
            "ef_construction": ef_construction,
            "ef_search": ef_search,
        }
        return cls(main, ids, kind=kind, params=params)

    # ------------------------------------------------------------------ properties

    @property
    def kind(self) -> IndexKind:
        """``"exact"`` (flat inner product) or ``"hnsw"`` for the main index."""
        return self._kind

    @property
    def dim(self) -> int:
        return int(self._main.d)

    @property
    def size(self) -> int:
        """Items searchable now: the main index plus everything added since."""
        with self._lock:
            return int(self._main.ntotal + self._fresh.ntotal)

    @property
    def video_ids(self) -> np.ndarray:
        """Ids of the main index in row order (fresh items are not included)."""
        return self._main_ids.copy()

    @property
    def params(self) -> dict[str, int]:
        return dict(self._params)

    def contains(self, video_id: str) -> bool:
        with self._lock:
            return video_id in self._known

    # ------------------------------------------------------------------ mutation

    def add(self, video_ids: Sequence[str], vectors: np.ndarray) -> int:
        """Add items to the fresh index; ids already present anywhere are skipped.

        Skipping rather than raising lets an ingest job replay a batch safely. Returns the
        number of items actually added.
        """
        arr = _as_vectors(vectors, "vectors")
        ids = _as_ids(video_ids, arr.shape[0])
        if arr.shape[1] != self.dim:
            raise ValueError(f"vectors have dim {arr.shape[1]}, index has dim {self.dim}")
        with self._lock:
            keep = [i for i, v in enumerate(ids) if v not in self._known]
            if not keep:
                return 0
            self._fresh.add(arr[keep])
            new_ids = [ids[i] for i in keep]
            self._fresh_ids.extend(new_ids)
            self._known.update(new_ids)
            return len(keep)

    # ------------------------------------------------------------------ search

    def search(
        self, query: np.ndarray, n: int, *, ef_search: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` items by inner product for one query or a batch.

        A single query of shape ``(d,)`` returns ``(ids, scores)`` as 1-D arrays (str and
        float32) of length ``<= n``, best first; there are fewer than ``n`` only when the index
        holds fewer items (or HNSW found fewer). A batch of shape ``(q, d)`` returns arrays of
        shape ``(q, n)``: ids as an object array padded with ``""`` and scores padded with
        ``-inf``, so that a fixed shape can be relied on. The "-1" labels faiss uses for "no
        result" never appear.

        ``ef_search`` overrides the built-in HNSW search breadth for this call only (for
        tuning recall against latency without rebuilding); either way it is raised to at least
        ``n``, since HNSW cannot return more results than its candidate list holds. It is
        ignored by exact indexes.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if ef_search is not None and ef_search < 1:
            raise ValueError(f"ef_search must be >= 1, got {ef_search}")
        q = np.asarray(query)
        single = q.ndim == 1
        if single:
            q = q[None, :]
        qs = _as_vectors(q, "query")
        if qs.shape[1] != self.dim:
            raise ValueError(f"query has dim {qs.shape[1]}, index has dim {self.dim}")

        labels, scores, valid = self._merged(qs, n, ef_search or self._ef_search)
        ids = self._ids_of(labels)
        if single:
            keep = valid[0]
            return ids[0][keep].astype(str), scores[0][keep]
        out_ids = np.full((qs.shape[0], n), "", dtype=object)
        out_scores = np.full((qs.shape[0], n), -np.inf, dtype=np.float32)
        width = ids.shape[1]
        out_ids[:, :width] = np.where(valid, ids, "")
        out_scores[:, :width] = np.where(valid, scores, -np.inf)
        return out_ids, out_scores

    def search_labels(
        self,
        query: np.ndarray,
        n: int,
        *,
        ef_search: int | None = None,
        exclude: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` for one query, answering *labels* instead of ids: positions in
        :meth:`label_ids` (the main index's rows, then the fresh items in the order they were
        added). A label, once given, always names the same video, so a caller can map labels
        to its own rows with an integer array and never touch the id strings per request.

        ``exclude``: labels never to return (what the user has seen). They are skipped inside
        the search, so the ``n`` results are the best of the rest: asking for ``n`` plus the
        excluded and filtering afterwards would widen the search by as many."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        qs = _as_vectors(np.asarray(query).reshape(1, -1), "query")
        if qs.shape[1] != self.dim:
            raise ValueError(f"query has dim {qs.shape[1]}, index has dim {self.dim}")
        labels, scores, valid = self._merged(qs, n, ef_search or self._ef_search, exclude)
        keep = valid[0]
        return labels[0][keep], scores[0][keep]

    def label_ids(self) -> np.ndarray:
        """Every searchable id in label order (main rows, then fresh items), as objects."""
        with self._lock:
            fresh = list(self._fresh_ids)
        return np.concatenate([self._main_ids.astype(object), np.asarray(fresh, dtype=object)])

    def _ids_of(self, labels: np.ndarray) -> np.ndarray:
        """Ids of labels (an object array); "-1" slots map to "" and are masked out by score."""
        out = np.full(labels.shape, "", dtype=object)
        n_main = len(self._main_ids)
        main = (labels >= 0) & (labels < n_main)
        out[main] = self._main_ids[labels[main]]
        fresh = labels >= n_main
        if fresh.any():  # the fresh list only grows, so a label taken earlier stays valid
            fresh_ids = self._fresh_ids
            out[fresh] = [fresh_ids[i - n_main] for i in labels[fresh].tolist()]
        return out

    def _merged(
        self, qs: np.ndarray, n: int, ef_search: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Labels from both parts, sorted by score, at most ``n`` per row, with a mask.

        Labels are main rows, or ``len(main) + j`` for the j-th fresh item; -1 is no result."""
        parts_labels: list[np.ndarray] = []
        parts_scores: list[np.ndarray] = []
        n_main = len(self._main_ids)
        # faiss searches the ids a selector accepts: "not in the batch" skips the excluded
        main_sel = fresh_sel = None
        keep_alive: list[Any] = []  # the inner selectors, referenced until the searches end
        if exclude is not None and len(exclude):
            excl = np.unique(np.asarray(exclude, dtype=np.int64))
            if len(main_excl := excl[(excl >= 0) & (excl < n_main)]):
                keep_alive.append(faiss.IDSelectorBatch(main_excl))
                main_sel = faiss.IDSelectorNot(keep_alive[-1])
            if len(fresh_excl := excl[excl >= n_main] - n_main):
                keep_alive.append(faiss.IDSelectorBatch(fresh_excl))
                fresh_sel = faiss.IDSelectorNot(keep_alive[-1])

        # The main index is immutable after build and faiss search is const, so no lock; the
        # per-call parameters avoid writing efSearch on the shared index.
        k_main = min(n, int(self._main.ntotal))
        if k_main > 0:
            params: Any
            if self._kind == "hnsw":
                # faiss ships no type stubs for its SWIG classes
                params = faiss.SearchParametersHNSW(efSearch=max(ef_search, k_main))  # type: ignore[attr-defined]
            else:
                params = faiss.SearchParameters()
            if main_sel is not None:
                params.sel = main_sel
            scores, labels = self._main.search(qs, k_main, params=params)
            parts_labels.append(labels)
            parts_scores.append(np.where(labels >= 0, scores, -np.inf))

        with self._lock:
            k_fresh = min(n, int(self._fresh.ntotal))
            if k_fresh > 0:
                fresh_params = faiss.SearchParameters()
                if fresh_sel is not None:
                    fresh_params.sel = fresh_sel
                scores, labels = self._fresh.search(qs, k_fresh, params=fresh_params)
                parts_labels.append(np.where(labels >= 0, labels + n_main, -1))
                parts_scores.append(np.where(labels >= 0, scores, -np.inf))

        nq = qs.shape[0]
        if not parts_labels:
            empty = np.empty((nq, 0))
            return empty.astype(np.int64), empty.astype(np.float32), empty.astype(bool)
        all_labels = np.concatenate(parts_labels, axis=1)
        all_scores = np.concatenate(parts_scores, axis=1).astype(np.float32)
        # Stable sort keeps faiss's own order among ties and puts the -inf "no result" slots last.
        order = np.argsort(-all_scores, axis=1, kind="stable")[:, :n]
        top_scores = np.take_along_axis(all_scores, order, axis=1)
        top_labels = np.take_along_axis(all_labels, order, axis=1).astype(np.int64, copy=False)
        return top_labels, top_scores, np.isfinite(top_scores)

    # ------------------------------------------------------------------ persistence

    def save(self, directory: Path) -> None:
        """Write the index to ``directory``; each file is replaced atomically.

        The manifest is written last, so a reader that finds it also finds the data files of
        at least that save. The fresh part is serialized under the lock so that its vectors
        and ids are a consistent snapshot even while items are being added. The directory as a
        whole is not swapped atomically: concurrent saves into one directory are the caller's
        to prevent, and :meth:`load` refuses files whose counts do not agree.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _atomic_write(directory / INDEX_FILE, lambda p: faiss.write_index(self._main, str(p)))
        _write_json(directory / IDS_FILE, self._main_ids.tolist())
        with self._lock:
            fresh_blob = faiss.serialize_index(self._fresh).tobytes()
            fresh_ids = list(self._fresh_ids)
        _write_bytes(directory / FRESH_INDEX_FILE, fresh_blob)
        _write_json(directory / FRESH_IDS_FILE, fresh_ids)
        _write_json(
            directory / MANIFEST_FILE,
            {
                "format_version": FORMAT_VERSION,
                "kind": self._kind,
                "dim": self.dim,
                "size": len(self._main_ids) + len(fresh_ids),
                "main_size": len(self._main_ids),
                "fresh_size": len(fresh_ids),
                "params": self._params,
            },
        )

    @classmethod
    def load(cls, directory: Path) -> CandidateIndex:
        """Read an index written by :meth:`save`, refusing files that do not agree."""
        directory = Path(directory)
        manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
        kind = manifest.get("kind")
        if kind not in ("exact", "hnsw"):
            raise ValueError(f"{directory}: unknown index kind {kind!r}")
        main = faiss.read_index(str(directory / INDEX_FILE))
        main_ids = _read_id_list(directory / IDS_FILE)
        fresh = faiss.read_index(str(directory / FRESH_INDEX_FILE))
        fresh_ids = _read_id_list(directory / FRESH_IDS_FILE)

        if len(main_ids) != main.ntotal:
            raise ValueError(
                f"{directory}: {IDS_FILE} has {len(main_ids)} ids, {INDEX_FILE} has "
                f"{main.ntotal} vectors"
            )
        if len(fresh_ids) != fresh.ntotal:
            raise ValueError(
                f"{directory}: {FRESH_IDS_FILE} has {len(fresh_ids)} ids, {FRESH_INDEX_FILE} "
                f"has {fresh.ntotal} vectors"
            )
        is_hnsw = isinstance(main, faiss.IndexHNSW)
        if is_hnsw != (kind == "hnsw"):
            raise ValueError(f"{directory}: manifest says {kind!r}, {INDEX_FILE} disagrees")
        if main.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ValueError(f"{directory}: {INDEX_FILE} does not use inner product")
        if not isinstance(fresh, faiss.IndexFlatIP):
            raise ValueError(f"{directory}: {FRESH_INDEX_FILE} is not an exact inner-product index")
        if main.d != manifest.get("dim") or fresh.d != main.d:
            raise ValueError(
                f"{directory}: dims disagree (manifest {manifest.get('dim')}, main {main.d}, "
                f"fresh {fresh.d})"
            )
        all_ids = main_ids + fresh_ids
        _as_ids(all_ids, len(all_ids))  # the two parts must not share an id either

        params = {k: int(v) for k, v in manifest["params"].items()}
        if is_hnsw:
            main.hnsw.efSearch = params["ef_search"]  # type: ignore[attr-defined]  # an IndexHNSW
        return cls(main, main_ids, kind=kind, params=params, fresh=fresh, fresh_ids=fresh_ids)

    def __repr__(self) -> str:
        return f"CandidateIndex(kind={self._kind!r}, dim={self.dim}, size={self.size})"
