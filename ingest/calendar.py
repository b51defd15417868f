"""Which day a scheduled run works on.

A daily run at logical time L processes the last complete day, L - 1 day. A run may name its
day explicitly (``{"day": "YYYY-MM-DD"}`` in the run's conf/params) to backfill or replay.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta


def resolve_day(
    explicit: str | None, logical_date: datetime | None, fallback: date | None = None
) -> date:
    if explicit:
        return date.fromisoformat(str(explicit))
    if logical_date is not None:
        return logical_date.date() - timedelta(days=1)
    if fallback is not None:
        return fallback
    raise ValueError("no day given: pass conf {'day': 'YYYY-MM-DD'} or run on a schedule")
