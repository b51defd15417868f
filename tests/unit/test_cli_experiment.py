"""``reelrank experiment``: start, status, report and stop on a real MLflow registry (SQLite
in a temporary home) with feedback rows in the lake whose effect is known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from models.registry import CHALLENGER, CHAMPION, alias_version, client
from reelrank.cli import ExitCode, app
from reelrank.experiment import with_experiment
from reelrank.settings import Settings, get_settings
from serving.experiments import assign_arm
from tests.unit.test_cli import WIDE, _register_tiny_rankers

pytestmark = pytest.mark.unit
runner = CliRunner()
DAY0 = pd.Timestamp("2025-07-01", tz="UTC")


def _invoke(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    out = runner.invoke(app, list(args), env={**WIDE, **env})
    if out.exception and not isinstance(out.exception, SystemExit):
        raise out.exception
    return out.exit_code, out.stdout, out.stderr


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, dict[str, str]]:
    """A home whose registry holds v1 (champion) and v2 (challenger) of a tiny ranker."""
    for var in ("REELRANK_SERVING__CHALLENGER_SHARE", "REELRANK_SERVING__EXPERIMENT_SALT"):
        monkeypatch.delenv(var, raising=False)
    s = get_settings(home=tmp_path / "h")
    _register_tiny_rankers(s, 2)
    return s, {"REELRANK_HOME": str(s.home)}


def _aliases(s: Settings) -> None:
    c = client(s)
    c.set_registered_model_alias(s.ranker_model_name, CHAMPION, "1")
    c.set_registered_model_alias(s.ranker_model_name, CHALLENGER, "2")


def _feedback(s: Settings, salt: str, share: float, lift: float, days: int = 2) -> None:
    """Feedback rows in the lake: 1200 users split as serving splits them, two requests of
    four impressions a day; an impression has value with probability 0.3 (champion) or
    0.3 + lift (challenger)."""
    rng = np.random.default_rng(0)
    users = [f"u{i:05d}" for i in range(1200)]
    arms = np.array([assign_arm(u, share, salt) for u in users])
    for d in range(days):
        day = DAY0 + pd.Timedelta(days=d)
        u = np.repeat(np.arange(len(users)), 8)
        p = np.where(arms[u] == "challenger", 0.3 + lift, 0.3)
        value = rng.random(len(u)) < p
        rows = pd.DataFrame(
            {
                "event_id": [f"e{d}-{i}" for i in range(len(u))],
                "request_id": [f"r{d}-{r}" for r in np.repeat(np.arange(len(users) * 2), 4)],
                "ts": day + pd.Timedelta(hours=10),
                "user_id": np.array(users)[u],
                "video_id": "v1",
                "completed": value,
                "liked": False,
                "shared": False,
                "skipped": ~value & (rng.random(len(u)) < 0.4),
                "arm": arms[u],
            }
        )
        part = s.lake_dir / "feedback" / f"day={day.date()}"
        part.mkdir(parents=True, exist_ok=True)
        rows.to_parquet(part / "part-0.parquet", index=False)


def test_start_refuses_without_a_challenger_alias(home) -> None:
    s, env = home
    client(s).set_registered_model_alias(s.ranker_model_name, CHAMPION, "1")
    code, _, err = _invoke(env, "experiment", "start", "--share", "0.1", "--salt", "exp-1")
    assert code == ExitCode.FAILED
    assert "no challenger alias" in err and "Traceback" not in err
    code, out, _ = _invoke(env, "--json", "experiment", "start", "--share", "0.1", "--salt", "x")
    assert code == ExitCode.FAILED and "no challenger alias" in json.loads(out)["error"]
    assert not (s.home / "experiments" / "exp-1.json").exists()


def test_start_records_the_experiment_and_serving_follows_its_split(home) -> None:
    s, env = home
    _aliases(s)
    code, out, err = _invoke(
        env,
        "--json",
        "experiment",
        "start",
        "--share",
        "0.2",
        "--salt",
        "exp-1",
        "--day",
        "2025-07-01",
    )
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["champion_version"], doc["challenger_version"]) == ("1", "2")
    record = json.loads((s.home / "experiments" / "exp-1.json").read_text())
    assert record["share"] == 0.2 and record["start_day"] == "2025-07-01"
    assert record["status"] == "running"
    # serving's split while it runs: the command line's settings carry it
    live = with_experiment(get_settings(home=s.home))
    assert (live.serving.challenger_share, live.serving.experiment_salt) == (0.2, "exp-1")
    assert live.to_env()["REELRANK_SERVING__CHALLENGER_SHARE"] == "0.2"
    # one experiment at a time, and a salt is never reused
    code, _, err = _invoke(env, "experiment", "start", "--share", "0.1", "--salt", "exp-2")
    assert code == ExitCode.USAGE and "'exp-1' is running" in err
    code, out, _ = _invoke(env, "--json", "experiment", "status")
    assert code == 0 and json.loads(out)["experiment"]["salt"] == "exp-1"
    code, _, _ = _invoke(env, "experiment", "stop")
    assert code == 0
    assert with_experiment(get_settings(home=s.home)).serving.challenger_share == 0.0
    code, _, err = _invoke(env, "experiment", "start", "--share", "0.1", "--salt", "exp-1")
    assert code == ExitCode.USAGE and "used by an earlier experiment" in err
    code, out, _ = _invoke(env, "--json", "experiment", "status")
    assert code == 0 and json.loads(out)["experiment"] is None


def test_report_ships_a_better_challenger_through_the_registry(home, tmp_path) -> None:
    s, env = home
    _aliases(s)
    start = ["experiment", "start", "--share", "0.5", "--salt", "lift", "--day", "2025-07-01"]
    assert _invoke(env, *start)[0] == 0
    _feedback(s, "lift", 0.5, lift=0.08)
    out_file = tmp_path / "report.html"
    code, out, err = _invoke(env, "--json", "experiment", "report", "--out", str(out_file))
    assert code == 0, err
    doc = json.loads(out)
    assert doc["decision"] == "ship", doc
    assert doc["action"] == "promoted reelrank-ranker v2 to champion"
    assert doc["analysis"]["primary_always_valid"]["low"] > 0
    assert "decision: ship" in out_file.read_text()
    c = client(s)
    assert alias_version(c, s.ranker_model_name, CHAMPION) == "2"
    mv = c.get_model_version(s.ranker_model_name, "2")
    assert mv.tags["experiment_decision"] == "ship" and mv.tags["experiment"] == "lift"
    assert mv.tags["promoted_by"] == "experiment lift"
    logged = [f.path for f in c.list_artifacts(mv.run_id, "experiments/lift")]
    assert logged == ["experiments/lift/report.html"]
    # a shipped experiment is over: serving's split ends with it
    assert json.loads(_invoke(env, "--json", "experiment", "status")[1])["experiment"] is None
    record = json.loads((s.home / "experiments" / "lift.json").read_text())
    assert record["status"] == "shipped" and record["decision"] == "ship"


def test_with_manual_approval_a_ship_decision_is_only_a_recommendation(home) -> None:
    s, env = home
    _aliases(s)
    env = {**env, "REELRANK_GATE__MANUAL_APPROVAL": "true"}
    start = ["experiment", "start", "--share", "0.5", "--salt", "held", "--day", "2025-07-01"]
    assert _invoke(env, *start)[0] == 0
    _feedback(s, "held", 0.5, lift=0.08)
    code, out, err = _invoke(env, "experiment", "report")
    assert code == 0, err
    assert "ship" in out and "reelrank models promote 2" in out
    c = client(s)
    assert alias_version(c, s.ranker_model_name, CHAMPION) == "1"
    assert c.get_model_version(s.ranker_model_name, "2").tags["experiment_decision"] == "ship"
    assert (s.home / "experiments" / "held" / "report-2025-07-02.html").is_file()


def test_report_without_data_says_what_to_do(home) -> None:
    s, env = home
    _aliases(s)
    assert _invoke(env, "experiment", "start", "--share", "0.5", "--salt", "e")[0] == 0
    code, _, err = _invoke(env, "experiment", "report")
    assert code == ExitCode.FAILED and "experiment simulate --days" in err
    code, _, err = _invoke(env, "experiment", "simulate", "--days", "2")
    assert code == ExitCode.USAGE and "do not fit" in err


class _Split:
    """The oracle's feed for the challenger arm, a random one for the champion's, each user's
    arm as serving assigns it."""

    def __init__(self, world, day_idx: int, salt: str, share: float) -> None:
        from tests.unit.test_closed_loop import OraclePolicy, RandomPolicy

        self.arms = {
            "challenger": OraclePolicy(world, day_idx, "challenger"),
            "champion": RandomPolicy(world, day_idx, "champion"),
        }
        self.salt, self.share = salt, share

    def __call__(self, user_id: str, k: int, surface: str, request_id: str):
        return self.arms[assign_arm(user_id, self.share, self.salt)](
            user_id, k, surface, request_id
        )


def test_report_on_closed_loop_days_sets_the_oracle_truth_beside_the_estimate(home) -> None:
    """Days served by a split policy in a simulated world: the challenger serves the oracle's
    own feed, so the truth is known to favour it; the report reads the stored days."""
    from experiments.closed_loop import serve_day
    from experiments.lifecycle import current, store_days
    from ingest.simulator import generate_world
    from tests.unit.test_closed_loop import SIM

    s, env = home
    _aliases(s)
    env = {**env, "REELRANK_GATE__MANUAL_APPROVAL": "true"}
    start = ["experiment", "start", "--share", "0.5", "--salt", "sim", "--day", "2025-06-02"]
    assert _invoke(env, *start)[0] == 0
    world = generate_world(SIM)
    served = [serve_day(world, d, _Split(world, d, "sim", 0.5)) for d in (1, 2)]
    store_days(s, current(s), served)
    code, out, err = _invoke(env, "--json", "experiment", "report")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["source"] == "2 simulated days" and doc["decision"] == "ship", doc
    truth = doc["analysis"]["truth_diff"]
    assert truth["mean_utility"] > 0 and truth["expected_completion"] > 0
    # the logged difference of value per request, estimated over users, is the truth's own
    primary = doc["analysis"]["primary"]
    assert primary["low"] < truth["value_per_request"] < primary["high"]
    page = Path(doc["report"]).read_text()
    assert "Oracle truth" in page and "2025-06-03" in page
