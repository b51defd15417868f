"""The retrieval champion: loaded from the registry with its index, and kept up to date with
the catalog (every video in the lake that arrived after the index was built)."""

from __future__ import annotations

from datetime import date

from features.content import read_content
from ingest.lake import read_table
from models.ranker import ModelLoadFailed, artifact_file, error_line, servable_ranker
from models.registry import CHAMPION, alias_version, client
from models.retriever import Retriever
from reelrank.settings import Settings


def champion_retriever(
    settings: Settings, alias: str = CHAMPION
) -> tuple[str | None, Retriever | None]:
    """The registered retrieval model behind ``alias``, loaded with its index and ids."""
    import mlflow

    c = client(settings)
    version = alias_version(c, settings.retrieval_model_name, alias)
    if version is None:
        return None, None
    model = mlflow.pyfunc.load_model(f"models:/{settings.retrieval_model_name}/{version}")
    return version, model.unwrap_python_model().retriever


def catch_up(retriever: Retriever, settings: Settings, through: date) -> int:
    """Add every lake video the retriever does not know yet (the fresh-items path)."""
    videos = read_table(settings.lake_dir, "videos", end=through)
    new = videos[~videos["video_id"].isin(retriever.catalog.index)]
    if new.empty:
        return 0
    content = read_content(settings)
    return retriever.add_videos(new, content[content["video_id"].isin(new["video_id"])])


def verify_servable(settings: Settings, name: str, version: str) -> None:
    """Load ``version`` of the registered model ``name`` as serving would, and let it score:
    :class:`~models.ranker.ModelLoadFailed` (or ``IncompatibleModel``) names the version, the
    file and the error when it cannot serve. Run before an alias moves."""
    import mlflow

    if name == settings.ranker_model_name:
        servable_ranker(settings, alias=None, version=version)
        return
    uri = f"models:/{name}/{version}"
    try:
        mlflow.pyfunc.load_model(uri).unwrap_python_model().retriever  # noqa: B018
    except Exception as err:
        mv = client(settings).get_model_version(name, version)
        raise ModelLoadFailed(
            f"{name} v{version}: {artifact_file(mv, uri)} does not load: {error_line(err)}"
        ) from err
