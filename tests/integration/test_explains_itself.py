"""The loop explains itself, and a check by hand agrees with the DAG.

On a copy of the session's loop (drift forced: every column counts), ``reelrank monitor``
by hand says plainly that it schedules no retraining and leaves the drift-episode state
alone; the monitoring DAG's own check of the same day then opens the episode and asks for
the retrain. The DAG's task log (``airflow dags test`` at INFO, as the stack's task logs)
says what the check found, what it did, and why a task skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reelrank.airflow_runner import migrate, run_dag
from reelrank.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.dags]
DRIFT = "reelrank://monitoring/drift-detected"


def drifting_copy(loop, home: Path) -> Settings:
    """The loop's home with its own Airflow DB and no drift episode yet (the loop's own
    check may have opened one), where any day counts as drifted."""
    shutil.copytree(
        loop.settings.home,
        home,
        ignore=shutil.ignore_patterns("airflow", "served*", "episodes.json"),
    )
    base = loop.settings.model_dump()
    s = Settings(**{**base, "home": home, "drift": {**base["drift"], "drift_share": 0.0}})
    migrate(s)
    return s


def test_a_check_by_hand_schedules_nothing_and_leaves_the_episode_to_the_dag(loop, tmp_path):
    from tests.conftest import Loop

    s = drifting_copy(loop, tmp_path / "var")
    day = s.sim.end_date.isoformat()
    episodes = s.reports_dir / "drift" / "episodes.json"
    assert not episodes.exists()

    env = {**os.environ, **s.to_env(), "COLUMNS": "200"}
    out = subprocess.run(
        [sys.executable, "-m", "reelrank.cli", "monitor", "--day", day],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 3, text[-3000:]  # drift
    assert "no retrain scheduled" in out.stdout and "does not retrain" in out.stdout, text
    assert "retraining scheduled" not in text  # neither the table nor the alert claims it
    assert not episodes.exists()  # the episode is left to the scheduled check

    # the DAG's check of the same day opens the episode and asks for the retrain
    result = run_dag(s, "reelrank_monitoring", {"day": day})
    assert (DRIFT, "reelrank_monitoring") in Loop(s, {}).asset_events()
    state = json.loads(episodes.read_text())
    assert state["open"]["started"] == day
    log = result.log_path.read_text()
    assert f"drift check of {day} against champion v" in log  # the verdict, at INFO
    assert "DRIFT DETECTED" in log and "retraining scheduled" in log

    # the next check in the episode skips, and its task log says why
    again = run_dag(s, "reelrank_monitoring", {"day": day})
    log = again.log_path.read_text()
    assert "Skipping task" in log and "no retrain (episode already retraining)" in log
    assert Loop(s, {}).asset_events().count((DRIFT, "reelrank_monitoring")) == 1


def test_mlflow_keeps_retrieval_apart_logs_the_inputs_and_lines_up_the_baselines(loop):
    from models.registry import client
    from training.tracking import REFERENCE_TAG

    s = loop.settings
    c = client(s)
    ranker = c.get_model_version(s.ranker_model_name, "1")
    retrieval = c.get_model_version(s.retrieval_model_name, "1")

    def experiment_of(run_id: str) -> str:
        return c.get_experiment(c.get_run(run_id).info.experiment_id).name

    assert experiment_of(ranker.run_id) == "reelrank-ranker"
    assert experiment_of(retrieval.run_id) == "reelrank-retrieval"

    run = c.get_run(ranker.run_id)
    day = ranker.tags["data_window"].split("..")[-1]
    inputs = {i.dataset.name: i.dataset for i in run.inputs.dataset_inputs}
    assert set(inputs) == {f"train-{day}", f"holdout-{day}"}
    holdout = json.loads(inputs[f"holdout-{day}"].profile)
    assert holdout["num_rows"] == run.data.metrics["n_rows"]  # metadata of what was judged
    assert json.loads(inputs[f"holdout-{day}"].source)["uri"].endswith("holdout.parquet")
    contexts = {
        t.value
        for i in c.get_run(retrieval.run_id).inputs.dataset_inputs
        for t in i.tags
        if t.key == "mlflow.data.context"
    }
    assert contexts == {"training", "validation"}

    # every reference is a child run with the challenger's own metric keys
    children = c.search_runs(
        [run.info.experiment_id], filter_string=f"tags.`{REFERENCE_TAG}` = '{run.info.run_id}'"
    )
    side = {r.data.tags["reelrank.reference"]: r.data.metrics for r in children}
    assert set(side) == {"popularity", "recent_popularity", "oracle"}
    for name, metrics in side.items():
        assert {"ndcg_at_10", "auc", "gauc"} <= set(metrics), name
        assert metrics["ndcg_at_10"] == pytest.approx(run.data.metrics[f"{name}_ndcg_at_10"])
    assert any(s.mlflow_dir.rglob("review/comparison.json"))
