"""Progress reporting for long steps, without any user interface.

Library code (ingestion, features, training, monitoring) reports how far a long step has
come through an optional callback; the command line turns the calls into progress bars,
and DAG tasks pass nothing. Keeping the callback a plain function keeps the libraries free
of any terminal library and cheap to call when nobody listens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sized
from typing import TypeVar

ProgressFn = Callable[[str, int, int], None]
"""``progress(step, done, total)``: ``done`` of ``total`` units of ``step`` are finished;
``done == total`` means the step is over. ``step`` may end in ``": what runs now"``: the part
before the first ``": "`` names the step (one bar per name), the rest is shown beside it."""

T = TypeVar("T")


def report(progress: ProgressFn | None, step: str, done: int, total: int) -> None:
    """Call ``progress`` if there is one (the common case in DAG tasks is None)."""
    if progress is not None:
        progress(step, done, total)


def tracked(progress: ProgressFn | None, step: str, items: Iterable[T]) -> Iterator[T]:
    """Yield ``items``, reporting each one as done after the caller has processed it."""
    seq = list(items) if not isinstance(items, Sized) else items
    total = len(seq)
    report(progress, step, 0, total)
    for i, item in enumerate(seq, start=1):
        yield item
        report(progress, step, i, total)


class Stages:
    """A step made of a few named stages (e.g. the drift checks of one day): each
    :meth:`next` reports the previous stage as done and names the running one."""

    def __init__(self, progress: ProgressFn | None, step: str, total: int) -> None:
        self.progress, self.step, self.total, self.started = progress, step, total, 0

    def next(self, stage: str) -> None:
        """The previous stage is done; ``stage`` runs now (shown as ``step: stage``)."""
        report(self.progress, f"{self.step}: {stage}", min(self.started, self.total), self.total)
        self.started += 1

    def finish(self) -> None:
        """Every stage is done."""
        report(self.progress, self.step, self.total, self.total)
