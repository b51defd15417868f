"""The Feast store, built from settings: local = SQLite files, cluster = Redis + PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from datetime import datetime, timedelta
from pathlib import Path
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


def write_repo_yaml(settings: Settings) -> Path:
    """``<home>/feast/feature_store.yaml`` for the ``feast`` CLI (``feast ui`` started by
    ``reelrank up``): :func:`repo_config` as JSON, which is YAML. Owner-only (0600): in the
    cluster profile it holds the database and Redis URLs with their passwords."""
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    path = settings.feast_dir / "feature_store.yaml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # an older file may have had wider bits
        json.dump(repo_config(settings), out, indent=2)
    return path


def online_store_label(settings: Settings) -> str:
    """The online store in words, for messages: the SQLite file, or the kind (a Redis
    connection string may carry a password)."""
    online = repo_config(settings)["online_store"]
    return (
        str(online["path"]) if online["type"] == "sqlite" else f"the {online['type']} online store"
    )


def check_online_store(settings: Settings) -> None:
    """Refuse to serve from a local online store that is missing or unreadable, naming it.

    Serving must not open a missing SQLite store: Feast would create an empty file, and
    every user would silently take the cold-start path (or the workers would crash-loop on
    the item table). Opened read-only, so nothing is created or changed. The cluster's Redis
    store is checked by its first read."""
    import sqlite3

    from reelrank.errors import InvalidDataError, MissingDataError

    online = repo_config(settings)["online_store"]
    if online["type"] != "sqlite":
        return
    path = online["path"]
    if not os.path.exists(path):
        raise MissingDataError(
            f"the online store {path} is missing: materialize features first "
            "(reelrank run, or the reelrank_features DAG)"
        )
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as err:
        raise InvalidDataError(f"the online store {path} is unreadable: {err}") from None


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
        features.user_sequence,
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
        feature_services.retrieval_v2,
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
