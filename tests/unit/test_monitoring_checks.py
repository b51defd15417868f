"""The monitoring stage's checks: how their results fold into the verdict, and that adding
a check is one class and one line in ``CHECKS``."""

from __future__ import annotations

import json
from dataclasses import replace
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


def test_columns_of_other_checks_are_beside_the_share_which_stays_the_reports():
    """The share is the data drift report's own: 1 of its 4 columns. Before, the caption
    mix was counted into it (2/5), so the verdict said a share the report did not show."""
    verdict = fold_verdict(
        [
            base(True, False, False, False),
            CheckResult("content", beside=(col("caption_cluster", True),), tags={"a": "1"}),
            CheckResult("labels", alone=(col("online_auc", False),)),
        ]
    )
    assert [(c.column, c.in_share) for c in verdict.columns] == [
        ("x0", True),
        ("x1", True),
        ("x2", True),
        ("x3", True),
        ("caption_cluster", False),
        ("online_auc", False),
    ]
    assert verdict.share_drifted == pytest.approx(1 / 4)
    assert not verdict.drifted and verdict.severity == "warning"
    assert verdict.drifted_columns == ["x0", "caption_cluster"]
    assert verdict.tags == {"a": "1"}
    # the count in words is the report's too (it said 2/6 before: every column, alone ones
    # included), and the column beside it is named
    assert "1/4 columns drifted (and beside them: caption_cluster)" in verdict.summary()


def test_a_beside_column_does_not_tip_the_share_into_dataset_drift():
    verdict = fold_verdict(
        [base(True, False, False), CheckResult("content", beside=(col("caption_cluster", True),))]
    )
    assert verdict.share_drifted == pytest.approx(1 / 3)
    assert not verdict.drifted and verdict.severity == "warning"


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
        "action",
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
    assert verdict["tags"] == {
        "thumbnails": "400",
        "source": "impressions",
        "dashboard": verdict["tags"]["dashboard"],  # the project's page in Evidently's UI
    }
    assert logged[0].drifted_columns == result.drifted_columns
    assert result.online_quality == []  # nothing served that day
    assert [s.removeprefix("drift checks: ") for s in stages if ": " in s] == [
        "champion and its training reference",
        "the day's features and predictions",
        "Evidently data drift and broken inputs",
        "caption-embedding drift",
        "online quality and label drift",
        "thumbnail drift",
        "verdict, Evidently workspace, alert, MLflow",
    ]
    assert stages[-1] == "drift checks"  # finished
    assert (settings.home / "evidently").is_dir()  # the day's runs, for Evidently's UI


# -- the day's runs in Evidently's workspace -------------------------------------------------
class CaptionMixCheck:
    """A check reported beside the share, like the caption-cluster mix: its column drifted."""

    name = "caption_mix"
    stage = "caption mix"

    def run(self, ctx: CheckContext) -> CheckResult:
        mix = ColumnDrift("caption_cluster", 0.3, 0.1, "test-only", True)
        return CheckResult(self.name, beside=(mix,))


def shifted_context(settings: Settings, day: date, stages: Stages) -> CheckContext:
    """The synthetic day with input ``a`` moved by two standard deviations: 1 of the report's
    3 columns drifts (the prediction is the same on both sides)."""
    ctx = synthetic_context(settings, day, stages)
    same = np.linspace(0.0, 1.0, len(ctx.current))
    current = ctx.current.assign(a=ctx.current["a"] + 2.0, prediction=same)
    return replace(ctx, current=current, reference=ctx.reference.assign(prediction=same))


@pytest.mark.slow
def test_a_monitoring_run_adds_its_evidently_runs_with_the_verdicts_drift_share(
    monkeypatch, settings
):
    """Each daily check adds its data-drift run to the ``reelrank drift`` project of the
    workspace under the home, with the day as timestamp and the verdict's very share (the
    caption mix beside it drifted and does not count); the alert's text links the project's
    page in Evidently's UI. A second check of the same day replaces its runs."""
    from evidently.ui.workspace import Workspace

    from monitoring.workspace import DATA_DRIFT, PROJECT_NAME

    monkeypatch.setattr(pipeline, "day_context", shifted_context)
    monkeypatch.setattr(pipeline, "log_check", lambda *args: None)  # MLflow: not this test's
    monkeypatch.setattr(pipeline, "CHECKS", [pipeline.CHECKS[0], CaptionMixCheck()])
    day = date(2025, 7, 10)
    result = run_monitoring(settings, day)
    run_monitoring(settings, day)  # the same day again: its runs are replaced, not added

    ws = Workspace(str(settings.home / "evidently"))
    (project,) = ws.search_project(PROJECT_NAME)
    runs = [ws.get_run(project.id, r) for r in ws.list_runs(project.id)]
    drift_runs = [r for r in runs if r is not None and DATA_DRIFT in r.tags]
    assert len(drift_runs) == 1, [r.tags for r in runs if r is not None]
    (run,) = drift_runs
    assert run.timestamp.date() == day and run.metadata["day"] == day.isoformat()
    counted = next(
        v
        for v in run.metric_results.values()
        if v.metric_value_location.metric.params["type"].endswith("DriftedColumnsCount")
    )
    assert counted.count.value == 1 and counted.share.value == pytest.approx(1 / 3)
    verdict = json.loads(Path(result.verdict_json).read_text())
    assert result.share_drifted == verdict["share_drifted"] == counted.share.value
    assert result.drifted_columns == ["a", "caption_cluster"]
    url = f"http://127.0.0.1:{settings.ui.evidently_port}/projects/{project.id}"
    assert verdict["tags"]["dashboard"] == url
    assert "1/3 columns drifted (and beside them: caption_cluster)" in result.summary
    assert result.summary.endswith(f"report: {url}")
