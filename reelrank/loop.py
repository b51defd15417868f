"""The training loop across layers, for the CLI and tests: the one place (besides the DAG
files) that wires training to what serving and monitoring know.

Training never imports serving or monitoring; what the gate needs from them arrives as an
input: monitoring's broken-input days of the training window, and the serving pipeline's
offline evaluation of the new challenger (recorded on its run and in the model card's
review files).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from monitoring.pipeline import broken_days
from monitoring.record import open_episode_since
from reelrank.progress import ProgressFn, Stages
from reelrank.settings import Settings
from serving.offline import evaluate_version
from training.pipeline import (
    build_datasets,
    gate_and_promote,
    record_pipeline_evaluation,
    train_and_register,
)
from training.results import DatasetsResult, GateInputs, GateResult, TrainingResult
from training.retrieval import RetrievalResult, train_retrieval


@dataclass(frozen=True)
class TrainingRun:
    """One holdout day's training: datasets, retrieval, ranker and the gate's decision."""

    datasets: DatasetsResult
    retrieval: RetrievalResult
    trained: TrainingResult
    gate: GateResult

    def to_dict(self) -> dict[str, Any]:
        return {
            "datasets": self.datasets.to_dict(),
            "retrieval": self.retrieval.to_dict(),
            "trained": self.trained.to_dict(),
            "gate": self.gate.to_dict(),
        }


def evaluate_and_gate(
    settings: Settings, trained: TrainingResult
) -> tuple[TrainingResult, GateResult]:
    """The steps after registration: the serving pipeline's offline evaluation of the new
    version, then the gate with monitoring's broken-input days of its training window."""
    pipeline = evaluate_version(settings, trained.version, date.fromisoformat(trained.holdout))
    trained = record_pipeline_evaluation(settings, trained, pipeline)
    inputs = GateInputs(broken_days=broken_days(settings, *trained.window_days))
    return trained, gate_and_promote(settings, trained, inputs)


def run_training(
    settings: Settings, holdout: date, progress: ProgressFn | None = None
) -> TrainingRun:
    """All steps in one call (the CLI's path; the DAG runs them as separate tasks).
    ``progress`` hears of each step, the two-tower's epochs and the ranker's stages."""
    steps = Stages(progress, "training", 4)
    steps.next("point-in-time datasets (Feast)")
    datasets = build_datasets(settings, holdout)
    steps.next("two-tower retrieval")
    retrieval = train_retrieval(settings, holdout, progress=progress)
    steps.next("XGBoost ranker")
    # as the DAG does: while a drift episode is open, the days since it weigh more
    drift_since = open_episode_since(settings, holdout)
    trained = train_and_register(settings, holdout, progress=progress, drift_since=drift_since)
    steps.next("pipeline evaluation and gate")
    trained, gated = evaluate_and_gate(settings, trained)
    steps.finish()
    return TrainingRun(datasets, retrieval, trained, gated)
