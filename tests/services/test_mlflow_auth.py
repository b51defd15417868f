"""The MLflow UI with MLflow's basic-auth app (``ui.mlflow_auth``) in the cluster profile:
moving ``champion`` needs a login. Real PostgreSQL (tracking store and users), the real
``mlflow server --app-name basic-auth`` as ``reelrank up`` starts it."""

from __future__ import annotations

import configparser
import stat
import time
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from reelrank.cluster import mlflow_auth_config_path
from reelrank.settings import Settings
from reelrank.stack import _answers, log_dir, services, start, status, stop_pid

pytestmark = [pytest.mark.services, pytest.mark.integration, pytest.mark.slow]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_moving_champion_through_the_mlflow_ui_needs_a_login(cluster: Settings, tmp_path: Path):
    settings = cluster.model_copy(
        update={"ui": cluster.ui.model_copy(update={"mlflow_auth": True})}
    )
    name = settings.ranker_model_name
    store = MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)
    store.create_registered_model(name)
    v1 = store.create_model_version(name, source=(tmp_path / "m1").as_uri()).version
    v2 = store.create_model_version(name, source=(tmp_path / "m2").as_uri()).version
    store.set_registered_model_alias(name, "champion", v1)

    ui = next(s for s in services(settings, serve=False) if s.name == "mlflow-ui")
    pid = start(ui, settings)
    try:
        deadline = time.monotonic() + 180
        while not _answers(ui.health) and time.monotonic() < deadline:
            time.sleep(1.0)
        log = (log_dir(settings) / "mlflow-ui.log").read_text(errors="replace")
        assert _answers(ui.health), log[-3000:]
        alias = f"{ui.url}/api/2.0/mlflow/registered-models/alias"
        move = {"name": name, "alias": "champion", "version": str(v2)}

        assert httpx.post(alias, json=move, timeout=30).status_code == 401
        wrong = httpx.post(alias, json=move, auth=("admin", "not-the-password"), timeout=30)
        assert wrong.status_code == 401
        assert (
            httpx.get(f"{ui.url}/api/2.0/mlflow/registered-models/search", timeout=30).status_code
            == 401
        )
        assert store.get_model_version_by_alias(name, "champion").version == v1  # unmoved

        # the admin's login is in a file only the owner reads, and in no log
        path = mlflow_auth_config_path(settings)
        assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
        config = configparser.ConfigParser(interpolation=None)
        config.read(path)
        user, password = config["mlflow"]["admin_username"], config["mlflow"]["admin_password"]
        assert config["mlflow"]["database_uri"].startswith("postgresql")  # users in PostgreSQL
        # a login of one's own reads, but moving an alias needs MANAGE on the model
        reader = ("reader", "reader-pa55word-long")
        made = httpx.post(
            f"{ui.url}/api/2.0/mlflow/users/create",
            json={"username": reader[0], "password": reader[1]},
            auth=(user, password),
            timeout=30,
        )
        assert made.status_code == 200, made.text
        search = f"{ui.url}/api/2.0/mlflow/registered-models/search"
        assert httpx.get(search, auth=reader, timeout=30).status_code == 200
        assert httpx.post(alias, json=move, auth=reader, timeout=30).status_code == 403
        assert store.get_model_version_by_alias(name, "champion").version == v1
        ok = httpx.post(alias, json=move, auth=(user, password), timeout=30)
        assert ok.status_code == 200, ok.text
        assert store.get_model_version_by_alias(name, "champion").version == v2
        log = (log_dir(settings) / "mlflow-ui.log").read_text(errors="replace")
        assert password not in log
        assert status(settings)["mlflow_login"] == {"user": user, "password_file": str(path)}
    finally:
        stop_pid(pid)
