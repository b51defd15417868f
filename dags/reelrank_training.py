"""reelrank_training: point-in-time datasets, XGBoost ranker, MLflow registry, the gate."""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from assets import (
    DEFAULT_ARGS,
    DRIFT_DETECTED,
    FEATURES_READY,
    MODEL_PROMOTED,
    START,
    day_param,
    fail_fast,
)


@dag(
    dag_id="reelrank_training",
    schedule=(FEATURES_READY | DRIFT_DETECTED),
    start_date=pendulum.parse(START),
    catchup=False,
    max_active_runs=1,  # features and drift can both trigger it; runs must not interleave
    default_args=DEFAULT_ARGS,
    tags=["reelrank", "training"],
    params={"day": day_param("holdout day")},
    doc_md="""
### Training
Runs when features are ready or drift is detected. The holdout is the latest featurized day;
the training window is the days before it. Trains the two-tower retrieval model and its
candidate index (registered as `reelrank-retrieval`, gated on Recall@100 against its champion
and the popularity baselines), then the ranker (while a drift episode is open, its rows from
the episode's first day on weigh more: `training.drift_half_life_days`), which it evaluates
beside the popularity baselines and the current champion on the same holdout, registers it
in MLflow as `challenger`, evaluates the whole serving pipeline offline with it (retrieve ->
rank -> top 10), and lets the gate decide, with the monitoring's broken-input days of its
window as an input. Emits **model promoted** only when it passed.
""",
)
def reelrank_training() -> None:
    @task
    @fail_fast
    def holdout_day() -> str:
        from features.pipeline import latest_feature_day
        from ingest.calendar import resolve_day
        from reelrank.settings import get_settings

        day = get_current_context()["params"].get("day")
        try:
            return resolve_day(day, None, latest_feature_day(get_settings())).isoformat()
        except ValueError as err:  # a bad day fails the same way each try: no retries
            raise AirflowFailException(f"bad day: {err}") from err

    @task
    @fail_fast
    def datasets(day: str) -> dict[str, Any]:
        from datetime import date

        from reelrank.settings import get_settings
        from training.pipeline import build_datasets

        return build_datasets(get_settings(), date.fromisoformat(day)).to_dict()

    @task
    @fail_fast
    def retrieval(day: str) -> dict[str, Any]:
        from datetime import date

        from reelrank.settings import get_settings
        from training.retrieval import train_retrieval

        out = train_retrieval(get_settings(), date.fromisoformat(day)).to_dict()
        return {k: out[k] for k in ("version", "promoted", "holdout", "metrics")}

    @task
    @fail_fast
    def train(info: dict[str, Any], retrieved: dict[str, Any]) -> dict[str, str]:
        from datetime import date

        from monitoring.record import open_episode_since
        from reelrank.settings import get_settings
        from training.pipeline import train_and_register

        s, holdout = get_settings(), date.fromisoformat(info["window"]["holdout"])
        # while a drift episode is open, the days since it weigh more: the retrain adapts
        trained = train_and_register(s, holdout, drift_since=open_episode_since(s, holdout))
        return {"holdout": trained.holdout, "version": trained.version}

    @task
    @fail_fast
    def evaluate_pipeline(trained: dict[str, str]) -> dict[str, str]:
        from datetime import date

        from reelrank.settings import get_settings
        from serving.offline import evaluate_version
        from training.pipeline import load_trained, record_pipeline_evaluation

        s, holdout = get_settings(), date.fromisoformat(trained["holdout"])
        pipeline = evaluate_version(s, trained["version"], holdout)
        record_pipeline_evaluation(s, load_trained(s, holdout), pipeline)
        return trained

    @task
    @fail_fast
    def gate(trained: dict[str, str]) -> dict[str, Any]:
        from datetime import date

        from monitoring.pipeline import broken_days
        from reelrank.settings import get_settings
        from training.pipeline import gate_and_promote, load_trained
        from training.results import GateInputs

        s = get_settings()
        result = load_trained(s, date.fromisoformat(trained["holdout"]))
        inputs = GateInputs(broken_days=broken_days(s, *result.window_days))
        return gate_and_promote(s, result, inputs).to_dict()

    @task(outlets=[MODEL_PROMOTED])
    @fail_fast
    def announce(gated: dict[str, Any]) -> dict[str, Any]:
        if gated.get("pending_approval"):
            raise AirflowSkipException(
                f"v{gated['version']} passed the gate and awaits approval "
                f"(reelrank models promote {gated['version']})"
            )
        if not gated["promoted"]:
            summary = gated["verdict"]["summary"]  # "failed: what, against what (passed: ...)"
            raise AirflowSkipException(f"v{gated['version']} not promoted: gate {summary}")
        return {"version": gated["version"]}

    day = holdout_day()
    # the ranker's retrieval features come from the retrieval champion after its own gate
    announce(gate(evaluate_pipeline(train(datasets(day), retrieval(day)))))


reelrank_training()
