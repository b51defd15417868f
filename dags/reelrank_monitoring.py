"""reelrank_monitoring: Evidently drift of a day's features vs the champion's reference."""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from assets import DEFAULT_ARGS, DRIFT_DETECTED, START, day_param, fail_fast


@dag(
    dag_id="reelrank_monitoring",
    schedule="@daily",
    start_date=pendulum.parse(START),
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["reelrank", "monitoring"],
    params={"day": day_param("day to check")},
    doc_md="""
### Monitoring
Compares the model inputs and predictions of the day that just ended (or `day`) with the training
reference stored beside the champion (Evidently DataDriftPreset), and the day's logged
outcomes with the champion's training window (a unit change or nulls mark an input *broken*).
Saves HTML and JSON reports, adds the day's Evidently runs to the `reelrank drift` project
of the workspace `<home>/evidently` (its dashboard in `evidently ui`, which `reelrank up`
starts), logs to the MLflow experiment `reelrank-monitoring`, alerts (log line + webhook,
linking the dashboard), and on the first drifted day
of an episode emits **drift detected**, which schedules training. A broken input alerts but
never retrains; the gate refuses models trained on such days.
""",
)
def reelrank_monitoring() -> None:
    @task
    @fail_fast
    def check() -> dict[str, Any]:
        from features.pipeline import has_features
        from ingest.calendar import resolve_day
        from monitoring.pipeline import run_monitoring
        from reelrank.settings import get_settings

        ctx = get_current_context()
        settings = get_settings()
        # keyed on the data interval: a scheduled run checks the day that just ended, and
        # skips (rather than re-checking an old day) when its features are not there yet
        try:
            day = resolve_day(ctx["params"].get("day"), ctx.get("logical_date"))
        except ValueError as err:  # a bad day fails the same way each try: no retries
            raise AirflowFailException(f"bad day: {err}") from err
        if not has_features(settings, day):
            raise AirflowSkipException(f"no features for {day} yet")
        return run_monitoring(settings, day).to_dict()

    @task(outlets=[DRIFT_DETECTED])
    @fail_fast
    def signal_drift(checked: dict[str, Any]) -> dict[str, Any]:
        from monitoring.pipeline import MonitoringResult

        result = MonitoringResult.from_dict(checked)
        # one retrain per drift episode; a broken input alerts but never retrains
        if not result.retrain:
            raise AirflowSkipException(f"severity {result.severity}: {result.action}")
        return {"day": result.day.isoformat(), "drifted_columns": result.drifted_columns}

    signal_drift(check())


reelrank_monitoring()
