"""Operating the real server: hot reload under load, the served-request log, experiments,
feedback, API keys and metrics.

The server runs on a copy of the tiny loop's home, so moving aliases and writing logs here
leaves the shared loop as it was. Polls are fast so that reloads happen within the test.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from reelrank.settings import Settings
from serving.server import RunningServer, free_port, start_server

pytestmark = [pytest.mark.integration, pytest.mark.serving]
KEY = "test-key-123"
AUTH = {"x-api-key": KEY}


@dataclass
class Ops:
    settings: Settings
    server: RunningServer
    users: list[str]
    versions: tuple[str, str]  # (the loop's champion, an identical second version)


def _second_version(settings: Settings) -> tuple[str, str]:
    """Register a copy of the champion as a new version and alias it ``challenger``."""
    from models.registry import alias_version, client

    c = client(settings)
    name = settings.ranker_model_name
    v1 = alias_version(c, name, "champion")
    assert v1 is not None
    mv = c.get_model_version(name, v1)
    v2 = c.create_model_version(name, mv.source, run_id=mv.run_id).version
    c.set_registered_model_alias(name, "challenger", str(v2))
    return str(v1), str(v2)


@pytest.fixture(scope="module")
def ops(loop, tmp_path_factory) -> Iterator[Ops]:
    from ingest.lake import read_table

    home = Path(tmp_path_factory.mktemp("ops")) / "var"
    shutil.copytree(loop.settings.home, home, ignore=shutil.ignore_patterns("airflow"))
    settings = Settings(**{**loop.settings.model_dump(), "home": home})
    versions = _second_version(settings)
    env = {
        "REELRANK_HOME": str(home),
        "REELRANK_SERVING__MODEL_POLL_S": "0.5",
        "REELRANK_SERVING__FEATURES_POLL_S": "1",
        "REELRANK_SERVING__LOG_FLUSH_S": "1",
        "REELRANK_SERVING__CHALLENGER_SHARE": "0.5",
        "REELRANK_SERVING__API_KEY": KEY,
    }
    server = start_server(settings, port=free_port(), env=env)
    imp = read_table(settings.lake_dir, "impressions", start=settings.sim.end_date)
    users = sorted(imp["user_id"].unique())[:40]
    try:
        yield Ops(settings, server, users, versions)
    finally:
        server.stop()


def post(ops: Ops, path: str, body: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(
        ops.server.url + path, json=body, headers=AUTH if headers is None else headers, timeout=30
    )


def test_api_key_guards_the_endpoints_but_not_health(ops):
    body = {"user_id": ops.users[0], "k": 3}
    assert post(ops, "/recommend", body, headers={}).status_code == 401
    wrong = post(ops, "/recommend", body, headers={"x-api-key": "nope"})
    assert wrong.status_code == 401 and "API key" in wrong.json()["error"]
    bearer = post(ops, "/recommend", body, headers={"authorization": f"Bearer {KEY}"})
    assert bearer.status_code == 200
    assert post(ops, "/recommend", body).status_code == 200
    assert httpx.get(ops.server.url + "/livez", timeout=10).status_code == 200


def test_users_split_stably_between_arms_and_responses_name_them(ops):
    arms = {}
    for u in ops.users:
        first = post(ops, "/recommend", {"user_id": u, "k": 3}).json()
        again = post(ops, "/recommend", {"user_id": u, "k": 3}).json()
        assert first["arm"] == again["arm"]
        version = ops.versions[0] if first["arm"] == "champion" else ops.versions[1]
        assert first["model_version"] == version
        arms[u] = first["arm"]
    assert set(arms.values()) == {"champion", "challenger"}


def test_filters_drop_excluded_blocked_and_recently_served_videos(ops):
    u = ops.users[1]
    first = post(ops, "/recommend", {"user_id": u, "k": 5}).json()
    shown = [i["video_id"] for i in first["items"]]
    second = post(ops, "/recommend", {"user_id": u, "k": 5}).json()
    assert not set(shown) & {i["video_id"] for i in second["items"]}  # no repeats
    from ingest.lake import read_table

    videos = read_table(ops.settings.lake_dir, "videos")
    creator_of = dict(zip(videos["video_id"], videos["creator_id"], strict=True))
    blocked = creator_of[second["items"][0]["video_id"]]
    third = post(
        ops,
        "/recommend",
        {"user_id": u, "k": 5, "blocked_creator_ids": [blocked], "exclude_video_ids": ["x"]},
    ).json()
    assert blocked not in {creator_of[i["video_id"]] for i in third["items"]}


def test_workers_share_what_was_served(ops):
    """Two workers answer in turn: no user sees a repeat and feedback for every list is
    accepted, whichever worker served it (the served state is shared, not per process)."""
    from serving.server import _children

    assert ops.settings.serving.workers == 2 and len(_children(ops.server.pid)) >= 2
    u = ops.users[3]
    shown: list[str] = []
    events = []
    for _ in range(6):
        r = post(ops, "/recommend", {"user_id": u, "k": 5}).json()
        shown += [i["video_id"] for i in r["items"]]
        events.append({"request_id": r["request_id"], "video_id": r["items"][1]["video_id"]})
    assert len(shown) == len(set(shown)) == 30
    ok = post(ops, "/feedback", {"events": [{**e, "watch_time_s": 2.0} for e in events]})
    assert ok.status_code == 200 and ok.json() == {"accepted": 6, "duplicates": 0}, ok.text


def test_feedback_is_validated_and_appended_to_the_lake(ops):
    from ingest.served import read_feedback

    u = ops.users[2]
    served = post(ops, "/recommend", {"user_id": u, "k": 4}).json()
    rid, items = served["request_id"], served["items"]
    events = [
        {
            "request_id": rid,
            "video_id": items[0]["video_id"],
            "watch_time_s": 12.5,
            "completed": True,
            "liked": True,
        },
        {"request_id": rid, "video_id": items[2]["video_id"], "watch_time_s": 0.8, "skipped": True},
    ]
    ok = post(ops, "/feedback", {"events": events})
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"accepted": 2, "duplicates": 0}
    rows = read_feedback(ops.settings.lake_dir)
    mine = rows[rows["request_id"] == rid].sort_values("position")
    assert mine["position"].tolist() == [0, 2] and (mine["user_id"] == u).all()
    assert mine["arm"].iloc[0] == served["arm"]
    assert mine["model_version"].iloc[0] == served["model_version"]

    # one bad event rejects the whole batch, with every problem named; nothing is written
    bad = [
        events[0],
        {"request_id": "f" * 32, "video_id": "v1", "watch_time_s": 1.0},
        {"request_id": rid, "video_id": "never-served", "watch_time_s": 1.0},
    ]
    r = post(ops, "/feedback", {"events": bad})
    assert r.status_code == 422, r.text
    assert "unknown request_id" in r.text and "never-served" in r.text
    assert len(read_feedback(ops.settings.lake_dir)) == len(rows)
    malformed = post(ops, "/feedback", {"events": [{"request_id": rid, "watch_time_s": -1}]})
    assert malformed.status_code == 400 and "Traceback" not in malformed.text


def test_feedback_is_idempotent_across_workers_and_refuses_contradictions(ops):
    """A client that re-posts an event (a retry, a replay) adds one lake row, whichever of
    the two workers answers each post; an event that says both ``completed`` and
    ``skipped`` is refused with the reason, and nothing of its batch is written."""
    from ingest.served import read_feedback

    served = post(ops, "/recommend", {"user_id": ops.users[4], "k": 3}).json()
    rid, video = served["request_id"], served["items"][0]["video_id"]
    event = {"request_id": rid, "video_id": video, "watch_time_s": 3.0, "liked": True}
    answers = []
    for _ in range(12):  # a new connection each time: the workers take turns
        with httpx.Client(timeout=30, headers=AUTH) as http:
            answers.append(http.post(ops.server.url + "/feedback", json={"events": [event]}))
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    assert answers[0].json() == {"accepted": 1, "duplicates": 0}
    assert all(r.json() == {"accepted": 0, "duplicates": 1} for r in answers[1:])
    # another event for the same video (a share) is new; the like in its batch is not
    both = post(ops, "/feedback", {"events": [event, {**event, "liked": False, "shared": True}]})
    assert both.status_code == 200 and both.json() == {"accepted": 1, "duplicates": 1}
    rows = read_feedback(ops.settings.lake_dir)
    mine = rows[rows["request_id"] == rid]
    assert len(mine) == 2 and sorted(mine["shared"]) == [False, True]

    contradictory = {
        "request_id": rid,
        "video_id": served["items"][1]["video_id"],
        "watch_time_s": 1.0,
        "completed": True,
        "skipped": True,
    }
    r = post(ops, "/feedback", {"events": [{**event, "commented": True}, contradictory]})
    assert r.status_code == 422, r.text
    assert "events[1]" in r.text and "completed" in r.text and "skipped" in r.text
    assert len(read_feedback(ops.settings.lake_dir)) == len(rows)


def test_item_features_reload_after_a_materialization(ops):
    from features.batch import as_of_timestamp
    from features.store import feature_store, materialize

    def reloads() -> float:
        text = httpx.get(ops.server.url + "/metrics", timeout=10).text
        lines = [
            line
            for line in text.splitlines()
            if line.startswith("reelrank_reloads_total") and "item_features" in line
        ]
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines)

    before = reloads()
    s = ops.settings
    store = feature_store(s)
    materialize(
        store,
        as_of_timestamp(s.sim.start_date),
        as_of_timestamp(s.sim.end_date + timedelta(days=1)),
    )
    deadline = time.time() + 30
    while reloads() <= before and time.time() < deadline:
        time.sleep(0.5)
    assert reloads() > before
    assert post(ops, "/recommend", {"user_id": ops.users[3], "k": 3}).status_code == 200


def test_hot_reload_under_load_drops_nothing_and_every_answer_is_logged(ops):
    """Load from 8 threads while the champion alias moves to another version and back: no
    request fails, answers switch to the new version within seconds, and after a graceful
    stop the served log holds exactly the answered requests."""
    from ingest.served import read_served
    from models.registry import client

    s = ops.settings
    c = client(s)
    name = s.ranker_model_name
    v1, v2 = ops.versions
    champion_users = [
        u
        for u in ops.users
        if post(ops, "/recommend", {"user_id": u, "k": 2}).json()["arm"] == "champion"
    ]
    stop = threading.Event()
    answered: list[tuple[str, str]] = []  # (request_id, model_version)
    failures: list[str] = []
    lock = threading.Lock()

    def hammer(i: int) -> None:
        with httpx.Client(timeout=30, headers=AUTH) as http:
            n = 0
            while not stop.is_set():
                u = champion_users[(i + n) % len(champion_users)]
                n += 1
                r = http.post(ops.server.url + "/recommend", json={"user_id": u, "k": 5})
                with lock:
                    if r.status_code == 200:
                        answered.append((r.json()["request_id"], r.json()["model_version"]))
                    else:
                        failures.append(f"{r.status_code} {r.text[:200]}")

    def seen_version(v: str, after: int) -> bool:
        with lock:
            return any(ver == v for _, ver in answered[after:])

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(hammer, i) for i in range(8)]
        time.sleep(2)
        with lock:
            mark = len(answered)
        t0 = time.time()
        c.set_registered_model_alias(name, "champion", v2)  # a promotion
        while not seen_version(v2, mark) and time.time() - t0 < 20:
            time.sleep(0.1)
        promoted_in = time.time() - t0
        with lock:
            mark = len(answered)
        c.set_registered_model_alias(name, "champion", v1)  # a rollback
        t0 = time.time()
        while not seen_version(v1, mark) and time.time() - t0 < 20:
            time.sleep(0.1)
        rolled_back_in = time.time() - t0
        time.sleep(1)
        stop.set()
        for f in futures:
            f.result()
    assert not failures, failures[:3]
    assert promoted_in < 10 and rolled_back_in < 10, (promoted_in, rolled_back_in)
    assert len(answered) > 50

    ops.server.stop()  # SIGTERM: the log is flushed on shutdown
    served = read_served(s.home)
    logged = served[served["arm"] != "shadow"]
    ids = {rid for rid, _ in answered}
    assert ids <= set(logged["request_id"])
    per_request = logged[logged["request_id"].isin(ids)].groupby("request_id").size()
    assert len(per_request) == len(ids) and (per_request == 5).all()
    shown = logged[logged["request_id"].isin(ids)]["propensity"]  # issue 19: every item's
    assert ((shown > 0) & (shown <= 1)).all()
    assert {"champion"} == set(logged[logged["request_id"].isin(ids)]["arm"])


def test_online_quality_joins_feedback_to_the_served_log(ops, tmp_path):
    """After the server stopped (previous test), its log and the feedback it accepted give
    online quality per model version and arm."""
    from datetime import UTC, datetime

    from monitoring.pipeline import online_quality_of

    rows = online_quality_of(ops.settings, datetime.now(UTC).date(), tmp_path)
    assert {r["arm"] for r in rows} == {"champion", "challenger"}
    # every labelled item: 6 from the shared-state test, 2 from the feedback test, 1 from
    # the idempotency test (two events for one video)
    assert sum(r["labelled_items"] for r in rows) == 9
    assert (tmp_path / "online_quality.json").exists()


def test_drift_is_checked_on_what_was_served(ops):
    """With served traffic logged for the day, the drift check compares the champion's
    served feature vectors and scores (not the day's impressions) with its reference."""
    import json
    from datetime import UTC, datetime

    from monitoring.pipeline import run_monitoring

    drift = {**ops.settings.drift.model_dump(), "min_served_rows": 50, "webhook_url": None}
    settings = Settings(**{**ops.settings.model_dump(), "drift": drift})
    result = run_monitoring(settings, datetime.now(UTC).date())
    assert result.source == "served_log"
    verdict = json.loads(Path(result.verdict_json).read_text())
    assert verdict["tags"]["source"] == "served_log" and verdict["current_rows"] >= 50
    checked = {c["column"] for c in verdict["columns"]}
    assert "prediction" in checked and "ctx_position" not in checked  # set at serve time
    assert Path(verdict["report_html"]).exists()
