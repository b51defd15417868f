"""An A/B experiment end to end on the trained tiny loop: ``reelrank experiment start``, then
closed-loop days served by the real serving class (``simulate``), then the report with its
decision, the MLflow artifact and the oracle's truth, then ``stop``.

It runs on a copy of the loop's home (moving aliases and writing reports there leaves the
shared loop as it was). The challenger is a second version of the champion's own model, so
the experiment is an A/A test: the report must not ship it, stop it for harm or call the
split broken.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from reelrank.settings import Settings

pytestmark = [pytest.mark.integration]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reelrank.cli", "--json", "experiment", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )


def test_an_experiment_starts_serves_simulated_days_and_reports(loop, tmp_path) -> None:
    from models.registry import alias_version, client

    home = Path(tmp_path) / "var"
    shutil.copytree(loop.settings.home, home, ignore=shutil.ignore_patterns("airflow"))
    s = Settings(**{**loop.settings.model_dump(), "home": home})
    c = client(s)
    name = s.ranker_model_name
    v1 = alias_version(c, name, "champion")
    assert v1 is not None
    mv = c.get_model_version(name, v1)
    v2 = str(c.create_model_version(name, mv.source, run_id=mv.run_id).version)
    c.set_registered_model_alias(name, "challenger", v2)
    env = {**os.environ, **s.to_env(), "COLUMNS": "200"}
    for var in ("REELRANK_SERVING__CHALLENGER_SHARE", "REELRANK_SERVING__EXPERIMENT_SALT"):
        env.pop(var, None)  # the experiment's record sets serving's split

    first = s.sim.end_date - timedelta(days=2)
    started = _cli(env, "start", "--share", "0.5", "--salt", "aa", "--day", first.isoformat())
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["challenger_version"] == v2

    simulated = _cli(env, "simulate", "--days", "3")
    assert simulated.returncode == 0, simulated.stdout + simulated.stderr
    days = json.loads(simulated.stdout)["simulated_days"]
    assert days == [(first + timedelta(days=i)).isoformat() for i in range(3)]

    reported = _cli(env, "report")
    assert reported.returncode == 0, reported.stdout + reported.stderr
    doc = json.loads(reported.stdout)
    assert doc["decision"] in ("keep running", "no detectable effect"), doc
    assert doc["source"] == "3 simulated days"
    analysis = doc["analysis"]
    assert min(analysis["users"].values()) >= 2 and not analysis["srm"]["mismatch"]
    assert analysis["cuped_theta"] != 0  # the lake's days before the start are the covariate
    assert set(analysis["truth_diff"]) >= {"mean_utility", "expected_completion"}
    page = Path(doc["report"]).read_text()
    assert "Oracle truth" in page and days[-1] in page
    tags = c.get_model_version(name, v2).tags
    assert tags["experiment"] == "aa" and tags["experiment_decision"] == doc["decision"]
    logged = [f.path for f in c.list_artifacts(mv.run_id, "experiments/aa")]
    assert logged == [f"experiments/aa/{Path(doc['report']).name}"]
    assert alias_version(c, name, "champion") == v1  # nothing shipped

    status = json.loads(_cli(env, "status").stdout)
    assert status["days_with_data"] == days and status["experiment"]["decision"] == doc["decision"]
    stopped = _cli(env, "stop")
    assert stopped.returncode == 0 and json.loads(stopped.stdout)["status"] == "stopped"
    assert json.loads(_cli(env, "status").stdout)["experiment"] is None
