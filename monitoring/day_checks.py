"""The checks each day runs (listed, in order, in :data:`monitoring.pipeline.CHECKS`).

Each is one class with the :class:`~monitoring.checks.Check` shape: it reads the day's
:class:`~monitoring.checks.CheckContext`, writes its own reports under the day's folder and
answers with a :class:`~monitoring.checks.CheckResult`; how that counts towards the verdict
is :func:`monitoring.checks.fold_verdict`'s business, not the check's.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ingest.lake import read_table
from monitoring.checks import CheckContext, CheckResult
from monitoring.drift import ColumnDrift, check_drift
from reelrank.settings import Settings

# the stage's logger, as before the split: its name shows in log lines, which may be matched
log = logging.getLogger("monitoring.pipeline")

# -- Evidently data and prediction drift, and broken inputs -------------------------------
RAW_COLUMNS = ("watch_time_s", "duration_s", "watch_frac", "completed", "liked", "skipped")


def raw_inputs(settings: Settings, start: date, end: date, rows: int) -> pd.DataFrame:
    """The logged outcomes of impressions between ``start`` and ``end`` (a sample), as the
    upstream feed delivered them: where a broken unit or a null shows first."""
    imp = read_table(
        settings.lake_dir,
        "impressions",
        start=start,
        end=end,
        columns=["watch_time_s", "duration_s", "completed", "liked", "skipped"],
    )
    imp = imp.sample(min(len(imp), rows), random_state=0)
    imp["watch_frac"] = imp["watch_time_s"] / imp["duration_s"]
    return imp.astype({c: "float64" for c in ("completed", "liked", "skipped")})[list(RAW_COLUMNS)]


class DataDriftCheck:
    """Evidently's data and prediction drift of the model inputs against the champion's
    reference, and broken inputs among them and among the day's raw logged outcomes (against
    the champion's training window). It gives the base verdict the other checks add to.

    Broken raw inputs stay in this check rather than one of their own: :func:`check_drift`
    writes them into the day's ``verdict.json`` at once, which :func:`broken_days` reads even
    when a later check fails.
    """

    name = "data_drift"
    stage = "Evidently data drift and broken inputs"

    def run(self, ctx: CheckContext) -> CheckResult:
        d = ctx.settings.drift
        verdict = check_drift(
            ctx.reference,
            ctx.current,
            ctx.out,
            d.drift_share,
            d.sample_rows,
            extra_quality=self.raw(ctx),
            column_threshold=d.column_threshold,
            prediction_threshold=d.prediction_threshold,
        )
        return CheckResult(self.name, verdict=verdict)

    @staticmethod
    def raw(ctx: CheckContext) -> tuple[pd.DataFrame, pd.DataFrame] | None:
        """(training window, day) of the raw logged outcomes; None without a training window
        or before the day's raw feed landed (served-log checks can run earlier)."""
        if ctx.data_window is None:
            return None
        rows = ctx.settings.drift.sample_rows
        today = raw_inputs(ctx.settings, ctx.day, ctx.day, rows)
        if today.empty:
            return None
        return raw_inputs(ctx.settings, *ctx.data_window, rows), today


# -- caption-embedding (content) drift ------------------------------------------------------
CONTENT_CLUSTERS = 16


def caption_embeddings(settings: Settings, video_ids: pd.Series) -> np.ndarray:
    """The caption embedding of each video id (rows of unknown videos left out)."""
    import pyarrow.parquet as pq

    root = settings.features_dir / "video_content"
    wanted = set(video_ids)
    parts = []
    for path in sorted(root.glob("*.parquet")):
        t = pq.read_table(path, columns=["video_id", "caption_embedding"]).to_pandas()
        parts.append(t[t["video_id"].isin(wanted)])
    if not parts:
        return np.empty((0, 0), np.float32)
    table = pd.concat(parts, ignore_index=True).drop_duplicates("video_id", keep="last")
    vectors = dict(zip(table["video_id"], table["caption_embedding"], strict=True))
    rows = [vectors[v] for v in video_ids if v in vectors]
    return np.stack(rows).astype(np.float32) if rows else np.empty((0, 0), np.float32)


@dataclass(frozen=True)
class ContentDrift:
    """The caption-cluster mix compared as one column, its report and the day's novelty."""

    column: ColumnDrift
    report_html: str
    novelty_auc: float


def content_drift(
    settings: Settings, reference_ids: pd.Series, current_ids: pd.Series, out: Path
) -> ContentDrift | None:
    """Drift of what people were shown, by meaning: the mix of caption-embedding clusters.

    The MiniLM caption embeddings of the champion's training-window impressions are
    clustered (k-means, :data:`CONTENT_CLUSTERS` clusters, seeded); each impression of the
    day (or served item) is assigned its nearest cluster, and Evidently compares the two
    cluster distributions as one categorical column, ``caption_cluster`` (Jensen-Shannon
    distance above 1,000 rows), with an HTML report of its own. A trend taking over the feed
    moves the mix; new uploads about the same things do not, which is why the embeddings
    are not compared one by one: a domain classifier on raw embeddings tells any day's
    fresh uploads from last week's (its ROC AUC is kept in the verdict's tags as a measure
    of novelty, not as drift). None without enough embedded videos.
    """
    from sklearn.cluster import KMeans

    from monitoring.evidently_extras import embedding_drift

    n = settings.drift.embedding_sample_rows
    ref_ids = reference_ids.sample(min(len(reference_ids), n), random_state=0)
    cur_ids = current_ids.sample(min(len(current_ids), n), random_state=0)
    ref, cur = caption_embeddings(settings, ref_ids), caption_embeddings(settings, cur_ids)
    if min(len(ref), len(cur)) < 10 * CONTENT_CLUSTERS:
        log.info("caption-embedding drift skipped: too few embedded videos")
        return None
    km = KMeans(CONTENT_CLUSTERS, n_init=3, random_state=0).fit(ref)

    def mix(vectors: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"caption_cluster": [f"c{i:02d}" for i in km.predict(vectors)]})

    verdict = check_drift(mix(ref), mix(cur), out / "content", drift_share=0.5, sample_rows=n)
    (column,) = verdict.columns
    novelty = embedding_drift(ref, cur, None, sample_rows=min(n, 2000))
    return ContentDrift(
        replace(column, method=f"{column.method} of the caption-cluster mix"),
        verdict.report_html,
        float(novelty.score),
    )


class ContentDriftCheck:
    """The caption-cluster mix (:func:`content_drift`) of the day against the champion's
    training window, as one more column of the verdict, beside the share of drifted columns
    (the data drift report's): a content shift alone is a warning; dataset drift is the
    inputs' and the prediction's to call. Skipped without a training window."""

    name = "content_drift"
    stage = "caption-embedding drift"

    def run(self, ctx: CheckContext) -> CheckResult:
        if ctx.data_window is None:
            return CheckResult(self.name)
        start, end = ctx.data_window
        reference_ids = read_table(
            ctx.settings.lake_dir, "impressions", start=start, end=end, columns=["video_id"]
        )["video_id"]
        content = content_drift(ctx.settings, reference_ids, ctx.current_ids, ctx.out)
        if content is None:
            return CheckResult(self.name)
        return CheckResult(
            self.name,
            beside=(content.column,),
            tags={
                "content_report": content.report_html,
                "caption_novelty_auc": f"{content.novelty_auc:.4f}",
            },
        )


# -- online quality -------------------------------------------------------------------------
def online_quality_of(settings: Settings, day: date, out: Path) -> list[dict[str, Any]]:
    """Online NDCG@10, completion, like and skip rates per model version and experiment arm,
    from the lists served on ``day`` joined with the feedback they received (empty when the
    service logged nothing that day), plus Evidently's ranking metrics per version and arm
    (NDCG, MAP, MRR, hit rate, precision, recall at 10, with an HTML report each). Saved as
    ``online_quality.json`` beside the reports."""
    from ingest.served import read_feedback, read_served
    from monitoring.quality import labelled_items, quality_report

    served = read_served(settings.home, start=day, end=day)
    if served.empty:
        return []
    feedback = read_feedback(settings.lake_dir, start=day, end=day + timedelta(days=1))
    report = quality_report(served, feedback)
    data = report.to_dict()
    out.mkdir(parents=True, exist_ok=True)
    if not feedback.empty:
        data["evidently"] = _evidently_ranking(served, labelled_items(served, feedback), out)
    (out / "online_quality.json").write_text(json.dumps(data, indent=2))
    rows = data.get("groups", [])
    return rows if isinstance(rows, list) else []


def _evidently_ranking(
    served: pd.DataFrame, items: pd.DataFrame, out: Path
) -> dict[str, dict[str, float]]:
    """Evidently's ranking metrics of each (version, arm)'s served lists against feedback."""
    from monitoring.evidently_extras import ranking_report

    extra = served.drop_duplicates(["request_id", "video_id"])[
        ["request_id", "video_id", "user_id", "score"]
    ].astype({"request_id": str, "video_id": str})
    frame = items.merge(extra, on=["request_id", "video_id"], how="left")
    result: dict[str, dict[str, float]] = {}
    for (version, arm), part in frame.groupby(["ranker_version", "arm"], observed=True):
        lists = part.assign(relevance=part["gain"].astype(float))[
            ["request_id", "user_id", "video_id", "position", "score", "relevance"]
        ]
        try:
            result[f"v{version}/{arm}"] = ranking_report(
                lists, out / f"ranking_v{version}_{arm}", k=10
            )
        except ValueError as err:  # e.g. no list with any engagement
            log.info("Evidently ranking metrics skipped for v%s/%s: %s", version, arm, err)
    return result


class OnlineQualityCheck:
    """Online quality of the day's served lists (:func:`online_quality_of`). It reports
    beside the verdict (its rows are the result's ``details``) and never moves it."""

    name = "online_quality"
    stage = "online quality and label drift"

    def run(self, ctx: CheckContext) -> CheckResult:
        return CheckResult(self.name, details=online_quality_of(ctx.settings, ctx.day, ctx.out))


# -- concept drift from delayed labels ------------------------------------------------------
def online_auc_drop(
    positive: np.ndarray, prediction: np.ndarray, holdout_auc: float | None, max_drop: float
) -> ColumnDrift | None:
    """Concept drift from delayed labels: the champion's AUC on the day against its AUC on
    its own holdout. A drop of ``max_drop`` or more means the world no longer answers the
    way the model learned (tastes changed), even when no input moved. None when there is
    nothing to compare (no holdout AUC, or the day's labels are all one class)."""
    from sklearn.metrics import roc_auc_score

    if holdout_auc is None or positive.all() or not positive.any():
        return None
    drop = holdout_auc - float(roc_auc_score(positive, prediction))
    return ColumnDrift("online_auc", drop, max_drop, "AUC drop vs holdout", drop >= max_drop)


class LabelDriftCheck:
    """The champion's online AUC drop (:func:`online_auc_drop`) as a column whose drift alone
    is dataset drift: tastes can change while no input moves. Skipped on days without
    delayed labels."""

    name = "label_drift"
    stage = "online quality and label drift"

    def run(self, ctx: CheckContext) -> CheckResult:
        from models.registry import client

        if ctx.positive is None:
            return CheckResult(self.name)
        holdout_auc = client(ctx.settings).get_run(ctx.champion_run_id).data.metrics.get("auc")
        prediction = ctx.current["prediction"].to_numpy()
        max_drop = ctx.settings.drift.max_auc_drop
        column = online_auc_drop(ctx.positive, prediction, holdout_auc, max_drop)
        return CheckResult(self.name, alone=() if column is None else (column,))
