"""Offline sources: the event-timestamped Parquet tables that ``features`` writes.

Paths here are relative to the project's home (``var/`` by default). Feast's DuckDB offline
store reads them relative to the working directory, so :func:`features.store.repo_objects`
re-roots them at the configured home before ``apply``: the registry then holds the absolute
path of the very home it lives in.
"""

from feast import FileSource
from feast.data_format import ParquetFormat


def _source(view: str) -> FileSource:
    return FileSource(
        name=f"{view}_source",
        path=f"features/{view}/*.parquet",
        file_format=ParquetFormat(),
        timestamp_field="event_timestamp",
        description=f"Daily batch table '{view}' written by features.pipeline.",
    )


user_engagement_source = _source("user_engagement")
user_topic_affinity_source = _source("user_topic_affinity")
video_stats_source = _source("video_stats")
creator_stats_source = _source("creator_stats")
user_history_source = _source("user_history")
user_creator_history_source = _source("user_creator_history")
user_sequence_source = _source("user_sequence")
video_content_source = _source("video_content")
