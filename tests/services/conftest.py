"""The cluster profile against real servers on 127.0.0.1: PostgreSQL, Redis, a Celery worker.

A server that does not answer skips these tests with the reason, except under CI, where its
absence is a failure. Each test world gets databases of its own (dropped afterwards) and a
Redis database of its own (flushed before and after)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from reelrank.cluster import ServerUnavailable, check_servers, drop_databases, redis_target
from reelrank.settings import Settings
from serving.server import free_port
from tests.conftest import tiny_settings

POSTGRES = os.environ.get("REELRANK_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432")
REDIS = os.environ.get("REELRANK_TEST_REDIS", "redis://127.0.0.1:6379/11")


def _flush(settings: Settings) -> None:
    import redis

    t = redis_target(settings)
    redis.Redis(host=t.host, port=t.port, db=t.db, password=t.password).flushdb()


def cluster_settings(home: Path, **overrides: object) -> Settings:
    """A tiny world in the cluster profile, with databases named for this test world."""
    db = f"reelrank_t{uuid.uuid4().hex[:8]}"
    return tiny_settings(
        home,
        profile="cluster",
        postgres_url=f"{POSTGRES}/{db}",
        redis_url=REDIS,
        ui={
            "airflow_port": free_port(),
            "mlflow_port": free_port(),
            "feast_port": free_port(),
            "evidently_port": free_port(),
        },
        serving={"port": free_port(), "workers": 1},
        **overrides,
    )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Settings]:
    settings = cluster_settings(tmp_path / "var")
    try:
        check_servers(settings)  # creates the world's databases
    except ServerUnavailable as err:
        if os.environ.get("CI"):
            pytest.fail(f"{err}; CI must run the cluster-profile tests")
        pytest.skip(str(err))
    _flush(settings)
    try:
        yield settings
    finally:
        _flush(settings)
        drop_databases(settings)
