"""The daily drift check: a day's served features vs the champion's training reference.

:func:`run_monitoring` loads the day once (:func:`~monitoring.inputs.day_context`), runs
:data:`CHECKS` in order, folds their results into one verdict
(:func:`~monitoring.checks.fold_verdict`), then records it: the day's runs in Evidently's
workspace (:mod:`monitoring.workspace`, whose dashboard the alert links), ``verdict.json``,
the drift episode that decides on retraining, the alert and an MLflow run. Adding
a check is one class with the :class:`~monitoring.checks.Check` shape and one line here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import date
from typing import Any

from monitoring.checks import Check, CheckContext, CheckResult, fold_verdict, result_details
from monitoring.day_checks import (
    ContentDriftCheck,
    DataDriftCheck,
    LabelDriftCheck,
    OnlineQualityCheck,
    online_quality_of,
)
from monitoring.inputs import day_context
from monitoring.record import (
    MONITORING_EXPERIMENT,
    broken_days,
    drift_episode,
    log_check,
    retrain_action,
    send_drift_alert,
)
from monitoring.workspace import record_day
from reelrank.progress import ProgressFn, Stages
from reelrank.settings import Settings

log = logging.getLogger(__name__)

# what other stages and tests import from here
__all__ = [
    "CHECKS",
    "MONITORING_EXPERIMENT",
    "MonitoringResult",
    "broken_days",
    "drift_episode",
    "online_quality_of",
    "run_monitoring",
]

# The day's checks, in order: the first gives the base verdict, the others add to it.
CHECKS: list[Check] = [
    DataDriftCheck(),
    ContentDriftCheck(),
    OnlineQualityCheck(),
    LabelDriftCheck(),
]


@dataclass(frozen=True)
class MonitoringResult:
    """What one day's check found and did, for the CLI, the DAG and the tests.

    ``retrain`` is True only for the first drifted day of an episode; ``webhook`` is the
    alert's delivery (None when nothing was alerted). :meth:`to_dict` is the JSON document
    (``reelrank monitor --json``, the DAG task's XCom), in this field order.
    """

    day: date
    source: str
    champion_version: str
    drifted: bool
    severity: str
    retrain: bool
    alerted: bool
    webhook: dict[str, Any] | None
    drifted_columns: list[str]
    broken_columns: list[str]
    share_drifted: float
    report_html: str
    verdict_json: str
    summary: str
    online_quality: list[dict[str, Any]]
    action: str = ""  # what was done about the verdict, in words (retraining scheduled, ...)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["day"] = self.day.isoformat()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MonitoringResult:
        """Back from :meth:`to_dict` (a later task reading the XCom)."""
        return cls(**{**d, "day": date.fromisoformat(d["day"])})


def _stage_names(checks: Sequence[Check]) -> list[str]:
    """The progress stages the checks run in: neighbours with the same stage share it."""
    names: list[str] = []
    for check in checks:
        if not names or names[-1] != check.stage:
            names.append(check.stage)
    return names


def run_checks(checks: Sequence[Check], ctx: CheckContext, stages: Stages) -> list[CheckResult]:
    """Run ``checks`` in order on one day, announcing each stage as it starts."""
    results: list[CheckResult] = []
    stage: str | None = None
    for check in checks:
        if check.stage != stage:
            stage = check.stage
            stages.next(stage)
        results.append(check.run(ctx))
    return results


def run_monitoring(
    settings: Settings, day: date, progress: ProgressFn | None = None, manual: bool = False
) -> MonitoringResult:
    """Check ``day`` for drift and broken inputs; alert; decide whether to retrain.

    ``retrain`` is True only for the first drifted day of an episode: the monitoring DAG
    then emits the Asset that schedules training. ``manual`` (a check by hand, which
    schedules nothing) leaves the drift-episode state untouched and says so, so that it
    cannot suppress the scheduled check's retraining. ``progress`` hears of each check.
    """
    checks = list(CHECKS)  # read once: the list may be extended (tests do)
    # loading the day, the checks' stages, recording the verdict
    stages = Stages(progress, "drift checks", 2 + len(_stage_names(checks)) + 1)
    ctx = day_context(settings, day, stages)
    results = run_checks(checks, ctx, stages)
    verdict = fold_verdict(results)
    online = result_details(results, OnlineQualityCheck.name, [])
    stages.next("verdict, Evidently workspace, alert, MLflow")
    meta = {"severity": verdict.severity, "champion_version": ctx.champion_version}
    runs = record_day(settings, day, ctx.out, meta, online)
    verdict = replace(verdict, tags={**verdict.tags, "source": ctx.source, "dashboard": runs.url})
    verdict_json = ctx.out / "verdict.json"
    verdict_json.write_text(json.dumps(verdict.to_dict(), indent=2))
    new_episode = drift_episode(settings, day, verdict, record=not manual)
    retrain = new_episode and not manual
    action = retrain_action(verdict, new_episode, manual)
    log.info(
        "drift check of %s against champion v%s: %s; %s",
        day,
        ctx.champion_version,
        verdict.summary(),
        action,
    )
    alerted, delivery = send_drift_alert(settings, day, verdict, action)
    log_check(settings, day, ctx.champion_version, verdict, retrain)
    stages.finish()
    return MonitoringResult(
        day=day,
        source=ctx.source,
        champion_version=ctx.champion_version,
        drifted=verdict.drifted,
        severity=verdict.severity,
        retrain=retrain,
        alerted=alerted,
        webhook=delivery,
        drifted_columns=verdict.drifted_columns,
        broken_columns=verdict.broken_columns,
        share_drifted=verdict.share_drifted,
        report_html=verdict.report_html,
        verdict_json=str(verdict_json),
        summary=verdict.summary(),
        online_quality=online,
        action=action,
    )
