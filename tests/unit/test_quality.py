"""Online quality from delayed feedback, checked against values computed by hand."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ingest.schema import FEEDBACK
from ingest.served import SCHEMA
from monitoring.quality import online_quality, quality_report, unmatched_feedback

pytestmark = pytest.mark.unit

TS = datetime(2025, 7, 10, 12, tzinfo=UTC)
INV_LOG2_3 = 1 / math.log2(3)  # discount of rank 2


def served_frame(rows: list[tuple[str, str, str, int, str]]) -> pd.DataFrame:
    """(request_id, arm, ranker_version, position, video_id) rows, typed as the log stores them."""
    data: dict[str, list[Any]] = {f.name: [] for f in SCHEMA}
    for request_id, arm, version, position, video_id in rows:
        values = {
            "request_id": request_id,
            "ts": TS,
            "user_id": "u1",
            "arm": arm,
            "ranker_version": version,
            "retrieval_version": "r1",
            "surface": "spotlight",
            "position": position,
            "video_id": video_id,
            "score": 1.0 - position / 100,
            "propensity": 1.0,
            "features": [0.5, 1.5],
        }
        for name in data:
            data[name].append(values[name])
    return pa.table(data, schema=SCHEMA).to_pandas()


def feedback_frame(rows: list[tuple[str, str, dict[str, Any]]]) -> pd.DataFrame:
    """(request_id, video_id, outcome) rows, typed as the lake's feedback table."""
    data: dict[str, list[Any]] = {f.name: [] for f in FEEDBACK.arrow_schema()}
    for i, (request_id, video_id, outcome) in enumerate(rows):
        values = {
            "event_id": f"e{i}",
            "request_id": request_id,
            "ts": TS,
            "user_id": "u1",
            "video_id": video_id,
            "surface": "spotlight",
            "position": 0,
            "watch_time_s": outcome.get("watch", 3.0),
            "duration_s": 30.0,
            "model_version": "3",
            "arm": "champion",
            **{f: outcome.get(f, False) for f in FLAG_NAMES},
        }
        for name in data:
            data[name].append(values[name])
    return pa.table(data, schema=FEEDBACK.arrow_schema()).to_pandas()


FLAG_NAMES = ("completed", "liked", "shared", "commented", "followed", "skipped")

SERVED = [
    # champion, version 3; r1's rows are logged out of order on purpose
    ("r1", "champion", "3", 2, "c"),
    ("r1", "champion", "3", 0, "a"),
    ("r1", "champion", "3", 1, "b"),
    ("r2", "champion", "3", 0, "x"),
    ("r2", "champion", "3", 1, "y"),
    ("r3", "champion", "3", 0, "m"),  # r3: no feedback at all
    ("r3", "champion", "3", 1, "n"),
    # challenger, version 4
    ("r4", "challenger", "4", 0, "p"),
    ("r4", "challenger", "4", 1, "q"),
    ("r5", "challenger", "4", 0, "s"),
    ("r5", "challenger", "4", 1, "t"),
    # the challenger shadow-scored r1 in the reverse order: never shown
    ("r1", "shadow", "4", 0, "c"),
    ("r1", "shadow", "4", 1, "b"),
    ("r1", "shadow", "4", 2, "a"),
]
FEEDBACK_ROWS = [
    ("r1", "a", {"completed": True, "watch": 10.0}),
    ("r1", "c", {"completed": True, "liked": True, "watch": 20.0}),
    ("r1", "c", {"shared": True, "watch": 25.0}),  # a later event for the same item
    ("r2", "x", {"skipped": True, "watch": 1.0}),
    ("r2", "y", {"liked": True, "watch": 8.0}),
    ("r4", "p", {"liked": True, "watch": 12.0}),
    ("r5", "s", {"skipped": True, "watch": 0.5}),
    ("r5", "t", {"completed": True, "watch": 15.0}),
    ("r1", "zzz", {"liked": True}),  # not in r1's list
    ("r9", "a", {"liked": True}),  # unknown request
]


def by_arm(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {row["arm"]: row for row in frame.to_dict(orient="records")}


def test_hand_computed_example() -> None:
    out = online_quality(served_frame(SERVED), feedback_frame(FEEDBACK_ROWS))
    assert list(out[["ranker_version", "arm"]].itertuples(index=False, name=None)) == [
        ("3", "champion"),
        ("4", "challenger"),
    ]
    champ, chall = by_arm(out)["champion"], by_arm(out)["challenger"]

    # r1 in served order a (rel 1), b (no feedback, 0), c (completed+liked+shared over two
    # events = 3): DCG = (2**1-1)/log2(2) + 0 + (2**3-1)/log2(4) = 1 + 7/2 = 4.5;
    # ideal c, a, b: IDCG = 7/1 + 1/log2(3) = 7.6309; NDCG = 0.58971.
    # r2 x (skipped, 0), y (liked, 1): DCG = 1/log2(3) = 0.63093, IDCG = 1; NDCG = 0.63093.
    # r3 has no engagement: left out. Mean = 0.61032.
    r1 = 4.5 / (7 + INV_LOG2_3)
    assert champ["ndcg_at_10"] == pytest.approx((r1 + INV_LOG2_3) / 2, abs=1e-12)
    assert champ["ndcg_at_10"] == pytest.approx(0.61032, abs=1e-5)
    assert (champ["requests"], champ["items"], champ["labelled_items"]) == (3, 7, 4)
    assert champ["ndcg_requests"] == 2
    # labelled: a (completed), c (completed, liked, shared), x (skipped), y (liked)
    assert champ["completion_rate"] == pytest.approx(2 / 4)
    assert champ["like_rate"] == pytest.approx(2 / 4)
    assert champ["share_rate"] == pytest.approx(1 / 4)
    assert champ["skip_rate"] == pytest.approx(1 / 4)
    assert champ["mean_watch_time_s"] == pytest.approx((10 + 25 + 1 + 8) / 4)  # c: longest

    # r4 p (liked, 1) first: NDCG 1. r5 s (skipped, 0), t (completed, 1): 1/log2(3).
    assert chall["ndcg_at_10"] == pytest.approx((1 + INV_LOG2_3) / 2, abs=1e-12)
    assert (chall["requests"], chall["items"], chall["labelled_items"]) == (2, 4, 3)
    assert chall["completion_rate"] == pytest.approx(1 / 3)
    assert chall["skip_rate"] == pytest.approx(1 / 3)
    assert chall["share_rate"] == 0.0
    assert chall["mean_watch_time_s"] == pytest.approx((12 + 0.5 + 15) / 3)


def test_shadow_rows_are_ignored() -> None:
    feedback = feedback_frame(FEEDBACK_ROWS)
    with_shadow = online_quality(served_frame(SERVED), feedback)
    without = online_quality(served_frame([r for r in SERVED if r[1] != "shadow"]), feedback)
    assert "shadow" not in set(with_shadow["arm"])
    pd.testing.assert_frame_equal(with_shadow, without)


def test_unmatched_feedback_is_counted_and_ignored() -> None:
    served, feedback = served_frame(SERVED), feedback_frame(FEEDBACK_ROWS)
    assert unmatched_feedback(served, feedback) == 2
    report = quality_report(served, feedback)
    assert report.unmatched_feedback == 2 and report.feedback_rows == len(FEEDBACK_ROWS)
    matched_only = feedback_frame(FEEDBACK_ROWS[:-2])
    pd.testing.assert_frame_equal(report.metrics, online_quality(served, matched_only))


def test_feedback_on_a_shadow_only_item_is_unmatched() -> None:
    served = served_frame([("r1", "champion", "3", 0, "a"), ("r1", "shadow", "4", 0, "b")])
    assert unmatched_feedback(served, feedback_frame([("r1", "b", {"liked": True})])) == 1


def test_requests_without_gain_are_excluded_and_all_gainless_is_nan() -> None:
    served = served_frame([("r1", "champion", "3", 0, "a"), ("r1", "champion", "3", 1, "b")])
    skipped = feedback_frame([("r1", "a", {"skipped": True}), ("r1", "b", {"skipped": True})])
    row = online_quality(served, skipped).iloc[0]
    assert row["labelled_items"] == 2 and row["ndcg_requests"] == 0
    assert math.isnan(row["ndcg_at_10"])
    assert row["skip_rate"] == 1.0


def test_served_order_is_the_ranking_and_k_truncates() -> None:
    served = served_frame([("r1", "champion", "3", p, f"v{p}") for p in range(12)])
    last = feedback_frame([("r1", "v11", {"completed": True})])
    assert online_quality(served, last)["ndcg_at_10"].iloc[0] == 0.0
    at_12 = online_quality(served, last, k=12).iloc[0]
    assert at_12["ndcg_at_12"] == pytest.approx(1 / math.log2(13))
    first = feedback_frame([("r1", "v0", {"completed": True})])
    assert online_quality(served, first)["ndcg_at_10"].iloc[0] == 1.0
    with pytest.raises(ValueError, match="k must"):
        online_quality(served, first, k=0)


def test_no_feedback_yet() -> None:
    served = served_frame(SERVED)
    empty = FEEDBACK.arrow_schema().empty_table().to_pandas()
    out = by_arm(online_quality(served, empty))
    assert out["champion"]["labelled_items"] == 0 and out["champion"]["items"] == 7
    assert math.isnan(out["champion"]["ndcg_at_10"])
    assert math.isnan(out["champion"]["completion_rate"])
    assert unmatched_feedback(served, empty) == 0


def test_nothing_served() -> None:
    empty = SCHEMA.empty_table().to_pandas()
    out = online_quality(empty, feedback_frame(FEEDBACK_ROWS))
    assert out.empty and "ndcg_at_10" in out.columns
    assert unmatched_feedback(empty, feedback_frame(FEEDBACK_ROWS)) == len(FEEDBACK_ROWS)


def test_missing_columns_are_named() -> None:
    with pytest.raises(ValueError, match="position"):
        online_quality(served_frame(SERVED).drop(columns="position"), feedback_frame([]))


def test_report_to_dict_is_json_ready() -> None:
    report = quality_report(served_frame(SERVED), feedback_frame(FEEDBACK_ROWS[:1]))
    d = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert d["k"] == 10 and d["unmatched_feedback"] == 0 and d["feedback_rows"] == 1
    champ = next(g for g in d["groups"] if g["arm"] == "champion")
    assert champ["ndcg_at_10"] == 1.0 and champ["labelled_items"] == 1
    chall = next(g for g in d["groups"] if g["arm"] == "challenger")
    assert chall["ndcg_at_10"] is None and chall["completion_rate"] is None
    assert isinstance(champ["requests"], int) and not isinstance(champ["requests"], np.integer)
