"""Every Asset that connects the reelrank DAGs, named in one place.

features ready  -> reelrank_training
drift detected  -> reelrank_training
model promoted  -> reelrank_deploy
"""

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from airflow.sdk import Asset, Param
from airflow.sdk.exceptions import AirflowFailException

from reelrank.errors import DataError

F = TypeVar("F", bound=Callable[..., Any])

FEATURES_READY = Asset("reelrank://features/daily", group="reelrank")
MODEL_PROMOTED = Asset("reelrank://models/reelrank-ranker/champion", group="reelrank")
DRIFT_DETECTED = Asset("reelrank://monitoring/drift-detected", group="reelrank")

DEFAULT_ARGS = {"owner": "reelrank", "retries": 2}
START = "2025-01-01"

# A calendar day as YYYY-MM-DD. Checked by Airflow when a run is triggered (UI, API, CLI),
# so a day such as 2025/07/09 is refused with the pattern named, not retried in a task.
DAY_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"


def day_param(description: str) -> Param:
    """The ``day`` parameter every DAG takes: empty (the schedule decides) or YYYY-MM-DD."""
    return Param(
        None,
        type=["null", "string"],
        pattern=DAY_PATTERN,
        description=f"{description} (YYYY-MM-DD; empty: the schedule decides)",
    )


def fail_fast(fn: F) -> F:
    """A task whose data is missing or breaks its contract fails the same way on every try,
    so a :class:`~reelrank.errors.DataError` fails the task at once (Airflow does not retry
    an ``AirflowFailException``); any other error keeps the DAG's retries (a lock, a busy
    server). Goes under ``@task``."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DataError as err:
            raise AirflowFailException(
                f"{type(err).__module__}.{type(err).__qualname__}: {err.brief} "
                "(a data error: not retried)"
            ) from err

    run.reelrank_fails_fast = True  # type: ignore[attr-defined]
    return run  # type: ignore[return-value]


def fails_fast_on_data_errors(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` (a task's callable) went through :func:`fail_fast`."""
    return bool(getattr(fn, "reelrank_fails_fast", False))
