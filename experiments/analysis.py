"""An A/B test's analysis from an impression log: per-user aggregates, then the statistics.

The log is the lake's ``impressions`` table (or the served log joined with feedback): one
row per shown video with its outcomes. Users are the unit: each user's requests, value
(positive engagements: completed, liked or shared) and skips are summed, the arm comes from
the experiment's assignment (a stable hash of salt and user id, as serving assigns it), and
the pre-experiment days give each user's covariate for CUPED.

The primary metric is value per request, a ratio metric; it is analysed through its
linearisation (each user's ``(value - r * requests) / mean requests`` with the pooled ratio
``r``), whose difference of means equals the delta-method difference of ratios to first
order and which CUPED can adjust. The guardrail is the skip rate (skips per impression, lower
is better).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from experiments.stats import (
    Interval,
    SrmResult,
    Verdict,
    always_valid,
    cuped,
    decide,
    diff_of_means,
    srm,
)

CONTROL, TREATMENT = "control", "treatment"


def user_table(
    impressions: pd.DataFrame,
    arm_of: Callable[[str], str],
    pre: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per user of ``impressions``: arm, requests, impressions, value, skips, and
    (from ``pre``, the days before the experiment) pre_requests and pre_value (0 for users
    without pre-experiment activity)."""
    imp = impressions.assign(
        _value=(impressions["completed"] | impressions["liked"] | impressions["shared"]).astype(
            np.int64
        ),
        _skip=impressions["skipped"].astype(np.int64),
    )
    g = imp.groupby("user_id", sort=True)
    users = pd.DataFrame(
        {
            "requests": g["request_id"].nunique(),
            "impressions": g.size(),
            "value": g["_value"].sum(),
            "skips": g["_skip"].sum(),
        }
    )
    users["arm"] = [arm_of(str(u)) for u in users.index]
    users["pre_requests"] = 0
    users["pre_value"] = 0
    if pre is not None and len(pre):
        pv = (pre["completed"] | pre["liked"] | pre["shared"]).astype(np.int64)
        pg = pre.assign(_value=pv).groupby("user_id")
        users["pre_requests"] = pg["request_id"].nunique().reindex(users.index).fillna(0)
        users["pre_value"] = pg["_value"].sum().reindex(users.index).fillna(0)
    return users


def _linearised(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    r = num.sum() / den.sum()
    return (num - r * den) / den.mean()


@dataclass
class Analysis:
    """Per-arm figures, the intervals (fixed-horizon and always-valid) and the decision."""

    users: dict[str, int]
    value_per_request: dict[str, float]
    skip_rate: dict[str, float]
    primary: Interval  # fixed horizon, CUPED-adjusted where a covariate exists
    primary_always_valid: Interval
    skip_rate_diff: Interval
    srm: SrmResult
    verdict: Verdict
    cuped_theta: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "users": self.users,
            "value_per_request": self.value_per_request,
            "skip_rate": self.skip_rate,
            "primary": self.primary.to_dict(),
            "primary_always_valid": self.primary_always_valid.to_dict(),
            "skip_rate_diff": self.skip_rate_diff.to_dict(),
            "srm": self.srm.to_dict(),
            "verdict": self.verdict.to_dict(),
            "cuped_theta": self.cuped_theta,
            "notes": self.notes,
        }


def analyse(
    users: pd.DataFrame,
    treatment_share: float,
    horizon_users: int | None = None,
    use_cuped: bool = True,
    alpha: float = 0.05,
) -> Analysis:
    """The analysis of a :func:`user_table`. ``horizon_users``: the planned number of users
    (the always-valid interval is tightest there; the decision may say "no detectable
    effect" once it is reached)."""
    arms = {arm: users[users["arm"] == arm] for arm in (CONTROL, TREATMENT)}
    if min(len(a) for a in arms.values()) < 2:
        raise ValueError("each arm needs at least two users")
    check = srm(len(arms[CONTROL]), len(arms[TREATMENT]), treatment_share)
    lin = _linearised(users["value"].to_numpy(float), users["requests"].to_numpy(float))
    theta = 0.0
    notes = []
    pre_den = users["pre_requests"].to_numpy(float)
    if use_cuped and pre_den.sum() > 0:
        pre_lin = np.where(
            pre_den > 0,
            _linearised(users["pre_value"].to_numpy(float), np.maximum(pre_den, 1e-9)),
            0.0,
        )
        lin, theta = cuped(lin, pre_lin)
        notes.append(f"CUPED on each user's pre-experiment value per request (theta {theta:.3f})")
    is_t = (users["arm"] == TREATMENT).to_numpy()
    primary = diff_of_means(lin[~is_t], lin[is_t], confidence=1 - alpha)
    n = len(users)
    horizon = horizon_users or n
    tau2 = primary.se**2 * n / horizon  # the estimate's variance at the horizon
    seq = always_valid(primary.estimate, primary.se, tau2=tau2, alpha=alpha)

    skip_c = arms[CONTROL]["skips"].sum() / arms[CONTROL]["impressions"].sum()
    skip_t = arms[TREATMENT]["skips"].sum() / arms[TREATMENT]["impressions"].sum()
    skip_lin = _linearised(users["skips"].to_numpy(float), users["impressions"].to_numpy(float))
    skip = diff_of_means(skip_lin[~is_t], skip_lin[is_t], confidence=1 - alpha)
    skip_seq = always_valid(-skip.estimate, skip.se, tau2=skip.se**2 * n / horizon, alpha=alpha)
    verdict = decide(seq, {"skip rate (negated: lower is better)": skip_seq}, check, n >= horizon)
    vpr = {arm: float(a["value"].sum() / a["requests"].sum()) for arm, a in arms.items()}
    return Analysis(
        users={arm: len(a) for arm, a in arms.items()},
        value_per_request=vpr,
        skip_rate={CONTROL: float(skip_c), TREATMENT: float(skip_t)},
        primary=primary,
        primary_always_valid=seq,
        skip_rate_diff=skip,
        srm=check,
        verdict=verdict,
        cuped_theta=theta,
        notes=notes,
    )


def aa_false_positive_rate(
    impressions: pd.DataFrame,
    salts: Iterable[str],
    treatment_share: float,
    bucket: Callable[[str, str], float],
    pre: pd.DataFrame | None = None,
    alpha: float = 0.05,
) -> tuple[float, int]:
    """(share of A/A analyses whose fixed-horizon primary interval excludes zero, analyses
    run): the same log split by each salt, as serving would split it (``bucket``: the
    user's position in [0, 1) for a salt). Nominally ``alpha``."""
    hits = runs = 0
    base = user_table(impressions, lambda _: CONTROL, pre)  # the aggregates do not depend on it
    for salt in salts:
        users = base.assign(
            arm=[
                TREATMENT if bucket(str(u), salt) < treatment_share else CONTROL for u in base.index
            ]
        )
        a = analyse(users, treatment_share, alpha=alpha)
        hits += a.primary.significant
        runs += 1
    return (hits / runs if runs else float("nan")), runs
