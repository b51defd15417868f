"""What a day's check leaves behind once its verdict is in: the drift-episode state that
debounces retraining, the alert and one MLflow run (its Evidently runs go to the workspace,
:mod:`monitoring.workspace`).

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


def drift_episode(
    settings: Settings, day: date, verdict: DriftVerdict, record: bool = True
) -> bool:
    """Debounce: True only for the first drifted check of an episode (retrain once).

    An episode opens with the first check that finds dataset drift and closes with the
    next clean one; checks in between report the drift but do not ask for another retrain.
    A broken input neither opens nor closes one (retraining on it would learn the breakage).
    ``record=False`` (a check by hand, which schedules nothing) only says whether this
    check would open an episode: the state stays as the scheduled checks left it, so a
    manual look cannot suppress the retraining the DAG's own check of the day asks for.
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
    if record:
        text = json.dumps(state, indent=2)
        atomic_write(path, lambda tmp: tmp.write_text(text))
    return retrain


def open_episode_since(settings: Settings, day: date) -> date | None:
    """The first day of the drift episode open on ``day`` (None: no episode open, or one
    that opened after ``day``): the training weighs the days since it more
    (``training.drift_half_life_days``), so the retrain it triggers, and every daily retrain
    while it stays open, follows the changed world."""
    path = _episodes_path(settings)
    episode = json.loads(path.read_text()).get("open") if path.exists() else None
    if episode is None:
        return None
    started = date.fromisoformat(episode["started"])
    return started if started <= day else None


# a check by hand neither retrains nor opens the episode (the scheduled check does both)
MANUAL_NO_RETRAIN = (
    "no retrain scheduled: a check by hand does not retrain (`reelrank dag reelrank_training`)"
)


def retrain_action(verdict: DriftVerdict, retrain: bool, manual: bool) -> str:
    """What the check does about its verdict, in words (the alert, the CLI, the task log)."""
    if verdict.severity == "broken":
        return "no retrain (broken input)"
    if verdict.severity != "critical":
        return "no retrain (no dataset drift)"
    if manual:
        return ("new drift episode; " if retrain else "") + MANUAL_NO_RETRAIN
    return "retraining scheduled" if retrain else "no retrain (episode already retraining)"


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
    settings: Settings, day: date, verdict: DriftVerdict, action: str
) -> tuple[bool, dict[str, Any] | None]:
    """Log (always) and POST to the webhook (when set) anything above ``warning``; the
    delivery never raises and never blocks longer than its budget."""
    from dataclasses import asdict

    from monitoring.alerts import WebhookConfig, drift_alert, send_alert

    if verdict.severity not in ("critical", "broken"):
        return False, None  # the verdict is in the check's own log line
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
