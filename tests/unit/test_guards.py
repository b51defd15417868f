"""The HTTP guard, the client-error log filter and the rotating log pump, piece by piece
(the real server runs them in tests/integration/test_serving_http.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest

from serving.guards import RequestGuard
from serving.logpump import RotatingWriter, pump
from serving.observability import ClientErrorLogFilter

PROTECTED = ("/recommend", "/rank", "/feedback")


class Echo:
    """The app behind the guard: reads the whole body and answers 200 with its length."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})


def call(
    guard: RequestGuard,
    path: str = "/recommend",
    headers: dict[str, str] | None = None,
    chunks: list[bytes] | None = None,
    method: str = "POST",
) -> tuple[int, dict[bytes, bytes], bytes, int]:
    """One request through the guard: (status, headers, body, body messages read)."""
    chunks = [b"{}"] if chunks is None else chunks
    sent: list[dict[str, Any]] = []
    read = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        if read >= len(chunks):
            return {"type": "http.disconnect"}
        read += 1
        return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    asyncio.run(guard(scope, receive, send))
    start = sent[0]
    return start["status"], dict(start["headers"]), sent[1]["body"], read


def guard(**kw: Any) -> tuple[RequestGuard, Echo]:
    app = Echo()
    return RequestGuard(app, PROTECTED, **{"max_body_bytes": 100, **kw}), app


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "multipart/form-data; boundary=x", "application/jsonx"]
)
def test_a_body_that_is_not_json_is_refused_unread(content_type):
    g, app = guard()
    headers = {} if content_type is None else {"content-type": content_type}
    status, hdrs, body, read = call(g, headers=headers)
    assert status == 415 and read == 0 and app.calls == 0
    assert json.loads(body)["error"] == "send the body as application/json"
    assert hdrs[b"content-type"] == b"application/json"


def test_json_with_a_charset_passes():
    g, app = guard()
    status, _, body, _ = call(g, headers={"content-type": "Application/JSON; charset=utf-8"})
    assert status == 200 and body == b"2" and app.calls == 1


def test_a_declared_length_over_the_limit_is_refused_unread():
    g, app = guard()
    status, hdrs, body, read = call(g, headers={**JSON, "content-length": "101"})
    assert status == 413 and read == 0 and app.calls == 0
    assert hdrs[b"connection"] == b"close" and b"over 100 bytes" in body
    assert call(g, headers={**JSON, "content-length": "100"}, chunks=[b"x" * 100])[0] == 200


def test_a_chunked_body_is_cut_at_the_first_chunk_past_the_limit():
    g, app = guard()
    status, _, _, read = call(g, headers=JSON, chunks=[b"x" * 60, b"x" * 60, b"x" * 60])
    assert status == 413 and read == 2 and app.calls == 0


def test_a_chunked_body_under_the_limit_reaches_the_app_whole():
    g, app = guard()
    status, _, body, read = call(g, headers=JSON, chunks=[b"x" * 30, b"x" * 30, b"x" * 40])
    assert (status, body, read, app.calls) == (200, b"100", 3, 1)


def test_other_paths_and_methods_pass_untouched():
    g, app = guard()
    assert call(g, path="/readyz", headers={"content-type": "text/plain"})[0] == 200
    assert call(g, method="GET")[0] == 200
    assert app.calls == 2


def test_overload_and_drain_answer_503_with_retry_after():
    g, app = guard(max_concurrency=1, retry_after_s=3)
    g.in_flight = 1  # one request is being computed
    status, hdrs, body, _ = call(g, headers=JSON)
    assert status == 503 and hdrs[b"retry-after"] == b"3" and b"saturated" in body
    g.in_flight, g.draining = 0, True
    status, hdrs, body, _ = call(g, headers=JSON)
    assert status == 503 and hdrs[b"connection"] == b"close" and b"shutting down" in body
    assert app.calls == 0


def test_requests_arriving_together_count_as_in_flight_together():
    """The endpoints compute on the event loop without awaiting: the guard yields once after
    counting a request, so that a burst that arrived together is seen as a queue."""
    g, _ = guard(max_concurrency=2)

    async def burst() -> list[int]:
        statuses: list[int] = []

        async def one() -> None:
            sent: list[dict[str, Any]] = []
            done = False

            async def receive() -> dict[str, Any]:
                nonlocal done
                if done:
                    return {"type": "http.disconnect"}
                done = True
                return {"type": "http.request", "body": b"{}", "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            scope = {
                "type": "http",
                "method": "POST",
                "path": "/rank",
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")],
            }
            await g(scope, receive, send)
            statuses.append(sent[0]["status"])

        await asyncio.gather(*(one() for _ in range(5)))
        return statuses

    statuses = asyncio.run(burst())
    assert sorted(statuses) == [200, 200, 503, 503, 503] and g.in_flight == 0


def test_every_4xx_is_counted_by_endpoint_and_status_the_api_keys_401_included():
    from prometheus_client import REGISTRY

    from serving.observability import ApiKeyMiddleware

    app = ApiKeyMiddleware(Echo(), key="k3y", protected=PROTECTED)
    g = RequestGuard(app, PROTECTED, max_body_bytes=100)

    def count(status: int) -> float:
        labels = {"endpoint": "rank", "status": str(status)}
        return REGISTRY.get_sample_value("reelrank_client_errors_total", labels) or 0.0

    before = {s: count(s) for s in (401, 413, 415)}
    assert call(g, path="/rank", headers=JSON)[0] == 401
    assert call(g, path="/rank", headers={**JSON, "x-api-key": "k3y"})[0] == 200
    assert call(g, path="/rank", headers={"x-api-key": "k3y"})[0] == 415
    assert call(g, path="/rank", headers={**JSON, "content-length": "101"})[0] == 413
    assert {s: count(s) - before[s] for s in before} == {401: 1, 413: 1, 415: 1}


def test_max_body_bytes_must_be_positive():
    with pytest.raises(ValueError):
        RequestGuard(Echo(), PROTECTED, max_body_bytes=0)


# -- the client-error log filter -----------------------------------------------------------------
def _record(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        return logging.getLogger("x").makeRecord(
            "x",
            logging.ERROR,
            __file__,
            1,
            "Exception on %s [%s]",
            ("/recommend", "POST"),
            sys.exc_info(),
        )


def test_a_validation_error_becomes_one_info_line_without_the_input():
    from pydantic import ValidationError

    from serving.schemas import RecommendRequest

    try:
        RecommendRequest(user_id="secret-user", k=0)  # type: ignore[arg-type]
    except ValidationError as err:
        record = _record(err)
    assert ClientErrorLogFilter().filter(record)
    assert record.levelno == logging.INFO and record.exc_info is None
    line = record.getMessage()
    assert line == "client error 400 on /recommend [POST]: k: greater_than_equal"
    assert "secret-user" not in line


def test_a_4xx_bentoml_exception_is_info_and_a_5xx_stays_an_error_with_its_traceback():
    from bentoml.exceptions import BentoMLException

    record = _record(BentoMLException("unknown request r-secret", error_code=HTTPStatus(422)))
    ClientErrorLogFilter().filter(record)
    assert record.levelname == "INFO" and "r-secret" not in record.getMessage()
    assert record.getMessage() == "client error 422 on /recommend [POST]: BentoMLException"

    for exc in (BentoMLException("boom", error_code=HTTPStatus(500)), RuntimeError("boom")):
        record = _record(exc)
        assert ClientErrorLogFilter().filter(record)
        assert record.levelno == logging.ERROR and record.exc_info is not None


# -- the rotating log pump -----------------------------------------------------------------------
def test_the_writer_rotates_before_a_line_would_pass_the_limit(tmp_path: Path):
    path = tmp_path / "bentoml.log"
    n = pump((f"line {i:04d}\n".encode() for i in range(100)), RotatingWriter(path, 100, 2))
    assert n == 100
    files = [path, path.with_name("bentoml.log.1"), path.with_name("bentoml.log.2")]
    assert all(f.stat().st_size <= 100 for f in files)
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)  # the owner's only
    assert not path.with_name("bentoml.log.3").exists()  # two backups kept
    kept = "".join(f.read_text() for f in reversed(files)).splitlines()
    assert kept == [f"line {i:04d}" for i in range(100 - len(kept), 100)]  # newest, in order


def test_the_pump_process_writes_every_line_it_is_piped_and_outlives_sigterm(tmp_path: Path):
    import signal

    path = tmp_path / "bentoml.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving.logpump", str(path), "4096", "1000"],
        stdin=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdin is not None
    proc.stdin.write(b"".join(f"line {i:05d}\n".encode() for i in range(5000)))
    proc.stdin.flush()
    deadline = time.monotonic() + 20
    while not (path.exists() and path.stat().st_size):  # running, its handlers installed
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # ignored: the writer ends when the pipe does
    proc.stdin.write(b"the last line\n")
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0
    # oldest first: bentoml.log.N, ..., bentoml.log.1, bentoml.log
    files = sorted(
        tmp_path.iterdir(),
        key=lambda f: -int(f.name.removeprefix("bentoml.log.") if f.name != "bentoml.log" else 0),
    )
    lines = "".join(f.read_text() for f in files).splitlines()
    assert lines == [f"line {i:05d}" for i in range(5000)] + ["the last line"]
    assert all(f.stat().st_size <= 4096 for f in files)
