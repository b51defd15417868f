"""The summary of one loop run (``reelrank demo`` and ``reelrank run``), as typed values.

The demo builds it from what the DAG runs left in the registry, the lake and the reports;
the CLI prints it and writes it as JSON (``demo_summary.json`` / ``run_summary.json``).
:meth:`LoopSummary.to_dict` is that JSON: a part the run never reached (the gate kept the
first model back, so nothing was served or checked for drift) is absent, not null.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel


class DataSummary(BaseModel):
    impressions: int
    users: int
    videos: int
    source: str
    days: str  # first..last day
    scenario: str | None = None


class FeaturesSummary(BaseModel):
    days: int
    first_day: str = ""  # the first day with tables: the training windows' (earlier: none)
    feature_service: str
    online_store: Path


class TrainingSummary(BaseModel):
    window: dict[str, str]
    rows: dict[str, int]


class RetrievalSummary(BaseModel):
    model: str
    version: str | None
    gate: str | None
    index_kind: str | None
    metrics: dict[str, float]


class RegistrySummary(BaseModel):
    model: str
    challenger: str | None
    champion: str | None
    gate: str | None
    tracking_uri: str
    gate_reasons: str | None = None


class DriftSummary(BaseModel):
    drifted: bool
    severity: str
    drifted_columns: list[str]
    broken_columns: list[str]
    index: str
    share_drifted: float
    report_html: str


class RetrainSummary(BaseModel):
    champion_before: str | None
    champion_after: str | None
    challenger: str | None
    gate: str | None
    gate_reasons: str


class LoopSummary(BaseModel):
    """What one loop run did and measured."""

    data: DataSummary
    metrics: dict[str, float]
    registry: RegistrySummary
    dag_seconds: dict[str, float]
    undefined: list[str] = []
    features: FeaturesSummary | None = None
    training: TrainingSummary | None = None
    objective_weights: str = ""
    retrieval: RetrievalSummary | None = None
    recommendation: dict[str, Any] | None = None
    cold_start_recommendation: dict[str, Any] | None = None
    drift: DriftSummary | None = None
    retrain_on_drift: RetrainSummary | None = None
    holdout: str | None = None
    stopped: str | None = None
    adapter: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (only what this run set; a retrain that did not happen is
        null, a stage never reached is absent)."""
        return self.model_dump(mode="json", exclude_unset=True)
