"""Real datasets into the raw lake: adapt once, stage, then write day partitions like the
simulator does.

``settings.dataset`` names the source (a log source of :mod:`ingest.sources`, found in its
registry) and ``settings.data`` its options: path and column mapping. The source's adapter
runs once: its three contract frames and its report are staged under ``<home>/dataset/``
with a manifest of what was read (paths, sizes, modification times, options), and later runs
(every Airflow task is its own process) read the staged frames instead of parsing the source
again. Day boundaries are the data's own: an impression belongs to the UTC day of its
timestamp, a user to the day of their first event, a video to its upload day.

As with simulated worlds, a lake holds one source only: ingesting another dataset (or the
same one with another mapping) into a lake that already has data stops with a message.
"""

from __future__ import annotations

import functools
import json
import logging
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from ingest.lake import atomic_write, partition_days, read_table, write_partition
from ingest.pipeline import IngestResult, WorldMismatch, write_by_day
from ingest.schema import IMPRESSIONS, USERS, VIDEOS, to_arrow
from ingest.sources import LogSource, get_log_source, get_source
from ingest.sources.common import AdaptedDataset, AdapterReport
from reelrank.errors import ConfigError, InvalidDataError, MissingDataError
from reelrank.settings import GateSettings, Settings

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
    """What identifies the staged data: the source, its files, and its other options (only
    its own: another source's options in ``settings.data`` change nothing here)."""
    options = get_log_source(settings.dataset).options(settings)
    if options.path is None:
        raise ConfigError(
            f"dataset {settings.dataset!r} needs a path: REELRANK_DATA__PATH or --path"
        )
    if not options.path.exists():
        raise MissingDataError(f"dataset path {options.path} does not exist")
    return {
        "dataset": settings.dataset,
        "files": _fingerprint(options.path),
        "items": _fingerprint(options.items),
        "options": options.model_dump(mode="json", exclude={"path", "items"}),
    }


def adapt(settings: Settings) -> AdaptedDataset:
    """Run the configured source's adapter on its log (no staging)."""
    source = get_log_source(settings.dataset)
    return source.load(source.options(settings))


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
        atomic_write(out / f"{table}.parquet", functools.partial(pq.write_table, arrow))
    text = json.dumps(data.report.to_dict(), indent=2, default=str)
    atomic_write(out / "report.json", lambda tmp: tmp.write_text(text))
    # the manifest last: a crash before it leaves a staging that is redone, never trusted
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(current, indent=2)))
    log.info("staged %s: %s", settings.dataset, data.report.rows_kept)
    return data


def staged_report(settings: Settings) -> dict[str, Any] | None:
    """The staged adapter report (None for the simulator or before the first ingestion)."""
    path = staging_dir(settings) / "report.json"
    if not isinstance(get_source(settings.dataset), LogSource) or not path.exists():
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
    source = get_source(settings.dataset)
    if isinstance(source, LogSource):
        return ingest_dataset(settings, through, force=force)
    return source.ingest(settings, through, force=force)


# A drift check compares a day's feature distributions with the champion's training data: on
# fewer rows than this, its statistical tests say nothing.
MIN_DRIFT_ROWS = 100


def window_problems(
    data: AdaptedDataset, holdout: date, check_day: date, gate: GateSettings
) -> list[str]:
    """Why the loop cannot judge a model on ``holdout`` or check ``check_day`` for drift,
    found from the staged log before any heavy work (an empty list when it can): the
    holdout needs the rows and users the gate requires and a positive engagement, the
    drift day :data:`MIN_DRIFT_ROWS` rows."""
    imp = data.impressions
    day = imp["ts"].dt.date
    problems = []
    hold = imp[day == holdout]
    positives = int((hold["completed"] | hold["liked"] | hold["shared"]).sum())
    users = int(hold["user_id"].nunique())
    if len(hold) < gate.min_holdout_rows or users < gate.min_holdout_users or positives == 0:
        problems.append(
            f"the holdout day {holdout} has {len(hold):,} rows, {users:,} users and "
            f"{positives:,} positive engagements; the gate needs at least "
            f"{gate.min_holdout_rows:,} rows, {gate.min_holdout_users:,} users and a positive"
        )
    drift_rows = int((day == check_day).sum())
    if drift_rows < MIN_DRIFT_ROWS:
        problems.append(
            f"the drift-check day {check_day} has {drift_rows:,} rows; a drift check needs "
            f"at least {MIN_DRIFT_ROWS}"
        )
    return problems
