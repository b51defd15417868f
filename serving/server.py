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
from reelrank.settings import Settings, move_secrets_to_file

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SERVICE = "serving.service:RecommenderService"


def serve_command(host: str, port: int) -> list[str]:
    """``bentoml serve`` of the service, through :mod:`serving.launch`: circus's control
    endpoint on a unix socket only the owner reaches, not on a TCP port open to every local
    user."""
    launch = [sys.executable, "-m", "serving.launch", "serve", SERVICE]
    return [*launch, "--host", host, "--port", str(port)]


def secrets_file(settings: Settings, port: int) -> Path:
    """Where the server on ``port`` finds its secret settings (0600; see
    :func:`reelrank.settings.move_secrets_to_file`): one file per port, as one server at a
    time holds a port."""
    return settings.serving_dir / f"secrets-{port}.env"


#: The line a worker prints when it cannot start; :func:`start_server` looks for it.
STARTUP_FAILED = "reelrank: the service cannot start: "


def report_startup_failure(err: BaseException) -> None:
    """Print why this worker cannot start as one line (the cause: a model version and its
    file, a missing store), for :func:`start_server` and people reading the log; BentoML's
    traceback follows it."""
    from reelrank.errors import ReelrankError

    lines = str(err).strip().splitlines() or [""]
    why = err.brief if isinstance(err, ReelrankError) else f"{type(err).__name__}: {lines[0]}"
    print(STARTUP_FAILED + why.replace("\n", " "), file=sys.stderr, flush=True)


def startup_failure(log_path: Path, offset: int) -> str | None:
    """The cause a worker reported in the log (written after ``offset``), if any."""
    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if STARTUP_FAILED in line:
            return line.split(STARTUP_FAILED, 1)[1].strip()
    return None


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
    secrets_path: Path | None = None
    log_pump: subprocess.Popen[bytes] | None = None  # serving.logpump, rotating log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the server (``bentoml serve`` re-execs as circusd, which stops its workers).

        SIGKILL is the last resort only: killing circusd first would orphan a worker that
        keeps serving the port, so its children are collected before. The log pump ends by
        itself once the server's last line is written; it is waited for.
        """
        if self.secrets_path is not None:
            self.secrets_path.unlink(missing_ok=True)
        try:
            self._stop_server(timeout)
        finally:
            if self.log_pump is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.log_pump.wait(timeout=10)

    def _stop_server(self, timeout: float) -> None:
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

    A worker that cannot start prints the cause (:func:`report_startup_failure`): the
    server is stopped and :class:`ServiceExited` carries that cause at once, instead of
    waiting out ``startup_timeout_s`` while BentoML restarts the worker.

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
    offset = log_path.stat().st_size if log_path.exists() else 0
    # the secrets travel in a 0600 file, not in the environment circus shows on request
    secrets_path = secrets_file(settings, port)
    child_env = move_secrets_to_file(
        {
            **os.environ,
            **settings.to_env(),
            "BENTOML_DO_NOT_TRACK": "True",
            "BENTOML_HOME": str(settings.serving_dir / "bentoml_home"),
            **(env or {}),
        },
        secrets_path,
    )
    # the server writes to a pipe; the pump writes the file (0600), rotated by size, losing
    # no line
    pump = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving.logpump",
            str(log_path),
            str(settings.serving.log_max_bytes),
            str(settings.serving.log_backups),
        ],
        cwd=PROJECT_ROOT,
        # it needs no setting: none of them (secrets included) in its environment
        env={k: v for k, v in os.environ.items() if not k.startswith("REELRANK_")},
        stdin=subprocess.PIPE,
        start_new_session=True,
    )
    assert pump.stdin is not None
    with pump.stdin as log:  # the server holds the pipe; the parent's copy is closed
        proc = subprocess.Popen(
            serve_command(settings.serving.host, port),
            cwd=PROJECT_ROOT,
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RunningServer(
        proc, f"http://{settings.serving.host}:{port}", log_path, secrets_path, pump
    )
    deadline = time.monotonic() + settings.serving.startup_timeout_s
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                why = startup_failure(log_path, offset) or f"exited with {proc.returncode}"
                raise ServiceExited(f"bentoml serve: {why}; see {log_path}")
            cause = startup_failure(log_path, offset)
            if cause is not None:  # BentoML would restart the worker, which fails again
                server.stop()
                raise ServiceExited(f"the server cannot start: {cause}; see {log_path}")
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
