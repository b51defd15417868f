"""Data drift with Evidently, reduced to a typed verdict by a pure function.

Evidently's snapshot is a nested dict; :func:`verdict_from_snapshot` is the one place that
reads it, so the rest of the system works with :class:`DriftVerdict` and never indexes into
report internals. A column "drifted" when Evidently's per-column test failed (the direction
of the comparison depends on the method, so we never recompute it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)
VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
DRIFTED_COUNT = "evidently:metric_v2:DriftedColumnsCount"


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    score: float
    threshold: float
    method: str
    drifted: bool


@dataclass(frozen=True)
class DriftVerdict:
    drifted: bool
    share_drifted: float
    drift_share_threshold: float
    columns: tuple[ColumnDrift, ...]
    reference_rows: int
    current_rows: int
    report_html: str = ""
    report_json: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def severity(self) -> str:
        if self.drifted:
            return "critical"
        return "warning" if self.drifted_columns else "ok"

    def summary(self) -> str:
        cols = ", ".join(self.drifted_columns) or "none"
        state = "DRIFT DETECTED" if self.drifted else "no dataset drift"
        return (
            f"{state}: {len(self.drifted_columns)}/{len(self.columns)} columns drifted "
            f"(share {self.share_drifted:.2f}, threshold {self.drift_share_threshold:.2f}); "
            f"drifted: {cols}; report: {self.report_html}"
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["drifted_columns"] = self.drifted_columns
        d["severity"] = self.severity
        return d


def verdict_from_snapshot(
    snapshot: dict[str, Any],
    reference_rows: int,
    current_rows: int,
    report_html: str = "",
    report_json: str = "",
) -> DriftVerdict:
    """Turn an Evidently DataDriftPreset snapshot (``snapshot.dict()``) into a verdict."""
    failed = {
        t["metric_config"]["metric_id"]: t["status"] == "FAIL" for t in snapshot.get("tests", [])
    }
    columns: list[ColumnDrift] = []
    share, threshold = 0.0, 0.5
    for m in snapshot["metrics"]:
        cfg = m["config"]
        if cfg["type"] == VALUE_DRIFT:
            columns.append(
                ColumnDrift(
                    str(cfg["column"]),
                    float(m["value"]),
                    float(cfg["threshold"]),
                    str(cfg["method"]),
                    bool(failed.get(m["id"], False)),
                )
            )
        elif cfg["type"] == DRIFTED_COUNT:
            share = float(m["value"]["share"])
            threshold = float(cfg["drift_share"])
    if not columns:
        raise ValueError("snapshot has no per-column drift metrics (not a DataDriftPreset run?)")
    return DriftVerdict(
        drifted=share >= threshold,
        share_drifted=share,
        drift_share_threshold=threshold,
        columns=tuple(columns),
        reference_rows=reference_rows,
        current_rows=current_rows,
        report_html=report_html,
        report_json=report_json,
    )


def check_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    out_dir: Path,
    drift_share: float = 0.3,
    sample_rows: int = 5000,
    seed: int = 0,
) -> DriftVerdict:
    """Run Evidently's DataDriftPreset on shared columns; save HTML and JSON reports.

    Both sides are sampled to ``sample_rows`` (Evidently's cost grows with rows x columns,
    and its maintainers advise sampling).
    """
    from evidently import Report
    from evidently.presets import DataDriftPreset

    cols = [c for c in reference.columns if c in current.columns]
    if not cols:
        raise ValueError("reference and current data share no column")
    ref = reference[cols].sample(min(len(reference), sample_rows), random_state=seed)
    cur = current[cols].sample(min(len(current), sample_rows), random_state=seed)
    snap = Report([DataDriftPreset(drift_share=drift_share)], include_tests=True).run(
        current_data=cur, reference_data=ref
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    html, js = out_dir / "drift_report.html", out_dir / "drift_report.json"
    snap.save_html(str(html))
    snap.save_json(str(js))
    verdict = verdict_from_snapshot(snap.dict(), len(ref), len(cur), str(html), str(js))
    (out_dir / "verdict.json").write_text(json.dumps(verdict.to_dict(), indent=2))
    return verdict


def alert(verdict: DriftVerdict, logger: logging.Logger = log) -> bool:
    """Log an alert line when the data drifted; returns whether it alerted."""
    if verdict.drifted:
        logger.warning("ALERT reelrank drift: %s", verdict.summary())
        return True
    logger.info("drift check: %s", verdict.summary())
    return False
