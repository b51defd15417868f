"""The loop closed through the served policy: simulated users get their feeds from serving.

Every open-loop simulated day comes from the simulator's fixed logging policy, so a model
never changes what users are shown. Here the day's requests (who opens the app, when, on
which surface) are drawn as the simulator draws them, each request is answered by a feed
policy (in practice the real serving class, :class:`serving.pipeline.Recommender`, with the
experiment arm assigned as serving assigns it), and users respond to what they were served
from their hidden utility, through the same :func:`ingest.simulator.respond` as the logging
policy's days. The served day becomes the world's day (:meth:`World.record_served`), so on
simulator version 2 tomorrow's boredom, bonds and tastes follow from what the model chose.

Each served day returns the lake's impression rows (with the serving ``model_version``, the
request id) plus the experiment ``arm`` and each slot's ``propensity`` (the probability the
serving policy put that video in that slot), and the oracle's truth per arm: the mean hidden
utility of what was shown and the expected completion rate, which no logged metric can see.
An A/B analysis or an off-policy estimate made from the rows can then be checked against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from ingest.simulator import World, day_frame, day_requests, draw_surfaces, respond

#: the columns a served day adds to the lake's impression rows
SERVED_COLUMNS = ("arm", "propensity")


@dataclass(frozen=True)
class Feed:
    """One served feed: the videos best slot first, the arm and model version that served
    it, and per slot the probability the policy put that video there (``None``: a
    deterministic policy, every propensity 1)."""

    video_ids: Sequence[str]
    arm: str
    model_version: str
    propensities: Sequence[float] | None = None


class FeedPolicy(Protocol):
    """Answers one feed request (what the HTTP ``/recommend`` answers)."""

    def __call__(self, user_id: str, k: int, surface: str, request_id: str) -> Feed: ...


class ServedPolicyError(ValueError):
    """The policy answered a request with a feed the simulated user cannot be shown."""


@dataclass(frozen=True)
class ServedDay:
    """A day served by a policy: the impression rows and the oracle's truth per arm."""

    day: pd.Timestamp
    impressions: pd.DataFrame
    truth: pd.DataFrame  # one row per arm (see :func:`arm_truth`)
    #: per impression (aligned with ``impressions``): the hidden ``utility`` and
    #: ``p_complete``, for analyses that need the truth at the user level
    oracle: pd.DataFrame

    def lake_rows(self) -> pd.DataFrame:
        """The rows in the lake's impressions contract (arm and propensity left out)."""
        return self.impressions.drop(columns=list(SERVED_COLUMNS))


def serve_day(world: World, day_idx: int, policy: FeedPolicy) -> ServedDay:
    """Simulate day ``day_idx`` with every feed answered by ``policy``.

    Who opens the app and when comes from the day's own seed, as on the logging policy's
    day, so two policies served the same day face the same requests; the surfaces and the
    responses come from a seeded stream of their own. The served day replaces the logging
    policy's day in ``world`` (its user state follows). ``world`` should be a world of its
    own (``generate_world``), not the process's shared oracle (``world_for``)."""
    sim = world.sim
    m = sim.impressions_per_request
    req_user, req_offset = day_requests(
        world, day_idx, np.random.default_rng([sim.seed, 1, day_idx])
    )
    rng = np.random.default_rng([sim.seed, 6, day_idx])
    surfaces = draw_surfaces(rng, len(req_user))
    stamp = world.day(day_idx).strftime("%Y%m%d")
    user_ids = world.users["user_id"].to_numpy()
    request_ids = np.array([f"r{stamp}-{i:07d}" for i in range(len(req_user))])
    shown = np.empty((len(req_user), m), dtype=np.int64)
    propensity = np.ones((len(req_user), m))
    arms = np.empty(len(req_user), dtype=object)
    versions = np.empty(len(req_user), dtype=object)
    for i, (u, surface, rid) in enumerate(zip(req_user, surfaces, request_ids, strict=True)):
        feed = policy(str(user_ids[u]), m, str(surface), str(rid))
        shown[i] = _video_rows(world, feed, m, rid)
        if feed.propensities is not None:
            propensity[i] = _propensities(feed, m, rid)
        arms[i], versions[i] = feed.arm, feed.model_version
    drawn = respond(world, day_idx, rng, req_user, req_offset, surfaces, shown)
    world.record_served(day_idx, drawn)
    rows = day_frame(world, day_idx, drawn, request_ids, versions.astype(str))
    rows["arm"] = np.repeat(arms.astype(str), m)
    rows["propensity"] = propensity.reshape(-1)
    rows["utility"] = drawn.utility
    rows["p_complete"] = drawn.p_complete
    truth = arm_truth(rows)
    hidden = ["utility", "p_complete"]
    return ServedDay(
        pd.Timestamp(world.day(day_idx)),
        rows.drop(columns=hidden),
        truth,
        rows[["event_id", "user_id", "arm", *hidden]].reset_index(drop=True),
    )


def _video_rows(world: World, feed: Feed, m: int, request_id: str) -> np.ndarray:
    if len(feed.video_ids) != m:
        raise ServedPolicyError(
            f"request {request_id}: the policy served {len(feed.video_ids)} videos, "
            f"the simulated feed shows {m}"
        )
    try:
        return np.fromiter((world.video_index[v] for v in feed.video_ids), np.int64, m)
    except KeyError as err:
        raise ServedPolicyError(
            f"request {request_id}: the policy served {err.args[0]!r}, a video this world "
            "does not have"
        ) from None


def _propensities(feed: Feed, m: int, request_id: str) -> np.ndarray:
    p = np.asarray(feed.propensities, dtype=np.float64)
    if p.shape != (m,) or not np.all((p > 0.0) & (p <= 1.0)):
        raise ServedPolicyError(
            f"request {request_id}: propensities must be {m} numbers in (0, 1], "
            f"got {list(feed.propensities or [])}"
        )
    return p


def arm_truth(rows: pd.DataFrame) -> pd.DataFrame:
    """Per arm, what only the simulator knows about a served day beside what was logged:
    ``mean_utility`` (hidden utility per impression, the oracle's value of the feeds),
    ``expected_completion`` (mean P(completed) before the noise) beside the logged
    ``completion_rate``, and the users, requests and impressions behind them."""
    g = rows.groupby("arm")
    value = rows["completed"] | rows["liked"] | rows["shared"]
    return pd.DataFrame(
        {
            "users": g["user_id"].nunique(),
            "requests": g["request_id"].nunique(),
            "impressions": g.size(),
            "mean_utility": g["utility"].mean(),
            "expected_completion": g["p_complete"].mean(),
            "completion_rate": g["completed"].mean(),
            "value_per_request": value.groupby(rows["arm"]).sum() / g["request_id"].nunique(),
        }
    )
