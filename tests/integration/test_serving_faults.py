"""The real server under faults: a champion that cannot be loaded, an online store that
breaks while serving or is missing at start-up.

Each test works on a copy of the tiny loop's home (the shared loop stays as it was), with one
worker, fast polls and the user cache off, so that every request reads the online store.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from reelrank.errors import ExitCode, ServiceExited
from reelrank.settings import Settings
from serving.server import RunningServer, free_port, start_server

pytestmark = [pytest.mark.integration, pytest.mark.serving]
ENV = {
    "REELRANK_SERVING__WORKERS": "1",
    "REELRANK_SERVING__MODEL_POLL_S": "0.5",
    "REELRANK_SERVING__USER_CACHE_SIZE": "0",
}


def _copy_home(loop: Settings, dest: Path) -> Settings:
    shutil.copytree(loop.home, dest, ignore=shutil.ignore_patterns("airflow"))
    base = loop.model_dump()
    return Settings(
        **{**base, "home": dest, "serving": {**base["serving"], "port": free_port(), "workers": 1}}
    )


def _corrupt_version(settings: Settings) -> str:
    """A new version of the ranker (a copy of the champion with its own artifacts) whose
    ``model.ubj`` is then overwritten with random bytes, as a bad disk or a bad copy would."""
    import mlflow

    from models.registry import alias_version, client, configure_mlflow

    c = client(settings)
    name = settings.ranker_model_name
    champion = alias_version(c, name, "champion")
    booster = mlflow.xgboost.load_model(f"models:/{name}/{champion}")
    with mlflow.start_run(experiment_id=configure_mlflow(settings)):
        info = mlflow.xgboost.log_model(booster, name="model", registered_model_name=name)
    location = mlflow.get_logged_model(info.model_id).artifact_location
    ubj = Path(location.removeprefix("file://")) / "model.ubj"
    # seeded: which error the reader raises depends on the bytes (XGBoostError, or a
    # UnicodeDecodeError where they happen to form a bad string), and a test must not vary
    ubj.write_bytes(random.Random(20).randbytes(ubj.stat().st_size))
    return str(info.registered_model_version)


def run_cli(*args: str, settings: Settings) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "REELRANK_HOME": str(settings.home),
        "REELRANK_SERVING__PORT": str(settings.serving.port),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "reelrank.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


@dataclass
class World:
    settings: Settings
    server: RunningServer
    good: str  # the champion
    bad: str  # a version whose model file is corrupt


@pytest.fixture(scope="module")
def world(loop, tmp_path_factory) -> Iterator[World]:
    from models.registry import alias_version, client

    settings = _copy_home(loop.settings, Path(tmp_path_factory.mktemp("faults")) / "var")
    good = alias_version(client(settings), settings.ranker_model_name, "champion")
    assert good is not None
    bad = _corrupt_version(settings)
    server = start_server(settings, port=settings.serving.port, env=ENV)
    try:
        yield World(settings, server, good, bad)
    finally:
        server.stop()


def _status(w: World) -> dict:
    r = httpx.get(w.server.url + "/status", timeout=10)
    assert r.status_code in (200, 503), r.text
    return r.json()


def _wait(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def test_promote_refuses_a_version_that_cannot_be_loaded(world):
    from models.registry import alias_version, client

    s, name = world.settings, world.settings.ranker_model_name
    c = client(s)
    out = run_cli("models", "promote", world.bad, settings=s)
    assert out.returncode == ExitCode.FAILED, out.stdout + out.stderr
    assert f"v{world.bad}" in out.stderr and "model.ubj" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert alias_version(c, name, "champion") == world.good  # the alias did not move
    # (rollback to such a version: tests/unit/test_cli.py, on a tiny registry)


def test_a_champion_that_cannot_load_is_reported_and_the_old_one_keeps_serving(world):
    """The alias moved behind the CLI's back (the MLflow UI, a file corrupted after the
    promotion): the worker keeps the version it has, and says so once, in ``/status``,
    ``/metrics`` and ``reelrank status``."""
    from models.registry import client
    from reelrank.stack import run_dir

    s, name = world.settings, world.settings.ranker_model_name
    c = client(s)
    log_start = world.server.log_path.stat().st_size
    c.set_registered_model_alias(name, "champion", world.bad)
    try:
        assert _wait(lambda: _status(world)["models"]["champion"]["alias"] == world.bad)
        champion = _status(world)["models"]["champion"]
        assert champion["served"] == world.good and "model.ubj" in champion["error"]
        assert f"v{world.bad}" in champion["error"]
        r = httpx.post(world.server.url + "/recommend", json={"user_id": "u000001", "k": 3})
        assert r.status_code == 200 and r.json()["model_version"] == world.good
        metrics = httpx.get(world.server.url + "/metrics", timeout=10).text
        assert f'reelrank_model_version{{arm="champion",model="{name}"}} {world.good}.0' in metrics
        assert (
            f'reelrank_model_alias_version{{arm="champion",model="{name}"}} {world.bad}.0'
            in metrics
        )
        time.sleep(3)  # six more polls: still one report, and no traceback
        log = world.server.log_path.read_bytes()[log_start:].decode(errors="replace")
        assert log.count(f"cannot load {name} v{world.bad}") == 1, log[-3000:]
        assert "Traceback" not in log

        (run_dir(s)).mkdir(parents=True, exist_ok=True)
        (run_dir(s) / "bentoml.pid").write_text(str(world.server.pid))
        try:
            st = run_cli("--json", "status", settings=s)
            serving = json.loads(st.stdout)["services"]["bentoml"]["serving"]
            assert serving["models"]["champion"]["served"] == world.good
            assert serving["models"]["champion"]["alias"] == world.bad
            human = run_cli("status", settings=s)
            assert f"serves v{world.good}, champion alias is v{world.bad}" in human.stdout
        finally:
            (run_dir(s) / "bentoml.pid").unlink()
    finally:
        c.set_registered_model_alias(name, "champion", world.good)
    assert _wait(lambda: _status(world)["models"]["champion"]["error"] is None)


def test_start_up_with_a_champion_that_cannot_load_fails_fast_naming_it(world, tmp_path):
    from models.registry import client

    s, name = world.settings, world.settings.ranker_model_name
    c = client(s)
    c.set_registered_model_alias(name, "champion", world.bad)
    t0 = time.monotonic()
    try:
        with pytest.raises(ServiceExited) as err:  # its own BentoML home: its own metrics
            start_server(s, port=free_port(), env={**ENV, "BENTOML_HOME": str(tmp_path)})
    finally:
        c.set_registered_model_alias(name, "champion", world.good)
    assert time.monotonic() - t0 < 60
    text = str(err.value)
    assert f"v{world.bad}" in text and "/model.ubj does not load: " in text, text
    assert "models:/" not in text  # the file itself, not the registry's URI


def _known_users(settings: Settings, n: int) -> list[str]:
    from ingest.lake import read_table

    imp = read_table(settings.lake_dir, "impressions", start=settings.sim.end_date)
    return [str(u) for u in sorted(imp["user_id"].unique())[:n]]


def _failures(w: World) -> float:
    text = httpx.get(w.server.url + "/metrics", timeout=10).text
    lines = [
        ln for ln in text.splitlines() if ln.startswith("reelrank_feature_read_failures_total")
    ]
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)


def test_a_broken_online_store_degrades_to_cold_start_and_readyz_says_so(world):
    """The online store is corrupted in place while serving (100 random bytes over its
    header): requests still answer 200 on the cold-start path, counted; ``/readyz`` is 503
    and names the store; the failure is logged once for the burst; repaired, all recovers."""
    store = world.settings.feast_dir / "online_store.db"
    users = _known_users(world.settings, 12)
    url = world.server.url
    assert all(
        not httpx.post(url + "/recommend", json={"user_id": u, "k": 3}).json()["cold_start"]
        for u in users[:2]
    )
    original = store.read_bytes()
    before, log_start = _failures(world), world.server.log_path.stat().st_size
    with open(store, "r+b") as f:  # dd if=/dev/urandom of=online_store.db bs=100 count=1
        f.write(os.urandom(100))  #    conv=notrunc
    try:
        answers = [
            httpx.post(url + "/recommend", json={"user_id": u, "k": 3}, timeout=30) for u in users
        ]
        assert [r.status_code for r in answers] == [200] * len(users), answers[0].text
        assert all(r.json()["cold_start"] and len(r.json()["items"]) == 3 for r in answers)
        assert _failures(world) - before >= len(users)
        ready = httpx.get(url + "/readyz", timeout=10)
        assert ready.status_code == 503 and "online_store.db" in ready.text, ready.text
        assert _status(world)["features"]["failing"] is True
        log = world.server.log_path.read_bytes()[log_start:].decode(errors="replace")
        assert log.count("online feature reads are failing") == 1, log[-3000:]
        assert "Traceback" not in log
    finally:
        store.write_bytes(original)
    assert _wait(lambda: httpx.get(url + "/readyz", timeout=10).status_code == 200)
    r = httpx.post(url + "/recommend", json={"user_id": users[0], "k": 3}, timeout=30)
    assert r.status_code == 200 and not r.json()["cold_start"]


@pytest.mark.parametrize("fault", ["missing", "unreadable"])
def test_start_up_without_a_readable_online_store_exits_naming_it(loop, tmp_path, fault):
    settings = _copy_home(loop.settings, tmp_path / "var")
    store = settings.feast_dir / "online_store.db"
    if fault == "missing":
        store.unlink()
    else:
        with open(store, "r+b") as f:
            f.write(os.urandom(100))
    t0 = time.monotonic()
    with pytest.raises(ServiceExited) as err:
        start_server(settings, port=settings.serving.port, env=ENV)
    assert time.monotonic() - t0 < 60
    assert str(store) in str(err.value) and fault in str(err.value), str(err.value)
    assert fault == "unreadable" or not store.exists()  # Feast did not create an empty one
