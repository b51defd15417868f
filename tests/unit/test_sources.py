"""The registry of data sources: every source found by its name, an unknown name refused
with the known ones, and each log source reading its own options, defined once in the
settings, and nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from ingest.datasets import adapt, manifest
from ingest.sources import SOURCES, LogSource, get_log_source, get_source, register
from ingest.sources.interactions import InteractionsSource
from ingest.sources.kuairand import KuaiRandSource
from ingest.sources.simulator import SimulatorSource
from reelrank.settings import (
    DataSettings,
    InteractionsOptions,
    KuaiRandOptions,
    Settings,
    SimulationSettings,
    get_settings,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("name", "kind", "options_type"),
    [
        ("simulator", SimulatorSource, SimulationSettings),
        ("kuairand", KuaiRandSource, KuaiRandOptions),
        ("interactions", InteractionsSource, InteractionsOptions),
    ],
)
def test_every_source_is_found_by_its_name(name: str, kind: type, options_type: type) -> None:
    source = get_source(name)
    assert isinstance(source, kind)
    assert (source.name, source.options_type) == (name, options_type)


def test_every_dataset_the_settings_accept_has_a_source() -> None:
    assert set(get_args(Settings.model_fields["dataset"].annotation)) == set(SOURCES)


def test_an_unknown_source_is_refused_with_the_known_names() -> None:
    known = "known sources: interactions, kuairand, simulator"
    with pytest.raises(LookupError, match=rf"no data source named 'movielens'; {known}"):
        get_source("movielens")
    with pytest.raises(ValueError, match="'simulator' is not a real dataset"):
        get_log_source("simulator")


def test_a_name_is_registered_once() -> None:
    with pytest.raises(ValueError, match="'kuairand' is already registered"):
        register(KuaiRandSource())
    assert isinstance(get_source("kuairand"), KuaiRandSource)


def test_the_settings_hold_every_log_sources_options() -> None:
    """One definition: each options model is part of ``settings.data`` (so of the
    REELRANK_DATA__* variables), and misspelt options are refused, not ignored."""
    for source in SOURCES.values():
        if isinstance(source, LogSource):
            assert issubclass(DataSettings, source.options_type)
            assert source.options_type.source == source.name
    with pytest.raises(ValueError, match="ratng_col"):
        InteractionsOptions(ratng_col="stars")  # type: ignore[call-arg]


def test_a_log_source_takes_only_its_own_options(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,timestamp\nu1,i1,2024-03-01T12:00:00Z\n")
    data = {"path": log, "rating_col": "stars", "max_video_age_days": 30}
    s = get_settings(home=tmp_path / "h", dataset="interactions", data=data)
    options = get_log_source("interactions").options(s)
    assert type(options) is InteractionsOptions
    assert (options.path, options.rating_col) == (log, "stars")
    kr = get_log_source("kuairand").options(s)
    assert type(kr) is KuaiRandOptions and kr.model_dump() == {"path": log, "items": None}
    # what identifies a staging: the source's own options, in their declared order
    assert manifest(s)["options"] == InteractionsOptions(rating_col="stars").model_dump(
        mode="json", exclude={"path", "items"}
    )
    assert list(manifest(s)["options"])[:3] == ["user_col", "item_col", "ts_col"]
    assert manifest(s.model_copy(update={"dataset": "kuairand"}))["options"] == {}


def test_the_configured_source_adapts_the_log(tmp_path: Path) -> None:
    log = tmp_path / "plays.csv"
    log.write_text("who,what,when\nu1,i1,2024-03-01T12:00:00Z\nu1,i2,2024-03-01T12:00:30Z\n")
    data = {"path": log, "user_col": "who", "item_col": "what", "ts_col": "when"}
    ds = adapt(get_settings(home=tmp_path / "h", dataset="interactions", data=data))
    assert ds.name == "interactions" and ds.report.rows_kept == 2
    assert list(ds.impressions["video_id"]) == ["i1", "i2"]
