"""What the service adds to BentoML's HTTP layer: Prometheus metrics and API-key checks.

Metrics are created in the worker (after BentoML has set up Prometheus' multi-process
directory), so they appear on BentoML's own ``/metrics`` beside its request metrics.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

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
            body = json.dumps(
                {"error": "missing or wrong API key: send it as the x-api-key header"}
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"www-authenticate", b"Bearer"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
