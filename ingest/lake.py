"""The raw lake: one Parquet file per table and day, written atomically, validated first.

Layout: ``<lake>/<table>/day=YYYY-MM-DD/part-0.parquet``. A batch is validated whole; if any
check fails it goes to ``<quarantine>/<table>/day=.../`` with a JSON report and
:class:`BatchRejected` is raised: nothing of it reaches the lake. A good batch is written to a
hidden temporary file and renamed into place, so a crash never leaves half a partition.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from ingest.schema import CONTRACTS, ValidationReport, to_arrow, validate
from reelrank.errors import DataError

PART = "part-0.parquet"


class BatchRejected(DataError, ValueError):
    """A batch broke its contract; it was quarantined, not written."""

    def __init__(self, report: ValidationReport, quarantine_path: Path) -> None:
        super().__init__(f"{report}\nquarantined at {quarantine_path}")
        self.report = report
        self.quarantine_path = quarantine_path


def partition_path(lake_dir: Path, table: str, day: date) -> Path:
    return lake_dir / table / f"day={day.isoformat()}" / PART


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Write through ``write(tmp)`` into a hidden temporary file, then rename it into place.

    Readers see the old file or the new one, never half of one; a crash leaves at most a
    hidden ``.tmp`` file, which readers ignore and the next write removes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_partition(
    lake_dir: Path,
    quarantine_dir: Path,
    table: str,
    day: date,
    df: pd.DataFrame,
    known_ids: Mapping[str, set[str]] | None = None,
) -> Path:
    """Validate ``df`` and write it as the ``day`` partition of ``table`` (replacing it)."""
    contract = CONTRACTS[table]
    report = validate(contract, df, known_ids)
    if not report.ok:
        qdir = quarantine_dir / table / f"day={day.isoformat()}"
        qdir.mkdir(parents=True, exist_ok=True)
        df.to_pickle(qdir / "batch.pkl")  # any dtype survives, so the batch can be inspected
        (qdir / "report.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
        raise BatchRejected(report, qdir)
    path = partition_path(lake_dir, table, day)
    table = to_arrow(contract, df)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    return path


def partition_days(lake_dir: Path, table: str) -> list[date]:
    root = lake_dir / table
    if not root.exists():
        return []
    days = []
    for p in root.iterdir():
        if p.name.startswith("day=") and (p / PART).exists():
            days.append(date.fromisoformat(p.name[4:]))
    return sorted(days)


def read_table(
    lake_dir: Path,
    table: str,
    start: date | None = None,
    end: date | None = None,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """Read the partitions of ``table`` with ``start <= day <= end`` into one frame."""
    contract = CONTRACTS[table]
    frames = [
        pq.read_table(partition_path(lake_dir, table, d), columns=columns).to_pandas()
        for d in partition_days(lake_dir, table)
        if (start is None or d >= start) and (end is None or d <= end)
    ]
    if not frames:
        empty = contract.arrow_schema().empty_table().to_pandas()
        return empty[columns] if columns else empty
    return pd.concat(frames, ignore_index=True)
