"""DAG runs on a live Airflow (``reelrank up``) through its REST API (``/api/v2``).

``airflow dags test`` (:mod:`reelrank.airflow_runner`) runs a DAG in one process; on a real
deployment the scheduler creates runs, the executor (Celery in the cluster profile) runs the
tasks, and Assets chain the DAGs: features ready -> training -> (model promoted) -> deploy.
This client triggers a run, waits for it, and waits for the runs the scheduler creates from
the Asset events it emitted, so a script or a test can follow the closed loop as it happens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from reelrank.errors import StageFailed
from reelrank.settings import Settings

TERMINAL = {"success", "failed"}


class DagRunError(StageFailed, RuntimeError):
    """A run failed or did not finish in time; the message names the failed tasks."""


@dataclass(frozen=True)
class Run:
    dag_id: str
    run_id: str
    state: str
    run_type: str
    conf: dict[str, Any]
    seconds: float | None

    @classmethod
    def of(cls, d: dict[str, Any]) -> Run:
        start, end = d.get("start_date"), d.get("end_date")
        seconds = None
        if start and end:
            seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
        return cls(
            dag_id=d["dag_id"],
            run_id=d["dag_run_id"],
            state=d["state"],
            run_type=d.get("run_type", ""),
            conf=d.get("conf") or {},
            seconds=seconds,
        )


class AirflowApi:
    """A logged-in client of the stack's api-server (the simple auth manager's admin)."""

    def __init__(self, settings: Settings, timeout_s: float = 30.0) -> None:
        from reelrank.stack import airflow_token

        self.base = f"http://127.0.0.1:{settings.ui.airflow_port}/api/v2"
        self._client = httpx.Client(
            headers={"Authorization": f"Bearer {airflow_token(settings)}"}, timeout=timeout_s
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> AirflowApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, **params: Any) -> dict[str, Any]:
        r = self._client.get(f"{self.base}{path}", params=params)
        r.raise_for_status()
        return dict(r.json())

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> Run:
        r = self._client.post(
            f"{self.base}/dags/{dag_id}/dagRuns",
            json={"logical_date": None, "conf": conf or {}},
        )
        if r.status_code >= 400:
            raise DagRunError(f"could not trigger {dag_id}: {r.status_code} {r.text[:500]}")
        return Run.of(r.json())

    def runs(self, dag_id: str) -> list[Run]:
        body = self._get(f"/dags/{dag_id}/dagRuns", limit=100, order_by="-run_after")
        return [Run.of(d) for d in body["dag_runs"]]

    def run(self, dag_id: str, run_id: str) -> Run:
        return Run.of(self._get(f"/dags/{dag_id}/dagRuns/{run_id}"))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        body = self._get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100)
        return list(body["task_instances"])

    def wait(self, dag_id: str, run_id: str, timeout_s: float = 900.0) -> Run:
        """Block until the run ends; raise :class:`DagRunError` unless it succeeded."""
        deadline = time.monotonic() + timeout_s
        while True:
            run = self.run(dag_id, run_id)
            if run.state in TERMINAL:
                break
            if time.monotonic() > deadline:
                raise DagRunError(f"{dag_id} run {run_id} still {run.state} after {timeout_s:.0f}s")
            time.sleep(2.0)
        if run.state != "success":
            failed = [
                t["task_id"]
                for t in self.task_instances(dag_id, run_id)
                if t.get("state") in {"failed", "upstream_failed"}
            ]
            raise DagRunError(
                f"{dag_id} run {run_id} {run.state}; failed tasks: {failed or 'none recorded'} "
                "(their logs are in the Airflow UI)"
            )
        return run

    def wait_for_new_run(
        self, dag_id: str, known: set[str], timeout_s: float = 300.0, run_type: str | None = None
    ) -> Run:
        """The first run of ``dag_id`` not in ``known`` (e.g. one an Asset event scheduled),
        waited for until it ends successfully."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            fresh = [
                r
                for r in self.runs(dag_id)
                if r.run_id not in known and (run_type is None or r.run_type == run_type)
            ]
            if fresh:
                run = fresh[-1]  # the oldest new one (the list is newest first)
                return self.wait(
                    dag_id, run.run_id, timeout_s=max(60.0, deadline - time.monotonic())
                )
            time.sleep(2.0)
        raise DagRunError(f"no new {dag_id} run appeared within {timeout_s:.0f}s")

    def run_ids(self, dag_id: str) -> set[str]:
        return {r.run_id for r in self.runs(dag_id)}
