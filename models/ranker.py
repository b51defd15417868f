"""Ranker artefacts: one interface for every kind of ranker, found by kind in one registry.

Serving, monitoring and evaluation never touch a model library: they load a :class:`Ranker`
(by alias or version), ask it for the heads' predictions or the value score of a feature
matrix, and read its feature names and value weights. What a kind knows is how to load itself
from the MLflow registry and how to log itself there. The kind is tagged on each registered
version (``ranker_kind``), so a registry may hold versions of several kinds and each loads
with its own class.

Adding a kind (LightGBM, a torch ranker) is one subclass with :func:`register_ranker`; the
trainer that fits it is the only other place that knows the library.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, TypeVar

import numpy as np

from models.objectives import ValueHeads
from models.registry import CHAMPION, alias_version, client
from reelrank.errors import ModelNotFound, StageFailed
from reelrank.settings import Settings

#: The model-version tag naming the kind of a registered ranker.
KIND_TAG = "ranker_kind"
#: The kind of a version with no tag (every version registered before kinds existed).
DEFAULT_KIND = "xgboost"


class Ranker(ABC):
    """One loaded ranker version: what serving, monitoring and evaluation need of it.

    ``features`` is the order of the columns of the matrices it scores (numpy input is
    positional); ``heads`` are its outputs and the weights that make the value score."""

    kind: ClassVar[str]

    def __init__(
        self, name: str, version: str, features: tuple[str, ...], heads: ValueHeads
    ) -> None:
        self.name, self.version = name, version
        self.features, self.heads = tuple(features), heads

    @abstractmethod
    def predict_heads(self, x: np.ndarray) -> np.ndarray:
        """(n, heads) predictions, or (n,) for a single-head model, of a feature matrix."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The value score the feed is ordered by, one per row of ``x``."""
        return self.heads.combine(self.predict_heads(x))

    @property
    def value_weights(self) -> dict[str, float]:
        return self.heads.as_dict()

    def for_serving(self) -> Ranker:
        """Tune for one request per thread (serving runs several); the default is a no-op."""
        return self

    def feature_importance(self) -> dict[str, float]:
        """Importance of each input by name (empty where a kind has no such notion)."""
        return {}

    @classmethod
    @abstractmethod
    def load(cls, model_uri: str, name: str, version: str) -> Ranker:
        """The ranker stored at an MLflow ``models:/`` URI."""

    @classmethod
    @abstractmethod
    def log_model(cls, model: Any, **kwargs: Any) -> Any:
        """Log a fitted model of this kind to the active MLflow run (``mlflow.<flavor>.
        log_model`` arguments); returns MLflow's ``ModelInfo``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r} v{self.version}, heads={self.heads.heads})"


class ModelLoadFailed(StageFailed, RuntimeError):
    """A registered version whose artefact cannot be loaded (a corrupt or missing file): the
    message names the version, the file and the library's error."""


class IncompatibleModel(StageFailed, ValueError):
    """A registered ranker whose inputs are not the ones serving builds."""


RANKER_KINDS: dict[str, type[Ranker]] = {}
R = TypeVar("R", bound=type[Ranker])


def register_ranker(cls: R) -> R:
    """Class decorator: make a ranker kind loadable by its ``kind`` name."""
    RANKER_KINDS[cls.kind] = cls
    return cls


def ranker_kind(kind: str) -> type[Ranker]:
    try:
        return RANKER_KINDS[kind]
    except KeyError:
        raise ModelNotFound(
            f"unknown ranker kind {kind!r}; known: {sorted(RANKER_KINDS)}"
        ) from None


@register_ranker
class XGBoostRanker(Ranker):
    """An XGBoost booster whose heads and weights travel as booster attributes."""

    kind = "xgboost"

    def __init__(
        self,
        booster: Any,
        name: str = "ranker",
        version: str = "0",
        features: tuple[str, ...] | None = None,
        heads: ValueHeads | None = None,
    ) -> None:
        super().__init__(
            name,
            version,
            tuple(booster.feature_names or ()) if features is None else features,
            ValueHeads.of_booster(booster) if heads is None else heads,
        )
        self.booster = booster

    def predict_heads(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.inplace_predict(x, validate_features=False))

    def for_serving(self) -> XGBoostRanker:
        self.booster.set_param({"nthread": 1})
        return self

    def feature_importance(self) -> dict[str, float]:
        return dict(self.booster.get_score(importance_type="total_gain"))

    @classmethod
    def load(cls, model_uri: str, name: str, version: str) -> XGBoostRanker:
        import mlflow

        model = mlflow.xgboost.load_model(model_uri)
        booster = model.get_booster() if hasattr(model, "get_booster") else model
        return cls(booster, name, version)

    @classmethod
    def log_model(cls, model: Any, **kwargs: Any) -> Any:
        import mlflow

        return mlflow.xgboost.log_model(model, **kwargs)


def load_ranker(
    settings: Settings, alias: str | None = CHAMPION, version: str | None = None
) -> Ranker | None:
    """The registered ranker ``version``, or the one behind ``alias``; None when the alias
    is unset. The version's ``ranker_kind`` tag picks the class that loads it."""
    c = client(settings)
    name = settings.ranker_model_name
    if version is None:
        if alias is None:
            raise ValueError("load_ranker needs an alias or a version")
        version = alias_version(c, name, alias)
        if version is None:
            return None
    mv = c.get_model_version(name, str(version))  # raises when the version does not exist
    kind = ranker_kind(mv.tags.get(KIND_TAG, DEFAULT_KIND))
    uri = f"models:/{name}/{mv.version}"
    try:
        return kind.load(uri, name, str(mv.version))
    except Exception as err:
        raise ModelLoadFailed(
            f"{name} v{mv.version}: {artifact_file(mv, uri)} does not load: {error_line(err)}"
        ) from err


def error_line(err: BaseException) -> str:
    """An exception in one line: its type and the first line of its message (XGBoost's
    messages go on with a native stack trace)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0][:300] if lines else ''}".rstrip(": ")


def artifact_file(mv: Any, uri: str) -> str:
    """Where a version's model file is stored (the flavor's data file in its artifact
    location), for messages; the version's source where that cannot be told."""
    import mlflow

    try:
        info = mlflow.models.get_model_info(uri)
        data = next((f["data"] for f in info.flavors.values() if "data" in f), "")
        source = str(mv.source)
        # MLflow 3: the source is the logged model (models:/m-<id>); its files are elsewhere
        model_id = getattr(mv, "model_id", None) or (
            source.removeprefix("models:/") if source.startswith("models:/m-") else None
        )
        where = mlflow.get_logged_model(model_id).artifact_location if model_id else source
        where = str(where).removeprefix("file://").rstrip("/")
        return f"{where}/{data}" if data else where
    except Exception:  # the message must not fail on a store it cannot read either
        return str(mv.source)


def servable_ranker(
    settings: Settings, alias: str | None = CHAMPION, version: str | None = None
) -> Ranker | None:
    """The ranker version as serving loads it, checked as serving uses it: loaded (else
    :class:`ModelLoadFailed`), with the feature columns serving builds (else
    :class:`IncompatibleModel`), and scoring one row of default features. None when the
    alias is unset."""
    from features.batch import FEATURE_DEFAULTS
    from features.cross import MODEL_FEATURES

    model = load_ranker(settings, alias, version)
    if model is None:
        return None
    if model.features != MODEL_FEATURES:
        # numpy input is positional: a model trained on other columns would score garbage
        raise IncompatibleModel(
            f"{model.name} v{model.version} expects features {model.features}, "
            f"serving builds {MODEL_FEATURES}"
        )
    row = np.array([[FEATURE_DEFAULTS.get(c, 0.0) for c in MODEL_FEATURES]], dtype=np.float32)
    try:
        scores = model.predict(row)
    except Exception as err:
        raise ModelLoadFailed(
            f"{model.name} v{model.version} loads but cannot score: {error_line(err)}"
        ) from err
    if not np.isfinite(scores).all():
        raise ModelLoadFailed(f"{model.name} v{model.version} scores a default row {scores}")
    return model
