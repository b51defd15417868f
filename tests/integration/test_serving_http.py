"""The real BentoML server on 127.0.0.1, loaded with the champion of the tiny loop."""

from __future__ import annotations

import contextlib
import math
import os
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from reelrank.settings import Settings
from serving.server import RunningServer, _children, free_port, start_server

pytestmark = [pytest.mark.integration, pytest.mark.serving]


def with_serving(settings: Settings, **serving: object) -> Settings:
    return settings.model_copy(update={"serving": settings.serving.model_copy(update=serving)})


# A tiny in-flight limit (a burst must be shed) and a tiny log (it must rotate): the other
# tests send one request at a time and write a few lines.
GUARDED = {"max_concurrency": 2, "log_max_bytes": 16_384, "log_backups": 2}


@pytest.fixture(scope="module")
def server(loop, tmp_path_factory) -> Iterator[RunningServer]:
    # a short catalog refresh so that a new upload is picked up within the test
    srv = start_server(
        with_serving(loop.settings, **GUARDED),
        port=free_port(),
        log_path=tmp_path_factory.mktemp("serving-log") / "bentoml.log",
        env={"REELRANK_SERVING__CATALOG_REFRESH_S": "1"},
    )
    try:
        yield srv
    finally:
        workers = _children(srv.pid)
        srv.stop()
        time.sleep(0.5)
        for pid in [srv.pid, *workers]:
            assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid), f"pid {pid} left"


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def known_user(loop) -> str:
    from ingest.lake import read_table

    imp = read_table(loop.settings.lake_dir, "impressions", start=loop.settings.sim.end_date)
    return str(imp["user_id"].iloc[0])


def test_health_endpoints(server):
    for path in ("/livez", "/readyz", "/metrics"):
        assert httpx.get(server.url + path, timeout=10).status_code == 200


def test_recommend_for_a_known_user(server, loop):
    user = known_user(loop)
    r = httpx.post(f"{server.url}/recommend", json={"user_id": user, "k": 7}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user_id"] == user and body["cold_start"] is False
    assert body["model_name"] == "reelrank-ranker" and body["model_version"] == "1"
    assert body["retrieval_version"] == "1"  # candidates came from the two-tower model
    assert len(body["request_id"]) == 32
    items = body["items"]
    assert len(items) == 7 and len({i["video_id"] for i in items}) == 7
    assert [i["rank"] for i in items] == list(range(1, 8))
    scores = [i["score"] for i in items]
    assert all(math.isfinite(s) for s in scores)
    assert all(0 < i["propensity"] <= 1 for i in items)
    # re-ranked for diversity: the best-scored candidate leads, the rest need not be sorted;
    # unless exploration drew another for the first slot (its propensity: epsilon / top_m)
    if items[0]["propensity"] > loop.settings.serving.exploration.epsilon:
        assert scores[0] == max(scores)
    assert body["arm"] == "champion"


def test_rank_scores_the_given_candidates(server, loop):
    user = known_user(loop)
    cands = ["v000003", "v000004", "v000005", "not-a-video"]
    r = httpx.post(f"{server.url}/rank", json={"user_id": user, "video_ids": cands}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert sorted(i["video_id"] for i in body["items"]) == cands[:3]
    assert body["unknown_video_ids"] == ["not-a-video"]


def test_unknown_user_gets_a_cold_start_answer(server):
    r = httpx.post(
        f"{server.url}/recommend", json={"user_id": "brand-new-user", "k": 4}, timeout=30
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["cold_start"] is True and len(body["items"]) == 4


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/recommend", {"k": 5}),  # missing user_id
        ("/recommend", {"user_id": "u1", "k": 0}),
        ("/recommend", {"user_id": "u1", "k": 10_000}),
        ("/recommend", {"user_id": "u1", "k": "ten"}),
        ("/recommend", {"user_id": "u1", "surface": "tv"}),
        ("/recommend", {"user_id": "u1", "extra": 1}),
        ("/rank", {"user_id": "u1", "video_ids": []}),
        ("/rank", {"user_id": "u1", "video_ids": "v1"}),
        ("/rank", {"user_id": "u1", "video_ids": [f"v{i}" for i in range(1001)]}),
    ],
)
def test_malformed_requests_get_a_4xx_with_a_message(server, path, body):
    r = httpx.post(server.url + path, json=body, timeout=30)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert "Traceback" not in r.text
    assert r.json()["detail"][0]["msg"]


def test_invalid_json_is_a_400(server):
    r = httpx.post(
        f"{server.url}/recommend",
        content=b"{user_id: ",
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 400


def test_a_video_uploaded_while_serving_becomes_servable_without_restart(server, loop):
    """A new upload lands in the lake and gets its caption embedded; the running service
    picks it up (fresh index + default feature row) with no restart and no retraining."""
    from datetime import timedelta

    from features.content import content_path, embed_catalog
    from ingest.lake import partition_path, read_table, write_partition

    s = loop.settings
    user = known_user(loop)
    before = httpx.post(
        f"{server.url}/rank", json={"user_id": user, "video_ids": ["v-uploaded-now"]}, timeout=30
    ).json()
    assert before["unknown_video_ids"] == ["v-uploaded-now"]

    day = s.sim.end_date + timedelta(days=1)
    template = read_table(s.lake_dir, "videos").tail(1).reset_index(drop=True)
    video = template.assign(
        video_id="v-uploaded-now", upload_ts=template["upload_ts"] + timedelta(days=1)
    )
    try:
        write_partition(s.lake_dir, s.quarantine_dir, "videos", day, video)
        embed_catalog(s, day)
        deadline = time.time() + 20
        while time.time() < deadline:
            after = httpx.post(
                f"{server.url}/rank",
                json={"user_id": user, "video_ids": ["v-uploaded-now"]},
                timeout=30,
            ).json()
            if not after["unknown_video_ids"]:
                break
            time.sleep(0.5)
        assert (
            after["unknown_video_ids"] == [] and after["items"][0]["video_id"] == "v-uploaded-now"
        )
        assert math.isfinite(after["items"][0]["score"])
    finally:  # leave the shared tiny loop as it was
        part = partition_path(s.lake_dir, "videos", day)
        part.unlink(missing_ok=True)
        if part.parent.exists():
            part.parent.rmdir()
        content_path(s, day).unlink(missing_ok=True)


def test_metrics_count_requests_by_arm_and_time_each_stage(server, loop):
    user = known_user(loop)
    assert httpx.post(f"{server.url}/recommend", json={"user_id": user, "k": 3}).status_code == 200
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    requests = [line for line in text.splitlines() if line.startswith("reelrank_requests_total{")]
    assert any('arm="champion"' in line and 'endpoint="recommend"' in line for line in requests)
    for stage in ("user_features", "retrieve", "filter", "features", "score", "rerank"):
        assert f'reelrank_stage_seconds_count{{stage="{stage}"}}' in text
    assert "reelrank_served_rows_logged_total" in text
    assert 'reelrank_model_version{arm="champion",model="reelrank-ranker"} 1.0' in text


# -- the guard in front of the endpoints (issue 20, items 5, 6, 7) ------------------------------
ENDPOINT_BODIES = {
    "/recommend": {"user_id": "u000001", "k": 3},
    "/rank": {"user_id": "u000001", "video_ids": ["v000001"]},
    "/feedback": {"events": [{"request_id": "r1", "video_id": "v000001", "watch_time_s": 1.0}]},
}


def raw_exchange(url: str, head: bytes, parts: list[bytes], timeout: float = 5.0) -> bytes:
    """Send ``head`` and ``parts`` on one connection and return what the server answers
    (until it closes or ``timeout``), without waiting to send a body the server refused."""
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=timeout) as sock:
        sock.sendall(head)
        for part in parts:
            try:
                sock.sendall(part)
            except OSError:  # the server answered and closed: read what it said
                break
        out = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                out += chunk
                if b"\r\n\r\n" in out and b'"}' in out:
                    break
    return out


@pytest.mark.parametrize("path", list(ENDPOINT_BODIES))
@pytest.mark.parametrize(
    "content_type", ["multipart/form-data; boundary=xyz", "text/plain", "application/xml", None]
)
def test_a_body_that_is_not_json_gets_415(server, path, content_type):
    """Before: multipart was a 500, text/plain (with a JSON body) a 200. The body is valid
    JSON each time: the media type alone is refused."""
    import json

    headers = {} if content_type is None else {"content-type": content_type}
    body = json.dumps(ENDPOINT_BODIES[path]).encode()
    r = httpx.post(server.url + path, content=body, headers=headers, timeout=30)
    assert r.status_code == 415, (r.status_code, r.text)
    assert "application/json" in r.json()["error"]


def test_a_declared_oversized_body_gets_413_unread(server):
    """Content-Length: 100 MB, and only 1 KiB sent: the answer comes at once (before: the
    server waited for the 100 MB)."""
    head = (
        b"POST /recommend HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 100000000\r\n\r\n"
    )
    t0 = time.monotonic()
    out = raw_exchange(server.url, head, [b" " * 1024])
    assert out.startswith(b"HTTP/1.1 413"), out[:200]
    assert time.monotonic() - t0 < 5
    assert b"over 1048576 bytes" in out


def test_a_chunked_body_is_cut_at_the_first_chunk_past_the_limit(server):
    head = (
        b"POST /rank HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    # 17 chunks of 64 KiB (just over 1 MiB), and no terminating chunk: the server must answer
    out = raw_exchange(server.url, head, [chunk] * 17)
    assert out.startswith(b"HTTP/1.1 413"), out[:200]


def test_a_small_chunked_json_body_is_served(server, loop):
    import json

    body = json.dumps({"user_id": known_user(loop), "k": 3}).encode()
    r = httpx.post(
        f"{server.url}/recommend",
        content=iter([body[:10], body[10:]]),  # an iterator: sent chunked
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["items"]) == 3


def _server_log(server: RunningServer) -> str:
    files = sorted(server.log_path.parent.glob(server.log_path.name + "*"))
    return "".join(f.read_text(errors="replace") for f in files)


def test_client_errors_are_one_info_line_without_the_input_and_counted(server):
    """Before: each 400/422 was an ERROR with a traceback echoing the body."""
    marker = f"secret-{uuid.uuid4().hex}"
    body = {"user_id": marker, "k": 0, "surface": "tv"}
    r = httpx.post(f"{server.url}/recommend", json=body, timeout=30)
    assert r.status_code == 400
    events = [{"request_id": marker[:60], "video_id": "v000001", "watch_time_s": 1.0}]
    r = httpx.post(f"{server.url}/feedback", json={"events": events}, timeout=30)
    assert r.status_code == 422
    deadline = time.monotonic() + 10
    while "client error 422 on /feedback" not in (text := _server_log(server)):
        assert time.monotonic() < deadline, text[-3000:]
        time.sleep(0.2)
    assert marker not in text
    assert "Exception on /recommend" not in text and "Exception on /feedback" not in text
    said = "client error 400 on /recommend [POST]: k: greater_than_equal; surface: literal_error"
    line = next(ln for ln in text.splitlines() if said in ln)
    assert "[INFO]" in line
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    for endpoint, status in (("recommend", 400), ("feedback", 422)):
        series = f'reelrank_client_errors_total{{endpoint="{endpoint}",status="{status}"}}'
        assert series in metrics, metrics[-2000:]


def test_size_and_media_type_refusals_are_counted(server):
    httpx.post(f"{server.url}/rank", content=b"{}", headers={"content-type": "text/plain"})
    raw_exchange(
        server.url,
        b"POST /rank HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 2000000\r\n\r\n",
        [],
    )
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'reelrank_client_errors_total{endpoint="rank",status="415"}' in metrics
    assert 'reelrank_client_errors_total{endpoint="rank",status="413"}' in metrics


def test_the_server_log_rotates_by_size(server):
    """Before: bentoml.log grew without bound. 16 KiB and 2 backups here."""
    for _ in range(1000):  # ~120 bytes of log per client error: 3 files in ~300
        httpx.post(f"{server.url}/recommend", json={"user_id": "u1", "k": 0}, timeout=30)
        if server.log_path.with_name("bentoml.log.2").exists():
            break
    for _ in range(200):  # and once more round: the oldest is dropped
        httpx.post(f"{server.url}/recommend", json={"user_id": "u1", "k": 0}, timeout=30)
    time.sleep(0.5)
    files = sorted(server.log_path.parent.iterdir())
    assert [f.name for f in files] == ["bentoml.log", "bentoml.log.1", "bentoml.log.2"]
    assert all(f.stat().st_size <= 16_384 for f in files)


def test_a_burst_past_the_in_flight_limit_is_shed_with_503(server, loop):
    """Two requests in flight per worker: a burst of 60 gets 200s and 503s with Retry-After,
    and never a connection error (before: every request queued, however long)."""
    import asyncio

    user = known_user(loop)

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=60)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post(f"{server.url}/recommend", json={"user_id": user, "k": 50})
                    for _ in range(60)
                )
            )

    answers = asyncio.run(burst())  # a connection error would raise here
    codes = [r.status_code for r in answers]
    assert set(codes) <= {200, 503}, codes
    assert codes.count(200) >= 1 and codes.count(503) >= 1, codes
    shed = [r for r in answers if r.status_code == 503]
    assert all(r.headers["retry-after"] == "1" for r in shed)
    assert "saturated" in shed[0].json()["error"]
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'reelrank_shed_requests_total{reason="overload"}' in metrics


def test_sigterm_lets_the_request_in_flight_finish_and_answers_new_ones_503(loop, tmp_path):
    """A request whose body is still arriving when SIGTERM comes is answered 200; one sent
    during the drain gets 503 + Retry-After, not a reset; the log's last lines are written
    after the server is gone."""
    import json
    import signal
    import socket
    from urllib.parse import urlsplit

    srv = start_server(
        with_serving(loop.settings, workers=1, drain_grace_s=2.0),
        port=free_port(),
        log_path=tmp_path / "bentoml.log",
    )
    try:
        body = json.dumps({"user_id": known_user(loop), "k": 3}).encode()
        head = (
            b"POST /recommend HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % len(body)
        )
        u = urlsplit(srv.url)
        sock = socket.create_connection((u.hostname, u.port), timeout=20)
        sock.sendall(head + body[:5])
        time.sleep(0.5)  # the request is in the worker, waiting for its body
        srv.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        # a new request meanwhile (before: no answer, then a reset)
        new = httpx.post(
            f"{srv.url}/recommend",
            content=body,
            headers={"content-type": "application/json"},
            timeout=10,
        )
        sock.sendall(body[5:])
        answer = b""
        while b"request_id" not in answer and (chunk := sock.recv(65536)):
            answer += chunk
        sock.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        assert new.status_code == 503 and new.headers["retry-after"] == "1", new.text
        assert "shutting down" in new.json()["error"]
        srv.process.wait(timeout=30)
    finally:
        srv.stop()
    text = (tmp_path / "bentoml.log").read_text()
    assert "SIGTERM: draining" in text
    # written by the worker as it stopped, after the supervisor was gone: the pump kept on
    assert text.splitlines()[-1].endswith("Service instance cleanup finalized")


# -- the contract: OpenAPI, strict types, explanations (issue 20, items 9 and 17) ----------------
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/recommend", {"user_id": "u000001", "k": "10"}),
        ("/recommend", {"user_id": "u000001", "k": True}),
        ("/recommend", {"user_id": "u000001", "k": 10.0}),
        ("/recommend", {"user_id": "u000001", "explain": "yes"}),
        ("/rank", {"user_id": 42, "video_ids": ["v000001"]}),
        (
            "/feedback",
            {"events": [{"request_id": "r", "video_id": "v", "watch_time_s": 1, "liked": "true"}]},
        ),
    ],
)
def test_types_are_strict(server, path, body):
    """Before: "10", true and 10.0 were taken as k = 10, 1, 10; "true" as a flag."""
    r = httpx.post(server.url + path, json=body, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["detail"][0]["type"].endswith("_type")


@pytest.mark.parametrize(
    "ts", ["9999-12-31T23:59:59Z", "1970-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00"]
)
def test_a_feedback_timestamp_out_of_range_is_a_clear_422(server, loop, ts):
    served = httpx.post(
        f"{server.url}/recommend", json={"user_id": known_user(loop), "k": 1}, timeout=30
    ).json()
    event = {
        "request_id": served["request_id"],
        "video_id": served["items"][0]["video_id"],
        "watch_time_s": 3.0,
        "ts": ts,
    }
    r = httpx.post(f"{server.url}/feedback", json={"events": [event]}, timeout=30)
    assert r.status_code == 422, r.text
    assert "events[0].ts" in r.json()[0]["error"] and "out of range" in r.json()[0]["error"]


def test_the_openapi_page_describes_the_service_and_its_versions(server, loop):
    """Before: "This is a Machine Learning Service created with BentoML", version None, and
    an example body of "user_id": "string"."""
    spec = httpx.get(f"{server.url}/docs.json", timeout=10).json()
    info = spec["info"]
    assert info["title"] == "reelrank recommender" and info["version"] == "0.1.0"
    assert "BentoML Team" not in str(info) and "created with BentoML" not in info["description"]
    served = info["x-served-versions"]
    assert served["ranker"] == "reelrank-ranker v1" and served["retrieval"] == "1"
    assert "reelrank-ranker v1" in info["description"]
    post = spec["paths"]["/recommend"]["post"]
    assert post["requestBody"]["required"] is True
    assert {"400", "401", "413", "415", "503"} <= set(post["responses"])
    assert "422" in spec["paths"]["/feedback"]["post"]["responses"]
    detail = spec["components"]["schemas"]["ValidationError"]["properties"]["detail"]
    assert detail["type"] == "array"
    # every example is a body the service takes: the real ids of the simulated world
    for path in ("/recommend", "/rank"):
        example = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        r = httpx.post(server.url + path, json=example["example"], timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["cold_start"] is False, "the example user must be a known one"


def test_explain_says_why_each_item_is_there(server, loop):
    user = known_user(loop)
    plain = httpx.post(f"{server.url}/recommend", json={"user_id": user, "k": 8}, timeout=30)
    assert all(i["why"] is None for i in plain.json()["items"])  # not computed by default
    r = httpx.post(
        f"{server.url}/recommend", json={"user_id": user, "k": 8, "explain": True}, timeout=30
    )
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert len(items) == 8
    for pos, item in enumerate(items):
        why = item["why"]
        assert why["source"] == "two_tower" and why["retrieval_score"] is not None
        assert why["value"] == pytest.approx(item["score"])
        assert set(why["heads"]) and all(math.isfinite(v) for v in why["heads"].values())
        later = [i["score"] for i in items[pos:] if i["why"]["slot"] != "exploration"]
        if why["slot"] == "score":
            assert item["score"] >= max(later)
        elif why["slot"] == "diversity":  # a better-valued video comes later: said why
            assert item["score"] < max(later)
    ranks = [i["why"]["score_rank"] for i in items]
    assert len(set(ranks)) == 8 and min(ranks) == 1
    cold = httpx.post(
        f"{server.url}/recommend",
        json={"user_id": "nobody-yet", "k": 5, "explain": True},
        timeout=30,
    ).json()
    assert {i["why"]["source"] for i in cold["items"]} <= {"popular", "fresh"}
    assert all(i["why"]["retrieval_score"] is None for i in cold["items"])


@pytest.mark.timeout(600)
def test_the_service_honours_its_openapi_contract(server):
    """schemathesis against /docs.json: valid and invalid bodies for each endpoint, a fixed
    seed, at most 120 cases per endpoint and mode; no 5xx, every status, content type and
    body as the spec says."""
    import schemathesis
    from hypothesis import HealthCheck, given, seed, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_url(f"{server.url}/docs.json")
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    calls = 0
    for path in ("/recommend", "/rank", "/feedback"):
        operation = schema[path]["POST"]
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @seed(20)
            @settings(
                max_examples=120,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                nonlocal calls
                calls += 1
                case.call_and_validate(base_url=server.url, checks=checks, timeout=30)

            run()
    assert calls >= 300
