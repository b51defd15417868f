"""Secrets on a shared host: what the stack writes is readable by its owner only, and no log
prints a password (the real Airflow api-server, started as ``reelrank up`` starts it)."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from reelrank.airflow_runner import migrate
from reelrank.stack import (
    _answers,
    airflow_password,
    airflow_password_file,
    airflow_token,
    log_dir,
    services,
    start,
    status,
    stop_pid,
)
from serving.server import free_port
from tests.conftest import tiny_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_airflow_password_is_owner_only_and_never_logged(tmp_path: Path) -> None:
    settings = tiny_settings(
        tmp_path / "var", ui={"airflow_port": free_port(), "mlflow_port": free_port()}
    )
    migrate(settings)
    api = next(s for s in services(settings, serve=False) if s.name == "airflow-api-server")
    pid = start(api, settings)
    try:
        deadline = time.monotonic() + 180
        while not _answers(api.health) and time.monotonic() < deadline:
            time.sleep(1.0)
        assert _answers(api.health), (log_dir(settings) / f"{api.name}.log").read_text()[-3000:]
        password_file = airflow_password_file(settings)
        password = airflow_password(settings)
        assert password and len(password) >= 16
        assert _mode(password_file) == 0o600, oct(_mode(password_file))
        assert airflow_token(settings)  # the password in the file is the one Airflow checks
        for log in log_dir(settings).glob("*.log"):
            assert _mode(log) & 0o037 == 0, f"{log.name} is {oct(_mode(log))}"
            assert password not in log.read_text(errors="replace"), f"{log.name} prints it"
        assert _mode(log_dir(settings)) & 0o077 == 0
        assert _mode(settings.airflow_home) & 0o077 == 0
        # the owner is told where to read it, and nobody else can
        login = status(settings)["airflow_login"]
        assert login == {"user": "admin", "password_file": str(password_file)}
    finally:
        stop_pid(pid)
