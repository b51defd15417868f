from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from reelrank.cli import app

pytestmark = pytest.mark.unit
runner = CliRunner()


def test_help_lists_every_stage():
    out = runner.invoke(app, ["--help"])
    assert out.exit_code == 0
    for cmd in ("demo", "run", "simulate", "features", "train", "serve", "monitor", "dag"):
        assert cmd in out.output


def test_a_bad_day_is_a_usage_error():
    out = runner.invoke(app, ["train", "--holdout", "2025-13-45"])
    assert out.exit_code == 2
    assert "is not a day" in out.output


def test_an_unknown_scenario_is_refused():
    out = runner.invoke(app, ["demo", "--scenario", "meteor"])
    assert out.exit_code == 2


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reelrank.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_missing_data_is_one_clear_line_and_exit_1(tmp_path):
    import os

    env = {**os.environ, "REELRANK_HOME": str(tmp_path / "empty"), "COLUMNS": "200"}
    out = run_cli("train", env=env)
    assert out.returncode == 1
    assert "error: no feature tables" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_run_explains_its_options_and_refuses_bad_input_in_one_line(tmp_path):
    import os

    out = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0
    for option in ("--dataset", "--path", "--items", "--user-col", "--ts-unit", "--rating-col"):
        assert option in out.output
    env = {**os.environ, "REELRANK_HOME": str(tmp_path / "h"), "COLUMNS": "200"}
    missing = run_cli("run", "--dataset", "kuairand", "--path", str(tmp_path / "nope"), env=env)
    assert missing.returncode == 1 and "does not exist" in missing.stdout
    log = tmp_path / "log.csv"
    log.write_text("user,item,when\nu1,i1,2024-01-01T00:00:00Z\n")
    wrong = run_cli(
        "run", "--dataset", "interactions", "--path", str(log), "--user-col", "uid", env=env
    )
    assert wrong.returncode == 1 and "uid" in wrong.stdout, wrong.stdout + wrong.stderr
    assert "Traceback" not in missing.stdout + missing.stderr + wrong.stdout + wrong.stderr
    assert runner.invoke(app, ["run", "--dataset", "movielens", "--path", "x"]).exit_code == 2


def test_simulate_writes_the_lake(tmp_path):
    import os

    env = {
        **os.environ,
        "REELRANK_HOME": str(tmp_path / "h"),
        "REELRANK_SIM__N_USERS": "50",
        "REELRANK_SIM__N_VIDEOS": "100",
        "REELRANK_SIM__N_CREATORS": "5",
        "REELRANK_SIM__DAYS": "3",
    }
    out = run_cli("simulate", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "h" / "lake" / "impressions" / "day=2025-06-03").is_dir()


def test_models_promote_moves_the_alias_and_refuses_unknown_versions(tmp_path):
    import os

    from reelrank.settings import get_settings
    from training.registry import client

    s = get_settings(home=tmp_path / "h")
    c = client(s)
    c.create_registered_model(s.ranker_model_name)
    for _ in range(2):
        c.create_model_version(s.ranker_model_name, source=str(tmp_path))
    env = {**os.environ, "REELRANK_HOME": str(s.home), "COLUMNS": "200"}
    assert run_cli("models", "promote", "2", env=env).returncode == 0
    assert str(c.get_model_version_by_alias(s.ranker_model_name, "champion").version) == "2"
    bad = run_cli("models", "promote", "9", env=env)
    assert bad.returncode == 1 and "no version '9'" in bad.stdout
    listing = run_cli("models", "list", env=env)
    assert listing.returncode == 0 and "champion" in listing.stdout


def test_status_and_down_on_a_fresh_home_say_nothing_runs(tmp_path):
    import json
    import os

    env = {**os.environ, "REELRANK_HOME": str(tmp_path / "h"), "COLUMNS": "200"}
    out = run_cli("status", "--json", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    services = json.loads(out.stdout)["services"]
    assert set(services) >= {"airflow-api-server", "airflow-scheduler", "mlflow-ui"}
    assert not any(s["running"] for s in services.values())
    down = run_cli("down", env=env)
    assert down.returncode == 0 and "nothing was running" in down.stdout
    for cmd in ("up", "down", "status"):
        helped = runner.invoke(app, [cmd, "--help"], env={"COLUMNS": "200"})
        assert helped.exit_code == 0 and "--json" in helped.output
