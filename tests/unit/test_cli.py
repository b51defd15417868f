"""The command line as people and scripts meet it: help, exit codes, quiet and JSON modes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reelrank.airflow_runner import TaskLogFollower, _failure_details, dag_task_ids
from reelrank.cli import EPILOG, ExitCode, app
from reelrank.summary import DataSummary, LoopSummary, RegistrySummary

pytestmark = pytest.mark.unit
runner = CliRunner()
DATA = Path(__file__).parent / "data"
WIDE = {"COLUMNS": "200"}

# every command, and words its --help must use to explain it
COMMANDS = {
    ("simulate",): ("lake", "--through"),
    ("features",): ("Feast", "caption embeddings", "materializ"),
    ("train",): ("ranker", "gate", "MLflow", "--holdout"),
    ("monitor",): ("drift", "exit 3", "--day"),
    ("serve",): ("BentoML", "--port"),
    ("dag",): ("Airflow", "reelrank_training"),
    ("demo",): ("whole loop", "summary", "--scenario"),
    ("run",): ("interaction log", "--dataset", "--path"),
    ("up",): ("Airflow", "MLflow", "127.0.0.1", "--json"),
    ("down",): ("pid", "--json"),
    ("status",): ("serve", "exit 4", "--json"),
    ("logs",): ("logs", "--lines", "--json"),
    ("models",): ("champion", "list", "promote", "rollback"),
    ("models", "list"): ("versions", "gate", "--model"),
    ("models", "promote"): ("champion", "--why", "VERSION"),
    ("models", "rollback"): ("previous champion", "--why"),
    ("experiment",): ("A/B", "start", "report", "stop"),
    ("experiment", "start"): ("challenger alias", "--share", "--salt", "serving"),
    ("experiment", "status"): ("decision", "--salt"),
    ("experiment", "simulate"): ("simulated", "oracle", "--days"),
    ("experiment", "report"): ("decision", "always-valid", "MLflow", "manual approval", "--out"),
    ("experiment", "stop"): ("split", "--salt"),
}


def run_cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reelrank.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def home_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "REELRANK_HOME": str(tmp_path / "h"), **WIDE, **extra}


def test_root_help_lists_every_command_the_modes_and_the_exit_codes():
    out = runner.invoke(app, ["--help"], env=WIDE)
    assert out.exit_code == 0
    for (cmd, *_), _words in COMMANDS.items():
        assert cmd in out.stdout
    for words in ("--json", "--quiet", "Exit codes", "bad usage", "drift", "does not answer"):
        assert words in out.stdout
    # the table in the epilog is the one the code uses
    for code in ExitCode:
        assert f"  {int(code)}  " in EPILOG


@pytest.mark.parametrize("cmd", list(COMMANDS), ids=" ".join)
def test_every_command_explains_itself(cmd):
    out = runner.invoke(app, [*cmd, "--help"], env=WIDE)
    assert out.exit_code == 0, out.output
    for word in COMMANDS[cmd]:
        assert word in out.stdout, f"{' '.join(cmd)} --help does not mention {word!r}"


@pytest.mark.parametrize(
    "args",
    [
        ["teleport"],
        ["train", "--epochs", "3"],
        ["train", "--holdout", "2025-13-45"],
        ["demo", "--scenario", "meteor"],
        ["run", "--dataset", "movielens", "--path", "x"],
        ["--json", "--quiet", "status"],
    ],
    ids=["unknown command", "unknown option", "bad day", "bad choice", "bad dataset", "modes"],
)
def test_usage_errors_exit_2(args):
    out = runner.invoke(app, args, env=WIDE)
    assert out.exit_code == ExitCode.USAGE, out.output
    assert "Traceback" not in out.output


def test_a_usage_error_in_json_mode_is_a_json_error():
    out = runner.invoke(app, ["--json", "train", "--holdout", "2025-13-45"], env=WIDE)
    assert out.exit_code == 2
    doc = json.loads(out.stdout)
    assert "is not a day" in doc["error"] and doc["exit_code"] == 2


def test_json_mode_prints_exactly_one_document(tmp_path):
    env = home_env(tmp_path)
    for args in (["--json", "status"], ["status", "--json"], ["--json", "down"]):
        out = run_cli(*args, env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        doc = json.loads(out.stdout)  # the whole of stdout is one JSON document
        assert isinstance(doc, dict)
    services = json.loads(run_cli("--json", "status", env=env).stdout)["services"]
    assert set(services) >= {"airflow-api-server", "airflow-scheduler", "mlflow-ui"}
    assert not any(s["running"] for s in services.values())


def test_quiet_mode_prints_nothing_when_there_is_nothing_to_hand_on(tmp_path):
    env = home_env(tmp_path)
    for args in (["-q", "status"], ["--quiet", "down"]):
        out = run_cli(*args, env=env)
        assert out.returncode == 0, out.stderr
        assert out.stdout == "" and out.stderr == ""
    # without -q the same commands talk to people
    assert "nothing was running" in run_cli("down", env=env).stdout


def test_simulate_in_json_mode_reports_what_it_wrote_and_only_that(tmp_path):
    env = home_env(
        tmp_path,
        REELRANK_SIM__N_USERS="50",
        REELRANK_SIM__N_VIDEOS="100",
        REELRANK_SIM__N_CREATORS="5",
        REELRANK_SIM__DAYS="3",
    )
    out = run_cli("--json", "simulate", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["written"]["impressions"] == ["2025-06-01", "2025-06-02", "2025-06-03"]
    assert doc["impressions_rows"] > 0
    assert (tmp_path / "h" / "lake" / "impressions" / "day=2025-06-03").is_dir()
    # a second run finds every day in the lake: a table for people, nothing when quiet
    again = run_cli("simulate", env=env)
    assert again.returncode == 0 and "all already in the lake" in again.stdout
    quiet = run_cli("-q", "simulate", env=env)
    assert quiet.returncode == 0 and quiet.stdout == ""


def test_an_expected_failure_is_one_message_and_exit_1(tmp_path):
    env = home_env(tmp_path)
    missing = str(tmp_path / "nonexistent.csv")
    out = run_cli("run", "--dataset", "interactions", "--path", missing, env=env)
    assert out.returncode == ExitCode.FAILED
    assert "error:" in out.stderr and "does not exist" in out.stderr
    assert out.stdout == ""
    assert "Traceback" not in out.stdout + out.stderr
    js = run_cli("--json", "run", "--dataset", "interactions", "--path", missing, env=env)
    assert js.returncode == ExitCode.FAILED
    doc = json.loads(js.stdout)
    assert "does not exist" in doc["error"] and doc["exit_code"] == 1
    assert "Traceback" not in js.stdout + js.stderr


def test_missing_data_is_one_clear_line_and_exit_1(tmp_path):
    out = run_cli("train", env=home_env(tmp_path))
    assert out.returncode == 1
    assert "error: no feature tables" in out.stderr
    assert "Traceback" not in out.stdout + out.stderr


def test_run_explains_its_options_and_refuses_bad_input_in_one_line(tmp_path):
    out = runner.invoke(app, ["run", "--help"], env=WIDE)
    assert out.exit_code == 0
    for option in ("--dataset", "--path", "--items", "--user-col", "--ts-unit", "--rating-col"):
        assert option in out.output
    env = home_env(tmp_path)
    missing = run_cli("run", "--dataset", "kuairand", "--path", str(tmp_path / "nope"), env=env)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    log = tmp_path / "log.csv"
    log.write_text("user,item,when\nu1,i1,2024-01-01T00:00:00Z\n")
    wrong = run_cli(
        "run", "--dataset", "interactions", "--path", str(log), "--user-col", "uid", env=env
    )
    assert wrong.returncode == 1 and "uid" in wrong.stderr, wrong.stdout + wrong.stderr
    assert "Traceback" not in missing.stdout + missing.stderr + wrong.stdout + wrong.stderr


def test_an_unknown_ts_unit_is_a_usage_error_exit_2(tmp_path):
    """``--ts-unit minutes``: exit 2 and one message naming the value and the choices."""
    log = tmp_path / "log.csv"
    log.write_text("user_id,video_id,ts\nu1,v1,1\n")
    out = run_cli(
        "run",
        "--dataset",
        "interactions",
        "--path",
        str(log),
        "--ts-unit",
        "minutes",
        env={**home_env(tmp_path), **WIDE},
    )
    assert out.returncode == 2, out.stdout + out.stderr
    said = [ln for ln in out.stderr.splitlines() if "minutes" in ln]
    assert len(said) == 1 and "'auto', 's', 'ms', 'iso'" in said[0], out.stderr
    assert "Traceback" not in out.stdout + out.stderr


def _reelrank_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("REELRANK_")}


@pytest.fixture
def loop_settings(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """``run`` and ``demo`` stopped where the loop would start: what they hand it (the
    settings, and the REELRANK_* environment at that moment)."""
    import reelrank.demo

    seen: dict[str, object] = {}

    def loop(settings, console, live=None):
        seen["settings"], seen["env"] = settings, _reelrank_env()
        settings.home.mkdir(parents=True, exist_ok=True)
        return LoopSummary(
            data=DataSummary(impressions=0, users=0, videos=0, source="test", days="-"),
            metrics={},
            registry=RegistrySummary(
                model="m", challenger=None, champion=None, gate=None, tracking_uri=""
            ),
            dag_seconds={},
        )

    monkeypatch.setattr(reelrank.demo, "run_dataset", loop)
    monkeypatch.setattr(reelrank.demo, "run_demo", loop)
    return seen


def test_run_builds_its_settings_and_leaves_the_environment_alone(
    tmp_path, monkeypatch, loop_settings
):
    from reelrank.settings import get_settings

    monkeypatch.setenv("REELRANK_HOME", str(tmp_path / "h"))  # the user's home wins
    monkeypatch.setenv("REELRANK_DATA__LABEL_COL", "liked")  # no option given: kept
    monkeypatch.setenv("REELRANK_DATA__USER_COL", "someone")  # an option given: it wins
    before = dict(os.environ)
    log = tmp_path / "views.csv"
    args = ["--user-col", "uid", "--rating-col", "stars", "--like-threshold", "0"]
    args += ["--ts-unit", "ms", "--text-cols", "title", "--text-cols", "tags", "--sep", ";"]
    out = runner.invoke(
        app,
        ["run", "--dataset", "interactions", "--path", str(log), *args, "--objective", "heads"],
        env=WIDE,
    )
    assert out.exit_code == 0, out.output
    assert dict(os.environ) == before
    assert loop_settings["env"] == {k: v for k, v in before.items() if k.startswith("REELRANK_")}
    s = loop_settings["settings"]
    assert (s.dataset, s.home, s.training.objective) == ("interactions", tmp_path / "h", "heads")
    d = s.data
    assert (d.path, d.user_col, d.rating_col, d.label_col) == (log, "uid", "stars", "liked")
    assert (d.like_threshold, d.ts_unit, d.text_cols, d.sep) == (0.0, "ms", ["title", "tags"], ";")
    # child processes (Airflow tasks, BentoML workers) rebuild exactly these settings
    for key in [k for k in os.environ if k.startswith("REELRANK_")]:
        monkeypatch.delenv(key)
    for key, value in s.to_env().items():
        monkeypatch.setenv(key, value)
    assert get_settings().model_dump(mode="json") == s.model_dump(mode="json")


def test_run_gives_each_dataset_a_home_and_only_its_own_options(
    tmp_path, monkeypatch, loop_settings
):
    monkeypatch.delenv("REELRANK_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    logs = tmp_path / "logs"
    out = runner.invoke(
        app, ["run", "--dataset", "kuairand", "--path", str(logs), "--user-col", "uid"], env=WIDE
    )
    assert out.exit_code == 0, out.output
    assert "REELRANK_HOME" not in os.environ
    s = loop_settings["settings"]
    assert (s.dataset, s.home, s.data.path) == ("kuairand", tmp_path / "var/kuairand-logs", logs)
    assert s.data.user_col == "user_id"  # an interactions option: not the KuaiRand log's
    assert s.training.objective == "value"


def test_demo_sets_its_scenario_and_home_in_the_settings_only(tmp_path, monkeypatch, loop_settings):
    monkeypatch.delenv("REELRANK_HOME", raising=False)
    monkeypatch.setenv("REELRANK_SIM__N_USERS", "300")
    monkeypatch.chdir(tmp_path)
    before = dict(os.environ)
    out = runner.invoke(app, ["demo", "--scenario", "topic-surge"], env=WIDE)
    assert out.exit_code == 0, out.output
    assert dict(os.environ) == before and loop_settings["env"] == _reelrank_env()
    s = loop_settings["settings"]
    assert (s.sim.scenario, s.sim.n_users) == ("topic_surge", 300)
    assert s.home == tmp_path / "var/scenario-topic-surge"
    assert s.to_env()["REELRANK_SIM__SCENARIO"] == "topic_surge"


def _register_tiny_rankers(s, n: int) -> list[Path]:
    """``n`` registered versions of a real (tiny) XGBoost ranker over serving's features;
    returns each version's model file."""
    import mlflow
    import numpy as np
    import pandas as pd
    import xgboost as xgb

    from features.cross import MODEL_FEATURES
    from models.registry import configure_mlflow

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.random((40, len(MODEL_FEATURES))), columns=list(MODEL_FEATURES))
    booster = xgb.train({"max_depth": 2}, xgb.DMatrix(x, label=rng.random(40)), 2)
    files = []
    with mlflow.start_run(experiment_id=configure_mlflow(s)):
        for _ in range(n):
            info = mlflow.xgboost.log_model(
                booster, name="model", registered_model_name=s.ranker_model_name
            )
            where = mlflow.get_logged_model(info.model_id).artifact_location
            files.append(Path(where.removeprefix("file://")) / "model.ubj")
    return files


def test_models_promote_and_rollback_refuse_a_version_that_cannot_load(tmp_path):
    """A version whose model file was overwritten with random bytes: promoting it, or rolling
    back to it, is refused with the version, the file and the error; no alias moves."""
    from models.registry import alias_version, client
    from reelrank.settings import get_settings

    s = get_settings(home=tmp_path / "h")
    c = client(s)
    name = s.ranker_model_name
    files = _register_tiny_rankers(s, 2)
    files[1].write_bytes(os.urandom(files[1].stat().st_size))
    env = home_env(tmp_path)
    out = run_cli("models", "promote", "2", env=env)
    assert out.returncode == ExitCode.FAILED, out.stdout + out.stderr
    assert "refusing to promote" in out.stderr and "v2" in out.stderr, out.stderr
    assert str(files[1]) in out.stderr.replace("\n", "") and "Traceback" not in out.stderr
    assert alias_version(c, name, "champion") is None
    assert run_cli("models", "promote", "1", env=env).returncode == 0
    c.set_model_version_tag(name, "1", "previous_champion", "2")
    back = run_cli("--json", "models", "rollback", env=env)
    assert back.returncode == ExitCode.FAILED, back.stdout + back.stderr
    assert "refusing to roll back: reelrank-ranker v2" in json.loads(back.stdout)["error"]
    assert alias_version(c, name, "champion") == "1"


def test_models_promote_moves_the_alias_and_refuses_unknown_versions(tmp_path):
    from models.registry import client
    from reelrank.settings import get_settings

    s = get_settings(home=tmp_path / "h")
    c = client(s)
    _register_tiny_rankers(s, 2)
    env = home_env(tmp_path)
    promoted = run_cli("--json", "models", "promote", "2", "--why", "test", env=env)
    assert promoted.returncode == 0, promoted.stderr
    assert json.loads(promoted.stdout)["version"] == "2"
    assert str(c.get_model_version_by_alias(s.ranker_model_name, "champion").version) == "2"
    bad = run_cli("models", "promote", "9", env=env)
    assert bad.returncode == 1 and "no version '9'" in bad.stderr
    bad_json = run_cli("--json", "models", "promote", "9", env=env)
    assert bad_json.returncode == 1 and "no version '9'" in json.loads(bad_json.stdout)["error"]
    listing = run_cli("models", "list", env=env)
    assert listing.returncode == 0 and "champion" in listing.stdout
    versions = json.loads(run_cli("--json", "models", "list", env=env).stdout)
    assert versions["aliases"] == {"champion": "2"} and len(versions["versions"]) == 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_status_exits_4_when_a_started_service_does_not_answer(tmp_path):
    """A live process recorded as the MLflow UI, with nothing listening on its port: just
    started, it is "starting" (past up's start-up wait it would be "not answering")."""
    env = home_env(tmp_path, REELRANK_UI__MLFLOW_PORT=str(_free_port()))
    run_dir = tmp_path / "h" / "run"
    run_dir.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (run_dir / "mlflow-ui.pid").write_text(str(sleeper.pid))
        out = run_cli("status", env=env)
        assert out.returncode == ExitCode.UNAVAILABLE, out.stdout + out.stderr
        assert "starting: mlflow-ui (pid alive, not healthy yet)" in out.stderr
        js = run_cli("--json", "status", env=env)
        assert js.returncode == ExitCode.UNAVAILABLE
        row = json.loads(js.stdout)["services"]["mlflow-ui"]
        assert row["running"] and not row["answering"] and row["state"] == "starting"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_dag_log_follower_reads_a_real_airflow_run():
    """A log written by ``airflow dags test`` (reelrank_training on a tiny world, absolute
    paths removed), fed in uneven chunks as if it were being written."""
    text = (DATA / "airflow_dags_test_training.log").read_text()
    # the recorded run predates the evaluate_pipeline task: follow it with its own tasks
    tasks = ["holdout_day", "datasets", "retrieval", "train", "gate", "announce"]
    assert dag_task_ids("reelrank_training") == [
        "holdout_day",
        "datasets",
        "retrieval",
        "train",
        "evaluate_pipeline",
        "gate",
        "announce",
    ]
    seen: list[tuple[int, str | None]] = []
    follower = TaskLogFollower(
        "reelrank_training", tasks, lambda p: seen.append((p.n_done, p.running))
    )
    for i in range(0, len(text), 997):
        follower.feed(text[i : i + 997])
    state = follower.state
    assert state.total == 6 and state.n_done == 6 and state.running is None
    assert state.done == ["holdout_day", "retrieval", "datasets", "train", "gate", "announce"]
    assert not state.failed and all(n == 1 for n in state.attempts.values())
    # each task was seen running once, in the order it ran, and the count only grew
    assert [task for _, task in seen if task] == state.done
    assert [n for n, _ in seen] == sorted(n for n, _ in seen)
    assert len(seen) == 2 * len(tasks)  # one report per start and per end


def test_the_dag_log_follower_sees_retries_and_the_failure():
    """A real failing run: the first task raises, is retried twice, then fails the run."""
    text = (DATA / "airflow_dags_test_failed.log").read_text()
    follower = TaskLogFollower("reelrank_training", dag_task_ids("reelrank_training"))
    follower.feed(text)
    assert follower.state.failed == ["holdout_day"]
    assert follower.state.attempts == {"holdout_day": 3}
    task, error = _failure_details(text)
    assert task == "holdout_day"
    assert error is not None and error.startswith("FileNotFoundError: no feature tables")


def test_library_steps_report_progress_through_a_plain_callback(tmp_path):
    """Ingestion and feature computation tell a plain callable how far they are."""
    from features.pipeline import VIEWS, compute_features
    from ingest.pipeline import ingest_simulated
    from reelrank.settings import get_settings

    s = get_settings(
        home=tmp_path / "h", sim={"n_users": 50, "n_videos": 100, "n_creators": 5, "days": 3}
    )
    calls: list[tuple[str, int, int]] = []
    ingest_simulated(s, s.sim.end_date, progress=lambda *a: calls.append(a))
    assert calls[0] == ("simulating days", 0, 3)
    assert [c[1] for c in calls] == [0, 1, 2, 3] and calls[-1][0].startswith("simulating days: ")
    calls.clear()
    compute_features(s, s.sim.end_date, progress=lambda *a: calls.append(a))
    total = 3 * len(VIEWS)
    assert calls[0] == ("feature tables", 0, total) and calls[-1][1:] == (total, total)
    assert {c[0].split(": ")[1].split()[1] for c in calls[1:]} == set(VIEWS)


def test_progress_bars_group_a_step_and_show_what_runs():
    """The rich adapter: one bar per step name, the detail only while the step runs."""
    import io

    from rich.console import Console

    from reelrank.cli import Bars

    bars = Bars(Console(file=io.StringIO(), width=120))
    bars("feature tables: 2025-06-01 user_engagement", 1, 12)
    bars("Feast: apply", 0, 2)
    running = {t.description for t in bars.progress.tasks}
    assert any("2025-06-01 user_engagement" in d for d in running)
    bars("feature tables", 12, 12)
    tasks = {t.description: t for t in bars.progress.tasks}
    assert len(tasks) == 2
    done = next(t for d, t in tasks.items() if "feature tables" in d)
    assert done.finished and "user_engagement" not in done.description


def test_serve_on_a_port_another_server_answers_is_port_in_use(tmp_path):
    """Another HTTP server on the port answered the health check, so `serve` used to print
    success for a server that never bound: it must fail (exit 4) and say the port is taken."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Ok(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    other = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    port = other.server_address[1]
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        out = run_cli("--json", "serve", "--port", str(port), env=home_env(tmp_path))
    finally:
        other.shutdown()
        other.server_close()
    assert out.returncode == ExitCode.UNAVAILABLE, out.stdout + out.stderr
    assert f"port {port}" in out.stdout and "in use" in out.stdout


def test_a_data_error_that_failed_fast_reads_as_the_error_itself():
    text = (
        "[DAG TEST] starting task_id=datasets\n"
        "airflow.sdk.exceptions.AirflowFailException: reelrank.errors.InvalidDataError: no "
        "positive engagements on the holdout day 2025-07-09 (a data error: not retried)\n"
    )
    task, error = _failure_details(text)
    assert task == "datasets"
    assert error == (
        "reelrank.errors.InvalidDataError: no positive engagements on the holdout day "
        "2025-07-09 (a data error: not retried)"
    )


def test_run_refuses_a_log_whose_holdout_cannot_be_judged_before_any_dag_runs(tmp_path):
    from tests.unit.test_adapters import _sparse_log

    path = tmp_path / "ratings.csv"
    _sparse_log(path)
    env = home_env(tmp_path)
    cols = ["--user-col", "user", "--item-col", "item", "--ts-col", "when", "--rating-col", "stars"]
    out = run_cli("run", "--dataset", "interactions", "--path", str(path), *cols, env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "the log cannot hold out and check a day: the holdout day" in out.stderr
    assert "--order-col when" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "h" / "airflow").exists()  # refused before Airflow was set up
