"""Each DAG run for real with ``airflow dags test`` on a tiny world, and what it left behind."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pandas as pd
import pytest

from feature_repo.columns import USER_COLUMNS, VIDEO_COLUMNS
from features.pipeline import VIEWS, table_path
from ingest.lake import partition_days, read_table
from models.registry import CHALLENGER, CHAMPION, alias_version, client
from reelrank.airflow_runner import DagRunFailed, migrate, run_dag

pytestmark = [pytest.mark.integration, pytest.mark.dags]
FEATURES = "reelrank://features/daily"
PROMOTED = "reelrank://models/reelrank-ranker/champion"
MODEL_INPUTS = (*USER_COLUMNS, *VIDEO_COLUMNS)
DRIFT = "reelrank://monitoring/drift-detected"


def test_features_dag_fills_lake_tables_and_online_store(loop):
    s = loop.settings
    days = partition_days(s.lake_dir, "impressions")
    assert days[0] == s.sim.start_date and days[-1] == s.sim.end_date
    assert len(days) == s.sim.days
    assert all(table_path(s, v, d).exists() for v in VIEWS for d in days)
    from features.store import feature_store

    store = feature_store(s)
    out = store.get_online_features(
        features=["user_engagement:imp_7d", "video_stats:v_imp_7d"],
        entity_rows=[{"user_id": "u000001", "video_id": "v000010"}],
    ).to_dict()
    assert out["imp_7d"][0] is not None and out["v_imp_7d"][0] is not None
    assert (FEATURES, "reelrank_features") in loop.asset_events()


def test_features_dag_embeds_every_video_once_with_minilm(loop):
    from features.content import CAPTION_DIM, read_content

    s = loop.settings
    videos = read_table(s.lake_dir, "videos")
    content = read_content(s)
    assert set(content["video_id"]) == set(videos["video_id"])
    assert all(len(e) == CAPTION_DIM for e in content["caption_embedding"])
    files = sorted((s.features_dir / "video_content").glob("*.parquet"))
    assert len(files) == len(partition_days(s.lake_dir, "videos"))
    encoders = pd.concat(pd.read_parquet(f, columns=["encoder"]) for f in files)["encoder"]
    assert set(encoders) == {"all-MiniLM-L6-v2"}
    # embedding is incremental: a rerun finds every day cached and embeds nothing
    from features.content import embed_catalog

    again = embed_catalog(s, s.sim.end_date)
    assert again.videos_embedded == 0 and again.days_cached == len(files)


def test_training_dag_registers_retrieval_with_its_index(loop):
    from models.retriever import Retriever

    s = loop.settings
    c = client(s)
    name = s.retrieval_model_name
    assert alias_version(c, name, CHAMPION) == "1"
    mv = c.get_model_version(name, "1")
    assert mv.tags["gate_verdict"] == "passed" and mv.tags["index_kind"] == "exact"
    assert "Recall@100" in mv.description
    metrics = c.get_run(mv.run_id).data.metrics
    assert metrics["recall_at_100"] > metrics["popularity_recall_at_100"]
    assert metrics["recall_at_100"] > metrics["recent_popularity_recall_at_100"]
    assert metrics["recall_at_100"] <= metrics["oracle_recall_at_100"] + 0.05
    # cold start: videos uploaded on the holdout day, which popularity cannot retrieve
    assert metrics["n_cold_users"] > 0
    assert metrics["popularity_cold_recall_at_100"] == 0.0
    assert metrics["cold_recall_at_100"] > 1.5 * metrics["random_recall_at_100"]
    # model, index and id mapping are one artifact, checked on load
    # the per-epoch curves: metric history with one step per epoch, and their picture
    history = c.get_metric_history(mv.run_id, "retrieval_valid_recall")
    assert [m.step for m in history] == list(range(1, int(metrics["epochs"]) + 1))
    run_dir = s.mlflow_dir / "artifacts"
    assert any(p.stat().st_size > 5_000 for p in run_dir.rglob("review/training_curve.png"))
    bundles = list((s.mlflow_dir / "artifacts").rglob("bundle/manifest.json"))
    assert bundles
    ret = Retriever.load(bundles[0].parent)
    assert ret.index.size == int(metrics["index_size"])
    ranker = c.get_model_version(s.ranker_model_name, "1")
    assert ranker.tags["retrieval_version"] == "1"
    assert "pipeline_ndcg_at_10_two_tower" in c.get_run(ranker.run_id).data.metrics


def test_training_dag_registers_and_promotes_a_model_that_beats_popularity(loop):
    s = loop.settings
    c = client(s)
    name = s.ranker_model_name
    assert alias_version(c, name, CHALLENGER) == alias_version(c, name, CHAMPION) == "1"
    mv = c.get_model_version(name, "1")
    assert mv.tags["gate_verdict"] == "passed"
    assert mv.tags["feature_service"] == "ranker_v2" and mv.tags["git_sha"]
    assert "model card" in mv.description and "Gate" in mv.description
    metrics = c.get_run(mv.run_id).data.metrics
    assert metrics["ndcg_at_10"] > metrics["popularity_ndcg_at_10"]
    assert metrics["ndcg_at_10"] > metrics["recent_popularity_ndcg_at_10"]
    assert 0.5 < metrics["auc"] <= 1.0
    assert metrics["ndcg_at_10"] <= metrics["oracle_ndcg_at_10"] + 0.02
    # the evaluation module's other metrics, the slices, and the review artifacts
    assert metrics["gauc"] > metrics["popularity_gauc"] and 0.5 < metrics["xauc_watch"] <= 1.0
    assert 0.0 <= metrics["ece"] < 0.1
    assert {"ndcg_at_10_spotlight", "popularity_ndcg_at_10_discover"} <= set(metrics)
    assert mv.tags["behavioural_checks"] == "passed"
    assert "GAUC" in mv.description and "Behavioural checks" in mv.description
    review = {p.name for p in (s.mlflow_dir / "artifacts").rglob("review/*")}
    assert {
        "ndcg_by_surface.png",
        "calibration.png",
        "feature_importance.png",
        "score_distribution.png",
        "learning_curve.png",
        "evaluation.json",
    } <= review
    # the learning curve on the holdout: about 20 checkpoints of boosting rounds, logged as
    # metric histories with step = rounds (the MLflow UI draws them as charts)
    from mlflow.xgboost import load_model

    rounds = load_model(f"models:/{name}/1").get_booster().num_boosted_rounds()
    auc = c.get_metric_history(mv.run_id, "holdout_auc_value_score")
    steps = [m.step for m in auc]
    assert 10 <= len(steps) <= 20 and steps == sorted(set(steps))
    assert steps[0] == 1 and steps[-1] == rounds
    # the last point is the registered model itself: its holdout metrics
    final = {m.step: m.value for m in c.get_metric_history(mv.run_id, "holdout_auc_completion")}
    assert final[rounds] == pytest.approx(metrics["head_completion_auc"], abs=1e-6)
    loss = [m.value for m in c.get_metric_history(mv.run_id, "holdout_logloss_completion")]
    assert loss[-1] < loss[0]  # the trees learned something on unseen data
    assert (PROMOTED, "reelrank_training") in loop.asset_events()
    # artifacts live under the configured root, never in the working directory
    artifacts = s.mlflow_dir / "artifacts"
    assert any(artifacts.rglob("reference.parquet"))
    assert any(artifacts.rglob("MLmodel"))


def test_training_rows_are_never_silently_lost(loop):
    s = loop.settings
    holdout = s.sim.end_date - timedelta(days=1)
    info = json.loads((s.home / "training" / holdout.isoformat() / "datasets.json").read_text())
    entities = 0
    for part in ("train", "holdout"):
        join = info["join"][part]
        df = pd.read_parquet(s.home / "training" / holdout.isoformat() / f"{part}.parquet")
        assert join["rows"] == info["rows"][part] == len(df)
        assert not df[list(MODEL_INPUTS)].isna().any().any()
        entities += join["rows"]
    # every impression of the window is a row, including new users' first-day impressions
    # (no feature row yet): those were imputed and counted
    window = info["window"]
    imp = read_table(
        s.lake_dir,
        "impressions",
        start=date.fromisoformat(window["train_start"]),
        end=date.fromisoformat(window["holdout"]),
    )
    assert entities == len(imp)
    assert info["join"]["train"]["imputed_user_engagement"] > 0


def test_deploy_dag_records_the_champion(loop):
    record = json.loads((loop.settings.serving_dir / "deployment.json").read_text())
    assert record["model_version"] == "1"
    assert record["smoke_p99_ms"] < 1000


def test_monitoring_dag_writes_reports_and_a_verdict(loop):
    s = loop.settings
    out = s.reports_dir / "drift" / s.sim.end_date.isoformat()
    verdict = json.loads((out / "verdict.json").read_text())
    assert (out / "drift_report.html").stat().st_size > 10_000
    assert json.loads((out / "drift_report.json").read_text())["metrics"]
    assert {c["column"] for c in verdict["columns"]} >= {"prediction", "x_topic_affinity"}
    emitted = (DRIFT, "reelrank_monitoring") in loop.asset_events()
    assert emitted == verdict["drifted"]


def test_features_dag_is_idempotent(loop):
    s = loop.settings
    day = s.sim.end_date
    before = {p: p.stat().st_mtime_ns for p in s.lake_dir.rglob("*.parquet")}
    feats = {v: table_path(s, v, day).stat().st_mtime_ns for v in VIEWS}
    run_dag(s, "reelrank_features", {"day": day.isoformat()})
    assert {p: p.stat().st_mtime_ns for p in s.lake_dir.rglob("*.parquet")} == before
    assert {v: table_path(s, v, day).stat().st_mtime_ns for v in VIEWS} == feats


def test_gate_failure_keeps_the_champion_and_emits_nothing(loop):
    """Both gates are set out of reach: the ranker's and retrieval's own, so that no model of
    the shared loop moves (a retrieval champion promoted here would change what every later
    test of the session serves)."""
    ls = loop.settings
    unreachable = {"min_margin_over_baseline": 1.0}
    s = ls.model_copy(
        update={
            "gate": ls.gate.model_copy(update=unreachable),
            "retrieval": ls.retrieval.model_copy(update=unreachable),
        }
    )
    promoted_before = loop.asset_events().count((PROMOTED, "reelrank_training"))
    result = run_dag(s, "reelrank_training")
    c = client(s)
    name = s.ranker_model_name
    assert alias_version(c, name, CHALLENGER) == "2"
    assert alias_version(c, name, CHAMPION) == "1"
    assert alias_version(c, s.retrieval_model_name, CHAMPION) == "1"
    assert c.get_model_version(name, "2").tags["gate_verdict"] == "failed"
    assert loop.asset_events().count((PROMOTED, "reelrank_training")) == promoted_before
    # the run's task log says what each step did, the gate's reasons and why a task skipped
    log = result.log_path.read_text()
    assert "datasets for holdout" in log and "holdout rows" in log
    assert "registered reelrank-ranker v2" in log
    assert "gate failed for reelrank-ranker v2" in log and "not significant" in log
    assert "Skipping task" in log and "v2 not promoted: gate failed: ndcg_at_10" in log


def test_a_failing_task_fails_the_run(loop):
    """A task that raises (no features in an empty home) makes the run, and the call, fail."""
    s = loop.settings.model_copy(update={"home": loop.settings.home.parent / "empty"})
    migrate(s)
    with pytest.raises(DagRunFailed, match="reelrank_training") as err:
        run_dag(s, "reelrank_training", timeout_s=300)
    assert "no feature tables" in err.value.args[0]
    # what a person reads: the task and its exception in one line
    assert err.value.task == "holdout_day"
    assert "holdout_day: reelrank.errors.MissingDataError: no feature tables" in err.value.brief


def test_the_cli_shows_a_dag_run_task_by_task(loop):
    """``reelrank dag`` follows the run's log (progress on stderr) and ends with one line;
    the progress callback of ``run_dag`` sees every task of the DAG start and end."""
    import os
    import subprocess
    import sys

    s = loop.settings
    seen: list[tuple[int, int, str | None]] = []
    run_dag(
        s,
        "reelrank_monitoring",
        {"day": s.sim.end_date.isoformat()},
        on_progress=lambda p: seen.append((p.n_done, p.total, p.running)),
    )
    assert seen[0] == (0, 2, None) and seen[-1] == (2, 2, None)
    # every task is seen running, even signal_drift, which starts and ends within 0.2 s
    assert [task for _, _, task in seen if task] == ["check", "signal_drift"]
    assert [n for n, _, _ in seen] == sorted(n for n, _, _ in seen)
    env = {**os.environ, **s.to_env(), "COLUMNS": "200"}
    out = subprocess.run(
        [sys.executable, "-m", "reelrank.cli", "--json", "dag", "reelrank_deploy"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["dag_id"] == "reelrank_deploy" and doc["state"] == "success"
