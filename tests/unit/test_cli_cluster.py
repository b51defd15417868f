"""The cluster profile and the Bento from the command line: a missing server is exit 4 with
its password masked, a Bento without a champion is exit 1 with one message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REELRANK = str(Path(sys.executable).parent / "reelrank")


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REELRANK, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_up_without_postgres_is_exit_4_and_keeps_the_password_secret(tmp_path):
    r = _run(
        ["--json", "up"],
        {
            "REELRANK_HOME": str(tmp_path / "var"),
            "REELRANK_PROFILE": "cluster",
            "REELRANK_POSTGRES_URL": "postgresql+psycopg://postgres:hunter2@127.0.0.1:1/reelrank",
        },
    )
    assert r.returncode == 4, r.stderr
    doc = json.loads(r.stdout)
    assert "PostgreSQL does not answer" in doc["error"] and doc["exit_code"] == 4
    assert "hunter2" not in r.stdout + r.stderr


def test_bento_without_a_champion_is_exit_1(tmp_path):
    r = _run(["--json", "bento"], {"REELRANK_HOME": str(tmp_path / "var")})
    assert r.returncode == 1, r.stderr
    assert "no champion" in json.loads(r.stdout)["error"]
