"""Real datasets into the raw lake: adapt once, stage, then write day partitions like the
simulator does.

``settings.dataset`` names the source (``kuairand`` or ``interactions``) and
``settings.data`` its path and column mapping. The adapter (:mod:`ingest.adapters`) runs once
per source: its three contract frames and its report are staged under ``<home>/dataset/``
with a manifest of what was read (paths, sizes, modification times, options), and later runs
(every Airflow task is its own process) read the staged frames instead of parsing the source
again. Day boundaries are the data's own: an impression belongs to the UTC day of its
timestamp, a user to the day of their first event, a video to its upload day.

As with simulated worlds, a lake holds one source only: ingesting another dataset (or the
same one with another mapping) into a lake that already has data stops with a message.
"""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from ingest.adapters import AdaptedDataset, AdapterReport, load_interactions, load_kuairand
from ingest.lake import atomic_write, partition_days, read_table, write_partition
from ingest.pipeline import IngestResult, WorldMismatch, write_by_day
from ingest.schema import IMPRESSIONS, USERS, VIDEOS, to_arrow
from reelrank.errors import ConfigError, InvalidDataError, MissingDataError
from reelrank.settings import Settings

log = logging.getLogger(__name__)
FRAMES = {"users": USERS, "videos": VIDEOS, "impressions": IMPRESSIONS}
TS_COLUMN = {"users": "signup_ts", "videos": "upload_ts", "impressions": "ts"}


def staging_dir(settings: Settings) -> Path:
    return settings.home / "dataset"


def _fingerprint(path: Path | None) -> list[dict[str, Any]]:
    if path is None:
        return []
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [
        {"file": str(f.resolve()), "size": f.stat().st_size, "mtime": int(f.stat().st_mtime)}
        for f in files
    ]


def manifest(settings: Settings) -> dict[str, Any]:
    """What identifies the staged data: the source, its files, and the mapping options."""
    d = settings.data
    if d.path is None:
        raise ConfigError(
            f"dataset {settings.dataset!r} needs a path: REELRANK_DATA__PATH or --path"
        )
    if not d.path.exists():
        raise MissingDataError(f"dataset path {d.path} does not exist")
    options = d.model_dump(mode="json", exclude={"path", "items", "max_video_age_days"})
    if settings.dataset == "kuairand":
        options = {}  # the KuaiRand format fixes its columns
    return {
        "dataset": settings.dataset,
        "files": _fingerprint(d.path),
        "items": _fingerprint(d.items),
        "options": options,
    }


def adapt(settings: Settings) -> AdaptedDataset:
    """Run the configured adapter on the source (no staging)."""
    d = settings.data
    assert d.path is not None
    if settings.dataset == "kuairand":
        return load_kuairand(d.path, catalog=d.items)
    if settings.dataset == "interactions":
        return load_interactions(
            d.path,
            d.items,
            user_col=d.user_col,
            item_col=d.item_col,
            ts_col=d.ts_col,
            ts_unit=d.ts_unit,
            rating_col=d.rating_col,
            like_threshold=d.like_threshold,
            label_col=d.label_col,
            watch_col=d.watch_col,
            watch_unit=d.watch_unit,
            duration_col=d.duration_col,
            duration_unit=d.duration_unit,
            item_id_col=d.item_id_col,
            text_cols=tuple(d.text_cols),
            creator_col=d.creator_col,
            sep=d.sep,
        )
    raise ConfigError(f"dataset {settings.dataset!r} is not a real dataset")


def staged(settings: Settings) -> AdaptedDataset:
    """The adapted dataset, adapted once and read back from ``<home>/dataset/`` after."""
    out = staging_dir(settings)
    current = manifest(settings)
    path = out / "manifest.json"
    if path.exists() and json.loads(path.read_text()) == current:
        frames = {t: pq.read_table(out / f"{t}.parquet").to_pandas() for t in FRAMES}
        rep = json.loads((out / "report.json").read_text())
        return AdaptedDataset(
            rep["dataset"],
            frames["users"],
            frames["videos"],
            frames["impressions"],
            AdapterReport(**rep),
        )
    data = adapt(settings)
    out.mkdir(parents=True, exist_ok=True)
    for table, contract in FRAMES.items():
        arrow = to_arrow(contract, getattr(data, table))
        atomic_write(out / f"{table}.parquet", lambda tmp, a=arrow: pq.write_table(a, tmp))
    text = json.dumps(data.report.to_dict(), indent=2, default=str)
    atomic_write(out / "report.json", lambda tmp: tmp.write_text(text))
    # the manifest last: a crash before it leaves a staging that is redone, never trusted
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(current, indent=2)))
    log.info("staged %s: %s", settings.dataset, data.report.rows_kept)
    return data


def staged_report(settings: Settings) -> dict[str, Any] | None:
    """The staged adapter report (None for the simulator or before the first ingestion)."""
    path = staging_dir(settings) / "report.json"
    if settings.dataset == "simulator" or not path.exists():
        return None
    return dict(json.loads(path.read_text()))


def dataset_days(settings: Settings) -> list[date]:
    """The UTC days with impressions in the dataset."""
    return staged(settings).days


def _check_lake_source(settings: Settings, current: dict[str, Any]) -> None:
    """One source per lake: refuse to add another dataset's days to it."""
    path = settings.lake_dir / "_dataset.json"
    if (settings.lake_dir / "_world.json").exists():
        raise WorldMismatch(
            f"the lake in {settings.lake_dir} holds a simulated world; use another "
            "REELRANK_HOME for a real dataset"
        )
    if path.exists():
        recorded = json.loads(path.read_text())
        if recorded != current:
            raise WorldMismatch(
                f"the lake in {settings.lake_dir} was ingested from another dataset or mapping "
                f"({recorded['dataset']}: {[f['file'] for f in recorded['files']]}); use another "
                "REELRANK_HOME or `make clean`"
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2))


def ingest_dataset(settings: Settings, through: date, force: bool = False) -> IngestResult:
    """Write every missing partition of the dataset up to and including ``through``."""
    _check_lake_source(settings, manifest(settings))
    data = staged(settings)
    days = data.days
    through = min(through, days[-1])
    if through < days[0]:
        raise InvalidDataError(f"{through} is before the dataset starts ({days[0]})")
    result = IngestResult(through=through)
    for table in ("users", "videos"):
        df: pd.DataFrame = getattr(data, table)
        existing = set() if force else set(partition_days(settings.lake_dir, table))
        arrival = df[TS_COLUMN[table]].dt.date
        write_by_day(settings, table, df, arrival, through, existing, result)
    known = {
        "users": set(read_table(settings.lake_dir, "users", columns=["user_id"])["user_id"]),
        "videos": set(read_table(settings.lake_dir, "videos", columns=["video_id"])["video_id"]),
    }
    existing = set() if force else set(partition_days(settings.lake_dir, "impressions"))
    imp = data.impressions
    for day, part in imp.groupby(imp["ts"].dt.date, sort=True):
        if day > through or day in existing:
            continue
        write_partition(
            settings.lake_dir,
            settings.quarantine_dir,
            "impressions",
            day,
            part.reset_index(drop=True),
            known_ids=known,
        )
        result.written.setdefault("impressions", []).append(day.isoformat())
        result.impressions_rows += len(part)
    return result


def ingest(settings: Settings, through: date, force: bool = False) -> IngestResult:
    """Ingest the configured source (simulator or real dataset) through ``through``."""
    if settings.dataset == "simulator":
        from ingest.pipeline import ingest_simulated

        return ingest_simulated(settings, through, force=force)
    return ingest_dataset(settings, through, force=force)
