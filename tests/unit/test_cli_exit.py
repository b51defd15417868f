"""A CLI run ends with its own output: duckdb's nanobind bindings print ~40 lines of
"leaked" objects at interpreter exit (a shutdown-order report, not a leak of ours)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_a_command_that_uses_duckdb_ends_without_nanobind_noise(tmp_path):
    env = {
        **os.environ,
        "REELRANK_HOME": str(tmp_path / "h"),
        "REELRANK_SIM__N_USERS": "50",
        "REELRANK_SIM__N_VIDEOS": "100",
        "REELRANK_SIM__N_CREATORS": "5",
        "REELRANK_SIM__DAYS": "3",
    }
    cli = [sys.executable, "-m", "reelrank.cli"]
    for command in ("simulate", "features"):  # features computes its tables in duckdb
        out = subprocess.run(
            [*cli, command], capture_output=True, text=True, env=env, timeout=600, check=False
        )
        assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip()  # the command still says what it did
    assert "nanobind" not in out.stderr and "leaked" not in out.stderr, out.stderr[-2000:]
