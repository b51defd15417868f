"""The daily drift check: a day's served features vs the champion's training reference."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.cross import model_matrix
from ingest.lake import read_table
from monitoring.drift import DriftVerdict, alert, check_drift
from reelrank.settings import Settings

log = logging.getLogger(__name__)


def champion_reference(settings: Settings) -> tuple[str, pd.DataFrame]:
    """The training-reference sample stored with the champion version."""
    import mlflow

    from training.registry import CHAMPION, client

    c = client(settings)
    mv = c.get_model_version_by_alias(settings.ranker_model_name, CHAMPION)
    local = mlflow.artifacts.download_artifacts(
        run_id=mv.run_id,
        artifact_path="review/reference.parquet",
        dst_path=str(settings.home / "tmp" / mv.run_id),
    )
    return str(mv.version), pd.read_parquet(local)


def current_features(settings: Settings, day: date) -> pd.DataFrame:
    """The model inputs of the day's impressions, point-in-time joined as they were served."""
    from features.store import feature_store
    from training.dataset import entity_frame, join_features

    imp = read_table(settings.lake_dir, "impressions", start=day, end=day)
    if imp.empty:
        raise FileNotFoundError(f"no impressions for {day} in the lake")
    videos = read_table(settings.lake_dir, "videos", end=day)
    ents = entity_frame(imp, videos)
    sample = ents.sample(min(len(ents), settings.drift.sample_rows), random_state=0)
    from training.retrieval import with_retrieval_features

    store = feature_store(settings)
    joined, _ = join_features(store, sample.reset_index(drop=True), settings.feature_service)
    (joined,), _, _ = with_retrieval_features(settings, store, [joined], day)
    return model_matrix(joined)


def run_monitoring(settings: Settings, day: date) -> dict[str, Any]:
    """Check ``day`` for drift; returns a reference to the verdict (XCom-sized)."""
    import mlflow

    version, reference = champion_reference(settings)
    current = current_features(settings, day)
    from reelrank.objectives import ValueHeads

    model = mlflow.xgboost.load_model(f"models:/{settings.ranker_model_name}/{version}")
    booster = model.get_booster()
    x = current[list(booster.feature_names or [])].to_numpy(np.float32)
    current["prediction"] = ValueHeads.of_booster(booster).combine(
        booster.inplace_predict(x, validate_features=False)
    )
    out: Path = settings.reports_dir / "drift" / day.isoformat()
    verdict: DriftVerdict = check_drift(
        reference, current, out, settings.drift.drift_share, settings.drift.sample_rows
    )
    alerted = alert(verdict)
    return {
        "day": day.isoformat(),
        "champion_version": version,
        "drifted": verdict.drifted,
        "alerted": alerted,
        "drifted_columns": verdict.drifted_columns,
        "share_drifted": verdict.share_drifted,
        "report_html": verdict.report_html,
        "verdict_json": str(out / "verdict.json"),
        "summary": verdict.summary(),
    }
