"""Delayed feedback: engagement events for served items, checked and appended to the lake.

A client reports what the user did with items of a served list (``POST /feedback``). Each
event names the ``request_id`` of the list and one ``video_id`` in it; the server knows the
rest (user, surface, position, arm, model version) from what it served, so a client cannot
attribute an event to a list or a position that never existed. A batch is accepted or
rejected whole: one unknown request id, one video that was not in its list or one event that
contradicts itself (``completed`` and ``skipped`` together) rejects it with a report, and
nothing is written.

Feedback is idempotent: an event is identified by (request id, video id, what happened: the
set of actions it reports), and an event already accepted, by any worker, is answered as a
duplicate and not written again (:func:`event_key`; the keys are kept in the served state,
shared by the workers, for as long as the served list itself). A client may therefore retry
a batch safely. Another event for the same video (a share after a like) is a new event.

Accepted events become rows of the lake table ``feedback`` (the impressions contract plus the
experiment ``arm``), written as one atomic Parquet part per batch under
``<lake>/feedback/day=YYYY-MM-DD/``: monitoring joins them to served lists by ``request_id``
and the next training day can use them like impressions.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Protocol

import pandas as pd
import pyarrow.parquet as pq

from ingest.lake import atomic_write
from ingest.schema import FEEDBACK, to_arrow, validate
from ingest.served import feedback_dir
from reelrank.errors import DataError
from serving.schemas import FeedbackEvent as Event

_SEQ = count()


@dataclass(frozen=True)
class ServedList:
    """What one response served: enough to turn a client's event into a lake row."""

    request_id: str
    ts: datetime
    user_id: str
    surface: str
    arm: str
    ranker_version: str
    positions: dict[str, int]  # video id -> 0-based position in the served list
    durations: dict[str, float]  # video id -> duration in seconds (from the item table)


class ServedLookup(Protocol):
    """Served lists by request id (:mod:`serving.served_state` has the backends)."""

    def get(self, request_id: str) -> ServedList | None: ...


class FeedbackRejected(DataError, ValueError):
    """A feedback batch that cannot be accepted; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("feedback rejected: " + "; ".join(problems))
        self.problems = problems


# Actions one event cannot report together: a video watched to the end was not skipped.
CONTRADICTIONS = (("completed", "skipped"),)
ACTIONS = ("completed", "liked", "shared", "commented", "followed", "skipped")


def event_key(e: Event) -> str:
    """What identifies an event for de-duplication: the served list, the video and the set
    of actions it reports (``view`` for a watch with no action). The watch time and the
    timestamp are not part of it: a retry re-sent later, or re-measured, is the same event."""
    kind = "+".join(a for a in ACTIONS if getattr(e, a)) or "view"
    return f"{e.request_id}\t{e.video_id}\t{kind}"


def contradictions(e: Event) -> list[str]:
    """The pairs of actions an event reports together although they exclude each other."""
    return [f"{a} and {b}" for a, b in CONTRADICTIONS if getattr(e, a) and getattr(e, b)]


def feedback_rows(
    events: Sequence[Event], registry: ServedLookup, now: datetime | None = None
) -> pd.DataFrame:
    """The lake rows for a batch, or :class:`FeedbackRejected` naming every bad event."""
    now = now or datetime.now(UTC)
    problems: list[str] = []
    rows = []
    unknown = sorted({e.request_id for e in events if registry.get(e.request_id) is None})
    if unknown:
        shown = ", ".join(unknown[:5]) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        )
        problems.append(f"unknown request_id: {shown} (not served by this service recently)")
    for i, e in enumerate(events):
        clash = contradictions(e)
        if clash:
            problems.append(f"events[{i}]: contradictory: {', '.join(clash)} in one event")
            continue
        served = registry.get(e.request_id)
        if served is None:
            continue
        if e.video_id not in served.positions:
            problems.append(f"events[{i}]: video {e.video_id!r} was not served in {e.request_id}")
            continue
        ts = e.ts or now
        if ts.tzinfo is None:
            problems.append(f"events[{i}]: ts has no timezone")
            continue
        if ts < served.ts:
            problems.append(f"events[{i}]: ts {ts.isoformat()} is before the request was served")
            continue
        rows.append(
            {
                "event_id": f"f{uuid.uuid4().hex}",
                "request_id": e.request_id,
                "ts": pd.Timestamp(ts).tz_convert("UTC"),
                "user_id": served.user_id,
                "video_id": e.video_id,
                "surface": served.surface,
                "position": served.positions[e.video_id],
                "watch_time_s": float(e.watch_time_s),
                "duration_s": served.durations.get(e.video_id, float("nan")),
                "completed": e.completed,
                "liked": e.liked,
                "shared": e.shared,
                "commented": e.commented,
                "followed": e.followed,
                "skipped": e.skipped,
                "model_version": served.ranker_version,
                "arm": served.arm,
            }
        )
    if problems:
        raise FeedbackRejected(problems)
    df = pd.DataFrame(rows, columns=FEEDBACK.names)
    df["position"] = df["position"].astype("int32")
    report = validate(FEEDBACK, df)
    if not report.ok:
        raise FeedbackRejected([str(p) for p in report.problems])
    return df


def write_feedback(lake_dir: Path, rows: pd.DataFrame) -> list[Path]:
    """Append accepted rows to the lake: one atomic part file per UTC day touched."""
    paths = []
    for day, part in rows.groupby(rows["ts"].dt.date, sort=True):
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        path = feedback_dir(lake_dir, day) / f"part-{stamp}-{os.getpid()}-{next(_SEQ)}.parquet"
        table = to_arrow(FEEDBACK, part.reset_index(drop=True))
        paths.append(atomic_write(path, functools.partial(pq.write_table, table)))
    return paths
