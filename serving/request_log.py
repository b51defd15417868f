"""The served-request log: every served item with its score and feature vector, as Parquet.

Monitoring compares these vectors with the champion's training reference, and tomorrow's
training joins them to delayed feedback by ``request_id``. Each item also carries its
propensity: the probability the serving policy showed it in its position (off-policy
estimates divide by it). Layout::

    <root>/served/day=YYYY-MM-DD/part-<utc stamp>-<pid>-<seq>.parquet

one row per served item, partitioned by the UTC day of the request. The feature vector is a
positional ``list<float32>`` column; its names are in the file's key-value metadata, so a
file never mixes two feature sets.

The caller's thread only validates, copies and appends to a list under a lock; conversion to
Arrow and writing happen at flush, on the background thread (or wherever ``flush`` is called).
A file is written to a hidden temporary name, fsynced and renamed into place, so a reader
never sees half of one. A failed write keeps its rows buffered for the next flush.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import count
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ingest.served import (
    FEATURE_NAMES_KEY,
    LOG_VERSION,
    LOG_VERSION_KEY,
    SCHEMA,
    partition_dir,
)

log = logging.getLogger(__name__)

_MAX_LIST_VALUES = 2**31 - 1  # int32 list offsets
_FILE_SEQ = count()  # shared by every log in the process, so file names never collide

Handler = Callable[[int, FrameType | None], Any] | int | None


@dataclass(frozen=True, slots=True)
class _Request:
    """One logged request, as the caller handed it over (arrays already copied)."""

    request_id: str
    ts_us: int
    day: date
    user_id: str
    arm: str
    ranker_version: str
    retrieval_version: str | None
    surface: str
    video_ids: tuple[str, ...]
    scores: np.ndarray  # (n,) float32
    propensities: np.ndarray | None  # (n,) float64, None when the caller did not say
    features: np.ndarray  # (n, f) float32
    feature_names: tuple[str, ...]
    logged_at: float  # time.monotonic() when logged

    @property
    def rows(self) -> int:
        return len(self.video_ids)


@dataclass(frozen=True)
class RequestLogStats:
    """Counters for metrics; ``pending_rows`` are buffered and not yet on disk."""

    requests_logged: int
    rows_logged: int
    rows_written: int
    rows_dropped: int
    pending_rows: int
    write_errors: int


# Dictionary encoding pays for the repeated strings only; tried on the feature vectors and
# scores (nearly all distinct) it was 80% of a flush's CPU time, taken from the requests.
_DICTIONARY_COLUMNS = [
    "request_id",
    "user_id",
    "arm",
    "ranker_version",
    "retrieval_version",
    "surface",
    "video_id",
]


def _write_table(table: pa.Table, sink: BinaryIO) -> None:
    """Serialise one table into an open file (the step a failing disk breaks)."""
    pq.write_table(table, sink, use_dictionary=_DICTIONARY_COLUMNS)


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort where directories can't be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _utc(ts: datetime | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(ts)
    if stamp.tzinfo is None:
        raise ValueError(f"ts must be timezone-aware (UTC), got naive {ts!r}")
    return stamp.tz_convert("UTC")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _utc_us(ts: datetime | pd.Timestamp) -> tuple[int, date]:
    """Microseconds since the epoch and the UTC day of an aware timestamp (per request: a
    plain datetime takes the fast path, without building a pandas Timestamp)."""
    if isinstance(ts, datetime) and not isinstance(ts, pd.Timestamp):
        if ts.tzinfo is None:
            raise ValueError(f"ts must be timezone-aware (UTC), got naive {ts!r}")
        utc = ts.astimezone(UTC)
        return (utc - _EPOCH) // _MICROSECOND, utc.date()
    stamp = _utc(ts)
    return stamp.value // 1000, stamp.date()


class RequestLog:
    """Buffered, thread-safe writer of served items (see the module docstring).

    Threads: any number of request threads call :meth:`log`; one background thread (started
    by :meth:`start`, or by entering the context manager) flushes when ``max_rows`` rows are
    buffered or the oldest buffered row is ``max_age_s`` old. Without the thread, the thread
    whose :meth:`log` call reaches ``max_rows`` flushes inline. :meth:`close` stops the thread
    and flushes what is left; it is also registered with :mod:`atexit` while the thread runs.

    A failed write (full disk, permissions) keeps its rows buffered, counts ``write_errors``,
    logs the error and is retried no sooner than ``max_age_s`` later. Should the buffer reach
    ``max_pending_rows`` (writes failing for a long time), further requests are dropped and
    counted in ``rows_dropped``, with an error logged, rather than exhausting memory.
    """

    def __init__(
        self,
        root: Path,
        max_rows: int = 50_000,
        max_age_s: float = 5.0,
        max_pending_rows: int | None = None,
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        if not max_age_s > 0:
            raise ValueError(f"max_age_s must be > 0, got {max_age_s}")
        self.root = Path(root)
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.max_pending_rows = 20 * max_rows if max_pending_rows is None else max_pending_rows
        if self.max_pending_rows < max_rows:
            raise ValueError("max_pending_rows must be >= max_rows")
        self.requests_logged = 0
        self.rows_logged = 0
        self.rows_written = 0
        self.rows_dropped = 0
        self.write_errors = 0
        self.last_error: BaseException | None = None
        # Re-entrant: a signal handler runs on the main thread, possibly while that thread is
        # inside log() holding the lock.
        self._lock = threading.RLock()
        self._flush_lock = threading.RLock()
        self._flush_owner: int | None = None
        self._buffer: list[_Request] = []
        self._pending = 0
        self._dropping = False
        self._retry_at = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._previous_handlers: dict[int, Handler] = {}
        self._deferred_signal: tuple[int, FrameType | None] | None = None

    # -- caller side -------------------------------------------------------------------------

    def log(
        self,
        request_id: str,
        ts: datetime | pd.Timestamp,
        user_id: str,
        arm: str,
        ranker_version: str,
        retrieval_version: str | None,
        surface: str,
        video_ids: Sequence[str],
        scores: np.ndarray | Sequence[float],
        features: np.ndarray,
        feature_names: Sequence[str],
        propensities: np.ndarray | Sequence[float] | None = None,
    ) -> None:
        """Buffer one served request: one row per item, in served order (position 0..n-1).

        ``propensities``: per item, the probability the serving policy put it in its
        position given the positions before it, in (0, 1]; None logs nulls. The arrays are
        copied, so the caller may reuse them. Raises ValueError on mismatched shapes, a
        propensity out of (0, 1] or a naive ``ts``; never blocks on I/O unless no background
        thread runs.
        """
        ids = tuple(video_ids)
        n = len(ids)
        if n == 0:
            with self._lock:
                self.requests_logged += 1
            return
        names = tuple(feature_names)
        score_arr = np.array(scores, dtype=np.float32).reshape(-1)
        feat_arr = np.array(features, dtype=np.float32)
        if score_arr.shape != (n,):
            raise ValueError(f"scores has {score_arr.size} values for {n} video ids")
        if feat_arr.shape != (n, len(names)):
            raise ValueError(
                f"features has shape {feat_arr.shape}, expected ({n}, {len(names)}) "
                "(one row per video id, one column per feature name)"
            )
        prop_arr = None
        if propensities is not None:
            prop_arr = np.array(propensities, dtype=np.float64).reshape(-1)
            if prop_arr.shape != (n,):
                raise ValueError(f"propensities has {prop_arr.size} values for {n} video ids")
            if not ((prop_arr > 0.0) & (prop_arr <= 1.0)).all():  # NaN fails too
                raise ValueError(f"propensities must be in (0, 1], got {prop_arr.tolist()}")
        ts_us, day = _utc_us(ts)
        entry = _Request(
            request_id=str(request_id),
            ts_us=ts_us,
            day=day,
            user_id=str(user_id),
            arm=str(arm),
            ranker_version=str(ranker_version),
            retrieval_version=None if retrieval_version is None else str(retrieval_version),
            surface=str(surface),
            video_ids=ids,
            scores=score_arr,
            propensities=prop_arr,
            features=feat_arr,
            feature_names=names,
            logged_at=time.monotonic(),
        )
        with self._lock:
            self.requests_logged += 1
            if self._pending + n > self.max_pending_rows:
                self.rows_dropped += n
                if not self._dropping:
                    self._dropping = True
                    log.error(
                        "served-request log buffer full (%d rows pending, writes failing?): "
                        "dropping requests until a flush succeeds",
                        self._pending,
                    )
                return
            self._buffer.append(entry)
            self._pending += n
            self.rows_logged += n
            full = self._pending >= self.max_rows
        if self._closed:
            self.flush()  # late request after close(): write through, lose nothing
        elif full:
            if self._thread is not None and self._thread.is_alive():
                self._wake.set()
            else:
                self.flush()

    @property
    def pending_rows(self) -> int:
        return self._pending

    def stats(self) -> RequestLogStats:
        with self._lock:
            return RequestLogStats(
                requests_logged=self.requests_logged,
                rows_logged=self.rows_logged,
                rows_written=self.rows_written,
                rows_dropped=self.rows_dropped,
                pending_rows=self._pending,
                write_errors=self.write_errors,
            )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> RequestLog:
        """Start the background flusher (idempotent); returns self."""
        if self._closed:
            raise RuntimeError("RequestLog is closed")
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="request-log-flusher", daemon=True
            )
            self._thread.start()
            atexit.register(self.close)
        return self

    def close(self, timeout_s: float | None = 30.0) -> None:
        """Stop the background thread and flush everything buffered (idempotent).

        Rows that still cannot be written stay in memory and are reported in the log.
        """
        self._closed = True
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        self.flush()
        atexit.unregister(self.close)
        if self._pending:
            log.error("served-request log closed with %d rows unwritten", self._pending)

    def __enter__(self) -> RequestLog:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            delay = self._seconds_until_due()
            if delay > 0:
                self._wake.wait(delay)
                self._wake.clear()
                continue
            try:
                self.flush()
            except Exception:  # flush keeps failed rows; the thread must survive anything
                log.exception("served-request log flush failed")
                self._retry_at = time.monotonic() + self.max_age_s

    def _seconds_until_due(self) -> float:
        now = time.monotonic()
        with self._lock:
            if not self._buffer:
                return self.max_age_s
            if self._pending >= self.max_rows:
                due = now
            else:
                due = self._buffer[0].logged_at + self.max_age_s
            return max(due, self._retry_at) - now

    # -- writing -----------------------------------------------------------------------------

    def flush(self) -> int:
        """Write everything buffered now; returns the rows written.

        Never raises for a failed write: those rows stay buffered and ``write_errors`` counts
        the failure (see ``last_error``). Flushes are serialised; logging goes on meanwhile.
        """
        with self._flush_lock:
            self._flush_owner = threading.get_ident()
            try:
                written = self._flush_locked()
            finally:
                self._flush_owner = None
        self._run_deferred_signal()
        return written

    def _flush_locked(self) -> int:
        with self._lock:
            batch, self._buffer = self._buffer, []
            self._pending -= sum(e.rows for e in batch)
        if not batch:
            return 0
        groups = self._groups(batch)
        done: set[int] = set()
        written = errors = 0
        try:
            for gid, entries in enumerate(groups):
                try:
                    table = _to_table(entries)
                    self._write_file(entries[0].day, table)
                except Exception as exc:
                    errors += 1
                    self.last_error = exc
                    log.exception(
                        "served-request log: writing %d rows for %s failed; kept for retry",
                        sum(e.rows for e in entries),
                        entries[0].day,
                    )
                else:
                    done.add(gid)
                    written += table.num_rows
        finally:
            failed = {id(e) for gid, group in enumerate(groups) if gid not in done for e in group}
            kept = [e for e in batch if id(e) in failed]  # back in their original order
            with self._lock:
                self.rows_written += written
                self.write_errors += errors
                if kept:
                    self._buffer[:0] = kept
                    self._pending += sum(e.rows for e in kept)
                    self._retry_at = time.monotonic() + self.max_age_s
                elif self._dropping:
                    self._dropping = False
                    log.warning("served-request log writes recovered; no longer dropping")
        return written

    def _groups(self, batch: list[_Request]) -> list[list[_Request]]:
        """Split a batch into files: one (day, feature names) per file, bounded in rows."""
        open_groups: dict[tuple[date, tuple[str, ...]], list[_Request]] = {}
        rows: dict[tuple[date, tuple[str, ...]], int] = {}
        groups: list[list[_Request]] = []
        for entry in batch:
            key = (entry.day, entry.feature_names)
            limit = min(self.max_rows, _MAX_LIST_VALUES // max(len(entry.feature_names), 1))
            group = open_groups.get(key)
            if group is None or rows[key] + entry.rows > limit:
                group = open_groups[key] = []
                rows[key] = 0
                groups.append(group)
            group.append(entry)
            rows[key] += entry.rows
        return groups

    def _write_file(self, day: date, table: pa.Table) -> Path:
        directory = partition_dir(self.root, day)
        directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"part-{stamp}-{os.getpid()}-{next(_FILE_SEQ):06d}.parquet"
        path = directory / name
        tmp = directory / f".{name}.tmp"
        try:
            with open(tmp, "wb") as fh:
                _write_table(table, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(directory)
        return path

    # -- signals -----------------------------------------------------------------------------

    def install_signal_handlers(
        self, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)
    ) -> None:
        """Flush on SIGTERM/SIGINT, then hand the signal to the handler that was there before.

        Python only lets the main thread set handlers, so call this from the main thread
        (RuntimeError otherwise). A previous Python handler is called; the default action is
        re-raised with the default disposition (so the exit status still names the signal);
        an ignored signal stays ignored after the flush. A server that installs its own
        handlers later replaces these; prefer calling :meth:`close` from its shutdown hook.
        Calling it again is a no-op.
        """
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("install_signal_handlers must be called from the main thread")
        for signum in signals:
            if signal.getsignal(signum) == self._on_signal:
                continue  # already installed: chaining to ourselves would loop
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._flush_owner == threading.get_ident():
            # The signal interrupted a flush on this thread: finishing that flush first and
            # handling the signal afterwards keeps its batch from being lost.
            self._deferred_signal = (signum, frame)
            return
        self.flush()
        self._chain(signum, frame)

    def _run_deferred_signal(self) -> None:
        pending = self._deferred_signal
        if pending is None or threading.current_thread() is not threading.main_thread():
            return
        self._deferred_signal = None
        self._on_signal(*pending)

    def _chain(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous_handlers.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_IGN:
            return
        else:  # SIG_DFL, or None for a handler set outside Python
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


def _propensities(entries: Sequence[_Request]) -> pa.Array:
    """The propensity column: each entry's values, nulls for an entry logged without."""
    values = np.concatenate(
        [e.propensities if e.propensities is not None else np.full(e.rows, np.nan) for e in entries]
    )
    return pa.array(values, pa.float64(), mask=np.isnan(values))


def _to_table(entries: Sequence[_Request]) -> pa.Table:
    """One Arrow table for requests that share a day and a feature set."""
    names = entries[0].feature_names
    counts = np.fromiter((e.rows for e in entries), dtype=np.int64, count=len(entries))
    n = int(counts.sum())
    per_row = pa.array(np.repeat(np.arange(len(entries)), counts))

    def repeated(values: list[Any], typ: pa.DataType) -> pa.Array:
        return pa.array(values, typ).take(per_row)

    starts = np.repeat(np.cumsum(counts) - counts, counts)
    flat = np.concatenate([e.features.reshape(-1) for e in entries])
    offsets = np.arange(n + 1, dtype=np.int32) * np.int32(len(names))
    columns = [
        repeated([e.request_id for e in entries], pa.string()),
        pa.array(
            np.repeat(np.array([e.ts_us for e in entries], dtype=np.int64), counts),
            pa.timestamp("us", tz="UTC"),
        ),
        repeated([e.user_id for e in entries], pa.string()),
        repeated([e.arm for e in entries], pa.string()),
        repeated([e.ranker_version for e in entries], pa.string()),
        repeated([e.retrieval_version for e in entries], pa.string()),
        repeated([e.surface for e in entries], pa.string()),
        pa.array((np.arange(n) - starts).astype(np.int32)),
        pa.array([str(v) for e in entries for v in e.video_ids], pa.string()),
        pa.array(np.concatenate([e.scores for e in entries])),
        _propensities(entries),
        pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.float32())),
    ]
    metadata = {FEATURE_NAMES_KEY: json.dumps(list(names)).encode(), LOG_VERSION_KEY: LOG_VERSION}
    return pa.Table.from_arrays(columns, schema=SCHEMA.with_metadata(metadata))
