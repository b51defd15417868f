"""What a day's check leaves behind once its verdict is in: the drift-episode state that
debounces retraining, the alert, one MLflow run, and the index of every day's reports.

Kept apart from the checks: these steps read only the folded verdict, so a new check
changes none of them.
"""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path
from typing import Any

from ingest.lake import atomic_write
from monitoring.drift import DriftVerdict
from reelrank.settings import Settings

# the stage's logger, as before the split: its name shows in log lines, which may be matched
log = logging.getLogger("monitoring.pipeline")
MONITORING_EXPERIMENT = "reelrank-monitoring"


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


def send_drift_alert(
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


def log_check(
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
