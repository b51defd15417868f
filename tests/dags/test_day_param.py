"""The ``day`` parameter is checked when a run is triggered, and a bad day is not retried.

Each DAG run for real (``airflow dags test``) on an empty home: a day in the wrong format
is refused by Airflow's Params before any task runs; a day that matches the format but is
no date fails its task once, without the retries meant for transient faults.
"""

from __future__ import annotations

import pytest

from reelrank.airflow_runner import DagRunFailed, migrate, run_dag
from tests.conftest import tiny_settings

pytestmark = [pytest.mark.dags, pytest.mark.integration]


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    s = tiny_settings(tmp_path_factory.mktemp("params") / "var")
    migrate(s)
    return s


@pytest.mark.parametrize(
    "dag_id", ["reelrank_features", "reelrank_training", "reelrank_monitoring"]
)
def test_a_day_in_the_wrong_format_is_refused_when_the_run_is_triggered(settings, dag_id):
    with pytest.raises(DagRunFailed) as err:
        run_dag(settings, dag_id, {"day": "2025/07/09"}, timeout_s=120)
    log = err.value.log_path.read_text()
    assert "Invalid input for param day" in err.value.brief and "2025/07/09" in err.value.brief
    assert "[DAG TEST] starting task_id" not in log  # refused before any task ran


def test_a_day_that_is_no_date_fails_its_task_once(settings):
    with pytest.raises(DagRunFailed) as err:
        run_dag(settings, "reelrank_features", {"day": "2025-02-30"}, timeout_s=120)
    log = err.value.log_path.read_text()
    assert "bad day" in log and "day is out of range for month" in log
    assert log.count("[DAG TEST] starting task_id=ingest") == 1, "a bad day was retried"
