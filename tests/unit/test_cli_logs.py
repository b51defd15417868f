"""`reelrank logs`: what the services wrote under <home>/logs, listed, or the end of one."""

from __future__ import annotations

import json

import pytest

from tests.unit.test_cli import home_env, run_cli

pytestmark = pytest.mark.unit


def test_logs_lists_the_service_logs_and_shows_the_end_of_one(tmp_path):
    logs = tmp_path / "h" / "logs"
    logs.mkdir(parents=True)
    (logs / "bentoml.log").write_text("".join(f"line {i}\n" for i in range(100)))
    (logs / "mlflow-ui.log").write_text("mlflow started\n")
    env = home_env(tmp_path)

    listed = run_cli("logs", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "bentoml" in listed.stdout and "mlflow-ui" in listed.stdout
    doc = json.loads(run_cli("--json", "logs", env=env).stdout)
    assert {f["service"] for f in doc["logs"]} == {"bentoml", "mlflow-ui"}
    assert all(f["path"].endswith(".log") and f["bytes"] > 0 for f in doc["logs"])

    tail = run_cli("logs", "bentoml", "-n", "3", env=env)
    assert tail.returncode == 0, tail.stderr
    assert tail.stdout.splitlines() == ["line 97", "line 98", "line 99"]
    assert run_cli("logs", "bentoml", env=env).stdout.splitlines()[-1] == "line 99"

    unknown = run_cli("logs", "nope", env=env)
    assert unknown.returncode == 2
    assert "no log for 'nope'" in unknown.stderr and "bentoml, mlflow-ui" in unknown.stderr


def test_logs_in_a_home_where_nothing_ran_says_so(tmp_path):
    out = run_cli("logs", env=home_env(tmp_path))
    assert out.returncode == 0 and "no logs yet" in out.stdout


def test_the_stack_runs_airflow_tasks_at_info(tmp_path):
    """At WARNING a skipped task's log is empty; the stack's Airflow logs at INFO."""
    from reelrank.settings import get_settings
    from reelrank.stack import services

    s = get_settings(home=tmp_path / "h")
    for svc in services(s, serve=False):
        if svc.name.startswith("airflow"):
            assert svc.env["AIRFLOW__LOGGING__LOGGING_LEVEL"] == "INFO", svc.name


def test_monitor_help_names_the_webhook_and_says_a_check_by_hand_does_not_retrain(tmp_path):
    out = run_cli("monitor", "--help", env=home_env(tmp_path))
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    assert "REELRANK_DRIFT__WEBHOOK_URL" in text
    assert "schedules no retraining" in text and "reelrank dag reelrank_training" in text
