"""The simulated world served by the trained loop's real serving class for three days."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.lake import read_table, write_partition
from ingest.simulator import generate_world
from reelrank.closed_loop import serve_days
from serving.experiments import ExperimentConfig, assign_arm
from serving.loader import build_recommender

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(1800)
def test_three_days_served_by_the_recommender_with_arms_propensities_and_truth(
    loop, tmp_path: Path
) -> None:
    s = loop.settings
    rec = build_recommender(s)
    rec.swap_model(rec.model, "challenger")  # A/A: the champion on both arms
    experiment = ExperimentConfig(challenger_share=0.5, salt="closed-loop-test")
    first = s.sim.days  # the days after the trained world's last
    world = generate_world(s.sim)
    days = serve_days(s, rec, first, 3, experiment, world=world)
    logging_world = generate_world(s.sim)
    known = {"users": set(world.users["user_id"]), "videos": set(world.videos["video_id"])}

    for i, day in enumerate(days):
        imp = day.impressions
        # every user sits in the arm serving's own hash gives them
        arms = imp.groupby("user_id")["arm"].first()
        assert all(arms[u] == assign_arm(u, 0.5, "closed-loop-test") for u in arms.index[:200])
        assert set(imp["arm"]) == {"champion", "challenger"}
        assert set(imp["model_version"]) == {rec.model.version}
        # exploration is on by default: a few slots were drawn, every propensity is exact
        p = imp["propensity"]
        assert ((p > 0) & (p <= 1)).all()
        assert 0 < (p < 0.5).mean() < 0.2
        # the trained model serves users better than the simulator's logging policy did
        served_utility = float(
            np.average(day.truth["mean_utility"], weights=day.truth["impressions"])
        )
        logged_utility = float(logging_world.draw(first + i).utility.mean())
        assert served_utility > logged_utility + 0.3, (served_utility, logged_utility)
        # A/A: the oracle's value of the two arms is the same within noise (users the unit)
        per_user = day.oracle.groupby(["arm", "user_id"])["utility"].mean()
        a, b = per_user["champion"], per_user["challenger"]
        z = (a.mean() - b.mean()) / np.sqrt(a.var() / len(a) + b.var() / len(b))
        assert abs(z) < 4.0, (z, day.truth)
        write_partition(
            tmp_path / "lake",
            tmp_path / "q",
            "impressions",
            day.day.date(),
            day.lake_rows(),
            known_ids=known,
        )
    assert len(read_table(tmp_path / "lake", "impressions")) == sum(
        len(d.impressions) for d in days
    )
    # on simulator version 2 the served days are the world's: its users are now bored of
    # what the model showed them, not of what the logging policy would have
    assert not np.allclose(
        world.state_on(first + 3).topic_seen, logging_world.state_on(first + 3).topic_seen
    )
