"""MLflow tracking and the model registry: experiments, versions, aliases, tags, model cards.

Stages are deprecated in MLflow; reelrank uses aliases only: ``challenger`` for the newest
trained version, ``champion`` for the one serving traffic.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from reelrank.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

EXPERIMENT = "reelrank-ranker"
RETRIEVAL_EXPERIMENT = "reelrank-retrieval"  # the two-tower's runs, apart from the ranker's
CHALLENGER = "challenger"
CHAMPION = "champion"


def configure_mlflow(settings: Settings, experiment: str = EXPERIMENT) -> str:
    """Point MLflow at the configured store; create the experiment with its artifact root.

    Returns the experiment id. Never leaves ``./mlruns`` behind: the artifact location is
    set explicitly when the experiment is created.
    """
    import mlflow

    if settings.tracking_uri.startswith("sqlite:///"):
        Path(settings.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    mlflow.set_tracking_uri(settings.tracking_uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        return mlflow.create_experiment(
            experiment, artifact_location=f"{settings.artifact_root}/{experiment}"
        )
    return exp.experiment_id


def client(settings: Settings) -> MlflowClient:
    from mlflow import MlflowClient

    configure_mlflow(settings)
    return MlflowClient(tracking_uri=settings.tracking_uri)


def alias_version(c: MlflowClient, name: str, alias: str) -> str | None:
    """The version an alias points at, or None when the alias (or model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(c.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
            check=False,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
