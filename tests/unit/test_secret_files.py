"""Secrets handed to child processes and UIs go through files only their owner reads."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from reelrank.cluster import ensure_mlflow_auth
from reelrank.settings import SECRETS_FILE_VAR, get_settings, move_secrets_to_file
from tests.conftest import tiny_settings

pytestmark = pytest.mark.unit


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secrets_leave_the_environment_for_a_file_the_settings_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = 'k\'e\\y "with" #odd $chars\nand a newline'
    env = {
        "REELRANK_SERVING__API_KEY": key,
        "REELRANK_POSTGRES_URL": "postgresql+psycopg://u:p%40ss@db:5432/recs",
        "REELRANK_SERVING__PORT": "4321",
        "PATH": "/usr/bin",
    }
    path = tmp_path / "secrets.env"
    path.write_text("stale")
    path.chmod(0o644)  # one from before is tightened, and rewritten
    child = move_secrets_to_file(env, path)
    assert child == {
        "REELRANK_SERVING__PORT": "4321",
        "PATH": "/usr/bin",
        SECRETS_FILE_VAR: str(path),
    }
    assert _mode(path) == 0o600
    for name in ("REELRANK_SERVING__API_KEY", "REELRANK_POSTGRES_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in child.items():
        monkeypatch.setenv(name, value)
    s = get_settings()
    assert s.serving.api_key is not None and s.serving.api_key.get_secret_value() == key
    assert s.postgres_url.get_secret_value() == env["REELRANK_POSTGRES_URL"]
    assert s.serving.port == 4321
    # a variable set in the environment still wins over the file
    monkeypatch.setenv("REELRANK_SERVING__API_KEY", "from-env")
    assert get_settings().serving.api_key.get_secret_value() == "from-env"  # type: ignore[union-attr]
    path.unlink()
    with pytest.raises(FileNotFoundError, match=SECRETS_FILE_VAR):
        get_settings()


def test_mlflow_logins_are_generated_once_into_an_owner_only_file(tmp_path: Path) -> None:
    settings = tiny_settings(tmp_path / "var", ui={"mlflow_auth": True})
    first = ensure_mlflow_auth(settings)
    again = ensure_mlflow_auth(settings)
    assert first == again  # kept across restarts: the users' database has the first one
    assert len(first.admin_password) >= 16 and first.secret_key != first.admin_password
    assert _mode(first.config_path) == 0o600 and _mode(first.config_path.parent) == 0o700
    db = first.config_path.parent / "basic_auth.db"  # the local profile's users
    assert _mode(db) == 0o600
    assert f"sqlite:///{db}" in first.config_path.read_text()
    assert first.env()["MLFLOW_AUTH_CONFIG_PATH"] == str(first.config_path)
