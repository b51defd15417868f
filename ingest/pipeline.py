"""Ingestion of the simulated world into the raw lake, one day partition at a time."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date, timedelta

import pandas as pd

from ingest.lake import partition_days, read_table, write_partition
from ingest.simulator import SIMULATOR_VERSION, world_for
from reelrank.errors import DataError, InvalidDataError
from reelrank.progress import ProgressFn, report
from reelrank.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    through: date
    written: dict[str, list[str]] = field(default_factory=dict)
    impressions_rows: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "through": self.through.isoformat(),
            "written": self.written,
            "impressions_rows": self.impressions_rows,
        }


def write_by_day(
    settings: Settings,
    table: str,
    df: pd.DataFrame,
    arrival: pd.Series,
    through: date,
    existing: set[date],
    result: IngestResult,
) -> None:
    """Write ``df`` as one partition per ``arrival`` day up to ``through``, skipping the days
    in ``existing`` (idempotent re-runs); record what was written in ``result``."""
    for day, part in df.groupby(arrival, sort=True):
        if day > through or day in existing:
            continue
        write_partition(
            settings.lake_dir, settings.quarantine_dir, table, day, part.reset_index(drop=True)
        )
        result.written.setdefault(table, []).append(day.isoformat())


class WorldMismatch(DataError, ValueError):
    """The lake holds another simulated world than the settings describe."""


def check_world_manifest(settings: Settings) -> None:
    """Refuse to mix two simulated worlds in one lake (idempotent skips would hide it).

    The first ingestion records the simulator's version and settings in ``<lake>/_world.json``
    (``version``: the world's dynamics, ``settings.sim.version``; ``simulator_version``: the
    code revision of its draws); a later one with another version or other settings stops
    with a message instead of appending days of another world. A lake recorded before
    ``version`` existed holds a version 1 world.
    """
    path = settings.lake_dir / "_world.json"
    if (settings.lake_dir / "_dataset.json").exists():
        raise WorldMismatch(
            f"the lake in {settings.lake_dir} holds a real dataset; use another REELRANK_HOME "
            "for a simulated world"
        )
    current = {"simulator_version": SIMULATOR_VERSION, **settings.sim.model_dump(mode="json")}
    recorded = world_manifest(settings)
    if recorded is not None:
        if recorded != current:
            diff = {k: (recorded.get(k), v) for k, v in current.items() if recorded.get(k) != v}
            raise WorldMismatch(
                f"the lake in {settings.lake_dir} was simulated with other settings "
                f"(recorded, now): {diff}; use another REELRANK_HOME or `make clean`"
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2))


def world_manifest(settings: Settings) -> dict[str, object] | None:
    """What the lake records about the simulated world it holds (None: no simulated world),
    with ``version`` filled in for lakes recorded before it existed (version 1)."""
    path = settings.lake_dir / "_world.json"
    if not path.exists():
        return None
    return {"version": 1, **json.loads(path.read_text())}


def ingest_simulated(
    settings: Settings, through: date, force: bool = False, progress: ProgressFn | None = None
) -> IngestResult:
    """Write every missing partition up to and including ``through`` (idempotent).

    Catalog rows (users, videos) land on the day they arrive; impressions of each simulated
    day are drawn from that day's seed and validated against the users and videos known by
    then, so a feed can never reference a video the lake has not seen. ``progress`` hears
    of every simulated day (days already in the lake count as done at once).
    """
    sim = settings.sim
    through = min(through, sim.end_date)
    if through < sim.start_date:
        raise InvalidDataError(f"{through} is before the simulation starts ({sim.start_date})")
    check_world_manifest(settings)
    world = world_for(sim)  # version 2's user state is cached on the world, day after day
    result = IngestResult(through=through)

    for table, df, ts_col in (
        ("users", world.users, "signup_ts"),
        ("videos", world.videos, "upload_ts"),
    ):
        existing = set() if force else set(partition_days(settings.lake_dir, table))
        write_by_day(settings, table, df, world.arrival_day(df[ts_col]), through, existing, result)

    known = {
        "users": set(read_table(settings.lake_dir, "users", columns=["user_id"])["user_id"]),
        "videos": set(read_table(settings.lake_dir, "videos", columns=["video_id"])["video_id"]),
    }
    existing = set() if force else set(partition_days(settings.lake_dir, "impressions"))
    n_days, done = (through - sim.start_date).days + 1, 0
    report(progress, "simulating days", 0, n_days)
    d = sim.start_date
    while d <= through:
        if d not in existing:
            imp = world.impressions(world.day_index(d))
            write_partition(
                settings.lake_dir, settings.quarantine_dir, "impressions", d, imp, known_ids=known
            )
            result.written.setdefault("impressions", []).append(d.isoformat())
            result.impressions_rows += len(imp)
            log.info("ingested %s impressions for %s", len(imp), d)
        done += 1
        report(progress, f"simulating days: {d}", done, n_days)
        d += timedelta(days=1)
    return result
