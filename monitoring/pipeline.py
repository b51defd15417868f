"""The daily drift check: a day's served features vs the champion's training reference."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.cross import model_matrix
from ingest.lake import atomic_write, read_table
from monitoring.drift import DriftVerdict, check_drift
from reelrank.errors import MissingDataError, ModelNotFound
from reelrank.progress import ProgressFn, Stages
from reelrank.settings import Settings

log = logging.getLogger(__name__)


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
    local = mlflow.artifacts.download_artifacts(
        run_id=mv.run_id,
        artifact_path="review/reference.parquet",
        dst_path=str(settings.home / "tmp" / mv.run_id),
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


# set at serving time, not logged: every served row is scored at feed position 0
SERVE_TIME_COLUMNS = ("ctx_position",)


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


CONTENT_CLUSTERS = 16


def content_drift(
    settings: Settings, reference_ids: pd.Series, current_ids: pd.Series, out: Path
) -> dict[str, Any] | None:
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
    return {
        "column": column.column,
        "score": column.score,
        "threshold": column.threshold,
        "method": f"{column.method} of the caption-cluster mix",
        "drifted": column.drifted,
        "report_html": verdict.report_html,
        "novelty_auc": novelty.score,
    }


def with_embedding_drift(verdict: DriftVerdict, content: dict[str, Any]) -> DriftVerdict:
    """The caption-cluster mix as one more column of the verdict: it counts towards the
    share of drifted columns like any input, so a content shift alone is a warning and, with
    enough inputs moving with it, dataset drift."""
    from monitoring.drift import ColumnDrift

    column = ColumnDrift(
        content["column"],
        float(content["score"]),
        float(content["threshold"]),
        str(content["method"]),
        bool(content["drifted"]),
    )
    columns = (*verdict.columns, column)
    share = sum(c.drifted for c in columns) / len(columns)
    return replace(
        verdict,
        columns=columns,
        share_drifted=share,
        drifted=verdict.drifted or share >= verdict.drift_share_threshold,
        tags={
            **verdict.tags,
            "content_report": str(content["report_html"]),
            "caption_novelty_auc": f"{float(content['novelty_auc']):.4f}",
        },
    )


def label_quality(
    verdict: DriftVerdict,
    positive: np.ndarray,
    prediction: np.ndarray,
    holdout_auc: float | None,
    max_drop: float,
) -> DriftVerdict:
    """Concept drift from delayed labels: the champion's AUC on the day against its AUC on
    its own holdout. A drop of ``max_drop`` or more means the world no longer answers the
    way the model learned (tastes changed), even when no input moved: dataset drift."""
    from dataclasses import replace

    from sklearn.metrics import roc_auc_score

    from monitoring.drift import ColumnDrift

    if holdout_auc is None or positive.all() or not positive.any():
        return verdict
    drop = holdout_auc - float(roc_auc_score(positive, prediction))
    column = ColumnDrift("online_auc", drop, max_drop, "AUC drop vs holdout", drop >= max_drop)
    return replace(
        verdict,
        columns=(*verdict.columns, column),
        drifted=verdict.drifted or column.drifted,
    )


MONITORING_EXPERIMENT = "reelrank-monitoring"
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


def _episodes_path(settings: Settings) -> Path:
    return settings.reports_dir / "drift" / "episodes.json"


def drift_episode(settings: Settings, day: date, verdict: DriftVerdict) -> bool:
    """Debounce: True only for the first drifted check of an episode (retrain once).

    An episode opens with the first check that finds dataset drift and closes with the
    next clean one; checks in between report the drift but do not ask for another retrain.
    A broken input neither opens nor closes one (retraining on it would learn the breakage).
    """
    path = _episodes_path(settings)
    state = json.loads(path.read_text()) if path.exists() else {"open": None, "episodes": []}
    retrain = False
    if verdict.severity == "critical":
        if state["open"] is None:
            state["open"] = {"started": day.isoformat(), "columns": verdict.drifted_columns}
            retrain = True
        state["open"]["last_drifted"] = day.isoformat()
    elif verdict.severity in ("ok", "warning") and state["open"] is not None:
        state["episodes"].append({**state["open"], "ended": day.isoformat()})
        state["open"] = None
    text = json.dumps(state, indent=2)
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return retrain


def broken_days(settings: Settings, start: date, end: date) -> dict[str, list[str]]:
    """Days in ``[start, end]`` whose check found a broken input, with the columns."""
    out: dict[str, list[str]] = {}
    root = settings.reports_dir / "drift"
    for path in sorted(root.glob("*/verdict.json")) if root.exists() else []:
        try:
            day = date.fromisoformat(path.parent.name)
        except ValueError:
            continue
        if start <= day <= end:
            v = json.loads(path.read_text())
            if v.get("broken_columns"):
                out[day.isoformat()] = list(v["broken_columns"])
    return out


def run_monitoring(
    settings: Settings, day: date, progress: ProgressFn | None = None
) -> dict[str, Any]:
    """Check ``day`` for drift and broken inputs; alert; decide whether to retrain.

    Returns an XCom-sized reference to the verdict; ``retrain`` is True only for the first
    drifted day of an episode. ``progress`` hears of each check as it starts.
    """
    from models.ranker import load_ranker
    from models.registry import CHAMPION, client

    stages = Stages(progress, "drift checks", 6)
    stages.next("champion and its training reference")
    version, reference = champion_reference(settings)
    ranker = load_ranker(settings, version=version)
    assert ranker is not None  # a version, not an alias: it exists or load_ranker raised
    names = list(ranker.features)
    stages.next("the day's features and predictions")
    served = served_features(settings, day, version)
    positive: np.ndarray | None
    if served is not None:
        # drift over what was actually served; the reference is scored the way serving
        # scores (at feed position 0), so the prediction is compared like with like
        source = "served_log"
        current, positive, current_ids = served
        at_zero = reference.assign(**{c: 0.0 for c in SERVE_TIME_COLUMNS if c in reference})
        reference = reference.assign(
            prediction=ranker.predict(at_zero[names].to_numpy(np.float32)).astype(np.float32)
        )
    else:
        source = "impressions"
        current, positive, current_ids = current_features(settings, day)
        x = current[names].to_numpy(np.float32)
        current["prediction"] = ranker.predict(x)
    # the champion's own training window is the reference for the raw inputs too
    mv = client(settings).get_model_version_by_alias(settings.ranker_model_name, CHAMPION)
    window = mv.tags.get("data_window", "")
    ref_start, _, ref_end = window.partition("..")
    raw = None
    if ref_start and ref_end:
        rows = settings.drift.sample_rows
        today = raw_inputs(settings, day, day, rows)
        if not today.empty:  # the day's raw feed may not have landed yet (served-log checks)
            raw = (
                raw_inputs(
                    settings, date.fromisoformat(ref_start), date.fromisoformat(ref_end), rows
                ),
                today,
            )
    out: Path = settings.reports_dir / "drift" / day.isoformat()
    stages.next("Evidently data drift and broken inputs")
    verdict: DriftVerdict = check_drift(
        reference,
        current,
        out,
        settings.drift.drift_share,
        settings.drift.sample_rows,
        extra_quality=raw,
        column_threshold=settings.drift.column_threshold,
        prediction_threshold=settings.drift.prediction_threshold,
    )
    stages.next("caption-embedding drift")
    if ref_start and ref_end:
        reference_ids = read_table(
            settings.lake_dir,
            "impressions",
            start=date.fromisoformat(ref_start),
            end=date.fromisoformat(ref_end),
            columns=["video_id"],
        )["video_id"]
        content = content_drift(settings, reference_ids, current_ids, out)
        if content is not None:
            verdict = with_embedding_drift(verdict, content)
    stages.next("online quality and label drift")
    quality = online_quality_of(settings, day, out)
    holdout_auc = client(settings).get_run(mv.run_id).data.metrics.get("auc")
    if positive is not None:
        verdict = label_quality(
            verdict,
            positive,
            current["prediction"].to_numpy(),
            holdout_auc,
            settings.drift.max_auc_drop,
        )
    verdict = replace(verdict, tags={**verdict.tags, "source": source})
    (out / "verdict.json").write_text(json.dumps(verdict.to_dict(), indent=2))
    stages.next("verdict, alert, MLflow, report index")
    retrain = drift_episode(settings, day, verdict)
    alerted, delivery = _alert(settings, day, verdict, retrain)
    _log_check(settings, day, version, verdict, retrain)
    write_index(settings)
    stages.finish()
    return {
        "day": day.isoformat(),
        "source": source,
        "champion_version": version,
        "drifted": verdict.drifted,
        "severity": verdict.severity,
        "retrain": retrain,
        "alerted": alerted,
        "webhook": delivery,
        "drifted_columns": verdict.drifted_columns,
        "broken_columns": verdict.broken_columns,
        "share_drifted": verdict.share_drifted,
        "report_html": verdict.report_html,
        "verdict_json": str(out / "verdict.json"),
        "summary": verdict.summary(),
        "online_quality": quality,
    }


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


def _alert(
    settings: Settings, day: date, verdict: DriftVerdict, retrain: bool
) -> tuple[bool, dict[str, Any] | None]:
    """Log (always) and POST to the webhook (when set) anything above ``warning``; the
    delivery never raises and never blocks longer than its budget."""
    from dataclasses import asdict

    from monitoring.alerts import WebhookConfig, drift_alert, send_alert

    if verdict.severity not in ("critical", "broken"):
        log.info("drift check %s: %s", day, verdict.summary())
        return False, None
    action = (
        "retraining scheduled"
        if retrain
        else "no retrain (broken input)"
        if verdict.severity == "broken"
        else "no retrain (episode already retraining)"
    )
    url = settings.drift.webhook_url
    delivery = send_alert(
        drift_alert(verdict, context=f"day {day}: {action}"),
        WebhookConfig(url=url.get_secret_value() if url else None),
        log,
    )
    return True, asdict(delivery)


def _log_check(
    settings: Settings, day: date, version: str, verdict: DriftVerdict, retrain: bool
) -> None:
    """One MLflow run per check in the experiment ``reelrank-monitoring``: the numbers as
    metrics, the reports as artifacts, so drift history sits beside the models."""
    import mlflow

    from models.registry import configure_mlflow

    exp_id = configure_mlflow(settings, MONITORING_EXPERIMENT)  # its own artifact root
    with mlflow.start_run(experiment_id=exp_id, run_name=f"drift-{day.isoformat()}"):
        mlflow.set_tags(
            {
                "day": day.isoformat(),
                "champion_version": version,
                "severity": verdict.severity,
                "drifted_columns": ",".join(verdict.drifted_columns)[:4000],
                "broken_columns": ",".join(verdict.broken_columns)[:4000],
            }
        )
        mlflow.log_metrics(
            {
                "share_drifted": verdict.share_drifted,
                "n_drifted": float(len(verdict.drifted_columns)),
                "n_broken": float(len(verdict.broken_columns)),
                "retrain": float(retrain),
            }
        )
        for path in (verdict.report_html, verdict.report_json):
            if path:
                mlflow.log_artifact(path, artifact_path="reports")
        mlflow.log_artifact(str(Path(verdict.report_html).parent / "verdict.json"), "reports")


def write_index(settings: Settings) -> Path:
    """``reports/drift/index.html``: every check, newest first, with a drift-share plot."""
    import html

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = settings.reports_dir / "drift"
    verdicts = []
    for path in sorted(root.glob("*/verdict.json")):
        try:
            date.fromisoformat(path.parent.name)
        except ValueError:
            continue
        verdicts.append((path.parent.name, json.loads(path.read_text())))
    colours = {"ok": "#2e7d32", "warning": "#f9a825", "critical": "#c62828", "broken": "#6a1b9a"}
    if verdicts:
        fig, ax = plt.subplots(figsize=(8, 2.6))
        days = [d for d, _ in verdicts]
        shares = [v["share_drifted"] for _, v in verdicts]
        ax.bar(days, shares, color=[colours.get(v["severity"], "grey") for _, v in verdicts])
        ax.axhline(verdicts[-1][1]["drift_share_threshold"], ls="--", c="k", lw=1)
        ax.set_ylabel("share of columns drifted")
        ax.set_ylim(0, 1)
        ax.tick_params(axis="x", rotation=45, labelsize=7)
        fig.tight_layout()
        fig.savefig(root / "drift_summary.png", dpi=110)
        plt.close(fig)
    rows = "\n".join(
        f'<tr><td>{d}</td><td style="color:{colours.get(v["severity"], "grey")}">'
        f"<b>{html.escape(v['severity'])}</b></td><td>{v['share_drifted']:.2f}</td>"
        f"<td>{html.escape(', '.join(v['drifted_columns']) or '-')}</td>"
        f"<td>{html.escape(', '.join(v.get('broken_columns', [])) or '-')}</td>"
        f'<td><a href="{d}/drift_report.html">report</a> · '
        f'<a href="{d}/verdict.json">verdict</a></td></tr>'
        for d, v in reversed(verdicts)
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>reelrank drift reports</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:4px 10px;text-align:left}}
tr:nth-child(even){{background:#f4f4f4}}</style></head><body>
<h1>reelrank drift reports</h1>
<p>Each daily check compares the model inputs and predictions of a day with the champion's
training reference (Evidently), and the day's logged outcomes with the champion's training
window (broken units or nulls). Bars: share of drifted columns; dashed line: threshold.</p>
<img src="drift_summary.png" alt="share of drifted columns per day">
<table><tr><th>day</th><th>severity</th><th>share drifted</th><th>drifted columns</th>
<th>broken inputs</th><th></th></tr>
{rows}
</table></body></html>
"""
    out = root / "index.html"
    atomic_write(out, lambda tmp: tmp.write_text(page))
    return out
