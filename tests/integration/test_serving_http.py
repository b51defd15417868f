"""The real BentoML server on 127.0.0.1, loaded with the champion of the tiny loop."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator

import httpx
import pytest

from serving.server import RunningServer, _children, free_port, start_server

pytestmark = [pytest.mark.integration, pytest.mark.serving]


@pytest.fixture(scope="module")
def server(loop) -> Iterator[RunningServer]:
    # a short catalog refresh so that a new upload is picked up within the test
    srv = start_server(
        loop.settings, port=free_port(), env={"REELRANK_SERVING__CATALOG_REFRESH_S": "1"}
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
    # re-ranked for diversity: the best-scored candidate leads, the rest need not be sorted
    assert scores[0] == max(scores) and all(math.isfinite(s) for s in scores)
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
