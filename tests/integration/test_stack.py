"""`reelrank up | status | down` for real: Airflow's four components, the MLflow UI and the
BentoML champion on 127.0.0.1, every one of them stopped by pid afterwards."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from reelrank.stack import DAG_IDS, _alive, descendants, down, read_pids, status, up
from tests.conftest import stack_copy

pytestmark = [pytest.mark.integration, pytest.mark.serving]


def test_up_starts_everything_status_reports_it_and_down_stops_exactly_it(loop, tmp_path_factory):
    home = Path(tmp_path_factory.mktemp("stack")) / "var"
    settings = stack_copy(loop.settings, home, "airflow", "served*")
    family: list[int] = []
    try:
        t0 = time.monotonic()
        result = up(settings)
        print(f"\nreelrank up: all services answering after {time.monotonic() - t0:.1f}s")
        assert set(result.started) == {
            "airflow-api-server",
            "airflow-scheduler",
            "airflow-dag-processor",
            "airflow-triggerer",
            "mlflow-ui",
            "feast-ui",
            "evidently-ui",
            "bentoml",
        }
        assert result.dags_unpaused == dict.fromkeys(DAG_IDS, True)
        user, _, password = result.airflow_login.partition(" / ")
        assert user == "admin" and password and "see" not in password
        for url in result.urls.values():
            assert httpx.get(url, timeout=10, follow_redirects=True).status_code == 200, url
        mlflow = result.urls["mlflow-ui"]
        models = httpx.get(
            f"{mlflow}/api/2.0/mlflow/registered-models/get",
            params={"name": settings.ranker_model_name},
            timeout=10,
        ).json()["registered_model"]
        assert any(a["alias"] == "champion" for a in models.get("aliases", []))
        rec = httpx.post(
            f"{result.urls['bentoml']}/recommend", json={"user_id": "someone", "k": 3}, timeout=30
        )
        assert rec.status_code == 200 and len(rec.json()["items"]) == 3

        st = status(settings)
        assert all(row["answering"] for row in st["services"].values()), st
        ranker = st["models"][settings.ranker_model_name]
        assert ranker["champion"] is not None
        again = up(settings)  # idempotent: nothing is started twice
        assert again.started == {} and len(again.skipped) == 8

        pids = read_pids(settings)
        family = [p for pid in pids.values() for p in (pid, *descendants(pid))]
    finally:
        stopped = down(settings)
    assert set(stopped) == set(result.started)
    assert not read_pids(settings)  # pid files removed
    assert not any(_alive(p) for p in family), [p for p in family if _alive(p)]
    assert not any(row["running"] for row in status(settings)["services"].values())
