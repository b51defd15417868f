"""Adapters from real datasets to the lake's contracts: the real KuaiRand files, and hand-made
malformed files whose every dropped or defaulted row is counted exactly."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from ingest.schema import IMPRESSIONS, USERS, VIDEOS, to_arrow, validate
from ingest.sources.common import SESSION_GAP_S, AdaptedDataset, AdapterError
from ingest.sources.interactions import load_interactions
from ingest.sources.kuairand import load_kuairand, load_kuairand_catalog
from reelrank.settings import InteractionsOptions, KuaiRandOptions
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.unit

SUBSET_DIR = "kuairand-27k-subset"
SUBSET_FILE = "processed_standard_kcore_15.tsv"
CATALOG_FILE = "kuairand-pure-catalog/video_features_basic_pure.csv"
KEY = ["user_id", "video_id", "time_ms"]
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def kuairand(path: Path, catalog: Path | None = None) -> AdaptedDataset:
    return load_kuairand(KuaiRandOptions(path=path, items=catalog))


def interactions(
    path: Path, items: Path | None = None, *, id_prefix: str = "", **mapping: object
) -> AdaptedDataset:
    """The generic adapter with ``mapping`` validated by its options model, as settings are."""
    options = InteractionsOptions.model_validate({"path": path, "items": items, **mapping})
    return load_interactions(options, id_prefix=id_prefix)


def assert_adapted(ds: AdaptedDataset) -> None:
    """Every frame satisfies its contract, and the report's counts add up."""
    for contract, frame, known in (
        (USERS, ds.users, None),
        (VIDEOS, ds.videos, None),
        (IMPRESSIONS, ds.impressions, ds.known_ids()),
    ):
        report = validate(contract, frame, known)
        assert report.ok, str(report)
        assert to_arrow(contract, frame).num_rows == len(frame)
    r = ds.report
    assert r.rows_kept + r.rows_added == len(ds.impressions)
    assert sum(r.dropped.values()) == r.rows_read - r.rows_kept
    assert ds.impressions["ts"].is_monotonic_increasing
    assert ds.videos["video_id"].to_numpy().dtype == object
    assert set(r.signals) == {
        "watch_time_s",
        "completed",
        "liked",
        "shared",
        "commented",
        "followed",
        "skipped",
    }
    json.dumps(r.to_dict())
    assert f"{r.rows_kept:,} of {r.rows_read:,} rows kept" in str(r)


# -- the real KuaiRand files ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_data() -> Path:
    """The repo root's sibling ``shared/data``; absent in a fresh clone (skip), never in CI."""
    needed = [SHARED_DATA / SUBSET_DIR / SUBSET_FILE, SHARED_DATA / CATALOG_FILE]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        reason = f"real data not found ({', '.join(missing)}); a fresh clone has no ../shared"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}, but CI must run the real-data tests")
        pytest.skip(reason)
    return SHARED_DATA


@pytest.fixture(scope="module")
def subset_raw(shared_data: Path) -> pd.DataFrame:
    return pd.read_csv(shared_data / SUBSET_DIR / SUBSET_FILE, sep="\t")


@pytest.fixture(scope="module")
def subset(shared_data: Path) -> AdaptedDataset:
    return kuairand(shared_data / SUBSET_DIR)


@pytest.fixture(scope="module")
def subset_with_catalog(shared_data: Path) -> AdaptedDataset:
    return kuairand(shared_data / SUBSET_DIR / SUBSET_FILE, catalog=shared_data / CATALOG_FILE)


def test_kuairand_subset_counts_and_contracts(
    subset: AdaptedDataset, subset_raw: pd.DataFrame
) -> None:
    assert_adapted(subset)
    r = subset.report
    duplicates = int(subset_raw.duplicated(KEY).sum())
    assert r.rows_read == len(subset_raw) == 41_828
    assert r.dropped == {"duplicate rows": duplicates}
    assert r.rows_kept == 41_828 - duplicates
    assert len(subset.users) == 664
    assert len(subset.videos) == 9_359
    first, last = date(2022, 4, 7), date(2022, 4, 21)
    assert subset.days == [first + timedelta(days=i) for i in range((last - first).days + 1)]
    assert r.missing_metadata == 0
    assert r.defaulted["impressions.surface: 'spotlight' (no tab field)"] == r.rows_kept
    zero = subset_raw.drop_duplicates(KEY)["duration_ms"].eq(0).sum()
    assert r.defaulted["impressions.duration_s: median of known durations (duration_ms 0)"] == zero
    assert {"date", "hourmin", "timestamp"} <= set(r.unknown_columns)


def test_kuairand_subset_outcomes_follow_the_log(
    subset: AdaptedDataset, subset_raw: pd.DataFrame
) -> None:
    raw = subset_raw.drop_duplicates(KEY)
    imp = subset.impressions
    assert imp["liked"].mean() == pytest.approx((raw["label"] == 1).mean())
    assert imp["skipped"].mean() == pytest.approx((raw["is_click"] == 0).mean())
    assert imp["shared"].sum() == raw["is_forward"].sum()
    assert imp["watch_time_s"].sum() == pytest.approx(raw["play_time_ms"].sum() / 1000.0)
    signals = subset.report.signals
    assert signals["liked"].startswith("derived: label == 1")
    assert "explicit like" in signals["liked"]
    assert signals["completed"].startswith("derived:")
    assert signals["skipped"].startswith("derived: is_click == 0")
    assert signals["watch_time_s"].startswith("observed")
    assert subset.impressions["user_id"].str.startswith("kr-u").all()
    assert subset.videos["caption"].eq("").all()  # the subset has no text at all


def test_kuairand_sessions_are_requests(subset: AdaptedDataset) -> None:
    imp = subset.impressions.sort_values(["request_id", "position"])
    grouped = imp.groupby("request_id")
    assert (grouped["user_id"].nunique() == 1).all()
    assert (grouped["position"].min() == 0).all()
    span = (grouped["ts"].max() - grouped["ts"].min()).dt.total_seconds()
    sizes = grouped.size()
    assert (span < SESSION_GAP_S * (sizes - 1) + 1e-9).all()
    assert imp["event_id"].is_unique


def test_kuairand_with_the_official_catalog(
    subset_with_catalog: AdaptedDataset, subset_raw: pd.DataFrame, shared_data: Path
) -> None:
    ds = subset_with_catalog
    assert_adapted(ds)
    catalog = pd.read_csv(shared_data / CATALOG_FILE)
    raw = subset_raw.drop_duplicates(KEY)
    not_in_catalog = int((~raw["video_id"].isin(catalog["video_id"])).sum())
    assert ds.report.missing_metadata == not_in_catalog
    assert ds.report.rows_kept == len(raw)  # rows without metadata are kept
    joined = ds.videos[ds.videos["creator_id"] != "unknown"]
    assert len(joined) == raw.loc[raw["video_id"].isin(catalog["video_id"]), "video_id"].nunique()
    assert joined["creator_id"].str.startswith("kr-c").all()
    assert "catalog.music_id" in ds.report.unknown_columns


def test_kuairand_catalog_alone(shared_data: Path) -> None:
    videos = load_kuairand_catalog(shared_data / CATALOG_FILE)
    assert len(videos) == 7_583
    report = validate(VIDEOS, videos)
    assert report.ok, str(report)
    assert videos["upload_ts"].dt.date.between(date(2022, 4, 9), date(2022, 4, 11)).all()
    assert videos["video_id"].is_unique
    assert videos.attrs["defaulted"]["videos.duration_s: median of the catalog"] == 239


# -- hand-made KuaiRand files --------------------------------------------------------------------

OFFICIAL_COLUMNS = [
    "user_id",
    "video_id",
    "date",
    "hourmin",
    "time_ms",
    "is_click",
    "is_like",
    "is_follow",
    "is_comment",
    "is_forward",
    "is_hate",
    "long_view",
    "play_time_ms",
    "duration_ms",
    "profile_stay_time",
    "comment_stay_time",
    "is_profile_enter",
    "is_rand",
    "tab",
]


def _ms(seconds: float) -> int:
    return int((T0 + timedelta(seconds=seconds)).timestamp() * 1000)


def _official_row(
    user: int,
    video: int,
    at_s: float,
    *,
    tab: int | None,
    play_ms: int = 9000,
    duration_ms: int = 12000,
    click: int = 1,
    like: int = 0,
    long_view: int = 0,
    forward: int = 0,
) -> dict[str, object]:
    return {
        "user_id": user,
        "video_id": video,
        "date": 20240301,
        "hourmin": 1200,
        "time_ms": _ms(at_s),
        "is_click": click,
        "is_like": like,
        "is_follow": 0,
        "is_comment": 0,
        "is_forward": forward,
        "is_hate": 0,
        "long_view": long_view,
        "play_time_ms": play_ms,
        "duration_ms": duration_ms,
        "profile_stay_time": 0,
        "comment_stay_time": 0,
        "is_profile_enter": 0,
        "is_rand": 0,
        "tab": tab,
    }


@pytest.fixture
def official_dir(tmp_path: Path) -> Path:
    """Two official-format logs: a duplicate, a 0 duration, one tab per surface, a gap."""
    first = [
        _official_row(1, 10, 0, tab=1, play_ms=12500, like=1),  # complete, liked
        _official_row(1, 11, 10, tab=0, play_ms=500, click=0),  # skipped, discover
        _official_row(1, 11, 10, tab=0, play_ms=500, click=0),  # exact duplicate
        _official_row(1, 12, 20, tab=4, forward=1),  # a sub-scenario -> stories
        _official_row(1, 13, 500, tab=1, duration_ms=0, long_view=1),  # new session, no dur
    ]
    second = [
        _official_row(2, 10, 5, tab=2),  # another sub-scenario -> stories
        _official_row(2, 13, 30, tab=None, play_ms=20000, duration_ms=0),  # tab missing
    ]
    folder = tmp_path / "kuairand"
    folder.mkdir()
    pd.DataFrame(first, columns=OFFICIAL_COLUMNS).to_csv(
        folder / "log_standard_4_08_to_4_21_pure.csv", index=False
    )
    pd.DataFrame(second, columns=OFFICIAL_COLUMNS).to_csv(
        folder / "log_standard_4_22_to_5_08_pure.csv", index=False
    )
    (folder / "notes.txt").write_text("not a log")
    return folder


def test_official_kuairand_format(official_dir: Path) -> None:
    ds = kuairand(official_dir)
    assert_adapted(ds)
    r = ds.report
    assert r.rows_read == 7
    assert r.dropped == {"duplicate rows": 1}
    assert len(ds.users) == 2 and len(ds.videos) == 4
    imp = ds.impressions.set_index("event_id")
    first = imp.loc[f"kr-e-1-10-{_ms(0)}"]
    assert (first["surface"], first["position"], first["liked"]) == ("spotlight", 0, True)
    assert first["completed"] and not first["skipped"]
    assert first["model_version"] == "logged"
    second = imp.loc[f"kr-e-1-11-{_ms(10)}"]
    assert (second["surface"], second["position"], second["skipped"]) == ("discover", 1, True)
    third = imp.loc[f"kr-e-1-12-{_ms(20)}"]
    assert (third["surface"], third["position"], third["shared"]) == ("stories", 2, True)
    assert first["request_id"] == second["request_id"] == third["request_id"]
    late = imp.loc[f"kr-e-1-13-{_ms(500)}"]  # 480 s after the previous event: a new request
    assert late["request_id"] != first["request_id"] and late["position"] == 0
    assert imp.loc[f"kr-e-2-10-{_ms(5)}", "surface"] == "stories"
    assert imp.loc[f"kr-e-2-13-{_ms(30)}", "surface"] == "spotlight"
    # video 13 has no duration anywhere: the median of the known ones (12 s), and
    # completed falls back to long_view
    assert late["duration_s"] == 12.0 and late["completed"]
    assert not imp.loc[f"kr-e-2-13-{_ms(30)}", "completed"]
    assert r.defaulted == {
        "videos.duration_s: median of known durations": 1,
        "videos.upload_ts: first impression (no catalog upload_dt)": 4,
        "videos.creator_id: 'unknown' (no catalog author)": 4,
        "videos.caption: '' (no catalog row)": 4,
        "videos.topic: 'unknown' (no catalog tag)": 4,
        "impressions.duration_s: median of known durations (duration_ms 0)": 2,
        "impressions.completed: long_view (duration unknown)": 2,
        "impressions.surface: 'spotlight' (tab missing)": 1,
        "users.signup_ts: first event time": 2,
        "users.country, age_bucket, device: 'unknown'": 2,
    }
    assert r.signals["liked"] == "observed (is_like)"
    assert {"is_hate", "profile_stay_time", "is_rand", "date"} <= set(r.unknown_columns)
    assert "tab" not in r.unknown_columns
    assert ds.users.set_index("user_id").loc["kr-u2", "signup_ts"] == T0 + timedelta(seconds=5)


def test_official_kuairand_with_a_catalog(official_dir: Path, tmp_path: Path) -> None:
    catalog = tmp_path / "video_features_basic_test.csv"
    pd.DataFrame(
        {
            "video_id": [10, 13, 99],
            "author_id": [7, 8, 9],
            "video_type": ["NORMAL", "AD", "NORMAL"],
            "upload_dt": ["2024-02-20", "2024-03-05", "2024-01-01"],  # 13: after its first view
            "upload_type": ["Web", "Web", "Web"],
            "visible_status": [0.0, 0.0, 0.0],
            "video_duration": [12000.0, 20000.0, 5000.0],
            "server_width": [720.0] * 3,
            "server_height": [1280.0] * 3,
            "music_id": [1, 2, 3],
            "music_type": [9.0, 9.0, None],
            "tag": ["39,12", None, "7"],
        }
    ).to_csv(catalog, index=False)
    ds = kuairand(official_dir, catalog=catalog)
    assert_adapted(ds)
    r = ds.report
    assert r.missing_metadata == 2  # the rows of videos 11 and 12
    videos = ds.videos.set_index("video_id")
    assert videos.loc["kr-v10", "creator_id"] == "kr-c7"
    assert videos.loc["kr-v10", "upload_ts"] == pd.Timestamp("2024-02-20", tz="UTC")
    assert videos.loc["kr-v10", "hashtags"] == ["tag39"]
    assert videos.loc["kr-v10", "topic"] == "39"
    assert videos.loc["kr-v10", "caption"] == "normal video tag 39"
    assert videos.loc["kr-v13", "upload_ts"] == T0 + timedelta(seconds=30)
    assert videos.loc["kr-v13", "duration_s"] == 20.0
    assert videos.loc["kr-v13", "topic"] == "unknown"
    assert videos.loc["kr-v11", "creator_id"] == "unknown"
    imp = ds.impressions.set_index("event_id")
    # the catalog duration replaces duration_ms 0, and completion is measured against it
    assert imp.loc[f"kr-e-2-13-{_ms(30)}", "duration_s"] == 20.0
    assert imp.loc[f"kr-e-2-13-{_ms(30)}", "completed"]
    assert not imp.loc[f"kr-e-1-13-{_ms(500)}", "completed"]
    assert r.defaulted["impressions.duration_s: catalog video_duration (duration_ms 0)"] == 2
    assert r.defaulted["videos.upload_ts: first impression (catalog upload_dt after it)"] == 1
    assert r.defaulted["videos.upload_ts: first impression (no catalog upload_dt)"] == 2
    assert "impressions.completed: long_view (duration unknown)" not in r.defaulted


def test_kuairand_errors(tmp_path: Path, official_dir: Path) -> None:
    with pytest.raises(AdapterError, match="does not exist"):
        kuairand(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AdapterError, match="no log_standard"):
        kuairand(empty)
    broken = tmp_path / "log_standard_broken.csv"
    pd.read_csv(next(official_dir.glob("*.csv"))).drop(columns=["play_time_ms"]).to_csv(
        broken, index=False
    )
    with pytest.raises(AdapterError, match=r"'play_time_ms'.*its columns are: user_id"):
        kuairand(broken)


# -- hand-made generic interaction files -------------------------------------------------------


def _epoch(seconds: float) -> float:
    return (T0 + timedelta(seconds=seconds)).timestamp()


# (user, item, seconds after T0, rating); None seconds -> unparseable
INTERACTIONS: list[tuple[str | None, str, float | None, float]] = [
    ("a", "m1", 0, 5.0),
    ("a", "m2", 30, 2.0),
    ("a", "m2", 30, 2.0),  # duplicate
    ("a", "m3", 3600, 4.0),  # a new session
    ("b", "m1", 10, 3.5),
    ("b", "m4", 20, 4.5),  # m4 is not in the items file
    (None, "m1", 40, 5.0),  # null user
    ("b", "m3", None, 1.0),  # unparseable timestamp
    ("c", "m2", None, 4.0),  # unparseable timestamp
]


def _interactions(fmt: str) -> pd.DataFrame:
    def stamp(seconds: float | None, i: int) -> object:
        if seconds is None:
            return "not-a-time" if i % 2 else ""
        if fmt == "s":
            return int(_epoch(seconds))
        if fmt == "ms":
            return int(_epoch(seconds) * 1000)
        return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S+00:00")

    return pd.DataFrame(
        {
            "user_id": [u for u, *_ in INTERACTIONS],
            "item_id": [m for _, m, *_ in INTERACTIONS],
            "timestamp": [stamp(s, i) for i, (_, _, s, _) in enumerate(INTERACTIONS)],
            "rating": [r for *_, r in INTERACTIONS],
            "client": "android",  # not used by the mapping
        }
    )


@pytest.fixture
def items_csv(tmp_path: Path) -> Path:
    path = tmp_path / "items.csv"
    pd.DataFrame(
        {
            "item_id": ["m1", "m2", "m3", "m9"],
            "title": ["Toy Story (1995)", "Heat (1995)", "Up", "Unseen"],
            "genres": ["Adventure|Animation", "Action|Crime", "(no genres listed)", "Drama"],
            "studio": ["pixar", "wb", "pixar", "x"],
            "year": [1995, 1995, 2009, 2000],
        }
    ).to_csv(path, index=False)
    return path


def _expected_ratings_report(ds: AdaptedDataset) -> None:
    r = ds.report
    assert r.rows_read == 9
    assert r.dropped == {
        "missing user or item id": 1,
        "unparseable timestamp": 2,
        "duplicate rows": 1,
    }
    assert r.rows_kept == 5
    assert r.unknown_columns == ["client", "items.studio", "items.year"]
    assert r.missing_metadata == 1
    assert r.signals == {
        "watch_time_s": "missing: 0.0",
        "completed": "derived: = liked",
        "liked": "derived: rating >= 4",
        "shared": "missing: False",
        "commented": "missing: False",
        "followed": "missing: False",
        "skipped": "derived: rating < 4",
    }
    assert r.defaulted == {
        "videos.duration_s: default 30.0 s": 4,
        "videos.upload_ts: first interaction": 4,
        "videos.creator_id: 'unknown'": 4,
        "videos.caption: '' (no text)": 1,
        "videos.topic: 'unknown'": 2,
        "impressions.duration_s: default 30.0 s": 5,
        "impressions.surface: 'spotlight' (no surface in the source)": 5,
        "users.signup_ts: first event time": 2,
        "users.country, age_bucket, device: 'unknown'": 2,
    }
    imp = ds.impressions
    assert list(imp["user_id"]) == ["a", "b", "b", "a", "a"]
    assert list(imp["video_id"]) == ["m1", "m1", "m4", "m2", "m3"]
    assert list(imp["ts"]) == [T0 + timedelta(seconds=s) for s in (0, 10, 20, 30, 3600)]
    assert list(imp["liked"]) == [True, False, True, False, True]
    assert list(imp["skipped"]) == [False, True, False, True, False]
    assert list(imp["completed"]) == list(imp["liked"])
    assert list(imp["position"]) == [0, 0, 1, 1, 0]
    assert imp["watch_time_s"].eq(0.0).all() and imp["duration_s"].eq(30.0).all()
    assert imp["surface"].eq("spotlight").all()
    videos = ds.videos.set_index("video_id")
    assert videos.loc["m1", "caption"] == "Toy Story (1995) adventure animation"
    assert videos.loc["m1", "hashtags"] == ["adventure", "animation"]
    assert videos.loc["m2", "topic"] == "action"
    assert videos.loc["m3", "topic"] == "unknown" and videos.loc["m3", "hashtags"] == []
    assert videos.loc["m4", "caption"] == "" and videos.loc["m4", "topic"] == "unknown"
    assert videos.loc["m2", "upload_ts"] == T0 + timedelta(seconds=30)
    assert ds.days == [T0.date()]


@pytest.mark.parametrize("fmt", ["s", "ms", "iso"])
def test_generic_csv_timestamp_formats(fmt: str, tmp_path: Path, items_csv: Path) -> None:
    path = tmp_path / f"ratings_{fmt}.csv"
    _interactions(fmt).to_csv(path, index=False)
    ds = interactions(path, items_csv, rating_col="rating")
    assert_adapted(ds)
    _expected_ratings_report(ds)


def test_generic_explicit_unit_and_separator(tmp_path: Path, items_csv: Path) -> None:
    path = tmp_path / "ratings.tsv"
    _interactions("ms").to_csv(path, index=False, sep="\t")
    ds = interactions(path, items_csv, rating_col="rating", ts_unit="ms", sep="\t")
    assert_adapted(ds)
    _expected_ratings_report(ds)
    # the same numbers read as seconds are centuries away: every row is unparseable
    with pytest.raises(AdapterError, match="no usable row"):
        interactions(path, rating_col="rating", ts_unit="s")


def test_generic_named_column_must_exist(tmp_path: Path, items_csv: Path) -> None:
    path = tmp_path / "ratings.csv"
    _interactions("s").to_csv(path, index=False)
    with pytest.raises(AdapterError, match=r"'stars'.*rating_col.*its columns are: user_id"):
        interactions(path, rating_col="stars")
    with pytest.raises(AdapterError, match="'movieId'"):
        interactions(path, items_csv, item_id_col="movieId")
    with pytest.raises(AdapterError, match="'author'"):
        interactions(path, items_csv, creator_col="author")
    with pytest.raises(AdapterError, match="does not exist"):
        interactions(tmp_path / "absent.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(AdapterError, match="empty"):
        interactions(tmp_path / "empty.csv")
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(AdapterError, match="cannot read"):
        interactions(tmp_path / "garbage.parquet")


@pytest.fixture
def watch_parquet(tmp_path: Path) -> Iterator[Path]:
    """A short-video log in Parquet: watch and duration in ms, a binary label, creators."""
    path = tmp_path / "views.parquet"
    pd.DataFrame(
        {
            "uid": [1, 1, 1, 2, 2, 2],
            "vid": [100, 101, 102, 100, 103, 103],
            "ts": pd.to_datetime(
                [T0 + timedelta(seconds=s) for s in (0, 15, 40, 100, 130, 130)]
            ).tz_convert(None),  # naive datetimes, read as UTC
            "watch_ms": [20_000, 1_000, None, 2_500, 9_000, 9_000],
            "dur_ms": [20_000, 60_000, 10_000, 20_000, None, None],
            "liked": ["yes", "no", "yes", "no", None, None],
        }
    ).to_parquet(path)
    yield path


def test_generic_parquet_with_watch_time(watch_parquet: Path, tmp_path: Path) -> None:
    items = tmp_path / "items.parquet"
    pd.DataFrame(
        {
            "vid": [100, 101, 102, 103],
            "author": ["x", "x", "y", None],
            "tags": ["a,b", "", "c", None],
        }
    ).to_parquet(items)
    ds = interactions(
        watch_parquet,
        items,
        user_col="uid",
        item_col="vid",
        ts_col="ts",
        label_col="liked",
        watch_col="watch_ms",
        watch_unit="ms",
        duration_col="dur_ms",
        duration_unit="ms",
        item_id_col="vid",
        creator_col="author",
        id_prefix="sv-",
    )
    assert_adapted(ds)
    r = ds.report
    assert r.rows_read == 6
    assert r.dropped == {"duplicate rows": 1}
    assert r.missing_metadata == 0
    assert r.signals["watch_time_s"] == "observed (watch_ms, ms)"
    assert r.signals["liked"] == "observed (liked truthy)"
    assert r.signals["completed"] == (
        "derived: watch_time_s >= duration_s, else = liked where watch time or duration is unknown"
    )
    assert r.signals["skipped"] == "derived: watch_time_s < min(3 s, duration_s)"
    assert r.defaulted["impressions.watch_time_s: 0.0 (watch_ms missing)"] == 1
    assert r.defaulted["impressions.liked: False (liked missing)"] == 1
    assert r.defaulted["impressions.duration_s: median of known durations"] == 1
    assert r.defaulted["videos.duration_s: median of known durations"] == 1
    assert r.defaulted["videos.creator_id: 'unknown'"] == 1
    imp = ds.impressions.set_index("video_id")
    assert imp["user_id"].str.startswith("sv-").all()
    assert imp.loc["sv-101", "skipped"] and not imp.loc["sv-101", "completed"]
    assert imp.loc["sv-100"].set_index("user_id").loc["sv-1", "completed"]
    assert imp.loc["sv-102", "completed"]  # no watch time: completed = liked
    assert imp.loc["sv-103", "duration_s"] == 20.0  # median of 10, 20, 60 s
    videos = ds.videos.set_index("video_id")
    assert videos.loc["sv-100", "creator_id"] == "sv-x"
    assert videos.loc["sv-100", "hashtags"] == ["a", "b"]
    assert videos.loc["sv-103", "creator_id"] == "unknown"
    assert list(ds.impressions["request_id"].unique()) == [
        f"sv-r-1-{int(_epoch(0) * 1000)}",
        f"sv-r-2-{int(_epoch(100) * 1000)}",
    ]


def test_generic_ratings_only_parquet(tmp_path: Path) -> None:
    path = tmp_path / "ratings.pq"
    frame = _interactions("s")
    frame["timestamp"] = pd.to_numeric(frame["timestamp"], errors="coerce")
    frame.to_parquet(path)
    ds = interactions(path, rating_col="rating", like_threshold=4.5)
    assert_adapted(ds)
    r = ds.report
    assert r.signals["watch_time_s"] == "missing: 0.0"
    assert r.signals["liked"] == "derived: rating >= 4.5"
    assert r.dropped == {
        "missing user or item id": 1,
        "unparseable timestamp": 2,
        "duplicate rows": 1,
    }
    assert r.missing_metadata == 0 and r.unknown_columns == ["client"]
    assert ds.impressions["liked"].sum() == 2  # ratings 5.0 and 4.5


def test_an_implicit_log_is_positives_with_drawn_negatives(tmp_path: Path) -> None:
    """Before: a log with no rating, label or watch column had no positive at all and every
    outcome was reported "missing: False", with no warning."""
    rows = [("u1", f"i{i}", f"2024-03-0{1 + i % 3} 12:00:{i:02d}") for i in range(6)]
    rows += [("u2", "i0", "2024-03-02 09:00:00"), ("u2", "i7", "2024-03-03 09:00:00")]
    path = tmp_path / "plays.csv"
    pd.DataFrame(rows, columns=["user", "item", "when"]).to_csv(path, sep=";", index=False)
    mapping = {"user_col": "user", "item_col": "item", "ts_col": "when"}
    ds = interactions(path, implicit_negatives=2, **mapping)
    assert_adapted(ds)
    r = ds.report
    assert r.rows_kept == 8 and r.rows_added == 6 * 1 + 2 * 2  # u1 never saw only i7
    assert r.signals["completed"] == "implicit: every row of the log is an interaction"
    assert any(n.startswith("implicit log") and "10 negatives drawn" in n for n in r.notes)
    assert "(+10 sampled negatives)" in str(r)
    imp = ds.impressions
    pos, neg = imp[imp["completed"]], imp[~imp["completed"]]
    assert len(pos) == 8 and len(neg) == 10
    assert not neg[["liked", "shared", "skipped"]].any().any()
    seen = {(u, v) for u, v, _ in rows}
    assert not any((u, v) in seen for u, v in zip(neg["user_id"], neg["video_id"], strict=True))
    # each negative is shown at the time of a positive of its user
    times = set(zip(pos["user_id"], pos["ts"], strict=True))
    assert all(t in times for t in zip(neg["user_id"], neg["ts"], strict=True))
    # seeded: adapting again gives the same rows
    again = interactions(path, implicit_negatives=2, **mapping).impressions
    pd.testing.assert_frame_equal(again, imp)


def test_an_ordered_log_without_timestamps_goes_on_synthetic_days(tmp_path: Path) -> None:
    path = tmp_path / "seq.csv"
    log = [("a", f"i{k}", k + 1) for k in range(8)] + [("b", "i1", 5), ("b", "i2", 9)]
    pd.DataFrame(log[::-1], columns=["user", "item", "pos"]).to_csv(path, index=False)
    ds = interactions(path, user_col="user", item_col="item", order_col="pos", order_days=4)
    assert_adapted(ds)
    imp = ds.impressions[ds.impressions["completed"]].sort_values(["user_id", "ts"])
    days = {u: [str(t.date()) for t in g["ts"]] for u, g in imp.groupby("user_id")}
    # a's 8 events, 2 a day; b's 2 events: the last on the last day, the first 2 days before
    assert days["a"] == [
        d for d in ("2020-01-28", "2020-01-29", "2020-01-30", "2020-01-31") for _ in range(2)
    ]
    assert days["b"] == ["2020-01-29", "2020-01-31"]
    assert list(imp[imp["user_id"] == "a"]["video_id"]) == [f"i{k}" for k in range(8)]
    assert any("synthetic days by pos" in n for n in ds.report.notes)


def test_a_log_with_neither_time_nor_order_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("user,item\nu1,i1\n")
    with pytest.raises(AdapterError, match="no timestamp column 'timestamp' and no order column"):
        interactions(path, user_col="user", item_col="item")


def _sparse_log(path: Path, years: int = 20, users: int = 300) -> None:
    """A ratings log over many years with about one active user a day (a public ratings
    log's shape): no single day can be a holdout."""
    import numpy as np

    rng = np.random.default_rng(3)
    n = users * 20
    start = pd.Timestamp("2000-01-01", tz="UTC")
    seconds = np.sort(rng.integers(0, years * 365 * 86400, size=n))
    pd.DataFrame(
        {
            "user": rng.integers(users, size=n).astype(str),
            "item": rng.integers(400, size=n).astype(str),
            "when": (start + pd.to_timedelta(seconds, unit="s")).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "stars": rng.integers(1, 6, size=n),
        }
    ).to_csv(path, index=False)


def test_a_sparse_log_is_refused_before_any_heavy_work_and_runs_regrouped_by_order(
    tmp_path: Path,
) -> None:
    """Before: a 22-year log ran the features DAG for 25 minutes, then failed training on
    a 2-row holdout day, retried three times."""
    from ingest.datasets import window_problems
    from reelrank.settings import GateSettings

    path = tmp_path / "ratings.csv"
    _sparse_log(path)
    mapping = {"user_col": "user", "item_col": "item", "ts_col": "when", "rating_col": "stars"}
    gate = GateSettings()
    ds = interactions(path, **mapping)
    days = ds.days
    problems = window_problems(ds, days[-2], days[-1], gate)
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"the holdout day {days[-2]} has ")
    assert "the gate needs at least 1,000 rows, 100 users and a positive" in problems[0]
    assert problems[1].endswith("a drift check needs at least 100")
    # regrouped by the order of its times: every user's last events on the last days
    regrouped = interactions(path, **{**mapping, "order_col": "when"}, order_days=5)
    assert len(regrouped.days) == 5 and regrouped.report.rows_kept == ds.report.rows_kept
    days = regrouped.days
    assert window_problems(regrouped, days[-2], days[-1], gate) == []


def test_a_holdout_day_without_a_positive_is_named_before_any_work(tmp_path: Path) -> None:
    from ingest.datasets import window_problems
    from reelrank.settings import GateSettings

    rows = []
    for d in range(1, 5):  # 4 days, 150 users a day; nobody rates 4+ on the 3rd day
        for u in range(150):
            for k in range(8):
                stars = 2 if d == 3 else 1 + (u + k) % 5
                rows.append((f"u{u}", f"i{(u * 7 + k) % 90}", f"2024-05-0{d}T1{k}:00:00Z", stars))
    path = tmp_path / "log.csv"
    pd.DataFrame(rows, columns=["user", "item", "when", "stars"]).to_csv(path, index=False)
    mapping = {"user_col": "user", "item_col": "item", "ts_col": "when", "rating_col": "stars"}
    ds = interactions(path, **mapping)
    days = ds.days
    assert window_problems(ds, days[-2], days[-1], GateSettings()) == [
        f"the holdout day {days[-2]} has 1,200 rows, 150 users and 0 positive engagements; "
        "the gate needs at least 1,000 rows, 100 users and a positive"
    ]
    assert window_problems(ds, days[-3], days[-2], GateSettings()) == []
