"""A Bento of the recommender with the ranker pinned by version, for a container deployment.

``reelrank bento`` (or :func:`build_bento`) runs ``bentoml build`` on the project's own
service (``serving.service:RecommenderService``): the source packages the service imports,
the requirements with their floors, and the environment variable that pins the ranker
version (``REELRANK_SERVING__PINNED_VERSION``). The Bento's labels name the model, its
version, the MLflow run it came from and the retrieval champion of that moment, so an
operator can tell what an image serves without starting it.

The model files stay in the MLflow registry (the cluster profile's tracking store and
artifact root), which the container reaches through the same settings as everything else:
a Bento is a deployable unit of code and configuration, and the registry stays the one
place that says which models exist. ``bentoml containerize reelrank:<version>`` turns it into
an image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reelrank.errors import ModelNotFound
from reelrank.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SERVICE = "serving.service:RecommenderService"
# what the service imports (serving never imports training, monitoring or the app shell:
# the import-linter contracts in pyproject.toml hold it to that)
PACKAGES = ("serving", "models", "features", "feature_repo", "ingest")
SHELL_MODULES = ("reelrank/__init__.py", "reelrank/settings.py", "reelrank/progress.py")


@dataclass(frozen=True)
class BuiltBento:
    tag: str
    path: str
    ranker_version: str
    labels: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def build_bento(settings: Settings, version: str | None = None) -> BuiltBento:
    """Build the Bento with ranker ``version`` (default: the current champion) pinned."""
    import bentoml
    from bentoml._internal.bento.build_config import BentoEnvSchema
    from mlflow.exceptions import MlflowException

    from models.registry import CHAMPION, alias_version, client

    c = client(settings)
    name = settings.ranker_model_name
    if version is None:
        version = alias_version(c, name, CHAMPION)
        if version is None:
            raise ModelNotFound(f"{name} has no champion to build a Bento of: train first")
    try:
        mv = c.get_model_version(name, str(version))
    except MlflowException as err:  # a version a person named: one message, not a trace
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise ModelNotFound(
            f"{name} has no version {version!r} (not found in the registry)"
        ) from err
    labels = {
        "ranker_model": name,
        "ranker_version": str(mv.version),
        "ranker_run_id": mv.run_id or "",
        "retrieval_champion": str(
            alias_version(c, settings.retrieval_model_name, CHAMPION) or "none"
        ),
        "gate_verdict": mv.tags.get("gate_verdict", ""),
    }
    bento = bentoml.bentos.build(
        SERVICE,
        name="reelrank",
        labels=labels,
        description=(PROJECT_ROOT / "README.md").read_text()[:4000],
        include=[f"{p}/**/*.py" for p in PACKAGES] + list(SHELL_MODULES) + ["pyproject.toml"],
        exclude=["tests/", "var/", ".venv/", "**/__pycache__/"],
        envs=[BentoEnvSchema(name="REELRANK_SERVING__PINNED_VERSION", value=str(mv.version))],
        python={"requirements_txt": "requirements.in", "lock_packages": False},
        build_ctx=str(PROJECT_ROOT),
    )
    return BuiltBento(str(bento.tag), str(bento.path), str(mv.version), labels)
