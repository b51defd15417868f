"""Alert delivery against a real HTTP receiver on 127.0.0.1 (an in-process server thread)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from monitoring.alerts import Alert, WebhookConfig, drift_alert, safe_url, send_alert
from monitoring.drift import ColumnDrift, DriftVerdict, QualityIssue

pytestmark = pytest.mark.unit

TOKEN = "T0KEN-s3cr3t-XYZ"
PATH = f"/services/hooks/{TOKEN}"


@dataclass
class Receiver:
    """What the handler does and saw: fails ``fail_first`` requests with ``fail_status``."""

    port: int = 0
    fail_first: int = 0
    fail_status: int = 500
    hang_s: float = 0.0
    drip_s: float = 0.0  # answer one byte every drip_s seconds
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    requests: int = 0
    released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"


def handler_for(state: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                state.requests += 1
                n = state.requests
                state.bodies.append(json.loads(body))
                state.headers.append(dict(self.headers))
            if state.hang_s:
                state.released.wait(state.hang_s)
            status = state.fail_status if n <= state.fail_first else 200
            if state.drip_s:
                self.drip(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                return
            try:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:  # the client gave up on a hanging answer
                pass

        def drip(self, answer: bytes) -> None:
            try:
                for i in range(len(answer)):
                    if state.released.wait(state.drip_s):
                        return
                    self.wfile.write(answer[i : i + 1])
            except OSError:
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        state.released.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def dead_url() -> str:
    """A URL on a port that nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{PATH}"


def make_alert(severity: str = "critical") -> Alert:
    return Alert(
        title="Drift detected",
        text="3/20 columns drifted: `watch_frac`, `age_h`, `ctr_7d`",
        severity=severity,
        details={"drifted_columns": ["watch_frac", "age_h", "ctr_7d"], "share": 0.15},
    )


def fast(url: str | None, **kw: Any) -> WebhookConfig:
    base: dict[str, Any] = {"timeout_s": 1.0, "retries": 3, "backoff_s": 0.01, "max_total_s": 5.0}
    return WebhookConfig(url, **{**base, **kw})


def test_payload_arrives_with_slack_text(receiver: Receiver) -> None:
    alert = make_alert()
    delivery = send_alert(alert, fast(receiver.url))
    assert delivery.delivered and delivery.attempts == 1 and delivery.status == 200
    assert delivery.error is None
    (body,) = receiver.bodies
    assert body["text"] == "*Drift detected*\n3/20 columns drifted: `watch_frac`, `age_h`, `ctr_7d`"
    assert body["severity"] == "critical"
    assert body["title"] == "Drift detected"
    assert body["details"] == {"drifted_columns": ["watch_frac", "age_h", "ctr_7d"], "share": 0.15}
    assert body["source"] == "reelrank"
    assert receiver.headers[0]["Content-Type"] == "application/json"


def test_details_that_json_cannot_encode_are_sent_as_strings(receiver: Receiver) -> None:
    alert = Alert("t", "x", "warning", {"report": Path("/reports/drift.html")})
    assert send_alert(alert, fast(receiver.url)).delivered
    assert receiver.bodies[0]["details"] == {"report": "/reports/drift.html"}


@pytest.mark.parametrize("status", [500, 503, 429])
def test_retries_server_errors_then_succeeds(receiver: Receiver, status: int) -> None:
    receiver.fail_first, receiver.fail_status = 2, status
    delivery = send_alert(make_alert(), fast(receiver.url))
    assert delivery.delivered
    assert delivery.attempts == 3 and delivery.status == 200
    assert receiver.requests == 3
    assert receiver.bodies[0] == receiver.bodies[2]


def test_gives_up_after_the_configured_retries(receiver: Receiver) -> None:
    receiver.fail_first = 100
    delivery = send_alert(make_alert(), fast(receiver.url, retries=2))
    assert not delivery.delivered
    assert delivery.attempts == 3 and receiver.requests == 3
    assert delivery.status == 500 and delivery.error == "HTTP 500"


def test_backoff_doubles_between_attempts(receiver: Receiver) -> None:
    receiver.fail_first = 100
    delivery = send_alert(make_alert(), fast(receiver.url, retries=2, backoff_s=0.1))
    assert delivery.attempts == 3
    assert delivery.seconds >= 0.1 + 0.2


def test_client_error_is_not_retried(receiver: Receiver) -> None:
    receiver.fail_first, receiver.fail_status = 100, 400
    delivery = send_alert(make_alert(), fast(receiver.url))
    assert not delivery.delivered
    assert delivery.attempts == 1 and receiver.requests == 1
    assert delivery.status == 400 and delivery.error == "HTTP 400"


def test_receiver_down_fails_fast_without_raising(
    dead_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    start = time.monotonic()
    delivery = send_alert(make_alert(), fast(dead_url, max_total_s=3.0))
    elapsed = time.monotonic() - start
    assert not delivery.delivered
    assert delivery.attempts == 4 and delivery.status is None
    assert delivery.error and "refused" in delivery.error.lower()
    assert elapsed < 1.5 and delivery.seconds <= 3.0
    assert TOKEN not in caplog.text and TOKEN not in delivery.error


def test_hanging_receiver_respects_the_total_budget(receiver: Receiver) -> None:
    receiver.hang_s = 5.0
    config = fast(receiver.url, timeout_s=0.3, retries=10, backoff_s=0.05, max_total_s=1.0)
    start = time.monotonic()
    delivery = send_alert(make_alert(), config)
    elapsed = time.monotonic() - start
    assert not delivery.delivered
    assert 2 <= delivery.attempts <= 4
    assert delivery.error and "timeout" in delivery.error.lower()
    assert delivery.seconds <= config.max_total_s + 0.1
    assert elapsed <= config.max_total_s + 0.2


def test_dripping_receiver_cannot_stretch_an_attempt(receiver: Receiver) -> None:
    """Socket timeouts apply per read: a byte every 0.1 s never trips a 0.3 s timeout."""
    receiver.drip_s = 0.1
    config = fast(receiver.url, timeout_s=0.3, retries=1, backoff_s=0.05, max_total_s=1.0)
    delivery = send_alert(make_alert(), config)
    assert not delivery.delivered and delivery.attempts == 2
    assert delivery.seconds <= 0.3 + 0.05 + 0.3 + 0.1


def test_budget_smaller_than_one_timeout_cuts_the_attempt(receiver: Receiver) -> None:
    receiver.hang_s = 5.0
    config = fast(receiver.url, timeout_s=2.0, max_total_s=0.4)
    delivery = send_alert(make_alert(), config)
    assert not delivery.delivered and delivery.attempts == 1
    assert delivery.seconds <= 0.5


def test_without_url_it_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    delivery = send_alert(make_alert("warning"), WebhookConfig(None))
    assert not delivery.delivered and delivery.attempts == 0 and delivery.status is None
    assert delivery.error == "no webhook configured"
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "ALERT reelrank warning: Drift detected — "
        "3/20 columns drifted: `watch_frac`, `age_h`, `ctr_7d`"
    )


def test_ok_alert_logs_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    send_alert(make_alert("ok"), WebhookConfig(""), logging.getLogger("custom"))
    (record,) = caplog.records
    assert record.levelno == logging.INFO and record.name == "custom"
    assert record.getMessage().startswith("ALERT reelrank ok: Drift detected — ")


def test_logs_never_show_the_token(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.fail_first, receiver.fail_status = 100, 403
    delivery = send_alert(make_alert(), fast(receiver.url + "?key=abc123def"))
    assert delivery.status == 403
    assert TOKEN not in caplog.text and "abc123def" not in caplog.text
    assert f"http://127.0.0.1:{receiver.port}" in caplog.text


def test_bad_urls_are_reported_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for url in (f"ftp://example.invalid{PATH}", f"not a url {TOKEN}", "http://[::1"):
        delivery = send_alert(make_alert(), fast(url))
        assert not delivery.delivered and delivery.error
        assert TOKEN not in delivery.error
    assert TOKEN not in caplog.text


def test_safe_url_keeps_scheme_and_host_only() -> None:
    assert safe_url(f"https://user:pw@hooks.example.com:8443{PATH}?t=1") == (
        "https://hooks.example.com:8443"
    )


def test_unknown_severity_is_refused() -> None:
    with pytest.raises(ValueError, match="severity"):
        Alert("t", "x", "panic")


def test_drift_alert_names_columns_and_report(receiver: Receiver) -> None:
    verdict = DriftVerdict(
        drifted=True,
        share_drifted=0.5,
        drift_share_threshold=0.3,
        columns=(
            ColumnDrift("watch_frac", 0.42, 0.1, "Wasserstein distance (normed)", True),
            ColumnDrift("age_h", 0.02, 0.1, "Wasserstein distance (normed)", False),
        ),
        reference_rows=5000,
        current_rows=5000,
        report_html="reports/drift/2025-07-10/drift_report.html",
    )
    alert = drift_alert(verdict, "2025-07-10")
    assert alert.severity == "critical"
    assert "`watch_frac`" in alert.text and "age_h" not in alert.text.split("drifted:")[-1]
    assert alert.details["drifted_columns"] == {"watch_frac": 0.42}
    assert alert.details["report_html"].endswith("drift_report.html")
    assert send_alert(alert, fast(receiver.url)).delivered
    assert receiver.bodies[0]["details"]["thresholds"] == {"watch_frac": 0.1}

    broken = drift_alert(
        DriftVerdict(
            False,
            0.0,
            0.3,
            verdict.columns[1:],
            10,
            10,
            quality=(QualityIssue("w", "scale", 1, 60),),
        )
    )
    assert broken.severity == "broken" and "broken input `w`" in broken.text


def test_the_slack_text_names_each_drifted_column_once(receiver: Receiver) -> None:
    """Twelve drifted columns: the ten strongest with their scores, the others by name, and
    none of them twice (the headline counts them, it does not list them again)."""
    names = [f"col_{i:02d}" for i in range(12)]
    verdict = DriftVerdict(
        drifted=True,
        share_drifted=12 / 13,
        drift_share_threshold=0.3,
        columns=(
            *(
                ColumnDrift(n, 0.5 - i / 100, 0.1, "Wasserstein distance (normed)", True)
                for i, n in enumerate(names)
            ),
            ColumnDrift("steady", 0.01, 0.1, "Wasserstein distance (normed)", False),
        ),
        reference_rows=5000,
        current_rows=5000,
        report_html="reports/drift/2025-07-10/drift_report.html",
    )
    alert = drift_alert(verdict, "day 2025-07-10: retraining scheduled")
    assert send_alert(alert, fast(receiver.url)).delivered
    text = receiver.bodies[0]["text"]
    assert all(text.count(n) == 1 for n in names), text
    assert "steady" not in text and "12/13 columns drifted" in text
    assert "drift_report.html" in text and "retraining scheduled" in text
