"""The drift checks in Evidently's own workspace, for Evidently's UI (``evidently ui``).

Each day's check adds its Evidently runs (snapshots) to one project, ``reelrank drift``, in a
local workspace under the home (``<home>/evidently``): the data-drift run (the report the
verdict is read from, so its share of drifted columns *is* the verdict's), the content-mix
run (caption clusters) and one online-quality run per served model version and experiment
arm (Evidently's ranking metrics). Each run carries the day as its timestamp, a tag naming
the check and the day in its metadata; a check run again for the same day replaces that
day's runs. The project's dashboard plots them over time: the drift share against its
threshold, each column's drift score, the content mix and the online quality beside them.

The checks save each run in Evidently's own snapshot format (``*_snapshot.json`` beside the
HTML report); this module only reads those files, so a check stays a function of its data
and the workspace is one step of recording the verdict.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitoring.drift import SNAPSHOT_FILE
from monitoring.evidently_extras import RANKING_SNAPSHOT
from reelrank.settings import Settings

if TYPE_CHECKING:
    from evidently.core.report import Snapshot
    from evidently.ui.workspace import Project, Workspace

PROJECT_NAME = "reelrank drift"
PROJECT_DESCRIPTION = (
    "Daily drift checks of the served champion: Evidently's data drift of the model inputs "
    "and prediction against the champion's training reference, the caption-cluster mix, "
    "and online ranking quality from delayed feedback."
)
# the tag of each kind of run, which the dashboard's panels select on
DATA_DRIFT, CONTENT_MIX, ONLINE_QUALITY = "data-drift", "content-mix", "online-quality"
RANKING = "ranking"  # Evidently's ranking report of a served version and arm (to browse)
DRIFT_SHARE = "evidently:metric_v2:DriftedColumnsCount"
VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
MEAN = "evidently:metric_v2:MeanValue"
QUALITY_COLUMNS = ("ndcg_at_10", "completion_rate", "like_rate", "skip_rate")


@dataclass(frozen=True)
class DayRuns:
    """What one day's check added to the workspace: the project, its runs by tag, and the
    dashboard's URL in Evidently's UI (``reelrank up`` serves it)."""

    project_id: str
    runs: dict[str, list[str]]
    url: str


def workspace(settings: Settings) -> Workspace:
    from evidently.ui.workspace import Workspace

    settings.evidently_dir.mkdir(parents=True, exist_ok=True)
    return Workspace(str(settings.evidently_dir))


def project_url(settings: Settings, project_id: str) -> str:
    """The project's dashboard in Evidently's UI on 127.0.0.1 (``REELRANK_UI__EVIDENTLY_PORT``)."""
    return f"http://127.0.0.1:{settings.ui.evidently_port}/projects/{project_id}"


def drift_project(ws: Workspace) -> Project:
    """The ``reelrank drift`` project, created with its dashboard on first use."""
    found = ws.search_project(PROJECT_NAME)
    if found:
        return found[0]
    project = ws.create_project(PROJECT_NAME, PROJECT_DESCRIPTION)
    add_dashboard(project)
    project.save()
    return project


def add_dashboard(project: Project) -> None:
    """The panels, in the order a person reads them: is it drifting, which columns, what
    people were shown, and did the feed get worse."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import counter_panel, line_plot_panel

    def metric(metric: str, legend: str, tag: str, **labels: str) -> PanelMetric:
        return PanelMetric(legend=legend, metric=metric, metric_labels=labels, tags=[tag])

    board = project.dashboard
    board.add_panel(
        counter_panel(
            "Drift share, last check",
            [metric(DRIFT_SHARE, "share of drifted columns", DATA_DRIFT, value_type="share")],
            "The verdict's share: dataset drift at or above the threshold (or when the "
            "prediction drifted)",
            size="half",
        )
    )
    board.add_panel(
        counter_panel(
            "Drifted columns, last check",
            [metric(DRIFT_SHARE, "drifted columns", DATA_DRIFT, value_type="count")],
            size="half",
        )
    )
    board.add_panel(
        line_plot_panel(
            "Share of drifted columns per day",
            [metric(DRIFT_SHARE, "drift share", DATA_DRIFT, value_type="share")],
        )
    )
    board.add_panel(
        line_plot_panel(
            "Drift score per column",
            [metric(VALUE_DRIFT, "{{column}}", DATA_DRIFT)],
            "Each model input and the prediction: Evidently's per-column drift score",
        )
    )
    board.add_panel(
        line_plot_panel(
            "Content mix: caption-cluster drift",
            [metric(VALUE_DRIFT, "caption_cluster", CONTENT_MIX, column="caption_cluster")],
            "Jensen-Shannon distance of the caption-cluster mix vs the training window",
            size="half",
        )
    )
    board.add_panel(
        line_plot_panel(
            "Online quality of the served lists",
            [metric(MEAN, "{{column}}", ONLINE_QUALITY, column=c) for c in QUALITY_COLUMNS],
            "NDCG@10 and engagement rates from delayed feedback, per served version and arm "
            "(empty until the service logged lists and feedback joined them)",
            size="half",
        )
    )


def quality_run(row: dict[str, Any], day: date, metadata: dict[str, str]) -> Snapshot | None:
    """One Evidently run of a (version, arm)'s online quality (a row of
    :func:`monitoring.quality.online_quality`): its rates as Evidently values, so they plot
    beside the drift; None when feedback gave none of them."""
    import pandas as pd
    from evidently import Report
    from evidently.metrics import MeanValue

    values = {c: row[c] for c in QUALITY_COLUMNS if isinstance(row.get(c), int | float)}
    if not values:
        return None
    report = Report([MeanValue(column=c) for c in values])
    frame = pd.DataFrame([values])
    return report.run(frame, None, timestamp=_noon(day), metadata=metadata, tags=[ONLINE_QUALITY])


def _noon(day: date) -> datetime:
    """A run's timestamp: noon of its day (naive UTC, as Evidently stores them)."""
    return datetime.combine(day, time(12))


def _load(path: Path, day: date, tags: list[str], metadata: dict[str, str]) -> Snapshot:
    """A saved snapshot with the day as its timestamp, and the run's tags and metadata."""
    from evidently.core.report import Snapshot, SnapshotModel

    model = SnapshotModel.parse_obj(json.loads(path.read_text()))
    model.timestamp = _noon(day)
    model.tags = tags
    model.metadata = {**model.metadata, **metadata, "day": day.isoformat()}
    return Snapshot.load_model(model)


def record_day(
    settings: Settings,
    day: date,
    out: Path,
    metadata: dict[str, str],
    online_quality: Sequence[dict[str, Any]] = (),
) -> DayRuns:
    """Add the day's runs to the project, replacing any the same day added before: the
    data-drift and content-mix runs saved under its report folder ``out``, the ranking
    report of each served version and arm, and one online-quality run per row of
    ``online_quality``. ``metadata`` (severity, champion version) lands on every run."""
    ws = workspace(settings)
    pid = str(drift_project(ws).id)
    for run_id in ws.list_runs(pid):
        run = ws.get_run(pid, run_id)
        if run is not None and run.metadata.get("day") == day.isoformat():
            ws.delete_run(pid, run_id)
    snaps: list[tuple[str, str, Snapshot]] = []  # (tag, name, snapshot)
    saved = [
        (DATA_DRIFT, out / SNAPSHOT_FILE, ""),
        (CONTENT_MIX, out / "content" / SNAPSHOT_FILE, ""),
    ]
    saved += [
        (RANKING, p, p.parent.name.removeprefix("ranking_"))
        for p in sorted(out.glob(f"ranking_*/{RANKING_SNAPSHOT}"))
    ]
    for tag, path, version in saved:
        if path.exists():
            extra = {"version": version} if version else {}
            snaps.append((tag, version, _load(path, day, [tag], {**metadata, **extra})))
    for row in online_quality:
        version = f"v{row.get('ranker_version')}_{row.get('arm')}"
        extra = {"version": version, "day": day.isoformat()}
        snap = quality_run(row, day, {**metadata, **extra})
        if snap is not None:
            snaps.append((ONLINE_QUALITY, version, snap))
    runs: dict[str, list[str]] = {}
    for tag, version, snap in snaps:
        name = " ".join(x for x in (day.isoformat(), tag, version) if x)
        runs.setdefault(tag, []).append(str(ws.add_run(pid, snap, name=name).id))
    return DayRuns(pid, runs, project_url(settings, pid))
