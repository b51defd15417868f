"""The one family of expected failures, and the exit-code table they map to.

A :class:`ReelrankError` is a failure a user can act on (missing data, a model version that
does not exist, a server that does not answer): the command line prints its :attr:`brief`
as one message and exits with its :attr:`exit_code`. Every other exception is a bug and
keeps its stack trace, so the command line recognises expected failures by this family and
nothing else (not by builtin types such as ``ValueError``, which bugs raise too).

This module imports nothing from the project: it sits at the bottom layer beside
``reelrank.settings``, so that every stage package can raise these errors. Leaves that also
derive from a builtin (``FileNotFoundError``, ``ValueError``, ``LookupError``...) keep the
callers that caught the builtin before working.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """What a ``reelrank`` exit status means, for every command (the README's table)."""

    OK = 0
    FAILED = 1  # a stage or the data failed (one message, no stack trace)
    USAGE = 2  # bad usage: unknown command or option, a bad value
    STOPPED = 3  # the loop stopped on purpose: the gate kept the first model back, or drift
    UNAVAILABLE = 4  # a started service (or, in the cluster profile, a server) does not answer


class ReelrankError(Exception):
    """A failure a user can act on: one message and :attr:`exit_code`, no stack trace."""

    exit_code: ExitCode = ExitCode.FAILED

    @property
    def brief(self) -> str:
        """What people read: the message (subclasses whose ``str()`` carries more, such as a
        log's tail, shorten it)."""
        return str(self) or type(self).__name__

    def details(self) -> dict[str, Any]:
        """Extra fields for the ``--json`` error document (a log path, a DAG id)."""
        return {}


# exit 1: a stage or the data failed


class StageFailed(ReelrankError):
    """A stage of the loop (a DAG run, a review action) did not succeed."""


class DataError(ReelrankError):
    """The input data is missing, unreadable or breaks its contract."""


class MissingDataError(DataError, FileNotFoundError):
    """The data a stage needs is not there yet (run the stage before it), or a given path
    does not exist."""


class InvalidDataError(DataError, ValueError):
    """The data is there but cannot serve: too few days, an empty window, a day outside it."""


class ModelNotFound(ReelrankError, LookupError):
    """A registered model, alias (no champion: train first) or version does not exist."""


# exit 2: bad usage


class UsageError(ReelrankError):
    """The command was asked for something it cannot do as given."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError, ValueError):
    """A setting (``REELRANK_*``) is missing or has a bad value."""


# exit 4: a service does not answer


class ServiceUnavailable(ReelrankError):
    """A service that was started, or a server the profile needs, does not answer."""

    exit_code = ExitCode.UNAVAILABLE


class ServiceExited(ServiceUnavailable, RuntimeError):
    """A service process exited while starting (its log says why)."""


class ServiceTimeout(ServiceUnavailable, TimeoutError):
    """A service did not become ready in time."""
