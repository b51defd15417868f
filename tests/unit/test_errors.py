"""Expected failures are the ``reelrank.errors`` family and nothing else: each member exits with
its code and one message (a JSON object under ``--json``); any other exception is a bug and
keeps its traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reelrank import errors
from reelrank.cli import ExitCode, app

pytestmark = pytest.mark.unit
runner = CliRunner()
WIDE = {"COLUMNS": "200"}


def _family() -> list[type[errors.ReelrankError]]:
    """Every expected failure: the module's classes and the stage packages' own members."""
    from ingest.lake import BatchRejected
    from ingest.pipeline import WorldMismatch
    from ingest.sources.common import AdapterError
    from models.retriever import BundleError
    from reelrank.airflow_api import DagRunError
    from reelrank.airflow_runner import DagRunFailed
    from reelrank.cluster import ServerUnavailable
    from serving.feedback import FeedbackRejected
    from training.review import ReviewError

    own = [
        v
        for v in vars(errors).values()
        if isinstance(v, type) and issubclass(v, errors.ReelrankError)
    ]
    members = [
        AdapterError,
        BatchRejected,
        WorldMismatch,
        DagRunError,
        DagRunFailed,
        ServerUnavailable,
        FeedbackRejected,
        BundleError,
        ReviewError,
    ]
    return own + members


def _raising(cls: type[BaseException]) -> BaseException:
    """An instance of ``cls`` whose message is ``boom``, whatever its constructor wants."""
    from ingest.lake import BatchRejected
    from serving.feedback import FeedbackRejected

    if cls is FeedbackRejected:
        return cls(["boom"])
    if cls is BatchRejected:
        err = BatchRejected.__new__(BatchRejected)
        Exception.__init__(err, "boom")
        return err
    return cls("boom")


def _simulate_raises(monkeypatch: pytest.MonkeyPatch, err: BaseException) -> None:
    """``reelrank simulate`` calls :func:`ingest.pipeline.ingest_simulated`: make it raise."""
    import ingest.pipeline

    def fail(*args: object, **kwargs: object) -> None:
        raise err

    monkeypatch.setattr(ingest.pipeline, "ingest_simulated", fail)


def _env(tmp_path: Path) -> dict[str, str]:
    return {"REELRANK_HOME": str(tmp_path / "h"), **WIDE}


def test_the_exit_codes_are_one_table():
    assert ExitCode is errors.ExitCode
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("cls", _family(), ids=lambda c: c.__name__)
def test_every_expected_failure_is_a_family_member_with_a_known_exit_code(cls):
    assert issubclass(cls, errors.ReelrankError)
    assert cls.exit_code in set(ExitCode) - {ExitCode.OK, ExitCode.STOPPED}


def test_members_keep_the_builtin_their_callers_catch():
    from ingest.lake import BatchRejected
    from ingest.pipeline import WorldMismatch
    from ingest.sources.common import AdapterError
    from models.retriever import BundleError
    from reelrank.airflow_runner import DagRunFailed
    from reelrank.cluster import ServerUnavailable
    from serving.feedback import FeedbackRejected
    from training.review import ReviewError

    for cls in (AdapterError, BatchRejected, WorldMismatch, FeedbackRejected, BundleError):
        assert issubclass(cls, errors.DataError) and issubclass(cls, ValueError)
    assert issubclass(ReviewError, ValueError)
    assert issubclass(DagRunFailed, errors.StageFailed) and issubclass(DagRunFailed, RuntimeError)
    assert issubclass(ServerUnavailable, errors.ServiceUnavailable)
    assert issubclass(ServerUnavailable, RuntimeError)
    assert issubclass(errors.MissingDataError, FileNotFoundError)
    assert issubclass(errors.ModelNotFound, LookupError)


@pytest.mark.parametrize("cls", _family(), ids=lambda c: c.__name__)
def test_a_family_member_is_its_exit_code_and_one_message(cls, monkeypatch, tmp_path):
    err = _raising(cls)
    _simulate_raises(monkeypatch, err)
    out = runner.invoke(app, ["simulate"], env=_env(tmp_path))
    assert out.exit_code == cls.exit_code, out.output
    assert not isinstance(out.exception, errors.ReelrankError)  # handled, not propagated
    assert "error:" in out.stderr and "boom" in out.stderr
    assert "Traceback" not in out.output
    assert out.stdout == ""
    js = runner.invoke(app, ["--json", "simulate"], env=_env(tmp_path))
    assert js.exit_code == cls.exit_code
    doc = json.loads(js.stdout)
    assert doc["exit_code"] == cls.exit_code and "boom" in doc["error"]


def test_a_dag_failure_names_its_task_and_log_in_json(monkeypatch, tmp_path):
    from reelrank.airflow_runner import DagRunFailed

    err = DagRunFailed(
        "the log's tail", dag_id="reelrank_training", log_path=tmp_path / "x.log", task="gate"
    )
    _simulate_raises(monkeypatch, err)
    js = runner.invoke(app, ["--json", "simulate"], env=_env(tmp_path))
    assert js.exit_code == ExitCode.FAILED
    doc = json.loads(js.stdout)
    assert doc["error"] == err.brief and "task gate" in doc["error"]
    assert doc["dag_id"] == "reelrank_training" and doc["log"] == str(tmp_path / "x.log")


@pytest.mark.parametrize("exc", [ValueError, LookupError, FileNotFoundError, RuntimeError])
def test_a_plain_exception_is_a_bug_and_keeps_its_traceback(exc, monkeypatch, tmp_path):
    """Not one message and exit 1: the exception itself leaves the command."""
    _simulate_raises(monkeypatch, exc("a bug"))
    out = runner.invoke(app, ["simulate"], env=_env(tmp_path))
    assert type(out.exception) is exc
    assert "error: a bug" not in out.output
    js = runner.invoke(app, ["--json", "simulate"], env=_env(tmp_path))
    assert type(js.exception) is exc
    assert '"error"' not in js.stdout


def test_an_mlflow_error_is_not_recognised_by_its_name(monkeypatch, tmp_path):
    """An MLflow "not found" that no call site translated is a bug, not an expected failure."""
    from mlflow.exceptions import MlflowException

    _simulate_raises(monkeypatch, MlflowException("Registered Model with name=x not found"))
    out = runner.invoke(app, ["simulate"], env=_env(tmp_path))
    assert isinstance(out.exception, MlflowException)


def _run_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reelrank.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "REELRANK_HOME": str(home), **WIDE},
        timeout=180,
        check=False,
    )


def test_an_unknown_version_on_an_empty_registry_is_exit_1_naming_it(tmp_path):
    home = tmp_path / "h"
    out = _run_cli("models", "promote", "99", home=home)
    assert out.returncode == ExitCode.FAILED, out.stdout + out.stderr
    assert "error:" in out.stderr and "'99'" in out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    js = _run_cli("--json", "models", "promote", "99", home=home)
    assert js.returncode == ExitCode.FAILED
    doc = json.loads(js.stdout)
    assert "'99'" in doc["error"] and doc["exit_code"] == 1
    listing = _run_cli("--json", "models", "list", home=home)
    assert listing.returncode == ExitCode.FAILED, listing.stdout + listing.stderr
    assert "not registered" in json.loads(listing.stdout)["error"]
    assert "Traceback" not in listing.stdout + listing.stderr


def test_a_bento_of_an_unknown_version_is_exit_1_naming_it(tmp_path):
    out = _run_cli("--json", "bento", "--version", "99", home=tmp_path / "h")
    assert out.returncode == ExitCode.FAILED, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert "'99'" in doc["error"] and "not found" in doc["error"]
    assert "Traceback" not in out.stdout + out.stderr


def test_a_bad_setting_is_bad_usage_in_one_line(tmp_path):
    env = {**_env(tmp_path), "REELRANK_SIM__DAYS": "not-a-number"}
    out = runner.invoke(app, ["simulate"], env=env)
    assert out.exit_code == ExitCode.USAGE, out.output
    assert "error:" in out.stderr and "REELRANK_SIM__DAYS" in out.stderr
    assert not isinstance(out.exception, ValueError)


@pytest.mark.parametrize(
    "cls", [errors.MissingDataError, errors.ModelNotFound, errors.ServiceTimeout]
)
def test_a_dag_run_failure_names_a_family_member_from_its_traceback(cls):
    """A task's traceback ends with the member's qualified name; the brief shows it."""
    import traceback

    from reelrank.airflow_runner import _failure_details

    last = traceback.format_exception_only(cls("no feature tables"))[-1].strip()
    log = "[DAG TEST] starting task_id=holdout_day map_index=-1\nTraceback ...\n" + last
    assert _failure_details(log) == (
        "holdout_day",
        f"reelrank.errors.{cls.__name__}: no feature tables",
    )
