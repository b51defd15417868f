"""What the service served, shared by every worker: recently served videos and served lists.

Two pieces of serving state must be seen by every worker process, because consecutive
requests of one user, and a feedback call for a served list, may land on any of them:

- **recently served**: the last ``per_user`` videos shown to each user, so the next scroll
  does not repeat them (:class:`Recent`);
- **served lists**: what each response served, by ``request_id``, so ``POST /feedback`` can
  check an event against it and fill in user, surface, position and arm (:class:`Lists`);
- **accepted feedback**: the key of every accepted feedback event, so an event re-posted to
  any worker is answered as a duplicate and written once (:class:`Claims`);
- **recent events**: each user's latest ``events_per_user`` engagement events accepted by
  ``POST /feedback`` (video, action code, epoch seconds), so the user's next request, on any
  worker, reads what they did minutes ago before any materialization has (:class:`Events`;
  :func:`serving.pipeline.with_recent_events` merges them into the user's state).

Three backends, chosen by ``serving.shared_state`` (``auto`` picks for you):

- ``memory``: in the process; right for one worker and for tests of the pipeline class.
- ``sqlite``: a WAL-mode SQLite file under ``<home>/serving/``, shared by the workers of one
  host without any server (the local profile with several workers).
- ``redis``: the cluster profile's Redis, shared by workers on any number of hosts; keys
  expire after ``served_ttl_hours``.

Entries older than ``served_ttl_hours`` are forgotten by every backend: feedback for a list
served longer ago than that is rejected as unknown, and a recent event that old has reached
the online store through a materialization (events the store already holds are dropped at
merge time too, whatever their age).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import stat
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from reelrank.errors import ConfigError
from serving.feedback import ServedList

log = logging.getLogger(__name__)


class Recent(Protocol):
    def get(self, user_id: str) -> set[str]: ...
    def add(self, user_id: str, video_ids: Iterable[str]) -> None: ...


class Lists(Protocol):
    def add(self, served: ServedList) -> None: ...
    def get(self, request_id: str) -> ServedList | None: ...


class Claims(Protocol):
    """Accepted feedback events by key (:func:`serving.feedback.event_key`), shared by the
    workers so that a re-posted event is a duplicate whichever worker receives it."""

    def claim(self, keys: list[str]) -> list[bool]:
        """Mark each key accepted; True for the keys no one had claimed before (a key that
        occurs twice in ``keys`` is new only the first time). Atomic per key across
        processes: two workers claiming the same key at once give one True."""
        ...

    def release(self, keys: list[str]) -> None:
        """Forget claimed keys again (their batch could not be written)."""
        ...


# one engagement event as the sequence features encode it: video id, action code
# (features.sequence.action_codes), epoch seconds
RecentEvent = tuple[str, int, float]


class Events(Protocol):
    """Each user's latest engagement events, shared by the workers (bounded per user, TTL)."""

    def get(self, user_id: str) -> list[RecentEvent]:
        """The user's newest events, at most the bound, oldest first (ties: as appended)."""
        ...

    def add(self, user_id: str, events: Sequence[RecentEvent]) -> None:
        """Append accepted events (in any order: they are read back in time order)."""
        ...


def _in_time_order(events: Iterable[RecentEvent], keep: int) -> list[RecentEvent]:
    """The newest ``keep`` of events given in the order they were appended, oldest first
    (a stable sort: ties keep the append order)."""
    ordered = sorted(events, key=lambda e: e[2])
    return ordered[max(0, len(ordered) - keep) :] if keep > 0 else []


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


class UnsafeStateDir(ConfigError, PermissionError):
    """The served state's directory is not its owner's only: someone else made it, others may
    write to it, or it is a symbolic link (exit 2)."""


def private_state_dir(path: Path) -> Path:
    """Create ``path`` 0700, or accept an existing one only if this user owns it and nobody else
    may write to it (an own directory is tightened to 0700).

    The default location is predictable (``/dev/shm/reelrank-<hash of the home>``) in a
    directory every local user can write to: another user could create it first and then
    read what was served to whom, or plant a database. Refusing is the only safe answer."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=True)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UnsafeStateDir(
            f"served state directory {path} is a symbolic link or not a directory; remove it "
            "or set REELRANK_SERVING__STATE_DIR"
        )
    if st.st_uid != os.geteuid():
        raise UnsafeStateDir(
            f"served state directory {path} is owned by uid {st.st_uid}, not by this user "
            f"(uid {os.geteuid()}): someone else created it; remove it or set "
            "REELRANK_SERVING__STATE_DIR"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "others" if st.st_mode & stat.S_IWOTH else "its group"
        raise UnsafeStateDir(
            f"served state directory {path} is writable by {who} "
            f"(mode {oct(stat.S_IMODE(st.st_mode))}); use a directory only you can write to"
        )
    os.chmod(path, 0o700)
    return path


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


class MemoryClaims:
    """Claimed feedback keys of this process (bounded, LRU, TTL)."""

    def __init__(self, capacity: int = 1_000_000, ttl_s: float = 86_400.0) -> None:
        self.capacity, self.ttl_s = capacity, ttl_s
        self._keys: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, keys: list[str]) -> list[bool]:
        now, fresh = time.time(), []
        with self._lock:
            for key in keys:
                at = self._keys.get(key)
                new = at is None or now - at > self.ttl_s
                if new:
                    self._keys[key] = now
                    self._keys.move_to_end(key)
                fresh.append(new)
            while len(self._keys) > self.capacity:
                self._keys.popitem(last=False)
        return fresh

    def release(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._keys.pop(key, None)


class MemoryEvents:
    """The newest ``per_user`` engagement events of the ``max_users`` users who engaged most
    recently, forgotten after ``ttl_s`` (one process: one worker, or tests)."""

    def __init__(self, per_user: int = 50, max_users: int = 100_000, ttl_s: float = 86_400.0):
        self.per_user, self.max_users, self.ttl_s = per_user, max_users, ttl_s
        self._users: OrderedDict[str, deque[tuple[float, RecentEvent]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, user_id: str, now: float | None = None) -> list[RecentEvent]:
        with self._lock:
            held = self._users.get(user_id)
            if not held:
                return []
            entries = list(held)
        cutoff = (now or time.time()) - self.ttl_s
        return _in_time_order((e for at, e in entries if at >= cutoff), self.per_user)

    def add(self, user_id: str, events: Sequence[RecentEvent]) -> None:
        if self.per_user <= 0 or not events:
            return
        now = time.time()
        with self._lock:
            held = self._users.get(user_id)
            if held is None:
                held = self._users[user_id] = deque(maxlen=self.per_user)
            # kept in time order, so that the bound drops the oldest events, not the earliest
            # appended
            merged = sorted([*held, *((now, e) for e in events)], key=lambda p: p[1][2])
            held.clear()
            held.extend(merged)  # the deque keeps the newest per_user
            self._users.move_to_end(user_id)
            while len(self._users) > self.max_users:
                self._users.popitem(last=False)


# -- SQLite ----------------------------------------------------------------------------------
_SCHEMA = """
CREATE TABLE IF NOT EXISTS served_lists (
    request_id TEXT PRIMARY KEY, ts REAL NOT NULL, payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS served_lists_ts ON served_lists (ts);
CREATE TABLE IF NOT EXISTS recent (
    user_id TEXT NOT NULL, ts REAL NOT NULL, video_ids TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS recent_user_ts ON recent (user_id, ts);
CREATE INDEX IF NOT EXISTS recent_ts ON recent (ts);
CREATE TABLE IF NOT EXISTS feedback_claims (key TEXT PRIMARY KEY, ts REAL NOT NULL);
CREATE INDEX IF NOT EXISTS feedback_claims_ts ON feedback_claims (ts);
CREATE TABLE IF NOT EXISTS recent_events (
    user_id TEXT NOT NULL, ts REAL NOT NULL, video_id TEXT NOT NULL, action INTEGER NOT NULL,
    t REAL NOT NULL);
CREATE INDEX IF NOT EXISTS recent_events_user_t ON recent_events (user_id, t);
CREATE INDEX IF NOT EXISTS recent_events_ts ON recent_events (ts);
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
        events_per_user: int = 50,
    ) -> None:
        self.path, self.per_user, self.ttl_s = Path(path), per_user, ttl_s
        self.events_per_user = events_per_user
        self.checkpoint_s, self.prune_s = checkpoint_s, prune_s
        self.wal_limit_bytes = wal_limit_bytes
        private_state_dir(self.path.parent)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))  # SQLite's WAL copies its mode
        self._local = threading.local()
        con = self._con()
        con.executescript(_SCHEMA)
        self.recent = _SqliteRecent(self)
        self.lists = _SqliteLists(self)
        self.claims = _SqliteClaims(self)
        self.events = _SqliteEvents(self)
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
        con.execute("DELETE FROM feedback_claims WHERE ts < ?", (cutoff,))
        con.execute("DELETE FROM recent_events WHERE ts < ?", (cutoff,))

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


class _SqliteClaims:
    def __init__(self, state: SqliteState) -> None:
        self.state = state

    def claim(self, keys: list[str]) -> list[bool]:
        """One transaction: ``INSERT OR IGNORE`` per key; a key inserted is a new one (the
        primary key makes a concurrent claim by another process lose). A claim older than the
        TTL is taken over, as if pruned."""
        con = self.state._con()
        now = time.time()
        fresh = []
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute(
                "DELETE FROM feedback_claims WHERE key IN (SELECT value FROM json_each(?)) "
                "AND ts < ?",
                (json.dumps(keys), now - self.state.ttl_s),
            )
            for key in keys:
                cur = con.execute(
                    "INSERT OR IGNORE INTO feedback_claims (key, ts) VALUES (?, ?)", (key, now)
                )
                fresh.append(cur.rowcount == 1)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return fresh

    def release(self, keys: list[str]) -> None:
        self.state.write(
            "DELETE FROM feedback_claims WHERE key IN (SELECT value FROM json_each(?))",
            (json.dumps(keys),),
        )


class _SqliteEvents:
    """One row per event (``ts``: when it was appended, for the TTL; ``t``: when it happened);
    a read takes the user's newest ``events_per_user`` rows by ``t`` through the index."""

    def __init__(self, state: SqliteState) -> None:
        self.state = state

    def get(self, user_id: str) -> list[RecentEvent]:
        keep = self.state.events_per_user
        if keep <= 0:
            return []
        rows = (
            self.state._con()
            .execute(
                "SELECT video_id, action, t FROM recent_events WHERE user_id = ? AND ts >= ? "
                "ORDER BY t DESC, rowid DESC LIMIT ?",
                (user_id, time.time() - self.state.ttl_s, keep),
            )
            .fetchall()
        )
        return [(str(v), int(a), float(t)) for v, a, t in reversed(rows)]

    def add(self, user_id: str, events: Sequence[RecentEvent]) -> None:
        if self.state.events_per_user <= 0 or not events:
            return
        now = time.time()
        con = self.state._con()
        con.execute("BEGIN")
        try:
            con.executemany(
                "INSERT INTO recent_events (user_id, ts, video_id, action, t) "
                "VALUES (?, ?, ?, ?, ?)",
                [(user_id, now, v, int(a), float(t)) for v, a, t in events],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


# -- Redis -----------------------------------------------------------------------------------
class RedisState:
    """Served state in Redis: ``<prefix>list:<request_id>`` (a JSON string),
    ``<prefix>recent:<user_id>`` and ``<prefix>events:<user_id>`` (capped lists, newest
    first), all expiring after the TTL. One round trip per call (pipelined)."""

    def __init__(
        self,
        url: str,
        prefix: str = "reelrank:",
        per_user: int = 200,
        ttl_s: float = 86_400.0,
        events_per_user: int = 50,
    ) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self.client.ping()  # fail at start-up, not on the first request
        self.prefix, self.per_user, self.ttl = prefix, per_user, max(1, int(ttl_s))
        self.events_per_user = events_per_user
        self.recent = _RedisRecent(self)
        self.lists = _RedisLists(self)
        self.claims = _RedisClaims(self)
        self.events = _RedisEvents(self)

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


class _RedisClaims:
    """``<prefix>fb:<key>`` set with ``NX`` (only if absent) and the TTL: Redis runs each
    ``SET NX`` atomically, so of two workers claiming a key only one succeeds."""

    def __init__(self, state: RedisState) -> None:
        self.state = state

    def claim(self, keys: list[str]) -> list[bool]:
        s = self.state
        pipe = s.client.pipeline(transaction=False)
        for key in keys:
            pipe.set(f"{s.prefix}fb:{key}", 1, nx=True, ex=s.ttl)
        return [bool(ok) for ok in pipe.execute()]

    def release(self, keys: list[str]) -> None:
        if keys:
            s = self.state
            s.client.delete(*(f"{s.prefix}fb:{key}" for key in keys))


class _RedisEvents:
    """``<prefix>events:<user_id>``: a list of ``video<TAB>action<TAB>seconds`` entries,
    pushed in arrival order and trimmed to the newest ``events_per_user`` arrivals (a late
    batch with an earlier event may push out a later one; with the bound well above one
    session's events that never matters). Read back in time order."""

    def __init__(self, state: RedisState) -> None:
        self.state = state

    def get(self, user_id: str) -> list[RecentEvent]:
        s = self.state
        if s.events_per_user <= 0:
            return []
        raw = s.client.lrange(f"{s.prefix}events:{user_id}", 0, s.events_per_user - 1)
        events = []
        for entry in reversed(raw):  # type: ignore[arg-type]
            v, a, t = entry.decode().rsplit("\t", 2)  # the id may hold a tab
            events.append((v, int(a), float(t)))
        return _in_time_order(events, s.events_per_user)

    def add(self, user_id: str, events: Sequence[RecentEvent]) -> None:
        s = self.state
        if s.events_per_user <= 0 or not events:
            return
        key = f"{s.prefix}events:{user_id}"
        pipe = s.client.pipeline(transaction=False)
        pipe.lpush(key, *(f"{v}\t{int(a)}\t{float(t)!r}" for v, a, t in events))
        pipe.ltrim(key, 0, s.events_per_user - 1)
        pipe.expire(key, s.ttl)
        pipe.execute()


# -- choosing a backend ----------------------------------------------------------------------
class ServedState:
    """The backend's views, plus its name (shown in logs and ``reelrank status``)."""

    def __init__(
        self,
        backend: str,
        recent: Recent,
        lists: Lists,
        closer: Any = None,
        claims: Claims | None = None,
        events: Events | None = None,
    ) -> None:
        self.backend, self.recent, self.lists = backend, recent, lists
        self.claims: Claims = claims if claims is not None else MemoryClaims()
        self.events: Events = events if events is not None else MemoryEvents()
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
    n_events = sv.realtime_events
    backend = resolve_backend(sv.shared_state, settings.profile, sv.workers)
    if backend == "memory":
        return ServedState(
            backend,
            MemoryRecent(),
            MemoryLists(ttl_s=ttl),
            claims=MemoryClaims(ttl_s=ttl),
            events=MemoryEvents(per_user=n_events, ttl_s=ttl),
        )
    if backend == "sqlite":
        st = SqliteState(sqlite_path(settings), ttl_s=ttl, events_per_user=n_events)
        return ServedState(backend, st.recent, st.lists, st, st.claims, st.events)
    if backend == "redis":
        rs = RedisState(
            settings.redis_url.get_secret_value(),
            prefix=sv.state_prefix,
            ttl_s=ttl,
            events_per_user=n_events,
        )
        return ServedState(backend, rs.recent, rs.lists, rs, rs.claims, rs.events)
    raise ValueError(f"unknown serving.shared_state {backend!r}: auto, memory, sqlite or redis")
