"""Champion/challenger traffic split: which ranker serves a user, and whether to shadow-score.

A user's arm comes from a stable hash of (salt, user id) mapped to a bucket in [0, 1); the
user is in the challenger arm when the bucket is below the challenger share. So the split is
the same in every process and worker (never Python's per-process ``hash()``), a user keeps
their arm across requests, and raising the share only moves users from champion to
challenger, never back. A new salt reshuffles users for a new experiment.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from numbers import Real

CHAMPION = "champion"
CHALLENGER = "challenger"
DEFAULT_SALT = "reelrank"
_BUCKET_BITS = 64


def _check_share(challenger_share: float) -> None:
    valid = isinstance(challenger_share, Real) and not isinstance(challenger_share, bool)
    if not (valid and 0.0 <= challenger_share <= 1.0):  # NaN fails the comparison too
        raise ValueError(f"challenger_share must be a number in [0, 1], got {challenger_share!r}")


def user_bucket(user_id: str, salt: str = DEFAULT_SALT) -> float:
    """The user's position in [0, 1): blake2b of salt, a NUL separator and the user id."""
    digest = hashlib.blake2b(
        salt.encode() + b"\x00" + user_id.encode(), digest_size=_BUCKET_BITS // 8
    ).digest()
    return int.from_bytes(digest, "big") / 2.0**_BUCKET_BITS


def assign_arm(user_id: str, challenger_share: float, salt: str = DEFAULT_SALT) -> str:
    """``"challenger"`` for users whose bucket is below ``challenger_share``, else ``"champion"``.

    Share 0 always gives the champion and share 1 always the challenger.
    """
    _check_share(challenger_share)
    return CHALLENGER if user_bucket(user_id, salt) < challenger_share else CHAMPION


@dataclass(frozen=True)
class Route:
    """How to serve one request: ``arm`` serves it; ``shadow`` also scores the challenger."""

    arm: str
    shadow: bool = False

    @property
    def arms_to_score(self) -> tuple[str, ...]:
        """Every arm whose ranker runs on this request, the serving one first."""
        return (self.arm, CHALLENGER) if self.shadow else (self.arm,)


@dataclass(frozen=True)
class ExperimentConfig:
    """A champion/challenger experiment.

    With ``shadow`` on, the champion serves every request and the challenger is scored on all
    of them without being served (its scores are only logged), so a challenger is compared on
    the whole traffic before it affects any user; ``challenger_share`` is then not used.
    With ``shadow`` off, ``challenger_share`` of users (by :func:`assign_arm`) are served by
    the challenger.
    """

    challenger_share: float = 0.0
    shadow: bool = False
    salt: str = DEFAULT_SALT

    def __post_init__(self) -> None:
        _check_share(self.challenger_share)

    def served_arm(self, user_id: str, has_challenger: bool) -> Route:
        """The route serving takes for ``user_id``: :meth:`route`, except that a user of the
        challenger arm gets the champion while no challenger is loaded."""
        route = self.route(user_id)
        if route.arm == CHALLENGER and not has_challenger:
            return Route(arm=CHAMPION, shadow=route.shadow)
        return route

    def route(self, user_id: str) -> Route:
        if self.shadow:
            return Route(arm=CHAMPION, shadow=True)
        return Route(arm=assign_arm(user_id, self.challenger_share, self.salt), shadow=False)
