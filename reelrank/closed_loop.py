"""The simulated world served by the deployed system: the real serving class answers it.

:func:`experiments.closed_loop.serve_day` simulates a day whose feeds come from a policy; here
that policy is :class:`serving.pipeline.Recommender`, the class every BentoML worker serves
with, loaded from the registry and the online store as the workers load it, with each user's
arm assigned as serving assigns it (:meth:`serving.experiments.ExperimentConfig.served_arm`).
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments.closed_loop import Feed, ServedDay, serve_day
from ingest.simulator import World, generate_world
from reelrank.settings import Settings
from serving.experiments import ExperimentConfig
from serving.pipeline import Recommender


@dataclass
class ServingPolicy:
    """A feed policy that is the serving path itself."""

    rec: Recommender
    experiment: ExperimentConfig

    def __call__(self, user_id: str, k: int, surface: str, request_id: str) -> Feed:
        route = self.experiment.served_arm(user_id, self.rec.challenger is not None)
        # the request id seeds the exploration draw, as the HTTP service's does
        scored = self.rec.recommend(user_id, k, surface, arm=route.arm, request_id=request_id)
        return Feed(scored.video_ids, scored.arm, scored.model_version, scored.propensities)


def serve_days(
    settings: Settings,
    rec: Recommender,
    first_day: int,
    n_days: int,
    experiment: ExperimentConfig | None = None,
    world: World | None = None,
) -> list[ServedDay]:
    """``n_days`` simulated days from day index ``first_day`` on, every feed served by
    ``rec`` under ``experiment`` (default: the serving settings' split and salt). The
    world is a fresh copy of the settings' world unless given, so the process's shared
    oracle keeps the logging policy's days."""
    sv = settings.serving
    experiment = experiment or ExperimentConfig(sv.challenger_share, False, sv.experiment_salt)
    world = world or generate_world(settings.sim)
    policy = ServingPolicy(rec, experiment)
    return [serve_day(world, d, policy) for d in range(first_day, first_day + n_days)]
