"""`reelrank serve` as a user runs it: stopped by a signal, it stops the BentoML server it
started (circusd and its workers run in a session of their own, so nothing else would)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from serving.server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.serving, pytest.mark.slow]


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (circusd re-parents nothing while its parent lives)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_serve_stops_the_whole_server(loop, tmp_path, sig):
    port = free_port()
    env = {
        **os.environ,
        **loop.settings.to_env(),
        "REELRANK_SERVING__PORT": str(port),
        "REELRANK_SERVING__WORKERS": "1",
    }
    cli = subprocess.Popen(
        [sys.executable, "-m", "reelrank.cli", "-q", "serve"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    server: set[int] = set()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert cli.poll() is None, cli.communicate()[1].decode()[-2000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("the server did not come up")
        server = _descendants(cli.pid)
        assert server, "serve started no server process"

        cli.send_signal(sig)
        code = cli.wait(timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(p) for p in server):
            time.sleep(0.2)
        assert not [p for p in server if _alive(p)], "server processes outlived `serve`"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/readyz", timeout=2)
        assert code == 0, cli.communicate()[1].decode()[-2000:]  # a clean stop
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        for pid in server:  # whatever a failed run left behind
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
