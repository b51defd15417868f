"""Data drift with Evidently, reduced to a typed verdict by a pure function.

Evidently's snapshot is a nested dict; :func:`verdict_from_snapshot` is the one place that
reads it, so the rest of the system works with :class:`DriftVerdict` and never indexes into
report internals. A column "drifted" when Evidently's per-column test failed (the direction
of the comparison depends on the method, so we never recompute it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)
VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
PREDICTION = "prediction"  # the model's output column: its drift alone means dataset drift
DRIFTED_COUNT = "evidently:metric_v2:DriftedColumnsCount"
SNAPSHOT_FILE = "drift_snapshot.json"  # the run, loadable by Evidently, beside its report


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift test. ``in_share``: it is one of the columns of Evidently's data
    drift report, the ones the share of drifted columns counts; a column another check
    adds (the caption-cluster mix, the online AUC drop) is reported beside the share."""

    column: str
    score: float
    threshold: float
    method: str
    drifted: bool
    in_share: bool = True


@dataclass(frozen=True)
class QualityIssue:
    """A column that looks broken rather than drifted: wrong unit, or suddenly missing."""

    column: str
    check: str  # "scale" or "nulls"
    reference: float
    current: float

    def __str__(self) -> str:
        if self.check == "scale":
            return (
                f"{self.column}: scale x{self.current / self.reference:.3g} "
                f"(p90 {self.reference:.4g} -> {self.current:.4g})"
            )
        return f"{self.column}: null share {self.reference:.1%} -> {self.current:.1%}"


def quality_issues(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    scale_factor: float = 5.0,
    null_jump: float = 0.2,
) -> list[QualityIssue]:
    """Columns whose values changed in a way tastes cannot explain (a pure function).

    A shift of tastes moves distributions; a broken upstream feed changes their *scale* (a
    unit switch: seconds to minutes or milliseconds) or starts sending nulls. A column is
    flagged when its 90th percentile of absolute values moved by ``scale_factor`` or more
    in either direction, or its share of nulls grew by ``null_jump``.
    """
    issues: list[QualityIssue] = []
    for col in (c for c in reference.columns if c in current.columns):
        ref, cur = reference[col], current[col]
        if not (pd.api.types.is_numeric_dtype(ref) and pd.api.types.is_numeric_dtype(cur)):
            continue
        if pd.api.types.is_bool_dtype(ref) or pd.api.types.is_bool_dtype(cur):
            continue
        ref_null, cur_null = float(ref.isna().mean()), float(cur.isna().mean())
        if cur_null - ref_null >= null_jump:
            issues.append(QualityIssue(col, "nulls", ref_null, cur_null))
            continue
        r = float(ref.abs().quantile(0.9)) if ref.notna().any() else 0.0
        c = float(cur.abs().quantile(0.9)) if cur.notna().any() else 0.0
        if r > 1e-9 and c > 1e-9 and max(c / r, r / c) >= scale_factor:
            issues.append(QualityIssue(col, "scale", r, c))
    return issues


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
    quality: tuple[QualityIssue, ...] = ()  # broken inputs (see :func:`quality_issues`)

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def broken_columns(self) -> list[str]:
        return [q.column for q in self.quality]

    @property
    def severity(self) -> str:
        """broken (an input is broken: retraining would learn the breakage), critical
        (dataset drift: retrain), warning (some columns drifted), ok."""
        if self.quality:
            return "broken"
        if self.drifted:
            return "critical"
        return "warning" if self.drifted_columns else "ok"

    def headline(self) -> str:
        """The verdict in one line without naming columns (an alert lists them below)."""
        broken = f"BROKEN INPUT: {len(self.quality)} column(s); " if self.quality else ""
        state = "DRIFT DETECTED" if self.drifted else "no dataset drift"
        return (
            f"{broken}{state}: {len(self.drifted_columns)}/{len(self.columns)} columns drifted "
            f"(share {self.share_drifted:.2f}, threshold {self.drift_share_threshold:.2f})"
        )

    def summary(self) -> str:
        """One line; the count is the share's (the data drift report's columns), the other
        checks' columns are named beside it, and the link is the dashboard when there is
        one (``tags["dashboard"]``), else the report."""
        share = [c for c in self.columns if c.in_share]
        beside = [c.column for c in self.columns if c.drifted and not c.in_share]
        cols = ", ".join(self.drifted_columns) or "none"
        state = "DRIFT DETECTED" if self.drifted else "no dataset drift"
        broken = (
            f"BROKEN INPUT: {'; '.join(str(q) for q in self.quality)}; " if self.quality else ""
        )
        also = f" (and beside them: {', '.join(beside)})" if beside else ""
        link = self.tags.get("dashboard") or self.report_html
        return (
            f"{broken}{state}: {sum(c.drifted for c in share)}/{len(share)} columns drifted"
            f"{also} (share {self.share_drifted:.2f}, threshold "
            f"{self.drift_share_threshold:.2f}); drifted: {cols}; report: {link}"
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["drifted_columns"] = self.drifted_columns
        d["broken_columns"] = self.broken_columns
        d["severity"] = self.severity
        return d


def verdict_from_snapshot(
    snapshot: dict[str, Any],
    reference_rows: int,
    current_rows: int,
    report_html: str = "",
    report_json: str = "",
) -> DriftVerdict:
    """Turn an Evidently DataDriftPreset snapshot (``snapshot.dict()``) into a verdict.

    The data drifted when the share of drifted columns reaches the preset's ``drift_share``,
    or when the model's own output (the ``prediction`` column) drifted: what is served
    changed, whichever inputs moved it."""
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
    prediction = [c for c in columns if c.column == PREDICTION and c.drifted]
    return DriftVerdict(
        drifted=share >= threshold or bool(prediction),
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
    extra_quality: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    column_threshold: float | None = None,
    prediction_threshold: float | None = None,
) -> DriftVerdict:
    """Run Evidently's DataDriftPreset on shared columns; save HTML and JSON reports.

    Both sides are sampled to ``sample_rows`` (Evidently's cost grows with rows x columns,
    and its maintainers advise sampling). :func:`quality_issues` runs on the full frames,
    and on ``extra_quality`` (reference, current) when given: raw inputs that are not model
    columns, such as the day's logged watch times. ``column_threshold`` overrides Evidently's
    per-method threshold for numeric columns (normed Wasserstein 0.1 above 1,000 rows), and
    ``prediction_threshold`` the prediction column's.
    """
    from evidently import Report
    from evidently.presets import DataDriftPreset

    cols = [c for c in reference.columns if c in current.columns]
    if not cols:
        raise ValueError("reference and current data share no column")
    # sample first, then select: selecting copies, and the frames may be millions of rows
    ref = reference.sample(min(len(reference), sample_rows), random_state=seed)[cols]
    cur = current.sample(min(len(current), sample_rows), random_state=seed)[cols]
    # a column with no value on one side has no distribution to compare (e.g. a retrieval
    # score when no retrieval model serves); a column that *became* empty is caught by
    # quality_issues below as a jump in nulls, on the full frames
    empty = [c for c in cols if ref[c].isna().all() or cur[c].isna().all()]
    if empty:
        ref, cur = ref.drop(columns=empty), cur.drop(columns=empty)
    preset = DataDriftPreset(
        drift_share=drift_share,
        num_threshold=column_threshold,
        per_column_threshold=(
            {PREDICTION: prediction_threshold}
            if prediction_threshold is not None and PREDICTION in ref.columns
            else None
        ),
    )
    snap = Report([preset], include_tests=True).run(current_data=cur, reference_data=ref)
    out_dir.mkdir(parents=True, exist_ok=True)
    html, js = out_dir / "drift_report.html", out_dir / "drift_report.json"
    snap.save_html(str(html))
    snap.save_json(str(js))
    # Evidently's own format, which a workspace loads back (monitoring.workspace)
    (out_dir / SNAPSHOT_FILE).write_text(snap.dumps())
    verdict = verdict_from_snapshot(snap.dict(), len(ref), len(cur), str(html), str(js))
    issues = quality_issues(reference[cols], current[cols])
    if extra_quality is not None:
        issues += quality_issues(*extra_quality)
    verdict = replace(verdict, quality=tuple(issues))
    (out_dir / "verdict.json").write_text(json.dumps(verdict.to_dict(), indent=2))
    return verdict


def alert(verdict: DriftVerdict, logger: logging.Logger = log) -> bool:
    """Log an alert line when the data drifted; returns whether it alerted."""
    if verdict.drifted:
        logger.warning("ALERT reelrank drift: %s", verdict.summary())
        return True
    logger.info("drift check: %s", verdict.summary())
    return False
