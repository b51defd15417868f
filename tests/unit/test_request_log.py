"""The served-request log: round trip, partitions, threads, age flush, atomicity, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.served import SCHEMA, feature_frame, read_served, served_files
from serving import request_log
from serving.request_log import RequestLog

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
NAMES = ("f_age", "f_ctr", "f_len")
TS = pd.Timestamp("2024-05-01 12:00:00", tz="UTC")


def items(request_no: int, n: int, names: tuple[str, ...] = NAMES) -> dict[str, object]:
    """Values that encode (request, position), so any mix-up of rows shows on read."""
    positions = np.arange(n)
    feats = np.zeros((n, len(names)), dtype=np.float32)
    if names:
        feats[:, 0] = request_no
    if len(names) > 1:
        feats[:, 1] = positions
    return {
        "video_ids": [f"v{request_no}-{p}" for p in positions],
        "scores": (1.0 - positions / 100).astype(np.float32),
        "features": feats,
        "feature_names": names,
    }


def log_request(
    rl: RequestLog,
    request_no: int,
    n: int = 3,
    ts: datetime | pd.Timestamp = TS,
    names: tuple[str, ...] = NAMES,
) -> None:
    rl.log(
        request_id=f"r{request_no}",
        ts=ts,
        user_id=f"u{request_no % 7}",
        arm="champion" if request_no % 2 else "challenger",
        ranker_version="12",
        retrieval_version=None if request_no % 3 == 0 else "4",
        surface="spotlight",
        **items(request_no, n, names),  # type: ignore[arg-type]
    )


def visible_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    rl = RequestLog(tmp_path)
    log_request(rl, 3, n=4)
    log_request(rl, 4, n=2)
    assert rl.pending_rows == 6 and visible_files(tmp_path) == []  # nothing written yet
    assert rl.flush() == 6
    assert rl.flush() == 0

    df = read_served(tmp_path)
    assert len(df) == 6
    first = df[df.request_id == "r3"].reset_index(drop=True)
    assert first.position.tolist() == [0, 1, 2, 3]
    assert first.video_id.tolist() == ["v3-0", "v3-1", "v3-2", "v3-3"]
    assert first.score.dtype == np.float32
    np.testing.assert_array_equal(first.score, np.array([1.0, 0.99, 0.98, 0.97], dtype=np.float32))
    assert (first.ts == TS).all() and str(first.ts.dt.tz) == "UTC"
    assert first.loc[0, "user_id"] == "u3" and first.loc[0, "arm"] == "champion"
    assert first.loc[0, "ranker_version"] == "12" and first.loc[0, "surface"] == "spotlight"
    assert first.retrieval_version.isna().all()  # request 3 had no retrieval stage
    assert (df[df.request_id == "r4"].retrieval_version == "4").all()
    np.testing.assert_array_equal(np.stack(first.features), items(3, 4)["features"])

    stats = rl.stats()
    assert (stats.requests_logged, stats.rows_logged, stats.rows_written) == (2, 6, 6)
    assert (stats.pending_rows, stats.write_errors, stats.rows_dropped) == (0, 0, 0)


def test_file_schema_and_feature_names_metadata(tmp_path: Path) -> None:
    rl = RequestLog(tmp_path)
    log_request(rl, 1)
    rl.flush()
    (path,) = served_files(tmp_path)
    assert path.name.startswith("part-") and f"-{os.getpid()}-" in path.name
    schema = pq.read_schema(path)
    assert schema.field("features").type == pa.list_(pa.float32())
    assert schema.field("score").type == pa.float32()
    assert json.loads(schema.metadata[b"reelrank.feature_names"]) == list(NAMES)


def test_propensities_are_logged_per_item_and_older_logs_read_as_unknown(tmp_path: Path) -> None:
    """Issue 19: every shown item carries the probability the serving policy gave it in its
    position; a caller that does not say, and a file written before the column, read as null."""
    rl = RequestLog(tmp_path / "now")
    served = ("r1", TS, "u1", "champion", "12", "4", "spotlight")
    rl.log(*served, **items(1, 3), propensities=[0.955, 0.005, 1.0])  # type: ignore[arg-type]
    log_request(rl, 2, n=2)  # no propensities
    rl.flush()
    (path,) = served_files(tmp_path / "now")
    schema = pq.read_schema(path)
    assert schema.field("propensity").type == pa.float64()
    assert schema.metadata[b"reelrank.served_log_version"] == b"2"
    # a version-1 file, as written before the column existed, beside it
    before = RequestLog(tmp_path / "before")
    log_request(before, 3, n=4)
    before.flush()
    (old,) = served_files(tmp_path / "before")
    table = pq.read_table(old)
    v1 = table.drop_columns(["propensity"]).replace_schema_metadata(
        {**table.schema.metadata, b"reelrank.served_log_version": b"1"}
    )
    pq.write_table(v1, path.parent / "part-00000000T000000000000Z-1-000000.parquet")

    df = read_served(tmp_path / "now")
    assert len(df) == 3 + 2 + 4 and list(df.columns[: len(SCHEMA)]) == SCHEMA.names
    r1 = df[df.request_id == "r1"].sort_values("position")
    assert r1.propensity.tolist() == [0.955, 0.005, 1.0]
    assert df[df.request_id != "r1"].propensity.isna().all()


def test_propensities_out_of_range_or_of_the_wrong_length_are_rejected(tmp_path: Path) -> None:
    rl = RequestLog(tmp_path)
    served = ("r1", TS, "u1", "champion", "12", "4", "spotlight")
    for bad in ([0.5, 0.5], [0.5, 0.0, 1.0], [0.5, 1.5, 1.0], [0.5, float("nan"), 1.0]):
        with pytest.raises(ValueError, match="propensities"):
            rl.log(*served, **items(1, 3), propensities=bad)  # type: ignore[arg-type]
    assert rl.pending_rows == 0


def test_partitions_by_utc_day_and_reads_a_date_range(tmp_path: Path) -> None:
    rl = RequestLog(tmp_path)
    log_request(rl, 1, ts=datetime(2024, 1, 1, 23, 59, 59, tzinfo=UTC))
    log_request(rl, 2, ts=pd.Timestamp("2024-01-02 00:00:01", tz="UTC"))
    # 01:30 at UTC+2 is 23:30 UTC on the day before.
    log_request(rl, 3, ts=datetime(2024, 1, 3, 1, 30, tzinfo=timezone(timedelta(hours=2))))
    assert rl.flush() == 9

    days = sorted(p.name for p in (tmp_path / "served").iterdir())
    assert days == ["day=2024-01-01", "day=2024-01-02"]
    assert len(read_served(tmp_path)) == 9
    assert set(read_served(tmp_path, end=date(2024, 1, 1)).request_id) == {"r1"}
    assert set(read_served(tmp_path, start=date(2024, 1, 2)).request_id) == {"r2", "r3"}
    assert read_served(tmp_path, start=date(2024, 1, 3)).empty


def test_naive_timestamp_and_bad_shapes_are_rejected(tmp_path: Path) -> None:
    rl = RequestLog(tmp_path)
    with pytest.raises(ValueError, match="timezone-aware"):
        log_request(rl, 1, ts=datetime(2024, 1, 1, 12))
    good = items(1, 3)
    common = {"request_id": "r", "ts": TS, "user_id": "u", "arm": "champion"}
    common |= {"ranker_version": "1", "retrieval_version": None, "surface": "spotlight"}
    with pytest.raises(ValueError, match="expected \\(3, 3\\)"):
        rl.log(**common, **{**good, "features": np.zeros((3, 2))})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scores"):
        rl.log(**common, **{**good, "scores": np.zeros(2)})  # type: ignore[arg-type]
    assert rl.pending_rows == 0 and rl.rows_logged == 0


def test_a_feature_set_change_starts_a_new_file(tmp_path: Path) -> None:
    rl = RequestLog(tmp_path)
    log_request(rl, 1, n=2)
    log_request(rl, 2, n=2, names=("f_age", "f_new"))
    log_request(rl, 3, n=2)
    assert rl.flush() == 6
    files = served_files(tmp_path)
    assert len(files) == 2
    names = sorted(
        tuple(json.loads(pq.read_schema(p).metadata[b"reelrank.feature_names"])) for p in files
    )
    assert names == sorted([NAMES, ("f_age", "f_new")])

    df = read_served(tmp_path)
    frame = feature_frame(df, ["f_age", "f_ctr", "f_new"])
    assert list(frame.dtypes) == [np.float32] * 3
    np.testing.assert_array_equal(frame.f_age, df.request_id.str[1:].astype(np.float32))
    old = df.request_id != "r2"
    np.testing.assert_array_equal(frame.f_ctr[old], df.position[old].astype(np.float32))
    assert frame.f_ctr[~old].isna().all() and frame.f_new[old].isna().all()


def test_feature_frame_without_feature_sets_is_positional(tmp_path: Path) -> None:
    df = pd.DataFrame({"features": [np.array([1, 2], np.float32), np.array([3, 4], np.float32)]})
    frame = feature_frame(df, ["a", "b"])
    assert frame.to_numpy().tolist() == [[1, 2], [3, 4]]
    with pytest.raises(ValueError, match="length"):
        feature_frame(df, ["a", "b", "c"])
    empty = feature_frame(read_served(tmp_path), ["a"])
    assert empty.empty and list(empty.columns) == ["a"]


def test_concurrent_logging_loses_and_mixes_nothing(tmp_path: Path) -> None:
    threads, per_thread, n = 8, 500, 10
    rl = RequestLog(tmp_path, max_rows=3_000, max_age_s=0.05).start()
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                log_request(rl, t * per_thread + i, n=n)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    rl.close()

    total = threads * per_thread * n
    assert not errors
    assert rl.rows_logged == rl.rows_written == total == 40_000
    assert rl.requests_logged == threads * per_thread and rl.pending_rows == 0
    assert len(served_files(tmp_path)) > 1  # flushed while logging, not only at close
    df = read_served(tmp_path)
    assert len(df) == total
    assert set(df.request_id) == {f"r{i}" for i in range(threads * per_thread)}
    # Every row still carries its own request's vector at its own position.
    vectors = np.stack(df.features)
    np.testing.assert_array_equal(vectors[:, 0], df.request_id.str[1:].astype(np.float32))
    np.testing.assert_array_equal(vectors[:, 1], df.position.astype(np.float32))
    assert (df.groupby("request_id").position.agg(sorted).map(tuple) == tuple(range(n))).all()


def test_background_thread_flushes_by_age(tmp_path: Path) -> None:
    with RequestLog(tmp_path, max_rows=1_000_000, max_age_s=0.2) as rl:
        log_request(rl, 1, n=5)
        deadline = time.monotonic() + 10
        while rl.rows_written < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rl.rows_written == 5 and rl.pending_rows == 0
        assert len(read_served(tmp_path)) == 5


def test_reaching_max_rows_without_a_thread_flushes_inline(tmp_path: Path) -> None:
    rl = RequestLog(tmp_path, max_rows=10)
    for i in range(3):
        log_request(rl, i, n=4)  # 12 rows: the third call crosses max_rows
    assert rl.rows_written == 12 and rl.pending_rows == 0
    assert len(read_served(tmp_path)) == 12


def test_failed_write_leaves_no_visible_file_and_keeps_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen_at_failure: list[tuple[Path, bool, list[Path]]] = []
    real_write = request_log._write_table

    def broken_disk(table: pa.Table, sink: BinaryIO) -> None:
        real_write(table.slice(0, 1), sink)  # some bytes reach the temp file...
        tmp = Path(sink.name)
        seen_at_failure.append((tmp, tmp.exists(), visible_files(tmp_path)))
        raise OSError(28, "No space left on device")  # ...then the disk fills up

    rl = RequestLog(tmp_path)
    log_request(rl, 1, n=4)
    log_request(rl, 2, n=3)
    monkeypatch.setattr(request_log, "_write_table", broken_disk)

    assert rl.flush() == 0
    [(tmp, existed, visible)] = seen_at_failure
    assert existed and tmp.name.startswith(".") and tmp.name.endswith(".tmp")
    assert visible == []
    assert not tmp.exists()  # cleaned up
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert rl.write_errors == 1 and isinstance(rl.last_error, OSError)
    assert rl.pending_rows == 7 and rl.rows_written == 0
    assert read_served(tmp_path).empty

    monkeypatch.setattr(request_log, "_write_table", real_write)
    log_request(rl, 3, n=2)
    assert rl.flush() == 9
    df = read_served(tmp_path)
    assert sorted(set(df.request_id)) == ["r1", "r2", "r3"] and len(df) == 9
    # The retried rows keep their order: r1's items before r2's in the file.
    assert df.request_id.tolist() == ["r1"] * 4 + ["r2"] * 3 + ["r3"] * 2


def test_background_thread_retries_after_a_failed_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_disk(table: pa.Table, sink: BinaryIO) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(request_log, "_write_table", broken_disk)
    with RequestLog(tmp_path, max_rows=1_000_000, max_age_s=0.05) as rl:
        log_request(rl, 1, n=3)
        deadline = time.monotonic() + 10
        while rl.write_errors == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rl.write_errors >= 1 and rl.pending_rows == 3
        monkeypatch.undo()
        while rl.rows_written < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rl.rows_written == 3 and rl.pending_rows == 0
    assert len(read_served(tmp_path)) == 3


def test_buffer_cap_drops_and_counts_instead_of_growing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_disk(table: pa.Table, sink: BinaryIO) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(request_log, "_write_table", broken_disk)
    rl = RequestLog(tmp_path, max_rows=5, max_pending_rows=10)
    for i in range(5):
        log_request(rl, i, n=3)
    assert rl.pending_rows == 9 and rl.rows_dropped == 6 and rl.rows_logged == 9
    monkeypatch.undo()
    assert rl.flush() == 9
    log_request(rl, 9, n=3)
    assert rl.pending_rows == 3  # accepting again


def test_reader_skips_temporary_files(tmp_path: Path) -> None:
    rl = RequestLog(tmp_path)
    log_request(rl, 1)
    rl.flush()
    day_dir = served_files(tmp_path)[0].parent
    (day_dir / ".part-x.parquet.tmp").write_bytes(b"PAR1 half a file")
    (day_dir / "part-y.parquet.tmp").write_bytes(b"PAR1 half a file")
    assert len(read_served(tmp_path)) == 3


def test_previous_signal_handler_runs_after_the_flush(tmp_path: Path) -> None:
    rl = RequestLog(tmp_path)
    rows_on_disk_when_called: list[int] = []

    def previous(signum: int, frame: object) -> None:
        rows_on_disk_when_called.append(len(read_served(tmp_path)))

    original = signal.signal(signal.SIGINT, previous)
    try:
        rl.install_signal_handlers(signals=(signal.SIGINT,))
        rl.install_signal_handlers(signals=(signal.SIGINT,))  # twice: still chains once
        log_request(rl, 1, n=4)
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 5
        while not rows_on_disk_when_called and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        signal.signal(signal.SIGINT, original)
    assert rows_on_disk_when_called == [4]


def test_signal_during_a_flush_waits_for_that_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal landing mid-write on the flushing thread must not lose the batch in flight."""
    rl = RequestLog(tmp_path)
    calls: list[int] = []
    real_write = request_log._write_table

    def write_then_get_signalled(table: pa.Table, sink: BinaryIO) -> None:
        real_write(table, sink)
        os.kill(os.getpid(), signal.SIGINT)  # handled before this write is renamed into place
        time.sleep(0.05)

    def previous(signum: int, frame: object) -> None:
        calls.append(len(read_served(tmp_path)))

    monkeypatch.setattr(request_log, "_write_table", write_then_get_signalled)
    original = signal.signal(signal.SIGINT, previous)
    try:
        rl.install_signal_handlers(signals=(signal.SIGINT,))
        log_request(rl, 1, n=4)
        assert rl.flush() == 4
    finally:
        signal.signal(signal.SIGINT, original)
    assert calls == [4]  # chained once, after the interrupted flush had finished


def test_install_signal_handlers_off_the_main_thread_is_refused(tmp_path: Path) -> None:
    rl = RequestLog(tmp_path)
    errors: list[BaseException] = []

    def install() -> None:
        try:
            rl.install_signal_handlers()
        except RuntimeError as exc:
            errors.append(exc)

    th = threading.Thread(target=install)
    th.start()
    th.join()
    assert len(errors) == 1 and "main thread" in str(errors[0])


CHILD = """
import sys, time
from pathlib import Path
import numpy as np
import pandas as pd
from serving.request_log import RequestLog

rl = RequestLog(Path(sys.argv[1]), max_rows=1_000_000, max_age_s=3600).start()
rl.install_signal_handlers()
ts = pd.Timestamp("2024-05-01 12:00", tz="UTC")
for i in range(50):
    rl.log(f"r{i}", ts, "u", "champion", "1", None, "spotlight", [f"v{j}" for j in range(7)],
           np.ones(7), np.ones((7, 2)), ["a", "b"])
print("ready", rl.pending_rows, flush=True)
time.sleep(60)
print("not terminated", flush=True)
"""


def test_sigterm_flushes_before_the_process_dies(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.split() == ["ready", "350"], proc.stderr.read() if proc.stderr else line
        assert read_served(tmp_path).empty  # still only in memory
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGTERM, err  # the default action still ran
    assert "not terminated" not in out
    df = read_served(tmp_path)
    assert len(df) == 350 and df.request_id.nunique() == 50


def test_the_fast_timestamp_path_agrees_with_pandas():
    from serving.request_log import _utc, _utc_us

    for ts in (
        datetime(2025, 7, 1, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2025, 7, 2, 1, 30, tzinfo=timezone(timedelta(hours=5))),  # 2025-07-01 UTC
        datetime(1969, 12, 31, 23, 0, 0, 1, tzinfo=UTC),
    ):
        stamp = _utc(ts)
        assert _utc_us(ts) == (stamp.value // 1000, stamp.date())
        assert _utc_us(pd.Timestamp(ts)) == _utc_us(ts)
    with pytest.raises(ValueError, match="timezone-aware"):
        _utc_us(datetime(2025, 7, 1))
