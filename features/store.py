"""The Feast store, built from settings: local = SQLite files, cluster = Redis + PostgreSQL."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from reelrank.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)
PROJECT = "reelrank"


def repo_config(settings: Settings) -> dict[str, Any]:
    """The ``feature_store.yaml`` equivalent for a profile, as a plain dict."""
    if settings.profile == "cluster":
        from reelrank.settings import database_url, redis_target

        registry: dict[str, Any] = {
            "registry_type": "sql",
            "path": database_url(settings, "feast"),
            "cache_ttl_seconds": 60,
            "sqlalchemy_config_kwargs": {"pool_pre_ping": True},
        }
        online: dict[str, Any] = {
            "type": "redis",
            "connection_string": redis_target(settings).feast_connection_string(),
        }
    else:
        registry = {
            "registry_type": "file",
            "path": str(settings.feast_dir / "registry.db"),
            "cache_ttl_seconds": 60,
        }
        online = {"type": "sqlite", "path": str(settings.feast_dir / "online_store.db")}
    return {
        "project": PROJECT,
        "provider": "local",
        "registry": registry,
        "online_store": online,
        "offline_store": {"type": "duckdb"},
        "entity_key_serialization_version": 3,
    }


def feature_store(settings: Settings) -> FeatureStore:
    from feast import FeatureStore, RepoConfig

    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    return FeatureStore(config=RepoConfig(**repo_config(settings)), repo_path=str(settings.home))


def repo_objects(settings: Settings) -> list[Any]:
    """Every object the repository declares, imported explicitly (no module scanning),
    with file sources re-rooted at the configured home."""
    from feast import FileSource

    from feature_repo import entities, feature_services, features

    views = [
        features.user_engagement,
        features.user_topic_affinity,
        features.video_stats,
        features.creator_stats,
        features.user_history,
        features.user_creator_history,
        features.video_content,
    ]
    for view in views:  # each view reads the table of its own name
        source = view.batch_source
        assert isinstance(source, FileSource), f"{view.name} is not file-backed"
        source.file_options.uri = str(settings.features_dir / view.name / "*.parquet")
    return [
        entities.user,
        entities.video,
        entities.creator,
        *(view.batch_source for view in views),
        *views,
        feature_services.ranker_v1,
        feature_services.ranker_v2,
        feature_services.retrieval_v1,
    ]


def apply_repo(store: FeatureStore, settings: Settings) -> None:
    store.apply(repo_objects(settings))


def materialize(store: FeatureStore, start: datetime, end: datetime) -> str:
    """Load features up to ``end`` into the online store, incrementally where possible.

    Feast's ``materialize_incremental`` starts where the last run ended; on the very first
    run it would start at ``now - ttl``, which misses historical data, so the first run
    loads the explicit interval instead. Returns which mode was used.
    """
    views = store.list_feature_views()
    if all(v.most_recent_end_time is not None for v in views):
        store.materialize_incremental(end_date=end)
        return "incremental"
    store.materialize(start_date=start - timedelta(seconds=1), end_date=end)
    return "initial"
