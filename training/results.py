"""What the training steps hand each other, the gate, the CLI and the demo: typed values.

Each has ``to_dict`` (strict JSON: NaN travels as null) and, where a later process reads it
back, ``from_dict``/``load``. Airflow's XCom carries only references (a holdout day, a
version); the values themselves are files next to the datasets of that day.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from ingest.lake import atomic_write
from training.evaluate import Metrics, json_safe
from training.gate import Evidence, GateVerdict


@dataclass(frozen=True)
class DatasetsResult:
    """The point-in-time sets of one holdout day, written under ``dir``."""

    dir: str
    window: dict[str, str]
    rows: dict[str, int]
    join: dict[str, dict[str, int]]

    def to_dict(self) -> dict[str, Any]:
        return {"dir": self.dir, "window": self.window, "rows": self.rows, "join": self.join}


@dataclass(frozen=True)
class HeadsSummary:
    """The ranker's heads: their weights in the value score and their holdout metrics."""

    weights: dict[str, float]
    holdout: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"weights": self.weights, "holdout": self.holdout}


@dataclass(frozen=True)
class TrainingResult:
    """A registered challenger and everything the gate and the model card need of it."""

    version: str
    run_id: str
    holdout: str
    champion_version: str | None
    retrieval_version: str | None
    blockers: list[str]
    checks: dict[str, str | None]
    metrics: dict[str, Metrics]
    heads: HeadsSummary
    info: dict[str, Any]  # the datasets' window, rows and join report
    pipeline_ndcg: dict[str, float] = field(default_factory=dict)
    evidence: Evidence | None = None  # holdout size and bootstrap intervals for the gate

    @property
    def window_days(self) -> tuple[date, date]:
        """The first training day and the holdout day."""
        w = self.info["window"]
        return date.fromisoformat(w["train_start"]), date.fromisoformat(w["holdout"])

    def to_dict(self) -> dict[str, Any]:
        return json_safe(  # type: ignore[return-value]  # json_safe keeps a dict a dict
            {
                "version": self.version,
                "run_id": self.run_id,
                "holdout": self.holdout,
                "champion_version": self.champion_version,
                "retrieval_version": self.retrieval_version,
                "blockers": list(self.blockers),
                "checks": self.checks,
                "metrics": {k: m.to_dict() for k, m in self.metrics.items()},
                "heads": self.heads.to_dict(),
                "info": self.info,
                "pipeline_ndcg_at_10": self.pipeline_ndcg,
                "evidence": self.evidence.to_dict() if self.evidence else None,
            }
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingResult:
        return cls(
            version=str(d["version"]),
            run_id=d["run_id"],
            holdout=d["holdout"],
            champion_version=d.get("champion_version"),
            retrieval_version=d.get("retrieval_version"),
            blockers=list(d.get("blockers", [])),
            checks=dict(d.get("checks", {})),
            metrics={k: Metrics.from_dict(m) for k, m in d["metrics"].items()},
            heads=HeadsSummary(**d["heads"]),
            info=d.get("info", {}),
            pipeline_ndcg={
                k: float("nan") if v is None else v
                for k, v in d.get("pipeline_ndcg_at_10", {}).items()
            },
            evidence=Evidence.from_dict(d["evidence"]) if d.get("evidence") else None,
        )

    def save(self, path: Path) -> None:
        text = json.dumps(self.to_dict(), indent=2)
        atomic_write(path, lambda tmp: tmp.write_text(text))

    @classmethod
    def load(cls, path: Path) -> TrainingResult:
        return cls.from_dict(json.loads(path.read_text()))


@dataclass(frozen=True)
class GateInputs:
    """What other layers found that the gate must weigh: days of the training window whose
    inputs were broken (day -> columns), as monitoring's broken-input check reports them."""

    broken_days: dict[str, list[str]] = field(default_factory=dict)

    def blockers(self) -> list[str]:
        if not self.broken_days:
            return []
        return [
            "training data includes days with broken inputs: "
            + "; ".join(f"{d} ({', '.join(cols)})" for d, cols in self.broken_days.items())
        ]


@dataclass(frozen=True)
class GateResult:
    """The gate's decision on one version and what it did about it."""

    version: str
    promoted: bool
    pending_approval: bool
    verdict: GateVerdict

    def to_dict(self) -> dict[str, Any]:
        return json_safe(  # type: ignore[return-value]
            {
                "version": self.version,
                "promoted": self.promoted,
                "pending_approval": self.pending_approval,
                "verdict": self.verdict.to_dict(),
            }
        )
