"""reelrank_experiment: the running A/B experiment's daily report and decision."""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, task
from airflow.sdk.exceptions import AirflowSkipException
from assets import DEFAULT_ARGS, MODEL_PROMOTED, START, fail_fast


@dag(
    dag_id="reelrank_experiment",
    schedule="@daily",
    start_date=pendulum.parse(START),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["reelrank", "experiment"],
    doc_md="""
### Experiment
Runs daily while an A/B experiment runs (`reelrank experiment start`). Analyses the days
since its start from the lake's feedback (users as the unit, CUPED, the SRM check and the
always-valid interval, so a daily look is valid), writes the HTML report, logs it on the
challenger version's MLflow run and tags the version with the decision. A "ship" promotes
the challenger through the review path (unless manual approval is on: then it is only
recommended) and emits **model promoted**. Skipped when no experiment runs or no feedback
has arrived yet.
""",
)
def reelrank_experiment() -> None:
    @task
    @fail_fast
    def report() -> dict[str, Any]:
        from experiments.lifecycle import active_salt
        from experiments.lifecycle import report as analyse
        from reelrank.errors import MissingDataError
        from reelrank.settings import get_settings
        from training.review import promoter

        s = get_settings()
        salt = active_salt(s)
        if salt is None:
            raise AirflowSkipException("no experiment is running")
        try:
            r = analyse(s, promote=promoter(s))
        except MissingDataError as err:  # the first day's feedback has not arrived yet
            raise AirflowSkipException(err.brief) from err
        return {
            "experiment": salt,
            "decision": r.decision,
            "version": r.record.challenger_version,
            "promoted": r.promoted,
            "report": str(r.html),
        }

    @task(outlets=[MODEL_PROMOTED])
    @fail_fast
    def announce(reported: dict[str, Any]) -> dict[str, Any]:
        if not reported["promoted"]:
            raise AirflowSkipException(
                f"experiment {reported['experiment']}: {reported['decision']}, nothing promoted"
            )
        return {"version": reported["version"]}

    announce(report())


reelrank_experiment()
