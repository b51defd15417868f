"""What a day's checks compare: the champion's training reference and the day's data.

Loaded once per day into a :class:`~monitoring.checks.CheckContext`. The day's data is what
the champion actually served when its own arm logged enough rows, else the day's
impressions, point-in-time joined as they were served; either way scored by the champion,
so its prediction is compared like with like.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.cross import model_matrix
from ingest.lake import read_table
from monitoring.checks import CheckContext
from reelrank.errors import MissingDataError, ModelNotFound
from reelrank.progress import Stages
from reelrank.settings import Settings

if TYPE_CHECKING:
    from models.ranker import Ranker

# set at serving time, not logged: every served row is scored at feed position 0
SERVE_TIME_COLUMNS = ("ctx_position",)


def champion_reference(settings: Settings) -> tuple[str, pd.DataFrame]:
    """The training-reference sample stored with the champion version."""
    import mlflow

    from models.registry import CHAMPION, alias_version, client

    c = client(settings)
    name = settings.ranker_model_name
    version = alias_version(c, name, CHAMPION)
    if version is None:  # monitoring before any model was promoted: one message, exit 1
        raise ModelNotFound(f"{name} has no champion to check drift against: train first")
    mv = c.get_model_version(name, version)
    run_id = str(mv.run_id)  # a registered version always has its run
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id,
        artifact_path="review/reference.parquet",
        dst_path=str(settings.home / "tmp" / run_id),
    )
    return str(mv.version), pd.read_parquet(local)


def current_features(settings: Settings, day: date) -> tuple[pd.DataFrame, np.ndarray, pd.Series]:
    """The model inputs of the day's impressions, point-in-time joined as they were served,
    whether each impression created value (its delayed label), and the day's video ids."""
    from features.pit import entity_frame, join_features
    from features.store import feature_store

    imp = read_table(settings.lake_dir, "impressions", start=day, end=day)
    if imp.empty:
        raise MissingDataError(f"no impressions for {day} in the lake")
    videos = read_table(settings.lake_dir, "videos", end=day)
    ents = entity_frame(imp, videos)
    sample = ents.sample(min(len(ents), settings.drift.sample_rows), random_state=0)
    from models.retrieval_features import with_retrieval_features

    store = feature_store(settings)
    joined, _ = join_features(store, sample.reset_index(drop=True), settings.feature_service)
    (joined,), _, _ = with_retrieval_features(settings, store, [joined], day)
    return model_matrix(joined), joined["positive"].to_numpy(bool), imp["video_id"]


def served_features(
    settings: Settings, day: date, version: str
) -> tuple[pd.DataFrame, np.ndarray | None, pd.Series] | None:
    """What the champion actually served on ``day``: the logged feature vectors and scores
    of its own arm (a sample), whether each served item got positive feedback (None when
    no feedback arrived that day), and the served video ids. None when the service logged
    fewer than ``drift.min_served_rows`` champion rows: then the day's impressions are
    checked."""
    from features.cross import MODEL_FEATURES
    from ingest.served import feature_frame, read_feedback, read_served

    served = read_served(settings.home, start=day, end=day)
    if served.empty:
        return None
    mine = served[(served["arm"] == "champion") & (served["ranker_version"] == version)]
    if len(mine) < settings.drift.min_served_rows:
        return None
    sample = mine.sample(min(len(mine), settings.drift.sample_rows), random_state=0)
    frame = feature_frame(sample, list(MODEL_FEATURES)).reset_index(drop=True)
    frame = frame.drop(columns=[c for c in SERVE_TIME_COLUMNS if c in frame.columns])
    frame["prediction"] = sample["score"].to_numpy(np.float32)
    ids = sample["video_id"].reset_index(drop=True)
    feedback = read_feedback(settings.lake_dir, start=day, end=day + timedelta(days=1))
    if feedback.empty:
        return frame, None, ids
    good = feedback[feedback["completed"] | feedback["liked"] | feedback["shared"]]
    keys = set(zip(good["request_id"], good["video_id"], strict=True))
    positive = np.fromiter(
        (k in keys for k in zip(sample["request_id"], sample["video_id"], strict=True)),
        dtype=bool,
        count=len(sample),
    )
    return frame, positive, ids


def data_window(tag: str) -> tuple[date, date] | None:
    """The champion's ``data_window`` tag (``start..end``) as dates; None when unset."""
    start, _, end = tag.partition("..")
    if not (start and end):
        return None
    return date.fromisoformat(start), date.fromisoformat(end)


def _scored_day(
    settings: Settings, day: date, version: str, ranker: Ranker, reference: pd.DataFrame
) -> tuple[str, pd.DataFrame, pd.DataFrame, np.ndarray | None, pd.Series]:
    """The day's data and where it came from, with the champion's prediction on both sides:
    (source, reference, current, positive, current video ids)."""
    names = list(ranker.features)
    served = served_features(settings, day, version)
    if served is not None:
        # drift over what was actually served; the reference is scored the way serving
        # scores (at feed position 0), so the prediction is compared like with like
        current, positive, current_ids = served
        at_zero = reference.assign(**{c: 0.0 for c in SERVE_TIME_COLUMNS if c in reference})
        reference = reference.assign(
            prediction=ranker.predict(at_zero[names].to_numpy(np.float32)).astype(np.float32)
        )
        return "served_log", reference, current, positive, current_ids
    current, positive, current_ids = current_features(settings, day)
    x = current[names].to_numpy(np.float32)
    current["prediction"] = ranker.predict(x)
    return "impressions", reference, current, positive, current_ids


def day_context(settings: Settings, day: date, stages: Stages) -> CheckContext:
    """Load the champion, its reference and the day's scored data (two progress stages)."""
    from models.ranker import load_ranker
    from models.registry import CHAMPION, client

    stages.next("champion and its training reference")
    version, reference = champion_reference(settings)
    ranker = load_ranker(settings, version=version)
    assert ranker is not None  # a version, not an alias: it exists or load_ranker raised
    stages.next("the day's features and predictions")
    source, reference, current, positive, current_ids = _scored_day(
        settings, day, version, ranker, reference
    )
    # the champion's own training window is the reference for the raw inputs too
    mv = client(settings).get_model_version_by_alias(settings.ranker_model_name, CHAMPION)
    return CheckContext(
        settings=settings,
        day=day,
        champion_version=version,
        champion_run_id=str(mv.run_id),
        data_window=data_window(mv.tags.get("data_window", "")),
        reference=reference,
        current=current,
        positive=positive,
        current_ids=current_ids,
        out=settings.reports_dir / "drift" / day.isoformat(),
        source=source,
    )
