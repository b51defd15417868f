"""Alert delivery: one log line always, and a JSON webhook (Slack-compatible) when configured.

An alert must never break the job that raises it, so :func:`send_alert` never raises and
never runs past its time budget: each attempt runs on a daemon thread that the caller stops
waiting for at the attempt's deadline, so even a receiver that drips its answer a byte at a
time cannot hold the monitoring task. Connection errors, timeouts, 5xx and 429 answers are
retried with doubling backoff; other 4xx answers mean the request itself is wrong and are
not. Webhook URLs often carry a secret token in their path, so only scheme and host are ever
logged or reported.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from monitoring.drift import DriftVerdict

log = logging.getLogger(__name__)

SEVERITIES = ("ok", "warning", "critical", "broken")
SOURCE = "reelrank"
_MIN_ATTEMPT_S = 0.05  # no attempt is started with less time than this left in the budget


@dataclass(frozen=True)
class Alert:
    """What to tell people: ``text`` is Slack-flavoured markdown, ``details`` is for machines."""

    title: str
    text: str
    severity: str  # "ok" | "warning" | "critical" | "broken"
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    def payload(self) -> dict[str, Any]:
        """The webhook body; Slack reads the top-level ``text``, other receivers the rest."""
        return {
            "text": f"*{self.title}*\n{self.text}",
            "title": self.title,
            "severity": self.severity,
            "details": self.details,
            "source": SOURCE,
        }


@dataclass(frozen=True)
class WebhookConfig:
    """Where and how hard to try: ``retries`` attempts after the first, all within
    ``max_total_s`` (sleeps included); each attempt gets at most ``timeout_s``."""

    url: str | None
    timeout_s: float = 2.0
    retries: int = 3
    backoff_s: float = 0.5
    max_total_s: float = 10.0


@dataclass(frozen=True)
class Delivery:
    """How the webhook went; ``status`` is the last HTTP status seen, if any."""

    delivered: bool
    attempts: int
    status: int | None
    error: str | None
    seconds: float


def safe_url(url: str) -> str:
    """Scheme and host (and port) only: what may appear in logs and errors."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid url>"
    return f"{parts.scheme or '?'}://{host}{port}"


def _redact(message: str, url: str) -> str:
    """An error message with every trace of the URL beyond scheme and host removed."""
    message = message.replace(url, safe_url(url))
    try:
        parts = urlsplit(url)
        secrets = (parts.path, parts.query, parts.fragment, parts.username, parts.password)
    except ValueError:
        return message
    for secret in secrets:
        if secret and len(secret) > 1:
            message = message.replace(secret, "<redacted>")
    return message


def _post_once(url: str, body: bytes, timeout: float) -> int:
    """One POST; the HTTP status (any status, errors included) or an exception."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": f"{SOURCE}-alerts"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(65536)
            return int(response.status)
    except urllib.error.HTTPError as err:
        err.close()
        return int(err.code)


def _attempt(url: str, body: bytes, timeout: float) -> tuple[int | None, BaseException | None]:
    """One POST bounded by ``timeout`` of wall time, whatever the receiver does."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["status"] = _post_once(url, body, timeout)
        except BaseException as exc:  # reported to the caller, never raised
            box["error"] = exc

    worker = threading.Thread(target=run, name=f"{SOURCE}-alert", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():  # left behind: its own socket timeout ends it
        return None, TimeoutError(f"no answer within {timeout:.2f} s")
    return box.get("status"), box.get("error")


def _retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


def _retryable_error(exc: BaseException) -> bool:
    """Network trouble (refused, reset, timeout, DNS) is worth another try; bugs are not."""
    return isinstance(exc, OSError | http.client.HTTPException)


def _log_alert(alert: Alert, logger: logging.Logger) -> None:
    level = logging.INFO if alert.severity == "ok" else logging.WARNING
    logger.log(level, "ALERT %s %s: %s — %s", SOURCE, alert.severity, alert.title, alert.text)


def send_alert(
    alert: Alert, config: WebhookConfig, logger: logging.Logger | None = None
) -> Delivery:
    """Log the alert, then POST it to ``config.url`` if set. Never raises."""
    logger = logger or log
    start = time.monotonic()
    with contextlib.suppress(Exception):  # a broken handler must not stop the webhook
        _log_alert(alert, logger)
    if not config.url:
        return Delivery(False, 0, None, "no webhook configured", time.monotonic() - start)
    try:
        delivery = _deliver(alert, config, start)
    except Exception as exc:  # defensive: nothing may escape
        error = _redact(f"{type(exc).__name__}: {exc}", config.url)
        delivery = Delivery(False, 0, None, error, time.monotonic() - start)
    with contextlib.suppress(Exception):
        where = safe_url(config.url)
        if delivery.delivered:
            logger.debug("alert delivered to %s in %d attempt(s)", where, delivery.attempts)
        else:
            logger.warning(
                "alert not delivered to %s after %d attempt(s) in %.2f s: %s",
                where,
                delivery.attempts,
                delivery.seconds,
                delivery.error,
            )
    return delivery


def _deliver(alert: Alert, config: WebhookConfig, start: float) -> Delivery:
    url = str(config.url)
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        error = f"unsupported webhook scheme {scheme!r} (http or https only)"
        return Delivery(False, 0, None, error, time.monotonic() - start)
    body = json.dumps(alert.payload(), default=str).encode()
    deadline = start + config.max_total_s
    attempts, status, error = 0, None, "time budget spent before the first attempt"
    delay = config.backoff_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining < _MIN_ATTEMPT_S:
            break
        attempts += 1
        status, exc = _attempt(url, body, min(config.timeout_s, remaining))
        if exc is None and status is not None and 200 <= status < 300:
            return Delivery(True, attempts, status, None, time.monotonic() - start)
        if exc is not None:
            error = _redact(f"{type(exc).__name__}: {exc}", url)
            retry = _retryable_error(exc)
        else:
            error = f"HTTP {status}"
            retry = status is not None and _retryable_status(status)
        if not retry or attempts > config.retries:
            break
        if deadline - time.monotonic() - delay < _MIN_ATTEMPT_S:
            error += " (time budget spent)"
            break
        time.sleep(delay)
        delay *= 2
    return Delivery(False, attempts, status, error, time.monotonic() - start)


def drift_alert(verdict: DriftVerdict, context: str = "") -> Alert:
    """An alert for a drift verdict: what drifted or broke, by how much, and the report."""
    drifted = sorted((c for c in verdict.columns if c.drifted), key=lambda c: -c.score)
    # each column is named once: the headline counts them, the lines below name them
    lines = [verdict.headline() if not context else f"{context}: {verdict.headline()}"]
    for q in verdict.quality:
        lines.append(f"• broken input `{q.column}`: {q}")
    for c in drifted[:10]:
        lines.append(f"• `{c.column}` {c.method} {c.score:.3g} (threshold {c.threshold:.3g})")
    if len(drifted) > 10:
        rest = ", ".join(f"`{c.column}`" for c in drifted[10:])
        lines.append(f"• {len(drifted) - 10} more drifted: {rest}")
    if verdict.report_html:
        lines.append(f"report: {verdict.report_html}")
    state = {
        "broken": "broken input",
        "critical": "dataset drift",
        "warning": "some columns drifted",
        "ok": "no drift",
    }[verdict.severity]
    title = f"reelrank drift check: {state}" + (f" ({context})" if context else "")
    details: dict[str, Any] = {
        "drifted": verdict.drifted,
        "share_drifted": verdict.share_drifted,
        "drift_share_threshold": verdict.drift_share_threshold,
        "drifted_columns": {c.column: c.score for c in drifted},
        "thresholds": {c.column: c.threshold for c in drifted},
        "broken_columns": verdict.broken_columns,
        "report_html": verdict.report_html,
        "report_json": verdict.report_json,
        "reference_rows": verdict.reference_rows,
        "current_rows": verdict.current_rows,
        "tags": dict(verdict.tags),
    }
    return Alert(title, "\n".join(lines), verdict.severity, details)
