"""`reelrank status` tells a service that is still starting (its process alive, its health
URL not answering yet) from one that does not answer, with a real MLflow UI server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from reelrank.settings import get_settings
from reelrank.stack import services, start, status, stop_pid
from serving.server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.serving]


def test_a_service_not_healthy_yet_is_starting_not_down(tmp_path: Path):
    settings = get_settings(home=tmp_path / "var", ui={"mlflow_port": free_port()})
    mlflow_ui = next(s for s in services(settings, serve=False) if s.name == "mlflow-ui")
    pid = start(mlflow_ui, settings)
    env = {**os.environ, **settings.to_env(), "COLUMNS": "200"}
    try:
        os.kill(pid, signal.SIGSTOP)  # alive and not healthy yet, for as long as we look
        row = status(settings)["services"]["mlflow-ui"]
        assert (row["state"], row["running"], row["answering"]) == ("starting", True, False)
        out = subprocess.run(
            [sys.executable, "-m", "reelrank.cli", "status"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        text = out.stdout + out.stderr
        assert out.returncode == 4, text
        assert "starting: mlflow-ui" in text and "not answering" not in text, text
        # past the start-up grace, a live process that does not answer is not answering
        late = status(settings, grace_s=0.0)["services"]["mlflow-ui"]
        assert late["state"] == "not answering"
        os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 120
        while (
            time.monotonic() < deadline
            and status(settings)["services"]["mlflow-ui"]["state"] != "answering"
        ):
            time.sleep(1.0)
        assert httpx.get(f"{mlflow_ui.url}/health", timeout=5).status_code == 200
        out = subprocess.run(
            [sys.executable, "-m", "reelrank.cli", "--json", "status"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert json.loads(out.stdout)["services"]["mlflow-ui"]["state"] == "answering"
    finally:
        os.kill(pid, signal.SIGCONT)
        stop_pid(pid)
