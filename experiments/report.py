"""An A/B experiment's report: per-arm figures day by day, the analysis as it accumulated,
the decision, and an HTML page for people.

The input is the experiment's impression rows with the arm that served each one (the lake's
``feedback`` table, or closed-loop days): one row per shown video with its outcomes, its
``ts``, ``user_id``, ``request_id`` and ``arm`` (``champion`` or ``challenger``). What is
computed, and why:

- :func:`daily_table`: per day and arm, users, requests, impressions, the primary metric
  (value per request: completed, liked or shared), the skip rate guardrail and, when the
  videos' upload times are given, the share of impressions of fresh videos (uploaded less
  than ``fresh_hours`` before they were shown: a ranker that starves new uploads hurts the
  creators who post them, which no engagement metric shows).
- :func:`build_report`: the analysis of every day from the start through each day
  (:func:`experiments.analysis.analyse`, users as the unit, CUPED when pre-experiment rows
  are given). The decision uses the always-valid interval, so reading the report every day
  and stopping on it is valid; before the planned horizon (``horizon_days``) an
  inconclusive experiment keeps running, after it there is no detectable effect. The
  minimum detectable effect at the users so far says what the experiment could have seen.
- Where the simulator's truth per arm is given (closed-loop days), the report sets the
  oracle's difference beside the estimate: the check that the estimate is right.
- :func:`render_html`: the page, with plotly figures (one copy of plotly.js inlined, so
  the file opens offline and as an MLflow artifact).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from experiments.analysis import CONTROL, TREATMENT, Analysis, analyse, user_table
from experiments.stats import Decision, Verdict, mde

#: the arms as serving names them, and the analysis' roles
CHAMPION, CHALLENGER = "champion", "challenger"
ROLE = {CHAMPION: CONTROL, CHALLENGER: TREATMENT}
REQUIRED = ("ts", "user_id", "request_id", "arm", "completed", "liked", "shared", "skipped")


def _check(rows: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED if c not in rows.columns]
    if missing:
        raise ValueError(f"experiment rows lack the columns {missing}")
    unknown = set(rows["arm"].unique()) - set(ROLE)
    if unknown:
        raise ValueError(f"unknown arms {sorted(unknown)}: expected champion and challenger")


def _days(rows: pd.DataFrame) -> pd.Series:
    ts = pd.to_datetime(rows["ts"], utc=True)
    return ts.dt.date


def daily_table(
    rows: pd.DataFrame, videos: pd.DataFrame | None = None, fresh_hours: float = 24.0
) -> pd.DataFrame:
    """One row per (day, arm): users, requests, impressions, value_per_request, skip_rate,
    and fresh_share where ``videos`` (``video_id``, ``upload_ts``) is given."""
    _check(rows)
    value = rows["completed"] | rows["liked"] | rows["shared"]
    frame = pd.DataFrame(
        {
            "day": _days(rows),
            "arm": rows["arm"].astype(str),
            "user_id": rows["user_id"],
            "request_id": rows["request_id"],
            "value": value.astype(np.int64),
            "skip": rows["skipped"].astype(np.int64),
        }
    )
    if videos is not None:
        upload = pd.to_datetime(videos.set_index("video_id")["upload_ts"], utc=True)
        age = pd.to_datetime(rows["ts"], utc=True) - rows["video_id"].map(upload)
        frame["fresh"] = (age < pd.Timedelta(hours=fresh_hours)).astype(np.int64)
    g = frame.groupby(["day", "arm"], sort=True)
    out = pd.DataFrame(
        {
            "users": g["user_id"].nunique(),
            "requests": g["request_id"].nunique(),
            "impressions": g.size(),
            "value_per_request": g["value"].sum() / g["request_id"].nunique(),
            "skip_rate": g["skip"].mean(),
        }
    )
    if videos is not None:
        out["fresh_share"] = g["fresh"].mean()
    return out.reset_index()


@dataclass(frozen=True)
class DayAnalysis:
    """The analysis of the days from the start through ``day``."""

    day: date
    analysis: Analysis
    verdict: Verdict

    def to_dict(self) -> dict[str, object]:
        return {
            "day": self.day.isoformat(),
            **self.analysis.to_dict(),
            "verdict": self.verdict.to_dict(),
        }


@dataclass
class ExperimentReport:
    """Everything the report shows; :meth:`to_dict` for scripts and the JSON record."""

    share: float
    horizon_days: int
    daily: pd.DataFrame
    cumulative: list[DayAnalysis]
    mde: float | None  # of value per request, at the users so far (alpha 0.05, power 0.8)
    truth: pd.DataFrame | None = None
    truth_diff: dict[str, float] | None = None  # challenger - champion, the oracle's
    notes: list[str] = field(default_factory=list)

    @property
    def final(self) -> Analysis:
        if not self.cumulative:
            raise ValueError("no day could be analysed")
        return self.cumulative[-1].analysis

    @property
    def verdict(self) -> Verdict:
        if not self.cumulative:
            return Verdict(Decision.KEEP_RUNNING, ("not enough users in each arm yet to analyse",))
        return self.cumulative[-1].verdict

    @property
    def decision(self) -> Decision:
        return self.verdict.decision

    @property
    def days(self) -> list[date]:
        return sorted(set(self.daily["day"]))

    def to_dict(self) -> dict[str, object]:
        return {
            "decision": str(self.decision),
            "reasons": list(self.verdict.reasons),
            "share": self.share,
            "horizon_days": self.horizon_days,
            "days": [d.isoformat() for d in self.days],
            "daily": _records(self.daily),
            "cumulative": [c.to_dict() for c in self.cumulative],
            "mde": self.mde,
            "truth_diff": self.truth_diff,
            "notes": self.notes,
        }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].astype(str)
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
        for r in out.to_dict("records")
    ]


def _arms_of(rows: pd.DataFrame, notes: list[str]) -> dict[str, str]:
    """Each user's arm; a user seen in both arms (a broken assignment) counts in the arm
    that served most of their impressions, and the report says how many there were."""
    counts = rows.groupby(["user_id", "arm"]).size().reset_index(name="n")
    both = counts["user_id"].duplicated(keep=False)
    if both.any():
        notes.append(
            f"{counts.loc[both, 'user_id'].nunique():,} users were served by both arms "
            "(each counted in the arm that served most of their impressions)"
        )
    top = counts.sort_values("n", ascending=False).drop_duplicates("user_id")
    return {str(u): ROLE[a] for u, a in zip(top["user_id"], top["arm"], strict=True)}


def _truth_diff(truth: pd.DataFrame) -> dict[str, float]:
    """Challenger - champion of the oracle's figures over every day: per-impression means
    weighted by impressions, value per request by requests."""
    out: dict[str, float] = {}
    by_arm: dict[str, dict[str, float]] = {}
    for arm, t in truth.groupby("arm"):
        w = t["impressions"].to_numpy(float)
        figures = {
            col: float(np.average(t[col].to_numpy(float), weights=w))
            for col in ("mean_utility", "expected_completion", "completion_rate")
            if col in t.columns
        }
        if "value_per_request" in t.columns:
            req = t["requests"].to_numpy(float)
            figures["value_per_request"] = float(
                (t["value_per_request"].to_numpy(float) * req).sum() / req.sum()
            )
        by_arm[str(arm)] = figures
    if CHAMPION in by_arm and CHALLENGER in by_arm:
        for col, v in by_arm[CHALLENGER].items():
            out[col] = v - by_arm[CHAMPION][col]
    return out


def build_report(
    rows: pd.DataFrame,
    share: float,
    pre: pd.DataFrame | None = None,
    videos: pd.DataFrame | None = None,
    truth: pd.DataFrame | None = None,
    horizon_days: int = 14,
    horizon_users: int | None = None,
    fresh_hours: float = 24.0,
    alpha: float = 0.05,
) -> ExperimentReport:
    """The report of an experiment's rows (see the module docstring).

    ``share``: the challenger's configured share of users (the SRM check's expectation).
    ``pre``: impression rows from before the start (CUPED's covariate). ``truth``: the
    oracle's figures per day and arm (columns ``day``, ``arm`` and those of
    :func:`experiments.closed_loop.arm_truth`). ``horizon_users``: the planned number of
    users, where the always-valid interval is tightest; unset, the users of every day in
    ``rows`` (one fixed value for all the daily looks of this report)."""
    _check(rows)
    notes: list[str] = []
    daily = daily_table(rows, videos, fresh_hours)
    arm_of = _arms_of(rows, notes)
    day_of = _days(rows)
    days = sorted(set(day_of))
    horizon = horizon_users or len(arm_of)
    cumulative: list[DayAnalysis] = []
    for i, d in enumerate(days, start=1):
        so_far = rows[(day_of <= d).to_numpy()]
        users = user_table(so_far, arm_of.__getitem__, pre)
        if min((users["arm"] == role).sum() for role in (CONTROL, TREATMENT)) < 2:
            notes.append(f"{d}: fewer than two users in an arm, not analysed")
            continue
        a = analyse(users, share, horizon_users=max(horizon, len(users)), alpha=alpha)
        cumulative.append(DayAnalysis(d, a, _by_horizon(a.verdict, i, horizon_days)))
    found_mde = None
    if cumulative:
        last = cumulative[-1].analysis
        n0, n1 = last.users[CONTROL], last.users[TREATMENT]
        sd = last.primary.se / float(np.sqrt(1 / n0 + 1 / n1))  # per-user sd (CUPED's)
        found_mde = mde(n0 + n1, sd, n1 / (n0 + n1)) if sd > 0 else None
        notes.extend(last.notes)
    return ExperimentReport(
        share=share,
        horizon_days=horizon_days,
        daily=daily,
        cumulative=cumulative,
        mde=found_mde,
        truth=truth,
        truth_diff=_truth_diff(truth) if truth is not None and len(truth) else None,
        notes=notes,
    )


def _by_horizon(verdict: Verdict, days: int, horizon_days: int) -> Verdict:
    """The decision with the horizon counted in days: before it, an inconclusive
    experiment keeps running; from it on, it has no detectable effect."""
    if verdict.decision not in (Decision.KEEP_RUNNING, Decision.NO_EFFECT):
        return verdict
    primary = verdict.reasons[0].split(":")[0]
    if days < horizon_days:
        why = f"{primary}: not significant yet ({days} of {horizon_days} days)"
        return Verdict(Decision.KEEP_RUNNING, (why,))
    why = f"{primary}: not significant at the horizon ({days} of {horizon_days} days)"
    return Verdict(Decision.NO_EFFECT, (why,))


# -- HTML ------------------------------------------------------------------------------------

_COLOURS = {CHAMPION: "#1f77b4", CHALLENGER: "#d62728"}
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222 }
table { border-collapse: collapse; margin: 0.5em 0 1.5em } td, th { padding: 3px 10px;
border-bottom: 1px solid #ddd; text-align: right } th:first-child, td:first-child
{ text-align: left } .decision { font-size: 1.4em; padding: 0.6em 1em; border-radius: 6px }
.ship { background: #d9f2d9 } .harm, .invalid { background: #f8d7d7 }
.running, .none { background: #f2f2d9 } .note { color: #666 }
"""


def _fmt(v: object, digits: int = 4) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return f"{int(v):,}"
    if isinstance(v, float | np.floating):
        return "n/a" if v != v else f"{float(v):.{digits}f}"
    return html.escape(str(v))


def _table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _kv(pairs: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in pairs)
    return f"<table>{rows}</table>"


def _figures(report: ExperimentReport) -> list[Any]:
    import plotly.graph_objects as go

    figs = []
    metrics = [("value_per_request", "value per request"), ("skip_rate", "skip rate")]
    if "fresh_share" in report.daily.columns:
        metrics.append(("fresh_share", "share of impressions of fresh videos"))
    for col, label in metrics:
        fig = go.Figure()
        for arm, t in report.daily.groupby("arm"):
            fig.add_scatter(
                x=[str(d) for d in t["day"]],
                y=t[col],
                name=str(arm),
                mode="lines+markers",
                line={"color": _COLOURS.get(str(arm))},
            )
        fig.update_layout(title=f"{label} per day, by arm", height=320, yaxis_title=label)
        figs.append(fig)
    if report.cumulative:
        x = [c.day.isoformat() for c in report.cumulative]
        est = [c.analysis.primary.estimate for c in report.cumulative]
        fig = go.Figure()
        for name, attr, colour in (
            ("always-valid interval", "primary_always_valid", "rgba(214,39,40,0.15)"),
            ("95% fixed-horizon interval", "primary", "rgba(214,39,40,0.35)"),
        ):
            lo = [getattr(c.analysis, attr).low for c in report.cumulative]
            hi = [getattr(c.analysis, attr).high for c in report.cumulative]
            fig.add_scatter(x=x, y=hi, mode="lines", line={"width": 0}, showlegend=False)
            fig.add_scatter(
                x=x,
                y=lo,
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                fillcolor=colour,
                name=name,
            )
        fig.add_scatter(x=x, y=est, mode="lines+markers", name="estimate", line={"color": "black"})
        if report.truth_diff and "value_per_request" in report.truth_diff:
            fig.add_hline(
                y=report.truth_diff["value_per_request"],
                line_dash="dot",
                annotation_text="oracle's difference",
            )
        fig.add_hline(y=0, line_color="grey")
        fig.update_layout(
            title="challenger - champion, value per request, cumulative from the start",
            height=360,
        )
        figs.append(fig)
    if report.truth is not None and "mean_utility" in report.truth.columns:
        fig = go.Figure()
        for arm, t in report.truth.groupby("arm"):
            fig.add_scatter(
                x=[str(d) for d in t["day"]],
                y=t["mean_utility"],
                name=str(arm),
                mode="lines+markers",
                line={"color": _COLOURS.get(str(arm))},
            )
        fig.update_layout(
            title="oracle truth: mean hidden utility per impression, by arm", height=320
        )
        figs.append(fig)
    return figs


_CLASS = {
    Decision.SHIP: "ship",
    Decision.STOP_FOR_HARM: "harm",
    Decision.INVALID: "invalid",
    Decision.KEEP_RUNNING: "running",
    Decision.NO_EFFECT: "none",
}


def render_html(report: ExperimentReport, title: str, meta: dict[str, str]) -> str:
    """The report as one self-contained HTML page (``meta``: what the experiment is, e.g.
    its salt, versions and start day, shown at the top)."""
    v = report.verdict
    parts = [
        "<!DOCTYPE html>",
        f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Experiment {html.escape(title)}</h1>",
        _kv([(k, html.escape(str(val))) for k, val in meta.items()]),
        f"<div class='decision {_CLASS[v.decision]}'><b>decision: "
        f"{html.escape(str(v.decision))}</b></div>",
        "<ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in v.reasons) + "</ul>",
    ]
    if report.cumulative:
        a = report.final
        srm = a.srm
        parts += [
            "<h2>Analysis of every day so far</h2>",
            _kv(
                [
                    (
                        "users (champion / challenger)",
                        f"{a.users[CONTROL]:,} / {a.users[TREATMENT]:,}",
                    ),
                    (
                        "value per request (champion / challenger)",
                        f"{a.value_per_request[CONTROL]:.4f} / "
                        f"{a.value_per_request[TREATMENT]:.4f}",
                    ),
                    (
                        "difference, 95% fixed-horizon",
                        f"{a.primary.estimate:+.4f} "
                        f"({a.primary.low:+.4f} .. {a.primary.high:+.4f})",
                    ),
                    (
                        "difference, always-valid (decides)",
                        f"{a.primary_always_valid.low:+.4f} .. {a.primary_always_valid.high:+.4f}",
                    ),
                    (
                        "skip rate (champion / challenger)",
                        f"{a.skip_rate[CONTROL]:.4f} / {a.skip_rate[TREATMENT]:.4f}",
                    ),
                    (
                        "sample ratio (SRM check)",
                        f"{srm.users[0]:,} / {srm.users[1]:,} users for a {srm.expected_share:.1%} "
                        f"challenger share: chi-square p = {srm.p_value:.3g} ("
                        + ("MISMATCH: the split is broken" if srm.mismatch else "as configured")
                        + ")",
                    ),
                    (
                        "CUPED",
                        f"theta {a.cuped_theta:.3f} on each user's pre-experiment value per request"
                        if a.cuped_theta
                        else "off (no pre-experiment rows for these users)",
                    ),
                    (
                        "power (MDE)",
                        "n/a"
                        if report.mde is None
                        else f"MDE {report.mde:.4f} of value per request at these users "
                        "(two-sided 5%, power 80%)",
                    ),
                ]
            ),
        ]
    if report.truth_diff:
        est = report.final.primary.estimate if report.cumulative else float("nan")
        rows = [("estimated difference of value per request", _fmt(est))]
        rows += [(f"oracle's difference of {k}", _fmt(val)) for k, val in report.truth_diff.items()]
        parts += ["<h2>Oracle truth beside the estimate</h2>", _kv(rows)]
    figs = _figures(report)
    parts.append("<h2>Over days</h2>")
    for i, fig in enumerate(figs):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    parts += ["<h2>Per arm, per day</h2>", _table(report.daily)]
    if report.cumulative:
        cum = pd.DataFrame(
            [
                {
                    "through": c.day.isoformat(),
                    "users": sum(c.analysis.users.values()),
                    "estimate": c.analysis.primary.estimate,
                    "low (95%)": c.analysis.primary.low,
                    "high (95%)": c.analysis.primary.high,
                    "low (always-valid)": c.analysis.primary_always_valid.low,
                    "high (always-valid)": c.analysis.primary_always_valid.high,
                    "SRM p": c.analysis.srm.p_value,
                    "decision": str(c.verdict.decision),
                }
                for c in report.cumulative
            ]
        )
        parts += ["<h2>Cumulative analysis, day by day</h2>", _table(cum)]
    if report.truth is not None and len(report.truth):
        parts += ["<h2>Oracle truth per day and arm</h2>", _table(report.truth)]
    if report.notes:
        parts.append(
            "<p class='note'>" + "<br>".join(html.escape(n) for n in report.notes) + "</p>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)
