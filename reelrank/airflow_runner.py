"""Run the project's DAGs through Airflow itself, on the profile's own metadata database.

``airflow dags test`` executes a whole DAG run in one process against the metadata DB in
``<home>/airflow`` (SQLite on the local profile), with real task states, XComs and Asset
events: the same DAG code the scheduler runs, without needing a scheduler.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from reelrank.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DAGS_DIR = PROJECT_ROOT / "dags"


class DagRunFailed(RuntimeError):
    pass


@dataclass
class DagRunResult:
    dag_id: str
    seconds: float
    log_path: Path


def airflow_env(settings: Settings) -> dict[str, str]:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(settings.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": os.environ.get(
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY", "5"
        ),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get(
            "AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"
        ),
        "AIRFLOW__API__HOST": "127.0.0.1",
        **settings.to_env(),
        "PYTHONWARNINGS": "ignore",
        "BENTOML_DO_NOT_TRACK": "True",
    }
    if settings.profile == "cluster":
        env.setdefault(
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
            settings.postgres_url.replace("/reelrank", "/airflow"),
        )
    return env


def _airflow() -> str:
    return str(Path(sys.executable).parent / "airflow")


def migrate(settings: Settings) -> None:
    """Create or upgrade the metadata DB (idempotent, about 3 s)."""
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        [_airflow(), "db", "migrate"],
        env=airflow_env(settings),
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise DagRunFailed(f"airflow db migrate failed:\n{out.stdout[-2000:]}{out.stderr[-4000:]}")


def run_dag(
    settings: Settings, dag_id: str, conf: dict[str, object] | None = None, timeout_s: float = 1800
) -> DagRunResult:
    """One real DAG run with ``airflow dags test``; raises with the log's tail on failure."""
    log_dir = settings.airflow_home / "runs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{dag_id}.log"
    cmd = [_airflow(), "dags", "test", dag_id]
    if conf:
        cmd += ["--conf", json.dumps(conf)]
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run(
            cmd,
            env=airflow_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=timeout_s,
            check=False,
        )
    seconds = time.perf_counter() - t0
    text = log_path.read_text(errors="replace")
    if proc.returncode != 0 or "DagRun failed" in text:
        raise DagRunFailed(f"DAG {dag_id} failed (log: {log_path}):\n{text[-4000:]}")
    return DagRunResult(dag_id, seconds, log_path)
