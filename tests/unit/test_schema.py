from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pyarrow.parquet as pq
import pytest

from ingest import lake
from ingest.lake import BatchRejected, partition_path, read_table, write_partition
from ingest.schema import IMPRESSIONS, USERS, VIDEOS, validate
from ingest.simulator import generate_world
from reelrank.settings import SimulationSettings

pytestmark = pytest.mark.unit
DAY = date(2025, 6, 1)


@pytest.fixture(scope="module")
def world():
    return generate_world(SimulationSettings(n_users=50, n_creators=5, n_videos=80, days=3))


@pytest.fixture
def impressions(world) -> pd.DataFrame:
    return world.impressions(0).head(200).reset_index(drop=True)


def known(world) -> dict[str, set[str]]:
    return {"users": set(world.users["user_id"]), "videos": set(world.videos["video_id"])}


def test_simulated_tables_satisfy_their_contracts(world, impressions):
    assert validate(USERS, world.users).ok
    assert validate(VIDEOS, world.videos).ok
    report = validate(IMPRESSIONS, impressions, known(world))
    assert report.ok, str(report)


def test_every_problem_is_reported_at_once(world, impressions):
    bad = impressions.copy()
    bad.loc[0, "watch_time_s"] = -3.0
    bad.loc[1, "surface"] = "homepage"
    bad.loc[2, "user_id"] = "u-ghost"
    bad.loc[3, "request_id"] = None
    bad.loc[5, "event_id"] = bad.loc[4, "event_id"]
    report = validate(IMPRESSIONS, bad, known(world))
    checks = {(p.column, p.check.split(" ")[0]) for p in report.problems}
    assert not report.ok
    assert ("watch_time_s", "out") in checks
    assert ("surface", "not") in checks
    assert ("user_id", "unknown") in checks
    assert ("request_id", "null") in checks
    assert ("event_id", "duplicate") in checks
    assert "u-ghost" in str(report)


def test_missing_extra_and_mistyped_columns(impressions):
    bad = impressions.drop(columns=["liked"]).assign(extra=1)
    bad["position"] = bad["position"].astype(str)
    report = validate(IMPRESSIONS, bad)
    text = str(report)
    assert "liked: missing column" in text
    assert "extra: unknown column" in text
    assert "position: wrong type" in text


def test_bad_batch_is_quarantined_whole_and_lake_untouched(tmp_path, world, impressions):
    bad = impressions.copy()
    bad.loc[7, "duration_s"] = 0.0
    with pytest.raises(BatchRejected) as err:
        write_partition(tmp_path / "lake", tmp_path / "q", "impressions", DAY, bad, known(world))
    assert not partition_path(tmp_path / "lake", "impressions", DAY).exists()
    report = json.loads((err.value.quarantine_path / "report.json").read_text())
    assert report["ok"] is False and report["n_rows"] == len(bad)
    assert report["problems"][0]["column"] == "duration_s"
    assert len(pd.read_pickle(err.value.quarantine_path / "batch.pkl")) == len(bad)


def test_good_batch_roundtrips_with_contract_schema(tmp_path, world, impressions):
    path = write_partition(
        tmp_path / "lake", tmp_path / "q", "impressions", DAY, impressions, known(world)
    )
    assert pq.read_schema(path).equals(IMPRESSIONS.arrow_schema(), check_metadata=False)
    back = read_table(tmp_path / "lake", "impressions")
    pd.testing.assert_series_equal(back["event_id"], impressions["event_id"])
    assert [p.name for p in path.parent.iterdir()] == ["part-0.parquet"]


def test_crash_mid_write_leaves_no_partition(tmp_path, world, impressions, monkeypatch):
    def exploding_write(table, where, **_):
        with open(where, "wb") as f:
            f.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(lake.pq, "write_table", exploding_write)
    with pytest.raises(OSError):
        write_partition(
            tmp_path / "lake", tmp_path / "q", "impressions", DAY, impressions, known(world)
        )
    part_dir = partition_path(tmp_path / "lake", "impressions", DAY).parent
    assert not any(part_dir.iterdir())
    assert read_table(tmp_path / "lake", "impressions").empty


def test_a_lake_refuses_a_second_world(tmp_path):
    from ingest.pipeline import WorldMismatch, check_world_manifest
    from reelrank.settings import get_settings

    s = get_settings(home=tmp_path, sim={"n_users": 10})
    check_world_manifest(s)
    check_world_manifest(s)  # same world: fine
    with pytest.raises(WorldMismatch, match="n_users"):
        check_world_manifest(get_settings(home=tmp_path, sim={"n_users": 11}))
