"""The guard in front of the service's endpoints: what is refused before BentoML reads a byte.

A pure ASGI middleware (no Starlette request objects on the happy path), added with
``RecommenderService.add_asgi_middleware`` outside the API-key check. On ``/recommend``,
``/rank`` and ``/feedback`` it

- answers **415** to a body that is not ``application/json`` (multipart, text/plain, none:
  BentoML would otherwise try to parse it and answer 500), without reading it;
- answers **413** to a body over ``serving.max_body_bytes``: at once when Content-Length
  declares it, and for a chunked body at the first chunk past the limit, so that a 100 MB
  body never sits in memory or on the event loop;
- sheds load with **503** and ``Retry-After`` once ``serving.max_concurrency`` requests are in
  flight in this worker (BentoML's own ``traffic.max_concurrency`` answers 429 with no
  ``Retry-After``, and only per service), rather than letting latency grow without bound;
- drains on SIGTERM: requests in flight finish, new ones are answered 503 with
  ``Retry-After`` (and ``Connection: close``) for ``serving.drain_grace_s``, then the worker
  stops as uvicorn would have (no connection reset while the server goes down);
- counts every 4xx and 503 it sees on those endpoints in ``/metrics``
  (``reelrank_client_errors_total{endpoint,status}``, ``reelrank_shed_requests_total{reason}``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from types import FrameType
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger(__name__)

JSON_TYPES = (b"application/json",)
NOT_JSON = "send the body as application/json"


class GuardMetrics:
    """The guard's series; created once per process, on first use (after BentoML has set up
    Prometheus' multi-process directory in the worker)."""

    _instance: GuardMetrics | None = None

    def __init__(self) -> None:
        from prometheus_client import Counter

        self.client_errors = Counter(
            "reelrank_client_errors",
            "Requests answered 4xx (bad input, auth, size, media type) by endpoint and status",
            ["endpoint", "status"],
        )
        self.shed = Counter(
            "reelrank_shed_requests",
            "Requests answered 503 + Retry-After: overload (queue full) or shutdown (draining)",
            ["reason"],
        )

    @classmethod
    def get(cls) -> GuardMetrics:
        if cls._instance is None:
            cls._instance = GuardMetrics()
        return cls._instance


def _is_json(content_type: bytes | None) -> bool:
    """``application/json`` with or without parameters (``; charset=utf-8``)."""
    if content_type is None:
        return False
    media = content_type.split(b";", 1)[0].strip().lower()
    return media in JSON_TYPES


async def send_json(
    send: Send,
    status: int,
    doc: Any,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """A complete JSON response, sent straight from a middleware (no app behind it)."""
    body = json.dumps(doc, default=str).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def reply(
    send: Send,
    status: int,
    message: str,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """A complete JSON error response ``{"error": message}`` (the shape of BentoML's own)."""
    await send_json(send, status, {"error": message}, headers)


class RequestGuard:
    """Refuses bad, oversized and excess requests before the service sees them (see module)."""

    def __init__(
        self,
        app: ASGIApp,
        protected: Iterable[str],
        max_body_bytes: int,
        max_concurrency: int | None = None,
        retry_after_s: int = 1,
        drain_grace_s: float = 1.0,
        drain_timeout_s: float = 30.0,
    ) -> None:
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")
        self.app = app
        self.protected = {p: p.strip("/") for p in protected}
        self.max_body_bytes = max_body_bytes
        self.max_concurrency = max_concurrency
        self.retry_after = (b"retry-after", str(retry_after_s).encode())
        self.drain_grace_s = drain_grace_s
        self.drain_timeout_s = drain_timeout_s
        self.in_flight = 0
        self.draining = False

    # -- lifecycle -----------------------------------------------------------------------------
    def _install_drain(self) -> None:
        """Put the drain in front of uvicorn's SIGTERM handler (installed by then): uvicorn
        would close the worker's connections at once, and requests arriving meanwhile would
        meet a reset from the socket the supervisor still holds."""
        if log.level == logging.NOTSET:  # BentoML's root logger is at WARNING: say it anyway
            log.setLevel(logging.INFO)
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return
        loop = asyncio.get_running_loop()

        def on_term(sig: int, frame: FrameType | None) -> None:
            if self.draining:
                return
            self.draining = True
            log.info(
                "SIGTERM: draining (%d in flight), new requests get 503 for %.1fs",
                self.in_flight,
                self.drain_grace_s,
            )
            loop.call_soon_threadsafe(
                lambda: loop.create_task(self._drain_then(previous, sig, frame))
            )

        signal.signal(signal.SIGTERM, on_term)

    async def _drain_then(
        self, stop: Callable[[int, FrameType | None], Any], sig: int, frame: FrameType | None
    ) -> None:
        started = time.monotonic()
        while self.in_flight and time.monotonic() - started < self.drain_timeout_s:
            await asyncio.sleep(0.02)
        await asyncio.sleep(self.drain_grace_s)
        stop(sig, frame)

    # -- requests -------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            self._install_drain()
            await self.app(scope, receive, send)
            return
        endpoint = self.protected.get(scope.get("path", "")) if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return

        def count(message: Message) -> None:
            status = message["status"]
            if 400 <= status < 500:
                GuardMetrics.get().client_errors.labels(endpoint, str(status)).inc()

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                count(message)
            await send(message)

        if self.draining:
            GuardMetrics.get().shed.labels("shutdown").inc()
            await reply(
                send,
                503,
                "the server is shutting down: retry shortly",
                (self.retry_after, (b"connection", b"close")),
            )
            return
        if self.max_concurrency is not None and self.in_flight >= self.max_concurrency:
            GuardMetrics.get().shed.labels("overload").inc()
            await reply(send, 503, "the server is saturated: retry shortly", (self.retry_after,))
            return
        self.in_flight += 1
        try:
            # /recommend and /rank compute on the event loop without awaiting anything: let
            # the requests that arrived with this one be counted before it computes, so that
            # a burst is seen as the queue it is (one loop turn, microseconds)
            await asyncio.sleep(0)
            await self._guarded(scope, receive, counted_send)
        finally:
            self.in_flight -= 1

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") != "POST":  # BentoML answers 405 itself
            await self.app(scope, receive, send)
            return
        content_type = length = None
        for name, value in scope.get("headers", []):
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
        if not _is_json(content_type):
            await reply(send, 415, NOT_JSON, ((b"accept", b"application/json"),))
            return
        too_big = f"the body is over {self.max_body_bytes} bytes"
        if length is not None:  # the HTTP parser enforces a declared length: trust it
            if not length.isdigit() or int(length) > self.max_body_bytes:
                await reply(send, 413, too_big, ((b"connection", b"close"),))
                return
            await self.app(scope, receive, send)
            return
        # chunked: read up to the limit here, then hand the body on as one message
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await reply(send, 413, too_big, ((b"connection", b"close"),))
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)
