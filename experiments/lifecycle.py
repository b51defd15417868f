"""An A/B experiment's life: its record, its data, its report and decision.

An experiment is a small JSON record, ``<home>/experiments/<salt>.json``: the salt (a new
salt reshuffles users, so every experiment has its own), the challenger's share of users,
the start day, the champion and challenger versions it compares, the planned horizon in
days and its state (running, stopped, shipped). ``<home>/experiments/ACTIVE`` names the
running one: serving has one split at a time.

The data is either what serving logged (the lake's ``feedback`` table, whose rows carry the
arm) or closed-loop days stored under ``<home>/experiments/<salt>/`` (:func:`store_days`:
each day's impression rows with the arm, and the oracle's truth per arm). :func:`report`
analyses the days since the start (:mod:`experiments.report`), writes the HTML, logs it on
the challenger version's MLflow run, tags the version with the decision, and on "ship"
promotes the challenger through the review path it is handed, unless manual approval is on
(``gate.manual_approval``): then shipping is only recommended. The command line
(``reelrank experiment``, :mod:`reelrank.experiment`) and the ``reelrank_experiment`` DAG
run it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reelrank.errors import MissingDataError, ModelNotFound, UsageError
from reelrank.settings import Settings

if TYPE_CHECKING:  # the command line imports this module on every start: pandas only on use
    import pandas as pd

    from experiments.closed_loop import ServedDay

log = logging.getLogger(__name__)
ACTIVE = "ACTIVE"
PRE_DAYS = 7  # pre-experiment days of each user's activity: CUPED's covariate
#: moves the champion alias: (version, who, why)
Promote = Callable[[str, str, str], object]


class ExperimentError(UsageError):
    """An experiment command asked for something the experiment's state does not allow."""


@dataclass
class ExperimentRecord:
    """What an experiment is; stored as ``<home>/experiments/<salt>.json``."""

    salt: str
    share: float
    start_day: str
    model: str
    champion_version: str
    challenger_version: str
    horizon_days: int = 14
    status: str = "running"  # running, stopped, shipped
    started_at: str = ""
    stopped_at: str | None = None
    simulated_days: list[str] = field(default_factory=list)
    decision: str | None = None
    reasons: list[str] = field(default_factory=list)
    report: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def start(self) -> date:
        return date.fromisoformat(self.start_day)

    @property
    def serving_env(self) -> dict[str, str]:
        """The environment that gives serving this experiment's split."""
        return {
            "REELRANK_SERVING__CHALLENGER_SHARE": str(self.share),
            "REELRANK_SERVING__EXPERIMENT_SALT": self.salt,
        }


def experiments_dir(settings: Settings) -> Path:
    return settings.home / "experiments"


def _record_path(settings: Settings, salt: str) -> Path:
    return experiments_dir(settings) / f"{salt}.json"


def data_dir(settings: Settings, salt: str) -> Path:
    """Where an experiment's simulated days and reports go."""
    return experiments_dir(settings) / salt


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def save(settings: Settings, record: ExperimentRecord) -> Path:
    path = _record_path(settings, record.salt)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record.to_dict(), indent=2))
    tmp.replace(path)
    return path


def load(settings: Settings, salt: str) -> ExperimentRecord:
    path = _record_path(settings, salt)
    if not path.is_file():
        raise ExperimentError(f"no experiment {salt!r} under {experiments_dir(settings)}")
    return ExperimentRecord(**json.loads(path.read_text()))


def active_salt(settings: Settings) -> str | None:
    """The running experiment's salt, or None."""
    path = experiments_dir(settings) / ACTIVE
    if not path.is_file():
        return None
    return path.read_text().strip() or None


def current(settings: Settings, salt: str | None = None) -> ExperimentRecord:
    """The experiment ``salt``, or the running one."""
    salt = salt or active_salt(settings)
    if salt is None:
        raise ExperimentError(
            "no experiment is running: start one with `reelrank experiment start`"
        )
    return load(settings, salt)


def start(
    settings: Settings,
    share: float,
    salt: str,
    start_day: date | None = None,
    horizon_days: int = 14,
) -> ExperimentRecord:
    """Record a new experiment of the challenger against the champion and make it the
    running one. Refused while another runs, for a salt used before (it would not
    reshuffle users), and without a champion and a challenger alias."""
    from models.registry import CHALLENGER, CHAMPION, alias_version, client

    if not 0.0 < share < 1.0:
        raise ExperimentError(f"--share must be strictly between 0 and 1, got {share}")
    if not salt or any(ch in salt for ch in "/\\\x00") or salt in (ACTIVE, ".", ".."):
        raise ExperimentError(f"{salt!r} cannot name an experiment")
    running = active_salt(settings)
    if running is not None:
        raise ExperimentError(
            f"experiment {running!r} is running: stop it first (`reelrank experiment stop`)"
        )
    if _record_path(settings, salt).exists():
        raise ExperimentError(
            f"salt {salt!r} was used by an earlier experiment: a new experiment needs a new "
            "salt, or its users would keep their arms"
        )
    c = client(settings)
    name = settings.ranker_model_name
    champion = alias_version(c, name, CHAMPION)
    challenger = alias_version(c, name, CHALLENGER)
    if challenger is None:
        raise ModelNotFound(
            f"{name} has no challenger alias: train a new version first (`reelrank train`); "
            "`reelrank models list` shows the aliases"
        )
    if champion is None:
        raise ModelNotFound(f"{name} has no champion to compare with: promote one first")
    if champion == challenger:
        raise ExperimentError(
            f"{name} v{champion} is both champion and challenger: nothing to compare"
        )
    record = ExperimentRecord(
        salt=salt,
        share=share,
        start_day=(start_day or datetime.now(UTC).date()).isoformat(),
        model=name,
        champion_version=champion,
        challenger_version=challenger,
        horizon_days=horizon_days,
        started_at=_now(),
    )
    save(settings, record)
    (experiments_dir(settings) / ACTIVE).write_text(salt)
    log.info("experiment %s started: %s v%s vs v%s", salt, name, challenger, champion)
    return record


def stop(settings: Settings, salt: str | None = None, status: str = "stopped") -> ExperimentRecord:
    """End the experiment (the running one by default): serving's split goes back to the
    settings' own once serving restarts."""
    record = current(settings, salt)
    if record.status == "running":
        record = replace(record, status=status, stopped_at=_now())
        save(settings, record)
    if active_salt(settings) == record.salt:
        (experiments_dir(settings) / ACTIVE).unlink()
    return record


# -- data -----------------------------------------------------------------------------------


def store_days(
    settings: Settings, record: ExperimentRecord, served: Sequence[ServedDay]
) -> ExperimentRecord:
    """Keep closed-loop days as the experiment's data (replacing any stored before): each
    day's impression rows with the arm, and the oracle's truth per arm."""
    out = data_dir(settings, record.salt) / "days"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.parquet"):
        old.unlink()
    days: list[str] = []
    for day in served:
        stamp = day.day.date().isoformat()
        day.impressions.to_parquet(out / f"impressions-{stamp}.parquet", index=False)
        truth = day.truth.rename_axis("arm").reset_index().assign(day=day.day.date())
        truth.to_parquet(out / f"truth-{stamp}.parquet", index=False)
        days.append(stamp)
    record = replace(record, simulated_days=days)
    save(settings, record)
    return record


@dataclass(frozen=True)
class ExperimentData:
    rows: pd.DataFrame
    truth: pd.DataFrame | None
    source: str


def experiment_data(settings: Settings, record: ExperimentRecord) -> ExperimentData:
    """The rows since the start: the simulated days when there are some, else the lake's
    feedback (what serving logged, with the arm)."""
    import pandas as pd

    from ingest.served import read_feedback

    days = data_dir(settings, record.salt) / "days"
    if record.simulated_days and days.is_dir():
        rows = pd.concat(
            [pd.read_parquet(days / f"impressions-{d}.parquet") for d in record.simulated_days],
            ignore_index=True,
        )
        truth = pd.concat(
            [pd.read_parquet(days / f"truth-{d}.parquet") for d in record.simulated_days],
            ignore_index=True,
        )
        truth["day"] = pd.to_datetime(truth["day"]).dt.date
        return ExperimentData(rows, truth, f"{len(record.simulated_days)} simulated days")
    rows = read_feedback(settings.lake_dir, start=record.start)
    if not len(rows):
        raise MissingDataError(
            f"no feedback with an arm since {record.start_day} in {settings.lake_dir}, and no "
            "simulated days: serve the experiment, or `reelrank experiment simulate --days N`"
        )
    return ExperimentData(rows, None, "the lake's feedback")


def _pre_rows(settings: Settings, record: ExperimentRecord) -> pd.DataFrame | None:
    from ingest.lake import read_table

    end = record.start - timedelta(days=1)
    pre = read_table(settings.lake_dir, "impressions", start=end - timedelta(PRE_DAYS - 1), end=end)
    return pre if len(pre) else None


def _videos(settings: Settings) -> pd.DataFrame | None:
    from ingest.lake import read_table

    videos = read_table(settings.lake_dir, "videos", columns=["video_id", "upload_ts"])
    return videos if len(videos) else None


# -- the report and its decision --------------------------------------------------------------


@dataclass
class ReportResult:
    record: ExperimentRecord
    decision: str
    reasons: list[str]
    html: Path
    source: str
    action: str  # what followed from the decision
    analysis: dict[str, Any]
    artifact: str | None = None
    promoted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.record.salt,
            "decision": self.decision,
            "reasons": self.reasons,
            "action": self.action,
            "report": str(self.html),
            "artifact": self.artifact,
            "source": self.source,
            "champion_version": self.record.champion_version,
            "challenger_version": self.record.challenger_version,
            "promoted": self.promoted,
            "analysis": self.analysis,
        }


def report(
    settings: Settings,
    out: Path | None = None,
    salt: str | None = None,
    promote: Promote | None = None,
) -> ReportResult:
    """Analyse the experiment's days, write the HTML (``out``, default under the
    experiment's directory), log it on the challenger version's MLflow run, tag the version
    with the decision, and act on it: "ship" promotes the challenger (with manual approval
    on, or without ``promote``, it only recommends it).

    ``promote(version, who, why)`` moves the champion alias (the review path of ``reelrank
    models promote``: ``training.review.promoter``); the wiring hands it in, since the
    experiments layer does not import training."""
    from experiments.report import build_report, render_html
    from experiments.stats import Decision
    from models.registry import client

    record = current(settings, salt)
    data = experiment_data(settings, record)
    rep = build_report(
        data.rows,
        share=record.share,
        pre=_pre_rows(settings, record),
        videos=_videos(settings),
        truth=data.truth,
        horizon_days=record.horizon_days,
        fresh_hours=settings.serving.fresh_hours,
    )
    last = max(rep.days)
    meta = {
        "salt": record.salt,
        "model": record.model,
        "champion": f"v{record.champion_version}",
        "challenger": f"v{record.challenger_version}",
        "challenger share": f"{record.share:.1%}",
        "days": f"{record.start_day} .. {last} ({len(rep.days)} of {record.horizon_days})",
        "data": data.source,
    }
    html_path = out or data_dir(settings, record.salt) / f"report-{last}.html"
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(render_html(rep, record.salt, meta))

    c = client(settings)
    name, version = record.model, record.challenger_version
    decision = rep.decision
    mv = c.get_model_version(name, version)
    artifact = None
    if mv.run_id:
        c.log_artifact(mv.run_id, str(html_path), artifact_path=f"experiments/{record.salt}")
        artifact = f"runs:/{mv.run_id}/experiments/{record.salt}/{html_path.name}"
    tags = {
        "experiment": record.salt,
        "experiment_decision": str(decision),
        "experiment_days": f"{record.start_day}..{last}",
        "experiment_at": _now(),
    }
    for k, v in tags.items():
        c.set_model_version_tag(name, version, k, v)

    status = record.status
    if decision is Decision.SHIP and record.status == "running":
        if settings.gate.manual_approval or promote is None:
            action = (
                f"ship recommended (manual approval is on): approve with "
                f"`reelrank models promote {version}`"
            )
            c.set_model_version_tag(name, version, "review_status", "experiment: ship recommended")
        else:
            why = f"experiment {record.salt}: " + "; ".join(rep.verdict.reasons)
            promote(version, f"experiment {record.salt}", why)
            action = f"promoted {name} v{version} to champion"
            status = "shipped"
    elif decision is Decision.SHIP:
        action = f"none: the experiment is {record.status}"
    elif decision in (Decision.STOP_FOR_HARM, Decision.INVALID):
        action = "stop the experiment: `reelrank experiment stop`"
    else:
        action = (
            "keep the experiment running"
            if decision is Decision.KEEP_RUNNING
            else "the horizon is reached: stop it (`reelrank experiment stop`)"
        )
    record = replace(
        record,
        decision=str(decision),
        reasons=list(rep.verdict.reasons),
        report=str(html_path),
    )
    save(settings, record)
    if status == "shipped":
        record = stop(settings, record.salt, status="shipped")
    return ReportResult(
        record,
        str(decision),
        list(rep.verdict.reasons),
        html_path,
        data.source,
        action,
        _summary(rep),
        artifact,
        promoted=status == "shipped",
    )


def _summary(rep: Any) -> dict[str, Any]:
    """The final analysis' figures for the command's output (the whole report is HTML)."""
    if not rep.cumulative:
        return {"notes": rep.notes}
    a = rep.final
    return {
        "users": a.users,
        "value_per_request": a.value_per_request,
        "skip_rate": a.skip_rate,
        "primary": a.primary.to_dict(),
        "primary_always_valid": a.primary_always_valid.to_dict(),
        "srm": a.srm.to_dict(),
        "cuped_theta": a.cuped_theta,
        "mde": rep.mde,
        "truth_diff": rep.truth_diff,
        "notes": rep.notes,
    }


def data_days(settings: Settings, record: ExperimentRecord) -> list[str]:
    """The days with data since the start: simulated ones, else the lake's feedback days."""
    if record.simulated_days:
        return list(record.simulated_days)
    root = settings.lake_dir / "feedback"
    if not root.is_dir():
        return []
    days = sorted(d.name[4:] for d in root.glob("day=*"))
    return [d for d in days if d >= record.start_day]
