"""The shape every drift check has, and the one place their results become a verdict.

A day's check is a list of independent checks (Evidently data drift, caption-content drift,
online quality, label drift, ...). Each reads what it needs from one :class:`CheckContext`
and answers with a :class:`CheckResult`; :func:`fold_verdict` (a pure function) turns the
results into the day's :class:`~monitoring.drift.DriftVerdict`. So adding a check is one new
class and one line in :data:`monitoring.pipeline.CHECKS`, and how a check counts towards the
verdict is decided here, once, rather than by a hand-written ``with_*`` helper per check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from monitoring.drift import ColumnDrift, DriftVerdict, QualityIssue
from reelrank.settings import Settings


@dataclass(frozen=True)
class CheckContext:
    """What the checks of one day share: the champion, its reference and the day's data.

    Built once per day (loading the champion and the day's features is the expensive part),
    then read by every check; a check never changes it.
    """

    settings: Settings
    day: date
    champion_version: str
    champion_run_id: str
    # the champion's training window (its ``data_window`` tag), None when it has none
    data_window: tuple[date, date] | None
    reference: pd.DataFrame  # the champion's training reference, with ``prediction``
    current: pd.DataFrame  # the day's model inputs, with ``prediction``
    positive: np.ndarray | None  # delayed label of each current row (None: no feedback yet)
    current_ids: pd.Series  # the day's video ids (impressions or served items)
    out: Path  # the day's report folder
    source: str  # "served_log" or "impressions": what ``current`` was read from


@dataclass(frozen=True)
class CheckResult:
    """What one check found, in the terms the verdict is made of.

    ``verdict`` is the whole verdict of the check that starts it (Evidently's data drift);
    every other check adds to it: ``beside`` columns are reported beside the share of drifted
    columns (one drifted is a warning), ``alone`` columns mean dataset drift by themselves;
    neither moves the share, which stays the data drift report's own, so the verdict, the
    report and the dashboard show one number. ``quality`` are broken inputs, ``tags`` land
    in the verdict's tags.
    ``details`` is what the check reports beside the verdict (e.g. online quality rows).
    An empty result (a check with nothing to compare that day) leaves the verdict as it is.
    """

    name: str
    verdict: DriftVerdict | None = None
    beside: tuple[ColumnDrift, ...] = ()
    alone: tuple[ColumnDrift, ...] = ()
    quality: tuple[QualityIssue, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    details: Any = None


class Check(Protocol):
    """One drift check: context in, typed result out.

    ``name`` names its result; ``stage`` is the progress stage it runs in (checks next to
    each other in the list with the same stage are reported as one).
    """

    name: str
    stage: str

    def run(self, ctx: CheckContext) -> CheckResult: ...


def with_result(verdict: DriftVerdict, result: CheckResult) -> DriftVerdict:
    """``verdict`` with one more check's result folded in (a pure function).

    Beside and alone columns are appended, marked as outside the share (``in_share``); the
    share of drifted columns is left as Evidently's report computed it (the verdict once
    recomputed it over more columns than the report showed, 31/38 against the report's
    31/37). Any alone column drifted is dataset drift; a beside column drifted makes at
    least a warning.
    """
    added = tuple(replace(c, in_share=False) for c in (*result.beside, *result.alone))
    return replace(
        verdict,
        columns=(*verdict.columns, *added),
        drifted=verdict.drifted or any(c.drifted for c in result.alone),
        quality=(*verdict.quality, *result.quality),
        tags={**verdict.tags, **result.tags},
    )


def fold_verdict(results: Sequence[CheckResult]) -> DriftVerdict:
    """The day's verdict: the first result's verdict with every result's columns, broken
    inputs and tags folded in, in order (the verdict's columns keep the order of the checks)."""
    if not results or results[0].verdict is None:
        raise ValueError("the first check must give the base verdict (Evidently data drift)")
    if any(r.verdict is not None for r in results[1:]):
        raise ValueError("only the first check may give a whole verdict")
    verdict = results[0].verdict
    for result in results:
        verdict = with_result(verdict, result)
    return verdict


def result_details(results: Sequence[CheckResult], name: str, default: Any = None) -> Any:
    """The ``details`` of the result named ``name`` (``default`` when no check gave it)."""
    return next((r.details for r in results if r.name == name), default)
