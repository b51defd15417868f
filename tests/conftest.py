"""Shared fixtures: tiny worlds that build in seconds, in temporary homes."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from reelrank.airflow_runner import DagRunResult, migrate, run_dag
from reelrank.settings import Settings, get_settings

# Keep library noise and side effects out of the suite.
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("FEAST_USAGE", "False")

# Real public datasets: the repository's sibling ``shared/data`` (or REELRANK_TEST_DATA).
SHARED_DATA = Path(
    os.environ.get(
        "REELRANK_TEST_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data")
    )
)


def tiny_settings(home: Path, **overrides: object) -> Settings:
    """A world small enough for tests: 300 users, 600 videos, 10 days."""
    base: dict[str, object] = {
        "home": home,
        "sim": {
            "n_users": 300,
            "n_creators": 30,
            "n_videos": 600,
            "days": 10,
            "catalog_history_days": 30,
        },
        "training": {"train_days": 3, "n_estimators": 60, "reference_sample_rows": 2000},
        "drift": {"sample_rows": 2000},
        "serving": {"n_candidates": 50},
        # the sequence kind trains in the session's loop (below) and its own unit tests;
        # every other tiny world trains the pooled tower only, to keep the suite's time
        "retrieval": {"kinds": ["pooled"]},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}  # type: ignore[dict-item]
        else:
            base[key] = value
    return get_settings(**base)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return tiny_settings(tmp_path / "var")


@pytest.fixture(autouse=True)
def _no_stray_mlruns(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Run each test from a scratch directory: nothing may write into the working dir."""
    monkeypatch.chdir(tmp_path)
    yield
    assert not (tmp_path / "mlruns").exists(), "MLflow wrote ./mlruns"


@dataclass
class Loop:
    settings: Settings
    runs: dict[str, DagRunResult]

    def asset_events(self) -> list[tuple[str, str]]:
        """(asset uri, producing DAG) for every Asset event in Airflow's metadata DB."""
        db = self.settings.airflow_home / "airflow.db"
        with sqlite3.connect(db) as con:
            rows = con.execute(
                "select a.uri, e.source_dag_id from asset_event e join asset a on a.id = e.asset_id"
            ).fetchall()
        return [(str(u).rstrip("/"), str(d)) for u, d in rows]


@pytest.fixture(scope="session")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Loop:
    settings = tiny_settings(
        Path(tmp_path_factory.mktemp("loop")) / "var",
        retrieval={"kinds": ["pooled", "sequence"]},  # the gate chooses between the kinds
    )
    migrate(settings)
    last = settings.sim.end_date
    runs = {
        "features": run_dag(
            settings, "reelrank_features", {"day": (last - timedelta(days=1)).isoformat()}
        ),
        "training": run_dag(settings, "reelrank_training"),
        "deploy": run_dag(settings, "reelrank_deploy"),
        "features_last": run_dag(settings, "reelrank_features", {"day": last.isoformat()}),
        "monitoring": run_dag(settings, "reelrank_monitoring", {"day": last.isoformat()}),
    }
    return Loop(settings, runs)


def stack_copy(settings: Settings, home: Path, *ignore: str) -> Settings:
    """A copy of a loop's home with free ports for the whole stack (one BentoML worker), so
    ``reelrank up`` runs beside the session's other servers; ``ignore``: what not to copy."""
    import shutil

    from serving.server import free_port

    shutil.copytree(settings.home, home, ignore=shutil.ignore_patterns(*ignore))
    base = settings.model_dump()
    return Settings(
        **{
            **base,
            "home": home,
            "ui": {
                "airflow_port": free_port(),
                "mlflow_port": free_port(),
                "feast_port": free_port(),
                "evidently_port": free_port(),
            },
            "serving": {**base["serving"], "port": free_port(), "workers": 1},
        }
    )
