"""reelrank_deploy: load the new champion as serving will, smoke-test it, record it."""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, task
from assets import DEFAULT_ARGS, MODEL_PROMOTED, START, fail_fast


@dag(
    dag_id="reelrank_deploy",
    schedule=MODEL_PROMOTED,
    start_date=pendulum.parse(START),
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["reelrank", "deploy"],
    doc_md="""
### Deploy
Runs when a model is promoted. Loads the `champion` alias with the live feature store
exactly as the BentoML service does, answers smoke requests, and writes
`serving/deployment.json` (version, load time, smoke latency). A failure here leaves the
previous deployment record in place.
""",
)
def reelrank_deploy() -> None:
    @task
    @fail_fast
    def deploy() -> dict[str, Any]:
        from reelrank.settings import get_settings
        from serving.deploy import deploy_champion

        return deploy_champion(get_settings()).to_dict()

    deploy()


reelrank_deploy()
