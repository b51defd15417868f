"""What the service adds to BentoML's HTTP layer: Prometheus metrics, API-key checks, the
``GET /status`` document, and client errors logged as what they are (one INFO line, not an
ERROR traceback).

Metrics are created in the worker (after BentoML has set up Prometheus' multi-process
directory), so they appear on BentoML's own ``/metrics`` beside its request metrics.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from serving.guards import reply, send_json

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# BentoML logs every failed request through this logger, at ERROR with the traceback
BENTOML_HTTP_LOGGER = "bentoml._internal.server.http_app"


def client_error_status(exc: BaseException | None) -> int | None:
    """The 4xx BentoML answers for this exception, or None for a server error (500s)."""
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return 400
    if isinstance(exc, BentoMLException) and 400 <= exc.error_code.value < 500:
        return int(exc.error_code.value)
    return None


class ClientErrorLogFilter(logging.Filter):
    """Rewrites BentoML's ``Exception on /path [POST]`` record of a client error (400, 422,
    ...) as one INFO line without traceback or input: bad requests are the client's problem,
    and a traceback that echoes each payload fills the log (and leaks what clients sent).
    Server errors pass unchanged, at ERROR with their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        status = client_error_status(exc)
        if status is None or exc is None:
            return True
        args = record.args if isinstance(record.args, tuple) and len(record.args) == 2 else None
        path, method = args or ("?", "?")
        if hasattr(exc, "errors"):  # pydantic: field and kind of each error, not the input
            errs = exc.errors(include_url=False, include_input=False)
            what = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['type']}" for e in errs[:5])
        else:
            what = type(exc).__name__
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.msg, record.args = "client error %d on %s [%s]: %s", (status, path, method, what)
        record.exc_info = record.exc_text = None
        record.stack_info = None
        return True


def quiet_client_errors() -> None:
    """Install :class:`ClientErrorLogFilter` on BentoML's HTTP logger (once per process)."""
    logger = logging.getLogger(BENTOML_HTTP_LOGGER)
    if not any(isinstance(f, ClientErrorLogFilter) for f in logger.filters):
        logger.addFilter(ClientErrorLogFilter())


STAGE_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class ServiceMetrics:
    """reelrank's own series on ``/metrics``."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter(
            "reelrank_requests",
            "Answered recommendation requests by endpoint, experiment arm and path",
            ["endpoint", "arm", "cold_start"],
        )
        self.default_rows = Counter(
            "reelrank_default_feature_rows",
            "Scored candidates whose item features were defaults (no materialized row yet)",
        )
        self.filtered = Counter(
            "reelrank_filtered_candidates",
            "Candidates removed before scoring (seen: for retrieved candidates, the seen "
            "videos the index search skipped)",
            ["reason"],
        )
        self.stage = Histogram(
            "reelrank_stage_seconds",
            "Latency of each stage of the recommendation path",
            ["stage"],
            buckets=STAGE_BUCKETS,
        )
        self.feedback = Counter(
            "reelrank_feedback_events", "Feedback events by outcome", ["outcome"]
        )
        self.served_rows = Counter(
            "reelrank_served_rows_logged", "Served items handed to the request log"
        )
        self.model_version = Gauge(
            "reelrank_model_version",
            "Registry version serving each arm (set to the version number)",
            ["model", "arm"],
            multiprocess_mode="mostrecent",
        )
        self.reloads = Counter(
            "reelrank_reloads", "Hot reloads of models and item features", ["what"]
        )
        self.alias_version = Gauge(
            "reelrank_model_alias_version",
            "Registry version each arm's alias names: differs from reelrank_model_version "
            "while that version cannot be loaded (the loaded one keeps serving)",
            ["model", "arm"],
            multiprocess_mode="mostrecent",
        )
        self.feature_failures = Counter(
            "reelrank_feature_read_failures",
            "Online feature reads that failed; each such request took the cold-start path",
        )

    def observe(
        self,
        endpoint: str,
        arm: str,
        cold_start: bool,
        timings_ms: dict[str, float],
        filtered: dict[str, int],
        default_rows: int,
        served_rows: int,
    ) -> None:
        self.requests.labels(endpoint, arm, str(cold_start).lower()).inc()
        for stage, ms in timings_ms.items():
            self.stage.labels(stage).observe(ms / 1e3)
        for reason, n in filtered.items():
            if n:
                self.filtered.labels(reason).inc(n)
        if default_rows:
            self.default_rows.inc(default_rows)
        self.served_rows.inc(served_rows)


class ApiKeyMiddleware:
    """Requires ``x-api-key: <key>`` (or ``Authorization: Bearer <key>``) on the protected
    paths; answers 401 with a JSON message otherwise. Health, metrics and docs stay open."""

    def __init__(self, app: ASGIApp, key: str, protected: Iterable[str]) -> None:
        if not key:
            raise ValueError("an empty API key would let everyone in")
        self.app = app
        self.key = key.encode()
        self.protected = frozenset(protected)

    def _authorised(self, headers: list[tuple[bytes, bytes]]) -> bool:
        for name, value in headers:
            if name == b"x-api-key" and hmac.compare_digest(value, self.key):
                return True
            if (
                name == b"authorization"
                and value.startswith(b"Bearer ")
                and hmac.compare_digest(value[7:], self.key)
            ):
                return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope.get("path") in self.protected
            and not self._authorised(scope.get("headers", []))
        ):
            await reply(
                send,
                401,
                "missing or wrong API key: send it as the x-api-key header",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        await self.app(scope, receive, send)


class StatusMiddleware:
    """Answers ``GET /status`` with the worker's :meth:`status` document as JSON: the model
    versions served against the versions their aliases name (and why they differ), and the
    online store's health. 503 when the worker is not ready (the store fails), else 200.
    ``status`` is looked up at request time (the service instance of the worker)."""

    def __init__(self, app: ASGIApp, status: Callable[[], dict[str, Any]]) -> None:
        self.app, self.status = app, status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != "/status":
            await self.app(scope, receive, send)
            return
        try:
            doc = self.status()
        except Exception as err:  # not started yet
            doc = {"ready": False, "error": f"{type(err).__name__}: {err}"}
        await send_json(send, 200 if doc.get("ready") else 503, doc)
