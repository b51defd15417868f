"""The daily drift check: a day's served features vs the champion's training reference."""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.cross import model_matrix
from ingest.lake import atomic_write, read_table
from monitoring.drift import DriftVerdict, check_drift
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


def current_features(settings: Settings, day: date) -> tuple[pd.DataFrame, np.ndarray]:
    """The model inputs of the day's impressions, point-in-time joined as they were served,
    and whether each impression created value (its delayed label)."""
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
    return model_matrix(joined), joined["positive"].to_numpy(bool)


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


def run_monitoring(settings: Settings, day: date) -> dict[str, Any]:
    """Check ``day`` for drift and broken inputs; alert; decide whether to retrain.

    Returns an XCom-sized reference to the verdict; ``retrain`` is True only for the first
    drifted day of an episode.
    """
    import mlflow

    from training.registry import CHAMPION, client

    version, reference = champion_reference(settings)
    current, positive = current_features(settings, day)
    from reelrank.objectives import ValueHeads

    model = mlflow.xgboost.load_model(f"models:/{settings.ranker_model_name}/{version}")
    booster = model.get_booster()
    x = current[list(booster.feature_names or [])].to_numpy(np.float32)
    current["prediction"] = ValueHeads.of_booster(booster).combine(
        booster.inplace_predict(x, validate_features=False)
    )
    # the champion's own training window is the reference for the raw inputs too
    mv = client(settings).get_model_version_by_alias(settings.ranker_model_name, CHAMPION)
    window = mv.tags.get("data_window", "")
    ref_start, _, ref_end = window.partition("..")
    raw = None
    if ref_start and ref_end:
        rows = settings.drift.sample_rows
        raw = (
            raw_inputs(settings, date.fromisoformat(ref_start), date.fromisoformat(ref_end), rows),
            raw_inputs(settings, day, day, rows),
        )
    out: Path = settings.reports_dir / "drift" / day.isoformat()
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
    quality = online_quality_of(settings, day, out)
    holdout_auc = client(settings).get_run(mv.run_id).data.metrics.get("auc")
    verdict = label_quality(
        verdict,
        positive,
        current["prediction"].to_numpy(),
        holdout_auc,
        settings.drift.max_auc_drop,
    )
    (out / "verdict.json").write_text(json.dumps(verdict.to_dict(), indent=2))
    retrain = drift_episode(settings, day, verdict)
    alerted, delivery = _alert(settings, day, verdict, retrain)
    _log_check(settings, day, version, verdict, retrain)
    write_index(settings)
    return {
        "day": day.isoformat(),
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
    service logged nothing that day). Saved as ``online_quality.json`` beside the reports."""
    from monitoring.quality import quality_report
    from serving.feedback import read_feedback
    from serving.request_log import read_served

    served = read_served(settings.home, start=day, end=day)
    if served.empty:
        return []
    feedback = read_feedback(settings.lake_dir, start=day, end=day + timedelta(days=1))
    report = quality_report(served, feedback)
    data = report.to_dict()
    out.mkdir(parents=True, exist_ok=True)
    (out / "online_quality.json").write_text(json.dumps(data, indent=2))
    rows = data.get("groups", [])
    return rows if isinstance(rows, list) else []


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

    from training.registry import configure_mlflow

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
