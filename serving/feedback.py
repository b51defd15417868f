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

Accepted events also reach the user's next feed at once, before any materialization: each
is appended to the user's recent events in the served state (:func:`engagement_events`
encodes them as the sequence features do), which the recommender merges into the user's
state on the next request, on any worker. :func:`accept_feedback` is the whole path.
"""

from __future__ import annotations

import functools
import logging
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

from features.sequence import action_codes, epoch_seconds
from ingest.lake import atomic_write
from ingest.schema import FEEDBACK, to_arrow, validate
from ingest.served import feedback_dir
from reelrank.errors import DataError
from serving.schemas import FeedbackEvent as Event

log = logging.getLogger(__name__)
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


class FeedbackClaims(Protocol):
    """Accepted event keys, shared by the workers (:class:`serving.served_state.Claims`)."""

    def claim(self, keys: list[str]) -> list[bool]: ...
    def release(self, keys: list[str]) -> None: ...


class RecentEventLog(Protocol):
    """Each user's recent events (:class:`serving.served_state.Events`)."""

    def add(self, user_id: str, events: Sequence[tuple[str, int, float]]) -> None: ...


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


def engagement_events(rows: pd.DataFrame) -> dict[str, list[tuple[str, int, float]]]:
    """Accepted lake rows as each user's sequence events: (video id, action code, epoch
    seconds), encoded by :mod:`features.sequence` exactly as the ``user_sequence`` feature
    encodes impressions (action bits and watch-ratio bucket), in the rows' order.

    Every event is kept, skips and plain views too: the sequence model reads every
    impression with what the user did on it; the positives among them are what the pooled
    tower's history takes (:func:`features.sequence.is_positive`)."""
    if rows.empty:
        return {}
    codes = action_codes(rows).tolist()
    seconds = epoch_seconds(rows["ts"]).tolist()
    out: dict[str, list[tuple[str, int, float]]] = {}
    for user, video, code, t in zip(rows["user_id"], rows["video_id"], codes, seconds, strict=True):
        out.setdefault(str(user), []).append((str(video), int(code), float(t)))
    return out


def accept_feedback(
    events: Sequence[Event],
    served: ServedLookup,
    claims: FeedbackClaims,
    lake_dir: Path,
    recent: RecentEventLog | None = None,
    now: datetime | None = None,
) -> tuple[int, int]:
    """Check a batch, write its new events to the lake and append them to the users' recent
    events; returns (accepted, duplicates).

    All or nothing: a rejected batch (:class:`FeedbackRejected`) claims, writes and appends
    nothing; a batch whose write fails releases its claims (a retry is accepted) and appends
    nothing. An event accepted before, by any worker, is a duplicate: not written, not
    appended again. The recent events are appended after the write, so the next feed never
    reads an event the lake does not hold. A failure to append them (the shared state
    unreachable) is logged, not raised: the events are in the lake, and the next
    materialization brings them to the user's feed."""
    rows = feedback_rows(events, served, now)
    keys = [event_key(e) for e in events]
    fresh = claims.claim(keys)
    new = [k for k, f in zip(keys, fresh, strict=True) if f]
    rows = rows[fresh].reset_index(drop=True)
    try:
        write_feedback(lake_dir, rows)
    except BaseException:
        claims.release(new)  # not written: a retry must be accepted
        raise
    if recent is not None:
        try:
            for user, user_events in engagement_events(rows).items():
                recent.add(user, user_events)
        except Exception:
            log.exception("feedback written, but not appended to the users' recent events")
    return len(new), len(keys) - len(new)
