"""Start and stop the real BentoML server as a child process (demo, tests, CLI)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from reelrank.errors import ServiceExited, ServiceTimeout, ServiceUnavailable
from reelrank.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class PortInUse(ServiceUnavailable, OSError):
    """Another process listens on the port the server was asked to use."""


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens on ``host:port``: a bind as the server would do it
    (``SO_REUSEADDR``, so a port left in TIME_WAIT by a stopped server counts as free)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the server (``bentoml serve`` re-execs as circusd, which stops its workers).

        SIGKILL is the last resort only: killing circusd first would orphan a worker that
        keeps serving the port, so its children are collected before.
        """
        if self.process.poll() is not None:
            return
        children = _children(self.pid)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # the workers run in sessions of their own: kill the group and each child
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def start_server(
    settings: Settings,
    port: int | None = None,
    log_path: Path | None = None,
    env: dict[str, str] | None = None,
) -> RunningServer:
    """Start ``bentoml serve`` on 127.0.0.1 and wait until ``/readyz`` answers 200.

    A port something else listens on is refused first: that other server would answer the
    health check, and a server that never bound would pass for started."""
    port = port or settings.serving.port
    if port_in_use(settings.serving.host, port):
        raise PortInUse(
            f"port {port} on {settings.serving.host} is in use by another process; "
            "choose another with --port or REELRANK_SERVING__PORT"
        )
    log_path = log_path or settings.serving_dir / "bentoml.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    child_env = {
        **os.environ,
        **settings.to_env(),
        "BENTOML_DO_NOT_TRACK": "True",
        "BENTOML_HOME": str(settings.serving_dir / "bentoml_home"),
        **(env or {}),
    }
    bentoml_bin = Path(sys.executable).parent / "bentoml"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [
                str(bentoml_bin),
                "serve",
                "serving.service:RecommenderService",
                "--host",
                settings.serving.host,
                "--port",
                str(port),
            ],
            cwd=PROJECT_ROOT,
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RunningServer(proc, f"http://{settings.serving.host}:{port}", log_path)
    deadline = time.monotonic() + settings.serving.startup_timeout_s
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServiceExited(f"bentoml serve exited with {proc.returncode}; see {log_path}")
            try:
                if httpx.get(f"{server.url}/readyz", timeout=1.0).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
    except BaseException:  # Ctrl-C while waiting must not leave a server behind
        server.stop()
        raise
    server.stop()
    raise ServiceTimeout(
        f"server not ready after {settings.serving.startup_timeout_s}s; see {log_path}"
    )
