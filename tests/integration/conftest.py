"""One tiny world taken through the whole loop by real Airflow DAG runs, shared by the tests."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from reelrank.airflow_runner import DagRunResult, migrate, run_dag
from reelrank.settings import Settings
from tests.conftest import tiny_settings


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
    settings = tiny_settings(Path(tmp_path_factory.mktemp("loop")) / "var")
    migrate(settings)
    last = settings.sim.end_date
    runs = {
        "features": run_dag(
            settings, "reelrank_features", {"day": (last - timedelta(days=1)).isoformat()}
        ),
        "training": run_dag(settings, "reelrank_training"),
        "deploy": run_dag(settings, "reelrank_deploy"),
        "features_last": run_dag(settings, "reelrank_features", {"day": last.isoformat()}),
        "monitoring": run_dag(settings, "reelrank_monitoring"),
    }
    return Loop(settings, runs)
