"""The review workflow on the MLflow registry: promote, hold for approval, roll back.

Every move of ``champion`` is recorded on the model versions as tags (who, when, why), so a
reviewer in the MLflow UI sees the history next to the model card:

- ``promoted_by`` / ``promoted_at`` / ``promoted_why`` and ``previous_champion`` on a version
  that became champion (the gate counts as a reviewer, named ``gate``);
- ``pending_since`` on a version the gate passed while manual approval is on: it gets the
  ``pending-approval`` alias and waits for ``reelrank models promote VERSION``;
- ``rolled_back_by`` / ``rolled_back_at`` / ``rolled_back_why`` on a champion that was
  replaced by its predecessor.

Serving follows the ``champion`` alias, so each of these is also a deployment decision: a
person's promote and rollback therefore load the target version as serving would (``verify``)
before the alias moves, and refuse with the cause when it cannot serve (a corrupt model file,
other feature columns).
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from models.registry import CHAMPION, alias_version
from reelrank.errors import ModelNotFound, ReelrankError, StageFailed
from reelrank.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)
PENDING = "pending-approval"


class ReviewError(StageFailed, ValueError):
    """A review action that cannot be carried out (unknown version, nothing to roll back)."""


class VersionNotFound(ReviewError, ModelNotFound):
    """The version a person named is not in the registry (a review error and a missing
    model both: callers catching either see it)."""


@dataclass(frozen=True)
class Move:
    model: str
    alias: str
    version: str
    previous: str | None
    who: str
    why: str
    at: str

    def to_dict(self) -> dict[str, str | None]:
        return {
            "model": self.model,
            "alias": self.alias,
            "version": self.version,
            "previous": self.previous,
            "who": self.who,
            "why": self.why,
            "at": self.at,
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def reviewer() -> str:
    """Who is acting: the operating-system user (overridable on the command line)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _check_version(c: MlflowClient, name: str, version: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        c.get_model_version(name, version)
    except MlflowException as err:
        raise VersionNotFound(f"{name} has no version {version!r}") from err


Verify = Callable[[str], object]


def _verify(verify: Verify | None, action: str, version: str) -> None:
    """Run ``verify`` on the target version; its failure refuses the move, with the cause."""
    if verify is None:
        return
    try:
        verify(version)
    except ReelrankError as err:
        raise ReviewError(f"refusing to {action}: {err.brief}") from err


def promote(
    c: MlflowClient, name: str, version: str, who: str, why: str, verify: Verify | None = None
) -> Move:
    """Point ``champion`` at ``version`` and record the move; clears a pending approval.

    ``verify(version)`` (loading it as serving would) runs before the alias moves; a
    :class:`~reelrank.errors.ReelrankError` from it refuses the promotion."""
    _check_version(c, name, version)
    _verify(verify, "promote", version)
    previous = alias_version(c, name, CHAMPION)
    at = _now()
    c.set_registered_model_alias(name, CHAMPION, version)
    tags = {"promoted_by": who, "promoted_at": at, "promoted_why": why, "review_status": "champion"}
    if previous is not None and previous != version:
        tags["previous_champion"] = previous
    for k, v in tags.items():
        c.set_model_version_tag(name, version, k, v)
    if alias_version(c, name, PENDING) == version:
        c.delete_registered_model_alias(name, PENDING)
    log.info("%s: champion v%s -> v%s by %s (%s)", name, previous, version, who, why)
    return Move(name, CHAMPION, version, previous, who, why, at)


def hold_for_approval(c: MlflowClient, name: str, version: str, why: str) -> Move:
    """The gate passed but a person must approve: alias ``pending-approval``, no deployment."""
    _check_version(c, name, version)
    at = _now()
    previous = alias_version(c, name, PENDING)
    c.set_registered_model_alias(name, PENDING, version)
    c.set_model_version_tag(name, version, "review_status", PENDING)
    c.set_model_version_tag(name, version, "pending_since", at)
    if previous is not None and previous != version:  # superseded before anyone approved it
        c.set_model_version_tag(name, previous, "review_status", f"superseded by v{version}")
    log.warning("%s v%s passed the gate and awaits approval: %s", name, version, why)
    return Move(name, PENDING, version, previous, "gate", why, at)


def rollback(c: MlflowClient, name: str, who: str, why: str, verify: Verify | None = None) -> Move:
    """Put the previous champion back (the one the current champion replaced); ``verify``
    as for :func:`promote`, on the version that would come back."""
    current = alias_version(c, name, CHAMPION)
    if current is None:
        raise ReviewError(f"{name} has no champion to roll back")
    previous = c.get_model_version(name, current).tags.get("previous_champion")
    if not previous:
        raise ReviewError(f"{name} v{current} replaced no earlier champion: nothing to roll back")
    _check_version(c, name, previous)
    _verify(verify, "roll back", previous)
    at = _now()
    c.set_registered_model_alias(name, CHAMPION, previous)
    for k, v in {
        "rolled_back_by": who,
        "rolled_back_at": at,
        "rolled_back_why": why,
        "review_status": f"rolled back to v{previous}",
    }.items():
        c.set_model_version_tag(name, current, k, v)
    for k, v in {"restored_by": who, "restored_at": at, "review_status": "champion"}.items():
        c.set_model_version_tag(name, previous, k, v)
    log.warning("%s: rolled back v%s -> v%s by %s (%s)", name, current, previous, who, why)
    return Move(name, CHAMPION, previous, current, who, why, at)


def promoter(settings: Settings) -> Callable[[str, str, str], Move]:
    """``promote(version, who, why)`` on the settings' ranker, loading the version as
    serving would first (as ``reelrank models promote`` does): for callers that decide
    a promotion elsewhere, such as an experiment's report."""
    from models.champion import verify_servable
    from models.registry import client

    c = client(settings)
    name = settings.ranker_model_name

    def move(version: str, who: str, why: str) -> Move:
        return promote(
            c, name, version, who, why, verify=lambda v: verify_servable(settings, name, v)
        )

    return move
