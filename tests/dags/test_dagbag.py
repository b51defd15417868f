"""The DAG files parse, and each carries the operational settings we promise."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.dags
DAGS = Path(__file__).resolve().parents[2] / "dags"
EXPECTED = {
    "reelrank_features",
    "reelrank_training",
    "reelrank_deploy",
    "reelrank_monitoring",
    "reelrank_experiment",
}


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow")))
        mp.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS))
        mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        # Airflow puts the DAG bundle's folder on sys.path when it parses it; do the same
        mp.syspath_prepend(str(DAGS))
        from airflow.dag_processing.dagbag import DagBag

        yield DagBag(dag_folder=str(DAGS))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_the_dags_exist(dagbag):
    assert set(dagbag.dags) == EXPECTED


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_operational_settings(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.catchup is False
    assert "reelrank" in dag.tags and len(dag.tags) >= 2
    assert dag.doc_md and len(dag.doc_md) > 80
    assert all(t.retries >= 1 for t in dag.tasks)


def test_assets_wire_the_loop(dagbag):
    def producers(uri: str) -> set[str]:
        return {
            d
            for d, dag in dagbag.dags.items()
            for t in dag.tasks
            for o in t.outlets
            if o.uri == uri
        }

    def uris(condition) -> set[str]:
        if hasattr(condition, "objects"):  # AssetAny / AssetAll
            return set().union(*(uris(o) for o in condition.objects))
        return {condition.uri}

    def consumers(uri: str) -> set[str]:
        return {
            d
            for d, dag in dagbag.dags.items()
            if getattr(dag.timetable, "asset_condition", None) is not None
            and uri in uris(dag.timetable.asset_condition)
        }

    features = "reelrank://features/daily"
    promoted = "reelrank://models/reelrank-ranker/champion"
    drift = "reelrank://monitoring/drift-detected"
    assert producers(features) == {"reelrank_features"}
    assert producers(promoted) == {"reelrank_training", "reelrank_experiment"}
    assert producers(drift) == {"reelrank_monitoring"}
    assert consumers(features) == {"reelrank_training"}
    assert consumers(drift) == {"reelrank_training"}
    assert consumers(promoted) == {"reelrank_deploy"}


def test_dag_files_are_wiring_only():
    """Heavy imports belong inside tasks: DAG files import only airflow, pendulum, assets."""
    allowed = ("from __future__", "import pendulum", "from airflow", "from assets", "from typing")
    for path in DAGS.glob("reelrank_*.py"):
        top_level = [
            line for line in path.read_text().splitlines() if line.startswith(("import ", "from "))
        ]
        assert all(line.startswith(allowed) for line in top_level), (path.name, top_level)


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_every_task_fails_fast_on_a_data_error(dagbag, dag_id):
    """A data error fails the same way on every try: Airflow must not retry it (before: a
    holdout day without positives was retried three times)."""
    from dags.assets import fails_fast_on_data_errors

    for t in dagbag.dags[dag_id].tasks:
        assert fails_fast_on_data_errors(t.python_callable), t.task_id


def test_a_data_error_in_a_task_is_not_retried(dagbag, tmp_path, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setenv("REELRANK_HOME", str(tmp_path / "empty"))
    datasets = dagbag.dags["reelrank_training"].task_dict["datasets"].python_callable
    with pytest.raises(AirflowFailException, match="not retried") as err:
        datasets("2025-07-09")  # an empty home: no features to train on
    assert str(err.value).startswith("reelrank.errors.MissingDataError: ")


def test_the_experiment_dag_skips_while_no_experiment_runs(dagbag, tmp_path, monkeypatch):
    from airflow.sdk.exceptions import AirflowSkipException

    monkeypatch.setenv("REELRANK_HOME", str(tmp_path / "empty"))
    report = dagbag.dags["reelrank_experiment"].task_dict["report"].python_callable
    with pytest.raises(AirflowSkipException, match="no experiment is running"):
        report()
