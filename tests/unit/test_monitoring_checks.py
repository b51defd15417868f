"""The monitoring stage's checks: how their results fold into the verdict, and that adding
a check is one class and one line in ``CHECKS``."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import monitoring.pipeline as pipeline
from monitoring.checks import CheckContext, CheckResult, fold_verdict, with_result
from monitoring.drift import ColumnDrift, DriftVerdict, QualityIssue
from monitoring.pipeline import MonitoringResult, run_monitoring
from reelrank.progress import Stages
from reelrank.settings import Settings

pytestmark = pytest.mark.unit


def col(name: str, drifted: bool) -> ColumnDrift:
    return ColumnDrift(name, 0.2 if drifted else 0.01, 0.1, "wasserstein", drifted)


def base(*drifted: bool) -> CheckResult:
    columns = tuple(col(f"x{i}", d) for i, d in enumerate(drifted))
    share = sum(drifted) / len(drifted)
    verdict = DriftVerdict(
        drifted=share >= 0.5,
        share_drifted=share,
        drift_share_threshold=0.5,
        columns=columns,
        reference_rows=100,
        current_rows=100,
        report_html="r.html",
    )
    return CheckResult("data_drift", verdict=verdict)


def test_the_base_verdict_alone_is_kept_as_it_is():
    first = base(True, False, False, False)
    assert fold_verdict([first]) == first.verdict


def test_shared_columns_count_towards_the_share_and_alone_columns_do_not():
    verdict = fold_verdict(
        [
            base(True, False, False, False),
            CheckResult("content", shared=(col("caption_cluster", True),), tags={"a": "1"}),
            CheckResult("labels", alone=(col("online_auc", False),)),
        ]
    )
    # 2 of the 5 shared columns drifted: under the 0.5 threshold, a warning
    assert [c.column for c in verdict.columns] == [
        "x0",
        "x1",
        "x2",
        "x3",
        "caption_cluster",
        "online_auc",
    ]
    assert verdict.share_drifted == pytest.approx(2 / 5)
    assert not verdict.drifted and verdict.severity == "warning"
    assert verdict.drifted_columns == ["x0", "caption_cluster"]
    assert verdict.tags == {"a": "1"}


def test_a_shared_column_can_tip_the_share_into_dataset_drift():
    verdict = fold_verdict(
        [base(True, False, False), CheckResult("content", shared=(col("caption_cluster", True),))]
    )
    assert verdict.share_drifted == pytest.approx(0.5)
    assert verdict.drifted and verdict.severity == "critical"


def test_an_alone_column_drifted_is_dataset_drift_without_moving_the_share():
    verdict = fold_verdict([base(False, False), CheckResult("labels", alone=(col("auc", True),))])
    assert verdict.share_drifted == 0.0
    assert verdict.drifted and verdict.severity == "critical"
    assert verdict.drifted_columns == ["auc"]


def test_broken_inputs_and_tags_accumulate_in_order():
    issue = QualityIssue("watch_time_s", "scale", 10.0, 600.0)
    verdict = with_result(
        with_result(base(False).verdict, CheckResult("a", tags={"k": "1", "m": "x"})),
        CheckResult("b", quality=(issue,), tags={"k": "2"}),
    )
    assert verdict.quality == (issue,) and verdict.severity == "broken"
    assert verdict.tags == {"k": "2", "m": "x"}


def test_empty_results_leave_the_verdict_alone():
    first = base(True, False)
    assert fold_verdict([first, CheckResult("skipped"), CheckResult("too")]) == first.verdict


def test_the_first_check_and_only_it_gives_the_base_verdict():
    with pytest.raises(ValueError):
        fold_verdict([])
    with pytest.raises(ValueError):
        fold_verdict([CheckResult("content"), base(True)])
    with pytest.raises(ValueError):
        fold_verdict([base(True), base(False)])


def test_the_result_document_is_the_same_dict_as_before():
    result = MonitoringResult(
        day=date(2025, 7, 10),
        source="impressions",
        champion_version="3",
        drifted=False,
        severity="ok",
        retrain=False,
        alerted=False,
        webhook=None,
        drifted_columns=[],
        broken_columns=[],
        share_drifted=0.0,
        report_html="r.html",
        verdict_json="verdict.json",
        summary="no dataset drift",
        online_quality=[],
    )
    d = result.to_dict()
    assert list(d) == [
        "day",
        "source",
        "champion_version",
        "drifted",
        "severity",
        "retrain",
        "alerted",
        "webhook",
        "drifted_columns",
        "broken_columns",
        "share_drifted",
        "report_html",
        "verdict_json",
        "summary",
        "online_quality",
    ]
    assert d["day"] == "2025-07-10"
    assert MonitoringResult.from_dict(json.loads(json.dumps(d))) == result


# -- adding a check: one class, one line ---------------------------------------------------
class ThumbnailCheck:
    """A check the stage does not have: its column drifts and, alone, means dataset drift."""

    name = "thumbnail_drift"
    stage = "thumbnail drift"

    def run(self, ctx: CheckContext) -> CheckResult:
        drop = ColumnDrift("thumbnail_brightness", 0.4, 0.1, "test-only", True)
        return CheckResult(self.name, alone=(drop,), tags={"thumbnails": str(len(ctx.current))})


def synthetic_context(settings: Settings, day: date, stages: Stages) -> CheckContext:
    """The day's data without a champion: two stationary numeric inputs and a prediction."""
    stages.next("champion and its training reference")
    stages.next("the day's features and predictions")
    rng = np.random.default_rng(0)

    def frame() -> pd.DataFrame:
        x = rng.normal(size=(400, 2))
        return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "prediction": 1 / (1 + np.exp(-x[:, 0]))})

    return CheckContext(
        settings=settings,
        day=day,
        champion_version="1",
        champion_run_id="run",
        data_window=None,  # no training window: no raw-input or content check that day
        reference=frame(),
        current=frame(),
        positive=None,  # no delayed labels yet: no label-drift check
        current_ids=pd.Series(["v1", "v2"]),
        out=settings.reports_dir / "drift" / day.isoformat(),
        source="impressions",
    )


@pytest.mark.slow
def test_a_new_check_is_one_class_and_one_line(monkeypatch, settings):
    """Appending a check to CHECKS is all it takes for its result to reach the verdict file,
    the returned result, the episode (retrain) logic, the alert and the progress stages."""
    logged: list[DriftVerdict] = []
    monkeypatch.setattr(pipeline, "day_context", synthetic_context)
    monkeypatch.setattr(pipeline, "log_check", lambda s, d, v, verdict, r: logged.append(verdict))
    monkeypatch.setattr(pipeline, "CHECKS", [*pipeline.CHECKS, ThumbnailCheck()])  # the line

    stages: list[str] = []
    result = run_monitoring(settings, date(2025, 7, 10), progress=lambda s, d, t: stages.append(s))

    assert "thumbnail_brightness" in result.drifted_columns
    assert result.severity == "critical" and result.drifted
    assert result.retrain and result.alerted  # the first drifted day of an episode
    verdict = json.loads(Path(result.verdict_json).read_text())
    assert verdict["columns"][-1]["column"] == "thumbnail_brightness"
    assert verdict["tags"] == {"thumbnails": "400", "source": "impressions"}
    assert logged[0].drifted_columns == result.drifted_columns
    assert result.online_quality == []  # nothing served that day
    assert [s.removeprefix("drift checks: ") for s in stages if ": " in s] == [
        "champion and its training reference",
        "the day's features and predictions",
        "Evidently data drift and broken inputs",
        "caption-embedding drift",
        "online quality and label drift",
        "thumbnail drift",
        "verdict, alert, MLflow, report index",
    ]
    assert stages[-1] == "drift checks"  # finished
    assert (settings.reports_dir / "drift" / "index.html").exists()
