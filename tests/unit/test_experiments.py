"""Champion/challenger split: stable across processes, right shares, monotone, shadow mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

from serving.experiments import (
    CHALLENGER,
    CHAMPION,
    ExperimentConfig,
    Route,
    assign_arm,
    user_bucket,
)

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
USERS = [f"u{i:06d}" for i in range(20_000)]


def challengers(share: float, users: list[str] = USERS, salt: str = "reelrank") -> set[str]:
    return {u for u in users if assign_arm(u, share, salt) == CHALLENGER}


def test_assignment_is_the_same_in_another_process() -> None:
    users = USERS[:500]
    code = (
        "import json, sys\n"
        "from serving.experiments import assign_arm, user_bucket\n"
        "users = json.loads(sys.stdin.read())\n"
        "print(json.dumps([[assign_arm(u, 0.3), user_bucket(u, 'other')] for u in users]))\n"
    )
    for seed in ("1", "2"):  # different str hashing in the child each time
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        out = subprocess.run(
            [sys.executable, "-c", code],
            input=json.dumps(users),
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout
        assert json.loads(out) == [[assign_arm(u, 0.3), user_bucket(u, "other")] for u in users]


def test_buckets_are_pinned() -> None:
    """Changing the hash would silently move users between arms mid-experiment."""
    assert user_bucket("u1") == pytest.approx(0.2755161372271337, abs=1e-15)
    users = ("u1", "u2", "u3", "u4", "u5", "u6")
    expected = [0.275516, 0.19029, 0.195745, 0.733203, 0.495693, 0.825819]
    assert [round(user_bucket(u), 6) for u in users] == expected
    assert [assign_arm(u, 0.5) == CHALLENGER for u in users] == [1, 1, 1, 0, 1, 0]
    assert 0.0 <= user_bucket("") < 1.0


@pytest.mark.parametrize("share", [0.1, 0.5])
def test_split_matches_the_share(share: float) -> None:
    observed = len(challengers(share)) / len(USERS)
    assert abs(observed - share) <= 0.02


def test_share_bounds() -> None:
    users = USERS[:2_000]
    assert challengers(0.0, users) == set()
    assert challengers(1.0, users) == set(users)
    for bad in (-0.01, 1.01, float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match=r"challenger_share must be a number in \[0, 1\]"):
            assign_arm("u1", bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="challenger_share"):
            ExperimentConfig(challenger_share=bad)  # type: ignore[arg-type]


def test_raising_the_share_only_moves_users_to_the_challenger() -> None:
    users = USERS[:5_000]
    shares = [0.0, 0.01, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 0.99, 1.0]
    groups = [challengers(s, users) for s in shares]
    for smaller, larger in pairwise(groups):
        assert smaller <= larger
    assert len(groups[3]) < len(groups[6]) < len(groups[8])  # and they do grow


def test_salt_reshuffles_users() -> None:
    a, b = challengers(0.5, salt="exp-a"), challengers(0.5, salt="exp-b")
    overlap = len(a & b) / len(USERS)
    assert abs(overlap - 0.25) <= 0.02  # independent splits, not the same one


def test_route_without_shadow_follows_the_split() -> None:
    config = ExperimentConfig(challenger_share=0.3, salt="s")
    for user in USERS[:1_000]:
        route = config.route(user)
        assert route == Route(arm=assign_arm(user, 0.3, "s"), shadow=False)
        assert route.arms_to_score == (route.arm,)
    assert ExperimentConfig().route("anyone") == Route(CHAMPION, shadow=False)


def test_shadow_mode_serves_the_champion_and_scores_the_challenger() -> None:
    for share in (0.0, 0.5, 1.0):
        config = ExperimentConfig(challenger_share=share, shadow=True)
        routes = {config.route(u) for u in USERS[:1_000]}
        assert routes == {Route(arm=CHAMPION, shadow=True)}
    assert Route(CHAMPION, shadow=True).arms_to_score == (CHAMPION, CHALLENGER)


def test_config_is_frozen() -> None:
    config = ExperimentConfig(challenger_share=0.2)
    with pytest.raises(AttributeError):
        config.challenger_share = 0.9  # type: ignore[misc]
