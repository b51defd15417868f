"""The cluster profile is settings only: which databases, Redis and broker it uses, and that
none of their URLs (which may carry passwords) leaks into what is printed."""

from __future__ import annotations

import pytest

from features.store import repo_config
from reelrank.airflow_runner import airflow_env
from reelrank.cluster import broker_url, database_url, redact, redis_target
from reelrank.settings import Settings

pytestmark = pytest.mark.unit

PG = "postgresql+psycopg://reel:s3cret@db.internal:5433/recs"


def cluster(tmp_path, **kw: object) -> Settings:
    return Settings(home=tmp_path, profile="cluster", postgres_url=PG, **kw)


def test_one_server_three_databases(tmp_path):
    s = cluster(tmp_path)
    assert database_url(s, "feast") == PG
    assert database_url(s, "mlflow") == PG.replace("/recs", "/recs_mlflow")
    assert database_url(s, "airflow") == PG.replace("/recs", "/recs_airflow")
    assert s.tracking_uri == PG.replace("/recs", "/recs_mlflow")
    with pytest.raises(ValueError, match="unknown database purpose"):
        database_url(s, "other")


def test_local_profile_needs_no_server(tmp_path):
    s = Settings(home=tmp_path)
    assert s.tracking_uri.startswith("sqlite:///")
    cfg = repo_config(s)
    assert cfg["online_store"]["type"] == "sqlite" and cfg["registry"]["registry_type"] == "file"
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in airflow_env(s) or (
        "postgresql" not in airflow_env(s)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    )


def test_feast_uses_redis_and_the_sql_registry(tmp_path):
    s = cluster(tmp_path, redis_url="redis://:pw@cache:6380/3")
    cfg = repo_config(s)
    assert cfg["registry"] == {
        "registry_type": "sql",
        "path": PG,
        "cache_ttl_seconds": 60,
        "sqlalchemy_config_kwargs": {"pool_pre_ping": True},
    }
    assert cfg["online_store"] == {
        "type": "redis",
        "connection_string": "cache:6380,db=3,password=pw",
    }
    t = redis_target(s)
    assert (t.host, t.port, t.db, t.password) == ("cache", 6380, 3, "pw")


def test_airflow_runs_celery_on_postgres(tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW__CORE__EXECUTOR", raising=False)
    s = cluster(tmp_path, celery_broker_url="amqp://guest:guest@mq:5672//")
    env = airflow_env(s)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == PG.replace("/recs", "/recs_airflow")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "amqp://guest:guest@mq:5672//"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + PG.replace("/recs", "/recs_airflow")
    # the broker defaults to Redis; an operator's own AIRFLOW__ setting wins
    assert broker_url(cluster(tmp_path)) == "redis://127.0.0.1:6379/0"
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "KubernetesExecutor")
    assert airflow_env(s)["AIRFLOW__CORE__EXECUTOR"] == "KubernetesExecutor"


def test_urls_are_secrets(tmp_path):
    s = cluster(tmp_path, redis_url="redis://:pw@cache:6380/3")
    shown = repr(s) + s.model_dump_json()
    assert "s3cret" not in shown and ":pw@" not in shown
    assert redact(PG) == "postgresql+psycopg://reel:***@db.internal:5433/recs"
    assert redact("redis://cache:6379/0") == "redis://cache:6379/0"
    # child processes (Airflow tasks, BentoML workers) still get the real values
    env = s.to_env()
    assert env["REELRANK_POSTGRES_URL"] == PG
    assert env["REELRANK_REDIS_URL"] == "redis://:pw@cache:6380/3"
