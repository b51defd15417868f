"""A champion/challenger A/B experiment from the command line: serving's split while it
runs, and closed-loop days served by the real serving class.

The experiment itself (its record, data, report and decision) is
:mod:`experiments.lifecycle`. Here: while an experiment runs, the command line's settings
carry its share and salt as serving's split (:func:`with_experiment`), so ``reelrank up`` and
``reelrank serve`` serve it (an explicit ``REELRANK_SERVING__CHALLENGER_SHARE`` or
``__EXPERIMENT_SALT`` still wins); :func:`simulate` serves simulated days with the real
serving class and both versions (:func:`reelrank.closed_loop.serve_days`); :func:`report`
hands the report the registry's review path, so a "ship" promotes the challenger as
``reelrank models promote`` does.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from experiments.lifecycle import (
    ExperimentError,
    ExperimentRecord,
    ReportResult,
    active_salt,
    current,
    load,
    store_days,
)
from experiments.lifecycle import report as analyse
from reelrank.errors import ModelNotFound
from reelrank.progress import ProgressFn
from reelrank.progress import report as tick
from reelrank.settings import Settings

_EXPLICIT = ("REELRANK_SERVING__CHALLENGER_SHARE", "REELRANK_SERVING__EXPERIMENT_SALT")


def with_experiment(settings: Settings) -> Settings:
    """``settings`` with the running experiment's share and salt as serving's split (an
    explicit setting in the environment wins); unchanged when none runs."""
    salt = active_salt(settings)
    if salt is None or all(v in os.environ for v in _EXPLICIT):
        return settings
    try:
        rec = load(settings, salt)
    except ExperimentError:
        return settings
    update: dict[str, Any] = {}
    if _EXPLICIT[0] not in os.environ:
        update["challenger_share"] = rec.share
    if _EXPLICIT[1] not in os.environ:
        update["experiment_salt"] = rec.salt
    return settings.model_copy(update={"serving": settings.serving.model_copy(update=update)})


def simulate(
    settings: Settings, n_days: int, progress: ProgressFn | None = None
) -> ExperimentRecord:
    """Serve the experiment's first ``n_days`` simulated days with the real serving class,
    the champion and the challenger split by the experiment's share and salt, and store each
    day's rows and the oracle's truth under the experiment's directory (replacing earlier
    simulated days: the days are served in one fresh world, each following the last)."""
    from ingest.simulator import generate_world
    from reelrank.closed_loop import serve_days
    from serving.experiments import ExperimentConfig
    from serving.loader import build_recommender

    record = current(settings)
    if settings.dataset != "simulator":
        raise ExperimentError("simulate needs the simulated world (dataset 'simulator')")
    sim = settings.sim
    first = (record.start - sim.start_date).days
    if n_days < 1 or first < 0 or first + n_days > sim.days:
        raise ExperimentError(
            f"the simulated world has days {sim.start_date}..{sim.end_date}; the experiment "
            f"starts on {record.start_day}, so {n_days} days do not fit (start it on an "
            "earlier day with `reelrank experiment start --day`)"
        )
    split = ExperimentConfig(record.share, False, record.salt)
    serving = settings.serving.model_copy(
        update={"challenger_share": record.share, "experiment_salt": record.salt}
    )
    s = settings.model_copy(update={"serving": serving})
    tick(progress, "load the serving path", 0, 1)
    rec = build_recommender(s, challenger=True)
    if rec.challenger is None:
        raise ModelNotFound(f"{record.model} has no challenger to serve")
    tick(progress, "load the serving path", 1, 1)
    world = generate_world(sim)
    served = []
    for i in range(n_days):
        tick(progress, f"serve simulated days: {sim.start_date + timedelta(first + i)}", i, n_days)
        served += serve_days(s, rec, first + i, 1, split, world=world)
    tick(progress, "serve simulated days", n_days, n_days)
    return store_days(settings, record, served)


def report(settings: Settings, out: Path | None = None, salt: str | None = None) -> ReportResult:
    """:func:`experiments.lifecycle.report` with the registry's review path: a "ship"
    promotes the challenger as ``reelrank models promote`` does (unless manual approval)."""
    from training.review import promoter

    return analyse(settings, out, salt, promote=promoter(settings))
