"""The loop closed through a served policy, on a tiny simulated world with its oracle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.closed_loop import Feed, ServedPolicyError, serve_day
from ingest.lake import read_table, write_partition
from ingest.simulator import TOPICS, World, generate_world
from reelrank.settings import SimulationSettings

pytestmark = pytest.mark.unit
SIM = SimulationSettings(n_users=200, n_creators=20, n_videos=400, days=4)


def _live(world: World, day_idx: int) -> np.ndarray:
    start = pd.Timestamp(world.day(day_idx), tz="UTC")
    up = world.videos["upload_ts"]
    keep = (up < start) & (up >= start - pd.Timedelta(days=SIM.catalog_history_days))
    return world.videos["video_id"].to_numpy()[keep.to_numpy()]


class OraclePolicy:
    """The oracle's own top m at the start of the day: the best a policy can know."""

    def __init__(self, world: World, day_idx: int, arm: str = "champion") -> None:
        self.world, self.day, self.arm = world, world.day(day_idx), arm
        self.live = _live(world, day_idx)

    def __call__(self, user_id: str, k: int, surface: str, request_id: str) -> Feed:
        top, _ = self.world.oracle_top(user_id, self.live, self.day, k)
        return Feed(list(top), self.arm, "oracle")


class RandomPolicy:
    """Uniform over the live catalog, without replacement: each slot's propensity is known."""

    def __init__(self, world: World, day_idx: int, arm: str = "challenger") -> None:
        self.live, self.arm = _live(world, day_idx), arm
        self.rng = np.random.default_rng(0)

    def __call__(self, user_id: str, k: int, surface: str, request_id: str) -> Feed:
        n = len(self.live)
        picked = self.rng.choice(self.live, size=k, replace=False)
        return Feed(list(picked), self.arm, "random", [1.0 / (n - i) for i in range(k)])


class Split:
    """Half the users to each policy, by user id."""

    def __init__(self, a: OraclePolicy, b: RandomPolicy) -> None:
        self.a, self.b = a, b

    def __call__(self, user_id: str, k: int, surface: str, request_id: str) -> Feed:
        arm = self.a if int(user_id[1:]) % 2 else self.b
        return arm(user_id, k, surface, request_id)


def test_a_served_day_logs_what_the_policy_chose_with_the_oracle_truth_per_arm() -> None:
    world = generate_world(SIM)
    day = serve_day(world, 2, Split(OraclePolicy(world, 2), RandomPolicy(world, 2)))
    imp = day.impressions
    m = SIM.impressions_per_request
    assert set(imp["arm"]) == {"champion", "challenger"}
    assert set(imp["model_version"]) == {"oracle", "random"}
    # one arm, one version and m slots per request; users stay in their arm
    per_request = imp.groupby("request_id")
    assert (per_request.size() == m).all()
    assert (per_request["arm"].nunique() == 1).all()
    assert (imp.groupby("user_id")["arm"].nunique() == 1).all()
    oracle_rows = imp["model_version"] == "oracle"
    assert (imp.loc[oracle_rows, "propensity"] == 1.0).all()
    assert np.allclose(
        imp.loc[~oracle_rows, "position"].map(lambda p: 1 / (len(_live(world, 2)) - p)),
        imp.loc[~oracle_rows, "propensity"],
    )
    truth = day.truth
    assert truth.loc["champion", "mean_utility"] > truth.loc["challenger", "mean_utility"] + 0.5
    assert (
        truth.loc["champion", "expected_completion"]
        > truth.loc["challenger", "expected_completion"]
    )
    # the logged outcome agrees with the oracle's expectation (hundreds of impressions per arm)
    for arm in truth.index:
        assert truth.loc[arm, "completion_rate"] == pytest.approx(
            truth.loc[arm, "expected_completion"], abs=0.05
        )
    assert truth["requests"].sum() == imp["request_id"].nunique()


def test_two_policies_face_the_same_requests_and_the_rows_fit_the_lake(tmp_path: Path) -> None:
    a = serve_day(generate_world(SIM), 1, OraclePolicy(generate_world(SIM), 1))
    b = serve_day(generate_world(SIM), 1, RandomPolicy(generate_world(SIM), 1))
    cols = ["request_id", "ts", "user_id", "surface", "position"]
    pd.testing.assert_frame_equal(a.impressions[cols], b.impressions[cols])
    world = generate_world(SIM)
    known = {"users": set(world.users["user_id"]), "videos": set(world.videos["video_id"])}
    write_partition(
        tmp_path / "lake",
        tmp_path / "q",
        "impressions",
        a.day.date(),
        a.lake_rows(),
        known_ids=known,
    )
    back = read_table(tmp_path / "lake", "impressions")
    assert len(back) == len(a.impressions)
    assert set(back["model_version"]) == {"oracle"}


def test_what_was_served_shapes_tomorrow_on_simulator_version_2() -> None:
    """Boredom follows the served feeds: a policy that shows only one topic leaves users more
    bored of it the next day than the logging policy's day did."""
    topic = TOPICS.index("cooking")
    world, logged = generate_world(SIM), generate_world(SIM)
    cooking = world.videos["video_id"].to_numpy()[world.video_topic == topic]
    live = set(_live(world, 1))
    only = [v for v in cooking if v in live]

    def one_topic(user_id: str, k: int, surface: str, request_id: str) -> Feed:
        return Feed(only[:k], "champion", "one-topic")

    day = serve_day(world, 1, one_topic)
    served_users = np.array([world.user_index[u] for u in day.impressions["user_id"].unique()])
    assert world.state_on(2).topic_seen[served_users, topic].mean() > (
        logged.state_on(2).topic_seen[served_users, topic].mean() + 2.0
    )
    # days before the served one are untouched
    np.testing.assert_array_equal(world.state_on(1).topic_seen, logged.state_on(1).topic_seen)


@pytest.mark.parametrize(
    ("feed", "message"),
    [
        (Feed(["v000001"], "champion", "x"), "served 1 videos"),
        (Feed(["nope"] * 10, "champion", "x"), "'nope', a video this world does not have"),
        (Feed(["v000001"] * 10, "champion", "x", [0.0] * 10), "propensities must be 10 numbers"),
    ],
)
def test_a_feed_users_cannot_be_shown_is_a_clear_error(feed: Feed, message: str) -> None:
    world = generate_world(SIM)
    with pytest.raises(ServedPolicyError, match=message):
        serve_day(world, 1, lambda *_: feed)
