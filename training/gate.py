"""The promotion gate: a challenger is blessed only if it beats every reference by a margin."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from reelrank.settings import GateSettings


@dataclass(frozen=True)
class GateVerdict:
    promote: bool
    metric: str
    challenger: float
    references: dict[str, float] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return "passed" if self.promote else "failed"

    def to_dict(self) -> dict[str, object]:
        return {
            "promote": self.promote,
            "metric": self.metric,
            "challenger": self.challenger,
            "references": self.references,
            "reasons": list(self.reasons),
        }


def decide(
    challenger: dict[str, float],
    baselines: dict[str, dict[str, float]],
    champion: dict[str, float] | None,
    gate: GateSettings,
    blockers: Sequence[str] = (),
) -> GateVerdict:
    """Compare the challenger with each baseline and the champion on the gate's metric.

    All metrics must come from the same holdout. A missing or NaN challenger metric fails
    the gate: a model that cannot be measured is not promoted.
    """
    m = gate.metric
    value = challenger.get(m, float("nan"))
    refs = {name: metrics[m] for name, metrics in baselines.items()}
    margins = dict.fromkeys(refs, gate.min_margin_over_baseline)
    if champion is not None:
        refs["champion"] = champion[m]
        margins["champion"] = gate.min_margin_over_champion
    ok = not math.isnan(value)
    reasons = [] if ok else [f"challenger {m} is undefined"]
    for name, ref in refs.items():
        # a baseline must be matched plus its margin; the champion must be strictly beaten,
        # so retraining on the same data (a tie) does not churn deployments
        need = ref + margins[name]
        passed = value > need if name == "champion" else value >= need
        ok = ok and passed
        sign = (">" if name == "champion" else ">=") if passed else "<="
        reasons.append(f"{m} {value:.4f} {sign} {name} {ref:.4f} + margin {margins[name]}")
    if champion is None and not blockers:
        reasons.append("no champion yet")
    if blockers:  # reasons found upstream that forbid promotion whatever the metrics
        ok = False
        reasons.extend(blockers)
    return GateVerdict(ok, m, value, refs, tuple(reasons))
