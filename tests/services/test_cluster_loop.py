"""The whole loop in the cluster profile, as a deployment runs it: Airflow's scheduler on a
PostgreSQL metadata DB hands tasks to a Celery worker (Redis broker); the scheduled features
run materializes into Feast's Redis online store with its registry in PostgreSQL; the Asset
event schedules training, which trains the ranker with xgboost.dask and registers it in an
MLflow tracking store in PostgreSQL; the promotion schedules deploy; BentoML serves from Redis.

The same world trained in the local profile (SQLite, in-process XGBoost) must reach the same
metrics within tolerance: only settings differ."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from models.registry import CHAMPION, alias_version, client
from reelrank.airflow_api import AirflowApi
from reelrank.airflow_runner import migrate, run_dag
from reelrank.cluster import database_url, redis_target
from reelrank.settings import Settings
from reelrank.stack import _alive, descendants, down, read_pids, up
from tests.conftest import tiny_settings

pytestmark = [pytest.mark.services, pytest.mark.integration, pytest.mark.slow]

COMPARED = ("ndcg_at_10", "auc", "gauc")


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _challenger_metrics(settings: Settings) -> dict[str, float]:
    c = client(settings)
    name = settings.ranker_model_name
    first = min(c.search_model_versions(f"name='{name}'"), key=lambda m: int(m.version))
    metrics = c.get_run(first.run_id).data.metrics
    return {k: metrics[k] for k in COMPARED}


def _local_reference(home: Path, day: str) -> dict[str, float]:
    """The same tiny world through the same DAGs in the local profile."""
    settings = tiny_settings(home)
    migrate(settings)
    run_dag(settings, "reelrank_features", {"day": day})
    run_dag(settings, "reelrank_training", {"day": day})
    return _challenger_metrics(settings)


def _assert_promoted(settings: Settings) -> None:
    c = client(settings)
    name = settings.ranker_model_name
    if alias_version(c, name, CHAMPION) is not None:
        return
    tags = {
        m.version: (m.tags.get("gate_verdict"), m.tags.get("gate_reasons"))
        for m in c.search_model_versions(f"name='{name}'")
    }
    pytest.fail(f"training promoted no ranker, so no deploy can follow; the gate said: {tags}")


@pytest.mark.timeout(2700)
def test_the_loop_runs_on_postgres_redis_and_celery(cluster: Settings, tmp_path: Path) -> None:
    end = cluster.sim.end_date.isoformat()
    family: list[int] = []
    t0 = time.monotonic()
    try:
        stack = up(cluster, serve=False)  # nothing to serve yet: no champion
        assert "airflow-celery-worker" in stack.started
        print(f"\ncluster stack up in {stack.seconds_to_ready:.1f}s")
        with AirflowApi(cluster) as api:
            # unpaused, the daily features DAG is scheduled for the last complete day; the
            # simulated world ends before it, so the run ingests and featurizes all of it
            features = api.wait_for_new_run("reelrank_features", set(), timeout_s=600)
            assert features.run_type == "scheduled"
            # "features ready" schedules training; "model promoted" schedules deploy
            training = api.wait_for_new_run("reelrank_training", set(), timeout_s=900)
            assert training.run_type == "asset_triggered"
            # a gate that refused the ranker emits no "model promoted": say so, not a timeout
            _assert_promoted(cluster)
            deploy = api.wait_for_new_run("reelrank_deploy", set(), timeout_s=900)
            assert deploy.run_type == "asset_triggered"
            monitoring = api.trigger("reelrank_monitoring", {"day": end})
            api.wait("reelrank_monitoring", monitoring.run_id, timeout_s=600)
            print(f"loop through the scheduler and Celery in {time.monotonic() - t0:.0f}s")

            # every task of those runs was executed by the Celery worker
            for run in (features, training, deploy):
                tis = api.task_instances(run.dag_id, run.run_id)
                ran = [t for t in tis if t["state"] == "success"]
                assert ran, run
                assert all(t["executor"] in (None, "CeleryExecutor") for t in ran)
        with psycopg.connect(_libpq(database_url(cluster, "airflow"))) as con:
            done = con.execute(
                "select count(*) from celery_taskmeta where status = 'SUCCESS'"
            ).fetchone()
        assert done is not None and done[0] >= 10, done  # Celery's own record of its tasks

        # Feast: the registry in PostgreSQL, the online rows in Redis
        with psycopg.connect(_libpq(database_url(cluster, "feast"))) as con:
            views = {r[0] for r in con.execute("select feature_view_name from feature_views")}
        assert {"user_engagement", "video_stats", "user_creator_history"} <= views
        t = redis_target(cluster)
        r = redis.Redis(host=t.host, port=t.port, db=t.db)
        assert sum(1 for _ in r.scan_iter(match=b"*", count=1000)) > 100

        # MLflow in PostgreSQL: the champion, trained on Dask
        c = client(cluster)
        assert cluster.tracking_uri.startswith("postgresql")
        champion = alias_version(c, cluster.ranker_model_name, CHAMPION)
        assert champion is not None

        # BentoML on the champion, its state and online features in Redis
        served = up(cluster)
        assert "bentoml" in served.started
        rec = httpx.post(
            f"{served.urls['bentoml']}/recommend", json={"user_id": "u000001", "k": 5}, timeout=30
        )
        assert rec.status_code == 200, rec.text
        assert len(rec.json()["items"]) == 5
        pids = read_pids(cluster)
        family = [p for pid in pids.values() for p in (pid, *descendants(pid))]
    finally:
        down(cluster)
    assert not any(_alive(p) for p in family), [p for p in family if _alive(p)]

    # the same world in the local profile: same metrics within tolerance (the Dask fit's
    # quantile sketch differs a little from the in-process one)
    cluster_metrics = _challenger_metrics(cluster)
    local_metrics = _local_reference(tmp_path / "local" / "var", end)
    print(f"cluster {cluster_metrics}\nlocal   {local_metrics}")
    for k in COMPARED:
        assert abs(cluster_metrics[k] - local_metrics[k]) < 0.02, (
            k,
            cluster_metrics,
            local_metrics,
        )


def test_a_missing_server_is_one_clear_error(tmp_path: Path) -> None:
    from reelrank.cluster import ServerUnavailable, check_servers

    settings = tiny_settings(
        tmp_path / "var",
        profile="cluster",
        postgres_url="postgresql+psycopg://postgres:hunter2@127.0.0.1:1/reelrank",
    )
    with pytest.raises(ServerUnavailable, match="PostgreSQL does not answer") as err:
        check_servers(settings)
    assert "hunter2" not in str(err.value)
    shutil.rmtree(tmp_path / "var", ignore_errors=True)
