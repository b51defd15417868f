"""Compute the daily feature tables from the lake, then register and materialize them in Feast."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from features.batch import as_of_timestamp, topic_vocabulary
from features.batch_sql import FeatureSQL
from ingest.lake import atomic_write, partition_days, read_table
from reelrank.errors import MissingDataError
from reelrank.progress import ProgressFn, Stages, report
from reelrank.settings import Settings

log = logging.getLogger(__name__)
VIEWS = (
    "user_engagement",
    "user_topic_affinity",
    "video_stats",
    "creator_stats",
    "user_history",
    "user_creator_history",
    "user_sequence",
)
LOOKBACK_DAYS = 28
UC_HISTORY_LEN = 32  # creators kept per user in user_creator_history


@dataclass
class FeatureResult:
    through: date
    first_day: str = ""  # the first day the loop's windows read (earlier days get no table)
    days_computed: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    materialized: str = ""
    embedded: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "through": self.through.isoformat(),
            "first_day": self.first_day,
            "days_computed": self.days_computed,
            "rows": self.rows,
            "materialized": self.materialized,
            "embedded": self.embedded,
        }


def table_path(settings: Settings, view: str, day: date) -> Path:
    return settings.features_dir / view / f"{day.isoformat()}.parquet"


def load_vocabulary(settings: Settings) -> list[str]:
    path = settings.features_dir / "topic_vocab.json"
    return json.loads(path.read_text()) if path.exists() else []


def _save_vocabulary(settings: Settings, vocab: list[str]) -> None:
    text = json.dumps(vocab)
    atomic_write(settings.features_dir / "topic_vocab.json", lambda tmp: tmp.write_text(text))


def first_feature_day(settings: Settings, through: date) -> date:
    """The first day whose feature tables a loop ending at ``through`` reads: the longest
    training window (ranker or retrieval) before a holdout on ``through``, and
    ``training.feature_backfill_days`` before it (a retrain on an earlier holdout). Each
    table reads its own look-back from the lake, so no earlier table is needed."""
    t = settings.training
    longest = max(t.train_days, settings.retrieval.train_days) + t.feature_backfill_days
    return through - timedelta(days=longest)


def compute_features(
    settings: Settings, through: date, force: bool = False, progress: ProgressFn | None = None
) -> FeatureResult:
    """Write the feature tables for every lake day from :func:`first_feature_day` up to
    ``through`` that lacks them (a log of many years costs its window, not its span);
    ``progress`` hears of every (day, view) table written.

    The tables are DuckDB queries over the lake's Parquet files (:mod:`features.batch_sql`,
    equal to the pandas definitions in :mod:`features.batch`): each reads only its window's
    partitions and streams its result to disk, so memory stays within the DuckDB budget
    whatever the traffic. Threads come from ``training.nthread``, the loop's CPU budget."""
    result = FeatureResult(through=through)
    lake_days = [d for d in partition_days(settings.lake_dir, "impressions") if d <= through]
    if not lake_days:
        raise MissingDataError(f"no impressions in the lake up to {through}")
    first = first_feature_day(settings, through)
    days = [d for d in lake_days if d >= first]
    result.first_day = days[0].isoformat() if days else ""
    if len(days) < len(lake_days):
        log.info(
            "features from %s (the training windows before %s): %d earlier lake day(s) need "
            "no table",
            first,
            through,
            len(lake_days) - len(days),
        )
    todo = [d for d in days if force or not all(table_path(settings, v, d).exists() for v in VIEWS)]
    if not todo:
        return result

    topics = read_table(settings.lake_dir, "videos", end=through, columns=["topic"])["topic"]
    vocab = topic_vocabulary(topics, load_vocabulary(settings))
    _save_vocabulary(settings, vocab)

    total, done = len(todo) * len(VIEWS), 0
    report(progress, "feature tables", 0, total)
    with FeatureSQL(
        settings.lake_dir,
        vocab,
        through=through,
        threads=settings.training.nthread,
        spill_dir=settings.features_dir,
    ) as sql:
        for d in todo:
            sizes: dict[str, int] = {}
            for view in VIEWS:
                n = sql.write(
                    view,
                    d,
                    table_path(settings, view, d),
                    history_len=settings.retrieval.history_len,
                    uc_history_len=UC_HISTORY_LEN,
                    seq_len=settings.retrieval.seq_len,
                )
                sizes[view] = n
                result.rows[view] = result.rows.get(view, 0) + n
                done += 1
                report(progress, f"feature tables: {d} {view}", done, total)
            result.days_computed.append(d.isoformat())
            log.info("features for %s: %s", d, sizes)
    return result


def register_and_materialize(
    settings: Settings, through: date, progress: ProgressFn | None = None
) -> str:
    """``feast apply`` the repository and load features up to ``through`` into the online store."""
    from features.store import apply_repo, feature_store, materialize

    stages = Stages(progress, "Feast", 2)
    stages.next("apply")
    store = feature_store(settings)
    apply_repo(store, settings)
    # the catalog's first partition (videos uploaded before the first day) is the earliest
    first = min(
        partition_days(settings.lake_dir, "videos")[0],
        partition_days(settings.lake_dir, "impressions")[0],
    )
    stages.next("materialize")
    mode = materialize(store, as_of_timestamp(first), as_of_timestamp(through))
    stages.finish()
    log.info("Feast applied; online store materialized %s..%s (%s)", first, through, mode)
    return mode


def has_features(settings: Settings, day: date) -> bool:
    return all(table_path(settings, v, day).exists() for v in VIEWS)


def latest_feature_day(settings: Settings) -> date:
    """The last day whose feature tables are all written (what training may use)."""
    days = sorted(p.stem for p in (settings.features_dir / VIEWS[0]).glob("*.parquet"))
    for d in reversed(days):
        day = date.fromisoformat(d)
        if all(table_path(settings, v, day).exists() for v in VIEWS):
            return day
    raise MissingDataError(f"no feature tables under {settings.features_dir}")


def embed_with_progress(
    settings: Settings, through: date, progress: ProgressFn | None = None
) -> dict[str, object]:
    """Caption embeddings up to ``through``; ``progress`` hears of every batch embedded."""
    from features.content import embed_catalog

    return embed_catalog(settings, through, progress).to_dict()


def run_features(
    settings: Settings, through: date, force: bool = False, progress: ProgressFn | None = None
) -> FeatureResult:
    """Compute features and content embeddings, ``feast apply``, materialize up to ``through``.
    ``progress`` hears of each table, each embedded day and the Feast steps."""
    result = compute_features(settings, through, force, progress=progress)
    result.embedded = embed_with_progress(settings, through, progress)
    result.materialized = register_and_materialize(settings, through, progress)
    return result
