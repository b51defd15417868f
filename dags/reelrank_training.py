"""reelrank_training: point-in-time datasets, XGBoost ranker, MLflow registry, the gate."""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException
from assets import DEFAULT_ARGS, DRIFT_DETECTED, FEATURES_READY, MODEL_PROMOTED, START


@dag(
    dag_id="reelrank_training",
    schedule=(FEATURES_READY | DRIFT_DETECTED),
    start_date=pendulum.parse(START),
    catchup=False,
    max_active_runs=1,  # features and drift can both trigger it; runs must not interleave
    default_args=DEFAULT_ARGS,
    tags=["reelrank", "training"],
    params={"day": Param(None, type=["null", "string"], description="holdout day YYYY-MM-DD")},
    doc_md="""
### Training
Runs when features are ready or drift is detected. The holdout is the latest featurized day;
the training window is the days before it. Trains the two-tower retrieval model and its
candidate index (registered as `reelrank-retrieval`, gated on Recall@100 against its champion
and the popularity baselines), then the ranker, which it evaluates beside the
popularity baselines and the current champion on the same holdout, registers it in MLflow as
`challenger`, evaluates the whole serving pipeline offline with it (retrieve -> rank -> top
10), and lets the gate decide, with the monitoring's broken-input days of its window as an
input. Emits **model promoted** only when it passed.
""",
)
def reelrank_training() -> None:
    @task
    def holdout_day() -> str:
        from features.pipeline import latest_feature_day
        from ingest.calendar import resolve_day
        from reelrank.settings import get_settings

        day = get_current_context()["params"].get("day")
        return resolve_day(day, None, latest_feature_day(get_settings())).isoformat()

    @task
    def datasets(day: str) -> dict[str, Any]:
        from datetime import date

        from reelrank.settings import get_settings
        from training.pipeline import build_datasets

        return build_datasets(get_settings(), date.fromisoformat(day)).to_dict()

    @task
    def retrieval(day: str) -> dict[str, Any]:
        from datetime import date

        from reelrank.settings import get_settings
        from training.retrieval import train_retrieval

        out = train_retrieval(get_settings(), date.fromisoformat(day)).to_dict()
        return {k: out[k] for k in ("version", "promoted", "holdout", "metrics")}

    @task
    def train(info: dict[str, Any], retrieved: dict[str, Any]) -> dict[str, str]:
        from datetime import date

        from reelrank.settings import get_settings
        from training.pipeline import train_and_register

        holdout = date.fromisoformat(info["window"]["holdout"])
        trained = train_and_register(get_settings(), holdout)
        return {"holdout": trained.holdout, "version": trained.version}

    @task
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
    def announce(gated: dict[str, Any]) -> dict[str, Any]:
        if gated.get("pending_approval"):
            raise AirflowSkipException(
                f"v{gated['version']} passed the gate and awaits approval "
                f"(reelrank models promote {gated['version']})"
            )
        if not gated["promoted"]:
            raise AirflowSkipException(f"v{gated['version']} not promoted: gate failed")
        return {"version": gated["version"]}

    day = holdout_day()
    # the ranker's retrieval features come from the retrieval champion after its own gate
    announce(gate(evaluate_pipeline(train(datasets(day), retrieval(day)))))


reelrank_training()
