"""The process manager of ``bentoml serve`` (circus) keeps no secret for a local user to read.

circusd answers commands on a control endpoint (``circusctl``): ``options service`` returns
the workers' environment, where the settings travel. Here the real server starts with an
API key and database and Redis URLs that carry passwords; every endpoint circusd listens on
is queried as ``circusctl`` would (``circus.client.CircusClient``), and no answer may hold a
secret, nor may any endpoint be reachable over TCP by another user of the host."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import httpx
import pytest
from circus.client import CallError, CircusClient

from serving.server import _children, free_port, start_server

pytestmark = [pytest.mark.integration, pytest.mark.serving, pytest.mark.slow]

API_KEY = "k3y-that-must-stay-secret"
DB_PASSWORD = "db-pa55word-secret"
REDIS_PASSWORD = "redis-pa55word-secret"
SECRETS = (API_KEY, DB_PASSWORD, REDIS_PASSWORD)
# what circusctl can ask without changing anything
QUERIES = [
    {"command": "options", "properties": {"name": "service"}},
    {"command": "get", "properties": {"name": "service", "keys": ["env", "cmd", "args"]}},
    {"command": "globaloptions", "properties": {}},
    {"command": "list", "properties": {}},
    {"command": "stats", "properties": {"name": "service"}},
    {"command": "dstats", "properties": {}},
]


def _listening(pid: int) -> tuple[set[int], set[str]]:
    """The TCP ports and unix socket paths process ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # LISTEN
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    paths = set()
    for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 8 and cols[6] in inodes:
            paths.add(cols[7].lstrip("@"))
    return ports, paths


def _ask(endpoint: str) -> list[str]:
    """Every answer circusd gives on ``endpoint`` (none if it is not a control endpoint)."""
    client = CircusClient(endpoint=endpoint, timeout=3.0)
    answers = []
    try:
        for query in QUERIES:
            try:
                answers.append(json.dumps(client.call(dict(query))))
            except CallError:
                break  # not a control endpoint (the HTTP port, the pub/sub stream)
    finally:
        client.stop()
    return answers


def test_circus_control_endpoint_gives_no_secret_away(loop, tmp_path: Path) -> None:
    env = {
        "REELRANK_SERVING__API_KEY": API_KEY,
        "REELRANK_POSTGRES_URL": f"postgresql+psycopg://reelrank:{DB_PASSWORD}@127.0.0.1:5432/x",
        "REELRANK_REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0",
        "REELRANK_SERVING__WORKERS": "1",
    }
    port = free_port()
    server = start_server(loop.settings, port=port, env=env)
    try:
        # the key reached the workers all the same
        body = {"user_id": "someone", "k": 2}
        assert httpx.post(f"{server.url}/recommend", json=body, timeout=30).status_code == 401
        ok = httpx.post(
            f"{server.url}/recommend", json=body, headers={"x-api-key": API_KEY}, timeout=30
        )
        assert ok.status_code == 200, ok.text

        ports, paths = _listening(server.pid)
        control = [f"tcp://127.0.0.1:{p}" for p in sorted(ports - {port})]
        control += [f"ipc://{p}" for p in sorted(paths) if p]
        answered: dict[str, list[str]] = {e: _ask(e) for e in control}
        assert any(answered.values()), f"no circus control endpoint found among {control}"
        for endpoint, answers in answered.items():
            for text in answers:
                leaked = [s for s in SECRETS if s in text]
                assert not leaked, f"{endpoint} answered a secret: {text[:300]}"
        # nothing but the HTTP port on TCP: another local user has no way in
        assert ports == {port}, f"circusd listens on TCP ports {sorted(ports - {port})}"
        for path in paths:  # and its unix sockets sit in a directory only the owner enters
            parent = Path(path).parent
            mode = stat.S_IMODE(parent.stat().st_mode)
            assert parent.stat().st_uid == os.geteuid() and mode & 0o077 == 0, (path, oct(mode))
        # the secrets are in a file only the owner reads
        workers = _children(server.pid)
        assert workers
        for pid in [server.pid, *workers]:
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
            assert not [s for s in SECRETS if s in environ], f"pid {pid} has a secret in its env"
    finally:
        server.stop()
        time.sleep(0.3)
