"""The promotion gate: a challenger is blessed only if it beats every reference by a margin
that is statistically significant, on a holdout large enough to judge.

A point estimate alone promotes noise: on coin-flip outcomes some model is always a little
ahead. So each difference (challenger minus a baseline or the champion) gets a paired
bootstrap interval over holdout users (users, not rows or feeds, are the independent
units: one user's feeds share their taste), and the challenger passes a reference only when
the interval's lower bound clears the margin.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.metrics import ndcg_by_group
from reelrank.settings import GateSettings
from training.evaluate import group_column


@dataclass(frozen=True)
class Interval:
    """A bootstrap interval of the NDCG@10 difference (challenger minus a reference)."""

    mean: float  # the difference on the whole holdout
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "low": self.low, "high": self.high}

    def text(self, confidence: float) -> str:
        return (
            f"difference {self.mean:+.4f}, {round(100 * confidence)}% CI "
            f"[{self.low:+.4f}, {self.high:+.4f}]"
        )


@dataclass(frozen=True)
class Evidence:
    """What the gate needs beyond metrics: the holdout's size and, per reference, the
    bootstrap interval of the challenger's NDCG@10 advantage."""

    rows: int
    users: int
    confidence: float
    samples: int
    intervals: dict[str, Interval] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "users": self.users,
            "confidence": self.confidence,
            "samples": self.samples,
            "intervals": {k: iv.to_dict() for k, iv in self.intervals.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Evidence:
        nan = float("nan")
        return cls(
            rows=int(d["rows"]),
            users=int(d["users"]),
            confidence=float(d["confidence"]),
            samples=int(d["samples"]),
            intervals={
                k: Interval(
                    *(nan if iv[x] is None else float(iv[x]) for x in ("mean", "low", "high"))
                )
                for k, iv in d.get("intervals", {}).items()
            },
        )


def paired_bootstrap(
    users: np.ndarray, differences: np.ndarray, samples: int, confidence: float, seed: int
) -> Interval:
    """Percentile interval of the mean per-group ``differences``, resampling whole users.

    ``users[i]`` owns group ``i``. Each resample draws users with replacement and takes the
    mean difference over all their groups, which is how NDCG@10 itself averages (over
    groups), so the full-sample statistic is exactly the metric difference.
    """
    nan = float("nan")
    if len(differences) == 0:
        return Interval(nan, nan, nan)
    codes, _ = pd.factorize(users)
    total = np.bincount(codes, weights=differences)
    count = np.bincount(codes).astype(np.float64)
    mean = float(total.sum() / count.sum())
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(total), size=(samples, len(total)))
    stats = total[picks].sum(axis=1) / count[picks].sum(axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(stats, [tail, 100 - tail])
    return Interval(mean, float(low), float(high))


def significance(
    holdout: pd.DataFrame,
    challenger: np.ndarray,
    references: Mapping[str, np.ndarray],
    gate: GateSettings,
) -> Evidence:
    """The challenger's NDCG@10 advantage over each reference on ``holdout`` (the rows
    every model was scored on), with its paired bootstrap interval over users."""
    col = group_column(holdout)
    groups = holdout[col].to_numpy()
    rel = holdout["value"].to_numpy()
    codes, _ = pd.factorize(groups, use_na_sentinel=False)
    first_row = np.unique(codes, return_index=True)[1]  # codes are in first-seen order
    group_user = holdout["user_id"].to_numpy()[first_row]
    mine = ndcg_by_group(groups, rel, np.asarray(challenger, dtype=np.float64))
    relevant = ~np.isnan(mine)
    intervals = {}
    for name, scores in references.items():
        theirs = ndcg_by_group(groups, rel, np.asarray(scores, dtype=np.float64))
        intervals[name] = paired_bootstrap(
            group_user[relevant],
            mine[relevant] - theirs[relevant],
            gate.bootstrap_samples,
            gate.confidence,
            gate.bootstrap_seed,
        )
    return Evidence(
        rows=len(holdout),
        users=int(holdout["user_id"].nunique()),
        confidence=gate.confidence,
        samples=gate.bootstrap_samples,
        intervals=intervals,
    )


@dataclass(frozen=True)
class GateVerdict:
    promote: bool
    metric: str
    challenger: float
    references: dict[str, float] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    evidence: Evidence | None = None
    failures: tuple[str, ...] = ()  # the reasons that kept it back, each naming its reference
    passed: tuple[str, ...] = ()  # the references it did beat ("popularity", "champion")

    @property
    def label(self) -> str:
        return "passed" if self.promote else "failed"

    @property
    def summary(self) -> str:
        """One line for people: on failure only what failed (and against what), then which
        comparisons passed; on success every comparison."""
        if self.promote or not self.failures:
            return "; ".join(self.reasons)
        line = "failed: " + "; ".join(self.failures)
        if self.passed:
            line += " (passed: " + ", ".join(f"vs {p}" for p in self.passed) + ")"
        return line

    def to_dict(self) -> dict[str, object]:
        return {
            "promote": self.promote,
            "metric": self.metric,
            "challenger": self.challenger,
            "references": self.references,
            "reasons": list(self.reasons),
            "failures": list(self.failures),
            "summary": self.summary,
            "evidence": self.evidence.to_dict() if self.evidence else None,
        }


def _size_reason(evidence: Evidence, gate: GateSettings) -> str | None:
    short = []
    if evidence.rows < gate.min_holdout_rows:
        short.append(f"{evidence.rows} rows < {gate.min_holdout_rows}")
    if evidence.users < gate.min_holdout_users:
        short.append(f"{evidence.users} users < {gate.min_holdout_users}")
    return f"holdout too small to judge: {', '.join(short)}" if short else None


def decide(
    challenger: dict[str, float],
    baselines: dict[str, dict[str, float]],
    champion: dict[str, float] | None,
    gate: GateSettings,
    blockers: Sequence[str] = (),
    evidence: Evidence | None = None,
) -> GateVerdict:
    """Compare the challenger with each baseline and the champion on the gate's metric.

    All metrics must come from the same holdout. A missing or NaN challenger metric fails
    the gate: a model that cannot be measured is not promoted. With ``evidence`` (the
    ranker's gate) the holdout must be large enough and each reference must be beaten by
    the lower bound of the bootstrap interval, not by the point estimate; without it (a
    gate whose metric has no per-user form) the point estimates decide.
    """
    m = gate.metric
    value = challenger.get(m, float("nan"))
    refs = {name: metrics[m] for name, metrics in baselines.items()}
    margins = dict.fromkeys(refs, gate.min_margin_over_baseline)
    if champion is not None:
        refs["champion"] = champion[m]
        margins["champion"] = gate.min_margin_over_champion
    reasons: list[str] = []
    failures: list[str] = []
    passed_refs: list[str] = []

    def fail(reason: str) -> None:
        reasons.append(reason)
        failures.append(reason)

    if math.isnan(value):
        fail(f"challenger {m} is undefined")
    if evidence is not None and (small := _size_reason(evidence, gate)):
        fail(small)
    for name, ref in refs.items():
        if evidence is not None:
            iv = evidence.intervals.get(name)
            if iv is None or math.isnan(iv.low):
                fail(f"{m} vs {name}: no bootstrap interval, cannot judge")
                continue
            passed = iv.low > margins[name]
            verdict = (
                f"lower bound > margin {margins[name]}"
                if passed
                else f"lower bound <= margin {margins[name]}: not significant"
            )
            reason = (
                f"{m} {value:.4f} vs {name} {ref:.4f}: {iv.text(evidence.confidence)}, {verdict}"
            )
        else:
            # a baseline must be matched plus its margin; the champion must be strictly
            # beaten, so retraining on the same data (a tie) does not churn deployments
            need = ref + margins[name]
            passed = value > need if name == "champion" else value >= need
            sign = (">" if name == "champion" else ">=") if passed else "<="
            reason = f"{m} {value:.4f} {sign} {name} {ref:.4f} + margin {margins[name]}"
            if not passed:
                reason += f" (needs {'>' if name == 'champion' else '>='} {need:.4f})"
        if passed:
            reasons.append(reason)
            passed_refs.append(name)
        else:
            fail(reason)
    if champion is None and not blockers:
        reasons.append("no champion yet")
    for blocker in blockers:  # found upstream: they forbid promotion whatever the metrics
        fail(blocker)
    ok = not failures
    return GateVerdict(
        ok, m, value, refs, tuple(reasons), evidence, tuple(failures), tuple(passed_refs)
    )
