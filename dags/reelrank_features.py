"""reelrank_features: ingest the day, compute batch features, apply Feast, materialize."""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from assets import DEFAULT_ARGS, FEATURES_READY, START, day_param, fail_fast


def _day() -> str:
    from ingest.calendar import resolve_day

    ctx = get_current_context()
    try:
        return resolve_day(ctx["params"].get("day"), ctx.get("logical_date")).isoformat()
    except ValueError as err:  # a bad day fails the same way each try: no retries
        raise AirflowFailException(f"bad day: {err}") from err


@dag(
    dag_id="reelrank_features",
    schedule="@daily",
    start_date=pendulum.parse(START),
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["reelrank", "features"],
    params={"day": day_param("day to process")},
    doc_md="""
### Daily features
Ingests the last complete day into the raw lake (validated; a bad batch is quarantined),
computes the 1/7/28-day batch feature tables and the caption embeddings of the day's new
videos (all-MiniLM-L6-v2, incremental), applies the Feast repository and
materializes into the online store. Emits **features ready**, which schedules training.
Idempotent per day: partitions that exist are not rewritten.
""",
)
def reelrank_features() -> None:
    @task
    @fail_fast
    def ingest() -> dict[str, Any]:
        from datetime import date

        from features.pipeline import has_features
        from ingest.datasets import ingest as ingest_source
        from reelrank.settings import get_settings

        settings = get_settings()
        wanted = date.fromisoformat(_day())
        # the simulated world, or a real dataset (settings.dataset), written day by day
        result = ingest_source(settings, wanted)
        if (
            wanted > result.through
            and not result.written
            and has_features(settings, result.through)
        ):
            # a scheduled run past the end of the source: nothing new arrived, so nothing is
            # recomputed and no "features ready" event asks for a retrain
            raise AirflowSkipException(
                f"no data for {wanted}: the source ends on {result.through}, already featurized"
            )
        return result.to_dict()

    @task
    @fail_fast
    def compute(ingested: dict[str, Any]) -> dict[str, Any]:
        from datetime import date

        from features.pipeline import compute_features
        from reelrank.settings import get_settings

        return compute_features(get_settings(), date.fromisoformat(ingested["through"])).to_dict()

    @task
    @fail_fast
    def embed(ingested: dict[str, Any]) -> dict[str, Any]:
        from datetime import date

        from features.content import embed_catalog
        from reelrank.settings import get_settings

        return embed_catalog(get_settings(), date.fromisoformat(ingested["through"])).to_dict()

    @task(outlets=[FEATURES_READY])
    @fail_fast
    def materialize(computed: dict[str, Any], embedded: dict[str, Any]) -> dict[str, Any]:
        from datetime import date

        from features.pipeline import register_and_materialize
        from reelrank.settings import get_settings

        mode = register_and_materialize(get_settings(), date.fromisoformat(computed["through"]))
        return {"through": computed["through"], "materialized": mode}

    ingested = ingest()
    materialize(compute(ingested), embed(ingested))


reelrank_features()
