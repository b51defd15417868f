"""The DuckDB feature tables equal the pandas reference builders, row for row.

:mod:`features.batch` defines the features; :mod:`features.batch_sql` computes them at scale
and is what the pipeline writes. These tests compare the two on a simulated lake (a window
that is filling, a full one, one that has just dropped its first day) and on a hand-made lake
whose rows tie on every order the pandas code breaks with a stable sort.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import batch
from features.batch_sql import FeatureSQL
from features.pipeline import UC_HISTORY_LEN, VIEWS, compute_features, table_path
from features.sequence import user_sequence
from ingest.lake import read_table, write_partition
from ingest.pipeline import ingest_simulated
from reelrank.settings import Settings
from tests.conftest import tiny_settings

pytestmark = pytest.mark.unit


def reference(
    imp: pd.DataFrame,
    videos: pd.DataFrame,
    vocab: list[str],
    day: date,
    history_len: int,
    uc_history_len: int,
    seq_len: int = 50,
) -> dict[str, pd.DataFrame]:
    """The six tables of ``day`` from the pandas builders."""
    return {
        "user_engagement": batch.user_engagement(imp, day),
        "user_topic_affinity": batch.user_topic_affinity(imp, day, len(vocab)),
        "video_stats": batch.video_stats(imp, videos, day, vocab),
        "creator_stats": batch.creator_stats(imp, videos, day),
        "user_history": batch.user_history(imp, day, history_len),
        "user_creator_history": batch.user_creator_history(imp, day, uc_history_len),
        "user_sequence": user_sequence(imp, day, seq_len),
    }


def assert_same_table(got: pd.DataFrame, want: pd.DataFrame, what: str) -> None:
    """Same columns in the same order, same dtypes, same rows in the same order; floats
    within 1e-9; list cells element by element."""
    assert list(got.columns) == list(want.columns), what
    assert got.dtypes.astype(str).tolist() == want.dtypes.astype(str).tolist(), what
    assert len(got) == len(want), f"{what}: {len(got)} rows, want {len(want)}"
    for col in want.columns:
        g, w = got[col], want[col]
        label = f"{what}.{col}"
        if w.dtype.kind == "f":
            np.testing.assert_allclose(
                g.to_numpy(), w.to_numpy(), rtol=1e-9, atol=1e-9, err_msg=label
            )
        elif len(w) and isinstance(w.iloc[0], list | np.ndarray):
            gl, wl = [list(v) for v in g], [list(v) for v in w]
            if any(isinstance(x, str) for v in wl for x in v):
                assert gl == wl, label
            else:
                assert [len(v) for v in gl] == [len(v) for v in wl], label
                for a, b in zip(gl, wl, strict=True):
                    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, err_msg=label)
        else:
            assert g.tolist() == w.tolist(), label


# -- a simulated lake, through the pipeline ---------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """31 simulated days: windows filling, full, and sliding past the first day (a
    retrieval window as long as the world, so every day gets its tables)."""
    s = tiny_settings(
        tmp_path_factory.mktemp("sql") / "var",
        sim={"n_users": 120, "n_creators": 12, "n_videos": 240, "days": 31},
        retrieval={"train_days": 31},
    )
    ingest_simulated(s, s.sim.end_date)
    return s


def test_the_pipeline_writes_the_pandas_tables(world: Settings) -> None:
    s = world
    result = compute_features(s, s.sim.end_date)
    assert len(result.days_computed) == s.sim.days
    videos = read_table(s.lake_dir, "videos", end=s.sim.end_date)
    vocab = batch.topic_vocabulary(videos["topic"])
    imp = batch.enrich_impressions(
        read_table(s.lake_dir, "impressions", end=s.sim.end_date), videos, vocab
    )
    users = set(read_table(s.lake_dir, "users")["user_id"])
    start = s.sim.start_date
    # the first day (a one-day window), a filling window, the first full 28-day window, the
    # first window without day 0, and the last day
    days = [start + timedelta(days=i) for i in (0, 9, 27, 28, s.sim.days - 1)]
    idle_users = idle_videos = 0
    for day in days:
        want = reference(
            imp, videos, vocab, day, s.retrieval.history_len, UC_HISTORY_LEN, s.retrieval.seq_len
        )
        for view in VIEWS:
            got = pd.read_parquet(table_path(s, view, day))
            assert_same_table(got, want[view], f"{day} {view}")
        idle_users += len(users - set(want["user_engagement"]["user_id"]))
        idle_videos += int((want["video_stats"]["v_imp_7d"] == 0).sum())
    # the comparison covered users and catalog videos without any activity in their window
    assert idle_users > 0 and idle_videos > 0


def test_days_with_tables_are_not_recomputed(world: Settings) -> None:
    s = world
    compute_features(s, s.sim.end_date)  # no-op when the first test ran; computes otherwise
    before = {v: table_path(s, v, s.sim.end_date).stat().st_mtime_ns for v in VIEWS}
    assert compute_features(s, s.sim.end_date).days_computed == []
    assert {v: table_path(s, v, s.sim.end_date).stat().st_mtime_ns for v in VIEWS} == before


# -- a hand-made lake whose rows tie ------------------------------------------------------------
D0 = date(2025, 6, 1)
D1 = date(2025, 6, 2)


def at(day: date, hour: int) -> pd.Timestamp:
    return pd.Timestamp(datetime(day.year, day.month, day.day, hour, tzinfo=UTC))


def video_rows(rows: list[tuple[str, str, str, pd.Timestamp]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "video_id": [r[0] for r in rows],
            "creator_id": [r[1] for r in rows],
            "upload_ts": [r[3] for r in rows],
            "duration_s": 20.0,
            "caption": "a clip",
            "hashtags": [["#x"] for _ in rows],
            "topic": [r[2] for r in rows],
            "language": "en",
            "visual_embedding": None,
        }
    )


def impression_rows(day: date, rows: list[tuple[str, str, int, str]]) -> pd.DataFrame:
    """(user, video, hour, flags) rows; flags is a string of c(ompleted) l(iked) s(hared)."""
    return pd.DataFrame(
        {
            "event_id": [f"e{day:%d}-{i}" for i in range(len(rows))],
            "request_id": [f"r{day:%d}-{i}" for i in range(len(rows))],
            "ts": [at(day, r[2]) for r in rows],
            "user_id": [r[0] for r in rows],
            "video_id": [r[1] for r in rows],
            "surface": "spotlight",
            "position": np.zeros(len(rows), dtype=np.int32),
            "watch_time_s": [25.0 if "c" in r[3] else 4.0 for r in rows],  # > duration: clipped
            "duration_s": 20.0,
            "completed": ["c" in r[3] for r in rows],
            "liked": ["l" in r[3] for r in rows],
            "shared": ["s" in r[3] for r in rows],
            "commented": False,
            "followed": ["l" in r[3] for r in rows],
            "skipped": [r[3] == "" for r in rows],
            "model_version": "m0",
        }
    )


@pytest.fixture
def tied_lake(tmp_path: Path) -> Path:
    lake, quarantine = tmp_path / "lake", tmp_path / "quarantine"
    old = at(D0 - timedelta(days=60), 8)
    # creators listed out of id order; no upload within 28 days of D0, one on D1
    write_partition(
        lake,
        quarantine,
        "videos",
        old.date(),
        video_rows(
            [
                ("v1", "c3", "dance", old),
                ("v2", "c1", "pets", old),
                ("v3", "c2", "dance", old),
                ("v4", "c1", "food", old),
                ("v6", "c4", "food", old),  # never shown: a video without activity
            ]
        ),
    )
    write_partition(lake, quarantine, "videos", D1, video_rows([("v5", "c9", "pets", at(D1, 6))]))
    # every impression of D0 at the same instant: order is the files' row order
    write_partition(
        lake,
        quarantine,
        "impressions",
        D0,
        impression_rows(
            D0,
            [
                ("u2", "v1", 12, "l"),
                ("u2", "v2", 12, "c"),
                ("u2", "v3", 12, "s"),
                ("u1", "v4", 12, ""),
                ("u1", "v2", 12, "c"),
                ("u1", "v1", 12, "c"),
                ("u1", "v1", 12, "l"),
                ("u3", "v3", 12, ""),  # no positive: no history row
            ],
        ),
    )
    write_partition(
        lake,
        quarantine,
        "impressions",
        D1,
        impression_rows(
            D1,
            [
                ("u1", "v3", 9, "c"),
                ("u1", "v2", 9, "c"),
                ("u2", "v5", 11, "l"),
                ("u2", "v1", 11, ""),
            ],
        ),
    )
    return lake


def test_ties_are_broken_like_the_pandas_stable_sorts(tied_lake: Path) -> None:
    videos = read_table(tied_lake, "videos")
    vocab = batch.topic_vocabulary(videos["topic"])
    imp = batch.enrich_impressions(read_table(tied_lake, "impressions"), videos, vocab)
    got: dict[date, dict[str, pd.DataFrame]] = {}
    with FeatureSQL(tied_lake, vocab, through=D1, threads=1, memory_limit_gb=0.5) as sql:
        for day in (D0, D1):
            want = reference(imp, videos, vocab, day, history_len=2, uc_history_len=2)
            got[day] = {v: sql.frame(v, day, history_len=2, uc_history_len=2) for v in VIEWS}
            for view in VIEWS:
                assert_same_table(got[day][view], want[view], f"{day} {view}")

    # the cases the equality above had to get right, spelled out
    hist = got[D1]["user_history"].set_index("user_id")["hist_video_ids"]
    assert list(hist["u1"]) == ["v3", "v2"]  # 09:00 of D1 twice: file order; cut at 2
    assert list(got[D0]["user_history"].set_index("user_id").loc["u1", "hist_video_ids"]) == [
        "v2",
        "v1",
    ]
    assert "u3" not in set(got[D0]["user_history"]["user_id"])
    uc = got[D0]["user_creator_history"].set_index("user_id")
    assert list(uc.loc["u1", "uc_creator_ids"]) == ["c1", "c3"]  # 2 impressions each
    assert got[D0]["user_topic_affinity"]["user_id"].tolist() == ["u2", "u1", "u3"]
    # no recent upload on D0: creators in order of first impression; on D1 sorted
    assert got[D0]["creator_stats"]["creator_id"].tolist() == ["c3", "c1", "c2"]
    assert got[D1]["creator_stats"]["creator_id"].tolist() == ["c1", "c2", "c3", "c9"]
    v = got[D1]["video_stats"].set_index("video_id")
    assert v.loc["v6", "v_imp_7d"] == 0.0 and v.index.tolist() == [
        "v1",
        "v2",
        "v3",
        "v4",
        "v6",
        "v5",
    ]


def test_only_the_days_the_training_windows_read_get_tables(world: Settings, tmp_path) -> None:
    """Before: every lake day from the first got its tables (a 22-year log computed 4,110
    days to train on the last few)."""
    import shutil

    from features.pipeline import first_feature_day

    s = world.model_copy(
        update={
            "home": tmp_path / "var",
            "training": world.training.model_copy(
                update={"train_days": 3, "feature_backfill_days": 0}
            ),
            "retrieval": world.retrieval.model_copy(update={"train_days": 5}),
        }
    )
    shutil.copytree(world.lake_dir, s.lake_dir)
    through = s.sim.end_date
    compute_features(world, through)  # the whole span's tables, to compare with
    assert first_feature_day(s, through) == through - timedelta(days=5)
    # by default, 28 more days of tables before the windows (a retrain on an earlier holdout)
    assert first_feature_day(world, through) == through - timedelta(days=31 + 28)
    result = compute_features(s, through)
    want = [(through - timedelta(days=i)).isoformat() for i in range(5, -1, -1)]
    assert result.days_computed == want and result.first_day == want[0]
    written = sorted(p.stem for p in (s.features_dir / VIEWS[0]).glob("*.parquet"))
    assert written == want
    # the tables of a day do not depend on which earlier days got tables
    for view in VIEWS:
        pd.testing.assert_frame_equal(
            pd.read_parquet(table_path(s, view, through)),
            pd.read_parquet(table_path(world, view, through)),
        )
