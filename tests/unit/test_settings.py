from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from ingest.calendar import resolve_day
from reelrank.settings import get_settings

pytestmark = pytest.mark.unit


def test_environment_overrides_with_prefix_and_nesting(monkeypatch, tmp_path):
    monkeypatch.setenv("REELRANK_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("REELRANK_SIM__N_USERS", "123")
    monkeypatch.setenv("REELRANK_GATE__MIN_MARGIN_OVER_BASELINE", "0.2")
    s = get_settings()
    assert s.home == tmp_path / "h"
    assert s.sim.n_users == 123 and s.gate.min_margin_over_baseline == 0.2
    assert s.profile == "local"


def test_local_profile_keeps_everything_under_home_and_creates_nothing(tmp_path):
    s = get_settings(home=tmp_path / "nothing-yet")
    assert s.tracking_uri == f"sqlite:///{tmp_path}/nothing-yet/mlflow/mlflow.db"
    assert s.artifact_root.startswith("file://")
    assert not (tmp_path / "nothing-yet").exists()


def test_relative_home_is_made_absolute(tmp_path):
    assert get_settings(home="var").home == tmp_path / "var"


def test_to_env_round_trips(monkeypatch, tmp_path):
    s = get_settings(home=tmp_path, sim={"n_users": 77, "scenario": "topic_surge"})
    for k, v in s.to_env().items():
        monkeypatch.setenv(k, v)
    assert get_settings() == s


def test_resolve_day():
    assert resolve_day("2025-06-03", None) == date(2025, 6, 3)
    assert resolve_day(None, datetime(2025, 6, 3, tzinfo=UTC)) == date(2025, 6, 2)
    assert resolve_day(None, None, date(2025, 1, 1)) == date(2025, 1, 1)
    with pytest.raises(ValueError):
        resolve_day(None, None)


def test_serving_exploration_is_small_by_default_and_set_from_the_environment(
    monkeypatch, tmp_path
):
    default = get_settings(home=tmp_path).serving.exploration
    assert default.kind == "epsilon_greedy" and 0 < default.epsilon <= 0.1
    monkeypatch.setenv("REELRANK_SERVING__EXPLORATION__KIND", "plackett_luce")
    monkeypatch.setenv("REELRANK_SERVING__EXPLORATION__TEMPERATURE", "0.5")
    monkeypatch.setenv("REELRANK_SERVING__EXPLORATION__TOP_M", "4")
    s = get_settings(home=tmp_path)
    assert (s.serving.exploration.kind, s.serving.exploration.temperature) == ("plackett_luce", 0.5)
    assert s.serving.exploration.top_m == 4
    for k, v in s.to_env().items():  # the BentoML workers see the same policy
        monkeypatch.setenv(k, v)
    assert get_settings() == s
    monkeypatch.setenv("REELRANK_SERVING__EXPLORATION__EPSILON", "1.5")
    with pytest.raises(ValueError, match="epsilon"):
        get_settings()
