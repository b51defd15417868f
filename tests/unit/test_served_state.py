"""Served state shared by workers: memory, SQLite (several processes) and a real Redis."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from serving.feedback import ServedList
from serving.served_state import (
    MEMORY_FS,
    MemoryClaims,
    MemoryEvents,
    MemoryLists,
    MemoryRecent,
    RedisState,
    SqliteState,
    decode_list,
    encode_list,
    open_served_state,
    resolve_backend,
    sqlite_path,
)
from tests.conftest import tiny_settings

REDIS_URL = os.environ.get("REELRANK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def served(request_id: str, user: str = "u1") -> ServedList:
    return ServedList(
        request_id,
        datetime.now(UTC),
        user,
        "stories",
        "challenger",
        "7",
        {"v1": 0, "v2": 1},
        {"v1": 9.0, "v2": 20.5},
    )


def same(a: ServedList | None, b: ServedList) -> bool:
    """Equal, with the timestamp to the millisecond (it travels as epoch seconds)."""
    return (
        a is not None
        and abs((a.ts - b.ts).total_seconds()) < 1e-3
        and {**a.__dict__, "ts": None} == {**b.__dict__, "ts": None}
    )


def test_a_served_list_survives_encoding() -> None:
    s = served("r1")
    assert same(decode_list(encode_list(s)), s)


@pytest.fixture(params=["memory", "sqlite", "redis"])
def state(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "memory":
        yield MemoryRecent(per_user=5), MemoryLists()
        return
    if request.param == "sqlite":
        st = SqliteState(tmp_path / "s.sqlite", per_user=5)
        yield st.recent, st.lists
        st.close()
        return
    try:
        rs = RedisState(REDIS_URL, prefix=f"test-{uuid.uuid4().hex}:", per_user=5)
    except Exception as err:
        if os.environ.get("CI"):
            pytest.fail(f"Redis at {REDIS_URL} is required under CI: {err}")
        pytest.skip(f"no Redis at {REDIS_URL}: {err}")
    yield rs.recent, rs.lists
    for key in rs.client.scan_iter(f"{rs.prefix}*"):
        rs.client.delete(key)
    rs.close()


def test_each_backend_keeps_lists_and_recent_videos(state) -> None:
    recent, lists = state
    assert lists.get("nope") is None and recent.get("u1") == set()
    s = served("r1")
    lists.add(s)
    assert same(lists.get("r1"), s)
    recent.add("u1", ["a", "b", "c"])
    recent.add("u1", ["d", "e", "f", "g"])
    recent.add("u2", ["z"])
    got = recent.get("u1")
    # the newest ids are kept, at least per_user (5) of them, and never another user's
    assert {"d", "e", "f", "g"} <= got and "z" not in got
    assert recent.get("u2") == {"z"}


@pytest.fixture(params=["memory", "sqlite", "redis"])
def claims_pair(request: pytest.FixtureRequest, tmp_path: Path):
    """Two handles on one backend's feedback claims, as two workers hold them."""
    if request.param == "memory":
        one = MemoryClaims()
        yield one, one
        return
    if request.param == "sqlite":
        a, b = SqliteState(tmp_path / "s.sqlite"), SqliteState(tmp_path / "s.sqlite")
        yield a.claims, b.claims
        a.close()
        b.close()
        return
    prefix = f"test-{uuid.uuid4().hex}:"
    try:
        a, b = RedisState(REDIS_URL, prefix=prefix), RedisState(REDIS_URL, prefix=prefix)
    except Exception as err:
        if os.environ.get("CI"):
            pytest.fail(f"Redis at {REDIS_URL} is required under CI: {err}")
        pytest.skip(f"no Redis at {REDIS_URL}: {err}")
    yield a.claims, b.claims
    for key in a.client.scan_iter(f"{prefix}*"):
        a.client.delete(key)
    a.close()
    b.close()


def test_a_feedback_event_is_claimed_once_across_workers(claims_pair) -> None:
    one, other = claims_pair
    assert one.claim(["r1\tv1\tliked", "r1\tv1\tliked", "r1\tv2\tview"]) == [
        True,
        False,  # the same event twice in one batch
        True,
    ]
    assert other.claim(["r1\tv1\tliked", "r1\tv1\tshared"]) == [False, True]
    other.release(["r1\tv1\tshared"])  # its batch was not written: a retry is new again
    assert one.claim(["r1\tv1\tshared"]) == [True]


def test_sqlite_forgets_claims_after_the_ttl(tmp_path: Path) -> None:
    st = SqliteState(tmp_path / "s.sqlite", ttl_s=60)
    assert st.claims.claim(["k"]) == [True]
    st.prune(now=time.time() + 120)
    assert st.claims.claim(["k"]) == [True]
    st.close()


def test_memory_recent_is_capped_per_user() -> None:
    recent = MemoryRecent(per_user=3)
    recent.add("u", ["a", "b", "c", "d"])
    assert recent.get("u") == {"b", "c", "d"}


def test_sqlite_forgets_entries_after_the_ttl(tmp_path: Path) -> None:
    st = SqliteState(tmp_path / "s.sqlite", ttl_s=60)
    st.lists.add(served("old"))
    st.recent.add("u1", ["a"])
    st.prune(now=time.time() + 120)
    assert st.lists.get("old") is None and st.recent.get("u1") == set()


def test_sqlite_checkpoints_and_prunes_off_the_request_path(tmp_path: Path) -> None:
    """Writers never checkpoint the WAL (SQLite would do it, with an fsync, inside whichever
    request commits the thousandth page); the maintenance thread does, and prunes."""
    path = tmp_path / "s.sqlite"
    st = SqliteState(path, ttl_s=60, checkpoint_s=3600)  # no maintenance during the writes
    assert st._con().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    for i in range(3000):
        st.lists.add(served(f"r{i}"))
    wal = path.with_name(path.name + "-wal")
    assert wal.stat().st_size > 1000 * 4096  # past SQLite's own checkpoint point
    # frames in the WAL that no checkpoint has copied yet
    busy, frames, copied = st._con().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert busy == 0 and frames > 1000 and copied == frames  # copied only now, by this call
    st.close()

    # past its size limit the WAL is truncated, not only copied (a reader always inside it
    # under steady traffic would otherwise keep SQLite from ever starting it over)
    capped = SqliteState(path, checkpoint_s=3600, wal_limit_bytes=1 << 20)
    for i in range(3000):
        capped.lists.add(served(f"c{i}"))
    assert wal.stat().st_size > 1 << 20
    capped.checkpoint()
    assert wal.stat().st_size == 0 and capped.lists.get("c2999") is not None
    capped.close()

    quick = SqliteState(path, ttl_s=60, checkpoint_s=0.05, prune_s=0.1)
    quick.write(
        "INSERT INTO served_lists (request_id, ts, payload) VALUES (?, ?, ?)",
        ("ancient", time.time() - 3600, "{}"),
    )
    deadline = time.monotonic() + 10
    while _count(path, "ancient"):
        assert time.monotonic() < deadline, "the maintenance thread did not prune"
        time.sleep(0.05)
    assert quick.lists.get("r0") is not None  # young rows stay
    quick.close()


def _count(path: Path, request_id: str) -> int:
    import sqlite3

    with sqlite3.connect(path) as con:
        q = "SELECT COUNT(*) FROM served_lists WHERE request_id = ?"
        return int(con.execute(q, (request_id,)).fetchone()[0])


def _writer(path: str, worker: int, n: int) -> None:
    st = SqliteState(Path(path))
    for i in range(n):
        st.lists.add(served(f"w{worker}-{i}", user=f"user{worker}"))
        st.recent.add("shared-user", [f"w{worker}-v{i}"])
    st.close()


def test_sqlite_is_shared_by_processes(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    SqliteState(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), w, 150)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    st = SqliteState(path)
    assert all(st.lists.get(f"w{w}-{i}") is not None for w in range(2) for i in range(150))
    seen = st.recent.get("shared-user")
    assert len(seen) == 200  # the newest per_user ids, written by both processes
    assert any(v.startswith("w0-") for v in seen) and any(v.startswith("w1-") for v in seen)


def test_backend_choice(tmp_path: Path) -> None:
    assert resolve_backend("auto", "local", 1) == "memory"
    assert resolve_backend("auto", "local", 2) == "sqlite"
    assert resolve_backend("auto", "cluster", 1) == "redis"
    assert resolve_backend("memory", "cluster", 4) == "memory"
    s = tiny_settings(tmp_path / "var", serving={"workers": 2, "state_dir": tmp_path / "st"})
    st = open_served_state(s)
    assert st.backend == "sqlite"
    assert (tmp_path / "st" / "served_state.sqlite").exists()
    st.close()
    # unset: in memory where the host has a memory filesystem, one file per home
    default = tiny_settings(tmp_path / "var", serving={"workers": 2})
    other = tiny_settings(tmp_path / "var2", serving={"workers": 2})
    path = sqlite_path(default)
    assert path != sqlite_path(other) and path == sqlite_path(default)
    if MEMORY_FS.is_dir() and os.access(MEMORY_FS, os.W_OK):
        assert path.parent.parent == MEMORY_FS
    else:
        assert path == default.serving_dir / "served_state.sqlite"


# -- recent engagement events ----------------------------------------------------------------
@pytest.fixture(params=["memory", "sqlite", "redis"])
def events_pair(request: pytest.FixtureRequest, tmp_path: Path):
    """Two handles on one backend's recent engagement events, as two workers hold them
    (memory: one process, so one store), each keeping the newest 4 events per user."""
    if request.param == "memory":
        one = MemoryEvents(per_user=4)
        yield one, one
        return
    if request.param == "sqlite":
        path = tmp_path / "s.sqlite"
        a, b = SqliteState(path, events_per_user=4), SqliteState(path, events_per_user=4)
        yield a.events, b.events
        a.close()
        b.close()
        return
    prefix = f"test-{uuid.uuid4().hex}:"
    try:
        a = RedisState(REDIS_URL, prefix=prefix, events_per_user=4)
        b = RedisState(REDIS_URL, prefix=prefix, events_per_user=4)
    except Exception as err:
        if os.environ.get("CI"):
            pytest.fail(f"Redis at {REDIS_URL} is required under CI: {err}")
        pytest.skip(f"no Redis at {REDIS_URL}: {err}")
    yield a.events, b.events
    for key in a.client.scan_iter(f"{prefix}*"):
        a.client.delete(key)
    a.close()
    b.close()


def test_events_one_worker_appends_are_read_by_another_oldest_first_and_bounded(events_pair):
    one, other = events_pair
    assert other.get("u1") == []
    one.add("u1", [("v1", 65, 100.0), ("v2", 8, 160.5)])
    assert other.get("u1") == [("v1", 65, 100.0), ("v2", 8, 160.5)]
    # a batch posted late with an earlier event: read back in time order, not arrival order
    other.add("u1", [("v3", 2, 130.0)])
    other.add("u2", [("z", 1, 50.0)])
    assert one.get("u1") == [("v1", 65, 100.0), ("v3", 2, 130.0), ("v2", 8, 160.5)]
    # the newest 4 are kept: two more push the oldest out
    one.add("u1", [("v4", 1, 170.0), ("v5", 1, 180.0)])
    assert other.get("u1") == [
        ("v3", 2, 130.0),
        ("v2", 8, 160.5),
        ("v4", 1, 170.0),
        ("v5", 1, 180.0),
    ]
    assert one.get("u2") == [("z", 1, 50.0)]  # never another user's


def test_sqlite_forgets_events_after_the_ttl(tmp_path: Path) -> None:
    st = SqliteState(tmp_path / "s.sqlite", ttl_s=60)
    st.events.add("u1", [("v1", 1, 10.0)])
    assert st.events.get("u1") == [("v1", 1, 10.0)]
    st.prune(now=time.time() + 120)
    assert st.events.get("u1") == []
    st.close()


def test_memory_events_expire_and_forget_the_least_recent_users() -> None:
    store = MemoryEvents(per_user=3, max_users=2, ttl_s=60.0)
    store.add("a", [("v1", 1, 1.0)])
    store.add("b", [("v2", 1, 2.0)])
    store.add("c", [("v3", 1, 3.0)])  # a is the least recently written: forgotten
    assert store.get("a") == [] and store.get("c") == [("v3", 1, 3.0)]
    assert store.get("b", now=time.time() + 120) == []  # older than the TTL
    off = MemoryEvents(per_user=0)  # real-time events turned off: nothing is kept
    off.add("a", [("v1", 1, 1.0)])
    assert off.get("a") == []


def test_the_settings_bound_reaches_every_backend(tmp_path: Path) -> None:
    s = tiny_settings(
        tmp_path / "var",
        serving={"workers": 2, "state_dir": tmp_path / "st", "realtime_events": 2},
    )
    st = open_served_state(s)
    st.events.add("u", [("a", 1, 1.0), ("b", 1, 2.0), ("c", 1, 3.0)])
    assert st.events.get("u") == [("b", 1, 2.0), ("c", 1, 3.0)]
    st.close()
