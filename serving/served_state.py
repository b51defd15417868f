"""What the service served, shared by every worker: recently served videos and served lists.

Two pieces of serving state must be seen by every worker process, because consecutive
requests of one user, and a feedback call for a served list, may land on any of them:

- **recently served**: the last ``per_user`` videos shown to each user, so the next scroll
  does not repeat them (:class:`Recent`);
- **served lists**: what each response served, by ``request_id``, so ``POST /feedback`` can
  check an event against it and fill in user, surface, position and arm (:class:`Lists`).

Three backends, chosen by ``serving.shared_state`` (``auto`` picks for you):

- ``memory``: in the process; right for one worker and for tests of the pipeline class.
- ``sqlite``: a WAL-mode SQLite file under ``<home>/serving/``, shared by the workers of one
  host without any server (the local profile with several workers).
- ``redis``: the cluster profile's Redis, shared by workers on any number of hosts; keys
  expire after ``served_ttl_hours``.

Entries older than ``served_ttl_hours`` are forgotten by every backend: feedback for a list
served longer ago than that is rejected as unknown.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from serving.feedback import ServedList

log = logging.getLogger(__name__)


class Recent(Protocol):
    def get(self, user_id: str) -> set[str]: ...
    def add(self, user_id: str, video_ids: Iterable[str]) -> None: ...


class Lists(Protocol):
    def add(self, served: ServedList) -> None: ...
    def get(self, request_id: str) -> ServedList | None: ...


def encode_list(served: ServedList) -> str:
    return json.dumps(
        {
            "request_id": served.request_id,
            "ts": served.ts.timestamp(),
            "user_id": served.user_id,
            "surface": served.surface,
            "arm": served.arm,
            "ranker_version": served.ranker_version,
            "videos": list(served.positions),
            "durations": [served.durations.get(v, 0.0) for v in served.positions],
        },
        separators=(",", ":"),
    )


def decode_list(payload: str | bytes) -> ServedList:
    d = json.loads(payload)
    videos = d["videos"]
    return ServedList(
        d["request_id"],
        datetime.fromtimestamp(d["ts"], UTC),
        d["user_id"],
        d["surface"],
        d["arm"],
        d["ranker_version"],
        {v: i for i, v in enumerate(videos)},
        dict(zip(videos, d["durations"], strict=True)),
    )


# -- memory ----------------------------------------------------------------------------------
class MemoryRecent:
    """The most recent ``per_user`` ids for the ``max_users`` most recently served users."""

    def __init__(self, per_user: int = 200, max_users: int = 100_000) -> None:
        self.per_user, self.max_users = per_user, max_users
        self._users: OrderedDict[str, deque[str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, user_id: str) -> set[str]:
        with self._lock:
            ids = self._users.get(user_id)
            return set(ids) if ids else set()

    def add(self, user_id: str, video_ids: Iterable[str]) -> None:
        with self._lock:
            ids = self._users.get(user_id)
            if ids is None:
                ids = self._users[user_id] = deque(maxlen=self.per_user)
            ids.extend(video_ids)
            self._users.move_to_end(user_id)
            while len(self._users) > self.max_users:
                self._users.popitem(last=False)


class MemoryLists:
    """The most recent served lists of this process, by request id (bounded, LRU, TTL)."""

    def __init__(self, capacity: int = 200_000, ttl_s: float = 86_400.0) -> None:
        self.capacity, self.ttl_s = capacity, ttl_s
        self._lists: OrderedDict[str, tuple[float, ServedList]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, served: ServedList) -> None:
        with self._lock:
            self._lists[served.request_id] = (time.time(), served)
            self._lists.move_to_end(served.request_id)
            while len(self._lists) > self.capacity:
                self._lists.popitem(last=False)

    def get(self, request_id: str) -> ServedList | None:
        with self._lock:
            entry = self._lists.get(request_id)
        if entry is None or time.time() - entry[0] > self.ttl_s:
            return None
        return entry[1]

    def __len__(self) -> int:
        return len(self._lists)


# -- SQLite ----------------------------------------------------------------------------------
_SCHEMA = """
CREATE TABLE IF NOT EXISTS served_lists (
    request_id TEXT PRIMARY KEY, ts REAL NOT NULL, payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS served_lists_ts ON served_lists (ts);
CREATE TABLE IF NOT EXISTS recent (
    user_id TEXT NOT NULL, ts REAL NOT NULL, video_ids TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS recent_user_ts ON recent (user_id, ts);
CREATE INDEX IF NOT EXISTS recent_ts ON recent (ts);
"""


class SqliteState:
    """Served state in one SQLite file, shared by the worker processes of a host.

    WAL mode lets readers run beside the one writer; each write is one short transaction
    (tens of microseconds). ``recent`` reads the user's newest rows until ``per_user`` ids
    are collected. Nothing slow runs on the request path: a background thread of each
    process checkpoints the WAL every ``checkpoint_s`` (passive: it never blocks a reader or
    a writer, and its fsync happens there) and deletes rows older than the TTL every
    ``prune_s``. Left to SQLite, a checkpoint (with its fsync) runs inside whichever request
    happens to commit the thousandth page, and stalls that worker for tens of milliseconds.
    """

    def __init__(
        self,
        path: Path,
        per_user: int = 200,
        ttl_s: float = 86_400.0,
        checkpoint_s: float = 1.0,
        prune_s: float = 60.0,
        wal_limit_bytes: int = 16 << 20,
    ) -> None:
        self.path, self.per_user, self.ttl_s = Path(path), per_user, ttl_s
        self.checkpoint_s, self.prune_s = checkpoint_s, prune_s
        self.wal_limit_bytes = wal_limit_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        con = self._con()
        con.executescript(_SCHEMA)
        self.recent = _SqliteRecent(self)
        self.lists = _SqliteLists(self)
        self._stop = threading.Event()
        self._maintenance = threading.Thread(
            target=self._maintain, name="served-state-maintenance", daemon=True
        )
        self._maintenance.start()

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("PRAGMA busy_timeout=10000")
            con.execute("PRAGMA wal_autocheckpoint=0")  # the maintenance thread checkpoints
            self._local.con = con
        return con

    def write(self, sql: str, args: tuple[Any, ...]) -> None:
        self._con().execute(sql, args)

    def checkpoint(self) -> None:
        """Copy the WAL into the database as far as no reader needs it (never blocks).

        Under steady traffic some reader is always inside the WAL, so SQLite never gets to
        start it over and it grows without bound (13 MB/s at 200 requests/s, measured). Past
        ``wal_limit_bytes``, a truncating checkpoint rewinds it: that one holds writers back
        while it copies the frames since the last tick, and waits at most 20 ms for readers (else
        it is tried again at the next tick)."""
        con = self._con()
        con.execute("PRAGMA wal_checkpoint(PASSIVE)")
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            size = wal.stat().st_size
        except FileNotFoundError:
            return
        if size > self.wal_limit_bytes:
            con.execute("PRAGMA busy_timeout=20")
            try:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                con.execute("PRAGMA busy_timeout=10000")

    def prune(self, now: float | None = None) -> None:
        cutoff = (now or time.time()) - self.ttl_s
        con = self._con()
        con.execute("DELETE FROM served_lists WHERE ts < ?", (cutoff,))
        con.execute("DELETE FROM recent WHERE ts < ?", (cutoff,))

    def _maintain(self) -> None:
        next_prune = time.monotonic() + self.prune_s
        while not self._stop.wait(self.checkpoint_s):
            try:
                self.checkpoint()
                if time.monotonic() >= next_prune:
                    self.prune()
                    next_prune = time.monotonic() + self.prune_s
            except sqlite3.Error:
                log.exception("served state: maintenance of %s failed; retrying", self.path)
        self.close()  # this thread's own connection

    def close(self) -> None:
        if threading.current_thread() is not self._maintenance:
            self._stop.set()
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


class _SqliteRecent:
    def __init__(self, state: SqliteState) -> None:
        self.state = state

    def get(self, user_id: str) -> set[str]:
        cutoff = time.time() - self.state.ttl_s
        ids: set[str] = set()
        rows = self.state._con().execute(
            "SELECT video_ids FROM recent WHERE user_id = ? AND ts >= ? ORDER BY ts DESC",
            (user_id, cutoff),
        )
        for (joined,) in rows:
            ids.update(joined.split("\t"))
            if len(ids) >= self.state.per_user:
                break
        return ids

    def add(self, user_id: str, video_ids: Iterable[str]) -> None:
        joined = "\t".join(video_ids)
        if joined:
            self.state.write(
                "INSERT INTO recent (user_id, ts, video_ids) VALUES (?, ?, ?)",
                (user_id, time.time(), joined),
            )


class _SqliteLists:
    def __init__(self, state: SqliteState) -> None:
        self.state = state

    def add(self, served: ServedList) -> None:
        self.state.write(
            "INSERT OR REPLACE INTO served_lists (request_id, ts, payload) VALUES (?, ?, ?)",
            (served.request_id, served.ts.timestamp(), encode_list(served)),
        )

    def get(self, request_id: str) -> ServedList | None:
        row = (
            self.state._con()
            .execute(
                "SELECT payload FROM served_lists WHERE request_id = ? AND ts >= ?",
                (request_id, time.time() - self.state.ttl_s),
            )
            .fetchone()
        )
        return decode_list(row[0]) if row else None


# -- Redis -----------------------------------------------------------------------------------
class RedisState:
    """Served state in Redis: ``<prefix>list:<request_id>`` (a JSON string) and
    ``<prefix>recent:<user_id>`` (a capped list, newest first), both expiring after the TTL.
    One round trip per call (pipelined)."""

    def __init__(
        self, url: str, prefix: str = "reelrank:", per_user: int = 200, ttl_s: float = 86_400.0
    ) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self.client.ping()  # fail at start-up, not on the first request
        self.prefix, self.per_user, self.ttl = prefix, per_user, max(1, int(ttl_s))
        self.recent = _RedisRecent(self)
        self.lists = _RedisLists(self)

    def close(self) -> None:
        self.client.close()


class _RedisRecent:
    def __init__(self, state: RedisState) -> None:
        self.state = state

    def get(self, user_id: str) -> set[str]:
        s = self.state
        raw = s.client.lrange(f"{s.prefix}recent:{user_id}", 0, s.per_user - 1)
        return {v.decode() for v in raw}  # type: ignore[union-attr]

    def add(self, user_id: str, video_ids: Iterable[str]) -> None:
        ids = list(video_ids)
        if not ids:
            return
        s = self.state
        key = f"{s.prefix}recent:{user_id}"
        pipe = s.client.pipeline(transaction=False)
        pipe.lpush(key, *ids)
        pipe.ltrim(key, 0, s.per_user - 1)
        pipe.expire(key, s.ttl)
        pipe.execute()


class _RedisLists:
    def __init__(self, state: RedisState) -> None:
        self.state = state

    def add(self, served: ServedList) -> None:
        s = self.state
        s.client.set(f"{s.prefix}list:{served.request_id}", encode_list(served), ex=s.ttl)

    def get(self, request_id: str) -> ServedList | None:
        s = self.state
        payload = s.client.get(f"{s.prefix}list:{request_id}")
        return decode_list(payload) if payload is not None else None  # type: ignore[arg-type]


# -- choosing a backend ----------------------------------------------------------------------
class ServedState:
    """The backend's two views, plus its name (shown in logs and ``reelrank status``)."""

    def __init__(self, backend: str, recent: Recent, lists: Lists, closer: Any = None) -> None:
        self.backend, self.recent, self.lists = backend, recent, lists
        self._closer = closer

    def close(self) -> None:
        if self._closer is not None:
            self._closer.close()


def resolve_backend(choice: str, profile: str, workers: int) -> str:
    """``auto``: Redis in the cluster profile, SQLite when one host runs several workers,
    memory otherwise."""
    if choice != "auto":
        return choice
    if profile == "cluster":
        return "redis"
    return "sqlite" if workers > 1 else "memory"


MEMORY_FS = Path("/dev/shm")


def sqlite_path(settings: Any) -> Path:
    """Where the workers' SQLite served state lives: ``serving.state_dir`` when set, else a
    memory filesystem when the host has one, else ``<home>/serving``.

    Like Redis in the cluster profile, the served state is a cache that expires within a
    day, and it is written on every request: about 30 KB of pages per request through the
    WAL and again into the database. On disk that is 13 MB/s at 200 requests/s, and its
    write-back stalled every process on a small host for tens of milliseconds at a time.
    In memory it costs no I/O; a reboot forgets it, as Redis without persistence would."""
    import hashlib

    configured = settings.serving.state_dir
    if configured is not None:
        return Path(configured) / "served_state.sqlite"
    if MEMORY_FS.is_dir() and os.access(MEMORY_FS, os.W_OK):
        home = hashlib.blake2b(str(Path(settings.home).resolve()).encode(), digest_size=8)
        return MEMORY_FS / f"reelrank-{home.hexdigest()}" / "served_state.sqlite"
    return settings.serving_dir / "served_state.sqlite"


def open_served_state(settings: Any) -> ServedState:
    """The served-state backend the settings ask for (``serving.shared_state``)."""
    sv = settings.serving
    ttl = sv.served_ttl_hours * 3600.0
    backend = resolve_backend(sv.shared_state, settings.profile, sv.workers)
    if backend == "memory":
        return ServedState(backend, MemoryRecent(), MemoryLists(ttl_s=ttl))
    if backend == "sqlite":
        st = SqliteState(sqlite_path(settings), ttl_s=ttl)
        return ServedState(backend, st.recent, st.lists, st)
    if backend == "redis":
        rs = RedisState(settings.redis_url.get_secret_value(), prefix=sv.state_prefix, ttl_s=ttl)
        return ServedState(backend, rs.recent, rs.lists, rs)
    raise ValueError(f"unknown serving.shared_state {backend!r}: auto, memory, sqlite or redis")
