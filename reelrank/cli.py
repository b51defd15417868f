"""The ``reelrank`` command line: every stage of the loop, and the whole loop as ``demo``.

Every command speaks in one of three modes, chosen once on the root command so that scripts
and people get the same commands: human (tables on stdout, progress bars on stderr),
``--quiet`` (nothing but errors on stderr and at most one final line) and ``--json`` (exactly
one JSON document on stdout, errors included). Exit codes mean the same for every command
(:class:`~reelrank.errors.ExitCode`): an expected failure is a
:class:`~reelrank.errors.ReelrankError` and exits with its code and one message; anything else
is a bug and keeps its stack trace.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TextIO

import typer
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from reelrank.errors import ConfigError, ExitCode, ModelNotFound, ReelrankError
from reelrank.experiment import with_experiment
from reelrank.progress import ProgressFn
from reelrank.settings import DataSettings, Settings, SourceOptions, get_settings
from reelrank.summary import LoopSummary

EPILOG = """[bold]Output modes[/] (before the command): [cyan]--json[/] prints exactly one JSON
document on stdout (errors as {"error": ...}); [cyan]-q/--quiet[/] prints only errors and at
most one final line. Otherwise tables go to stdout and progress bars to stderr.

[bold]Exit codes[/]

  0  ok
  1  a stage or the data failed (one message, no stack trace)
  2  bad usage (unknown command or option, a bad value)
  3  the loop stopped on purpose: the gate kept the first model back (demo, run),
     or drift was detected (monitor)
  4  a started service does not answer (status, up, serve), or a server the cluster
     profile needs (PostgreSQL, Redis) does not
"""


class Mode(StrEnum):
    human = "human"
    quiet = "quiet"
    json = "json"


class Bars:
    """A :data:`ProgressFn` drawn as rich progress bars, one per step name (the text before
    the first ``": "``; the rest is shown beside the bar while the step runs)."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            SpinnerColumn(finished_text="[green]✓[/]"),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.tasks: dict[str, Any] = {}

    def __call__(self, step: str, done: int, total: int) -> None:
        name, _, detail = step.partition(": ")
        running = detail and done < total
        desc = f"[bold]{escape(name)}[/]" + (f" [dim]{escape(detail)}[/]" if running else "")
        task = self.tasks.get(name)
        if task is None:
            task = self.tasks[name] = self.progress.add_task(desc, total=total)
        self.progress.update(task, completed=done, total=total, description=desc)


@dataclass
class Output:
    """Where a command's output goes, by mode. ``stdout`` is the real standard output, kept
    aside in quiet and JSON modes while anything a library prints goes to stderr (JSON) or
    nowhere (quiet), so that stdout holds only what the command means to say."""

    mode: Mode = Mode.human
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    ctx: typer.Context | None = None  # the root command's context: undoes the redirection
    _console: Console | None = None
    _err: Console | None = None

    @property
    def human(self) -> bool:
        return self.mode is Mode.human

    @property
    def console(self) -> Console:
        """Tables and result lines: stdout for people, silent otherwise."""
        if self._console is None:
            self._console = Console() if self.human else Console(quiet=True)
        return self._console

    @property
    def err(self) -> Console:
        """Errors, logs, spinners and progress bars: one console, so that log lines are
        drawn above the live bars."""
        if self._err is None:
            self._err = Console(stderr=True)
        return self._err

    @property
    def live(self) -> Console | None:
        """Where spinners and progress bars go (stderr), or None when they are off."""
        return self.err if self.human else None

    def switch(self, mode: Mode) -> None:
        """Enter ``mode``: keep the real stdout aside and send what libraries print to
        stderr (JSON) or nowhere (quiet) until the command ends."""
        if mode is self.mode or not self.human:
            return
        self.mode, self._console, self.stdout = mode, None, sys.stdout
        if self.ctx is None:
            return
        sink: TextIO = sys.stderr if mode is Mode.json else open(os.devnull, "w")  # noqa: SIM115
        self.ctx.with_resource(contextlib.redirect_stdout(sink))
        if mode is Mode.quiet:
            self.ctx.call_on_close(sink.close)

    @contextlib.contextmanager
    def progress(self) -> Iterator[ProgressFn | None]:
        """Progress bars on stderr while the block runs (human mode), else None."""
        if self.live is None:
            yield None
            return
        bars = Bars(self.live)
        # what libraries print meanwhile goes above the bars, on stderr: stdout keeps
        # only the command's result
        with contextlib.redirect_stdout(sys.stderr), bars.progress:
            yield bars

    def status(self, text: str) -> contextlib.AbstractContextManager[Any]:
        """A spinner on stderr while the block runs (human mode)."""
        return self.live.status(text) if self.live is not None else contextlib.nullcontext()

    def result(
        self,
        doc: Any,
        line: str | None = None,
        human: Callable[[Console], None] | None = None,
    ) -> None:
        """The command's result: ``doc`` as JSON, ``human`` (or the document, pretty) for
        people; when quiet, ``line`` if the command produced something a script needs next
        (a version, a URL, a file), else nothing: the exit code says how it went."""
        if self.mode is Mode.json:
            self._write(json.dumps(doc, indent=2, default=str))
        elif self.mode is Mode.quiet:
            if line:
                self._write(line)
        elif human is not None:
            human(self.console)
        else:
            self.console.print_json(json.dumps(doc, default=str))

    def error(self, message: str, code: int, **details: Any) -> None:
        """An error: a JSON object on stdout in JSON mode, one red line on stderr otherwise."""
        if self.mode is Mode.json:
            self._write(json.dumps({"error": message, "exit_code": code, **details}, default=str))
        else:
            self.err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)

    def _write(self, text: str) -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()


_current = Output()


def _out() -> Output:
    """The current invocation's output, set up by the root callback (every invocation runs
    it first; human when a command function is called directly)."""
    return _current


class ReelrankGroup(TyperGroup):
    """The root command: maps expected failures (:class:`~reelrank.errors.ReelrankError`,
    and usage errors) to their exit code and one message (a JSON object in JSON mode),
    whichever command raised them. Nothing else is expected: a ``ValueError`` or any other
    exception is a bug, so it leaves with its stack trace instead of posing as a failure of
    the data."""

    # typer vendors click and types this ``typer._click.core.Context``; typer.Context is the
    # public name of the same object, so the narrower annotation is only nominal
    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        global _current
        _current = ctx.obj = Output(ctx=ctx)  # a fresh output per invocation
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except typer.TyperException as err:  # usage errors: the framework prints them
            if _out().mode is Mode.json and err.exit_code == ExitCode.USAGE:
                _out().error(err.format_message(), ExitCode.USAGE)
            raise
        except ReelrankError as err:
            details = {k: v for k, v in err.details().items() if v}
            _out().error(err.brief, err.exit_code, **details)
            raise typer.Exit(code=err.exit_code) from None


app = typer.Typer(
    cls=ReelrankGroup,
    help="reelrank: short-video recommendation as a closed MLOps loop (Airflow, Feast, "
    "MLflow, BentoML, Evidently).",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)
models_app = typer.Typer(
    help="Inspect and move model aliases (champion, challenger) in the MLflow registry.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(models_app, name="models")
experiment_app = typer.Typer(
    help="A/B test the challenger against the champion on live or simulated users: start, "
    "status, simulate, report (the decision), stop.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(experiment_app, name="experiment")


@app.callback()
def root(
    ctx: typer.Context,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="print exactly one JSON document on stdout (for scripts)"),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="no progress, no tables: errors and one final line"),
    ] = False,
) -> None:
    """reelrank: short-video recommendation as a closed MLOps loop."""
    if as_json and quiet:
        raise typer.BadParameter("--json and --quiet exclude each other", param_hint="--json")
    if as_json or quiet:
        _out().switch(Mode.json if as_json else Mode.quiet)


class Scenario(StrEnum):
    none = "none"
    topic_surge = "topic-surge"
    interest_shift = "interest-shift"
    broken_feature = "broken-feature"

    @property
    def setting(self) -> str:
        return self.value.replace("-", "_")


DayOpt = Annotated[str | None, typer.Option(help="day to process, YYYY-MM-DD")]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="print JSON for scripts (same as `reelrank --json ...`)")
]


def _settings(default_home: str | None = None, **overrides: Any) -> Settings:
    """The settings: the environment's, with ``overrides`` (a command's options) winning, and
    ``default_home`` as the home unless the environment names one. Logging is set up for the
    output mode (see :func:`_quiet_libraries`). Nothing is written to ``os.environ``: child
    processes get these settings from :meth:`Settings.to_env`.

    A bad ``REELRANK_*`` value is bad usage (exit 2) in one message naming the variable, not
    pydantic's stack trace."""
    try:
        s = get_settings(**overrides)
        if default_home is not None and "home" not in s.model_fields_set:
            s = get_settings(**overrides, home=Path(default_home))
    except ValidationError as err:
        raise ConfigError(_bad_settings(err)) from err
    _quiet_libraries(s, _out())
    return with_experiment(s)  # a running experiment is serving's split


def _bad_settings(err: ValidationError) -> str:
    """Every bad setting of ``err`` in one line, each named as the environment variable that
    sets it (what a user edits), with pydantic's reason."""
    lines = []
    for e in err.errors():
        var = "REELRANK_" + "__".join(str(part) for part in e["loc"]).upper()
        lines.append(f"{var}: {e['msg']}")
    return "bad setting: " + "; ".join(lines)


def _quiet_libraries(s: Settings, out: Output) -> None:
    """Logs and warnings for the mode: warnings and errors on stderr (drawn above the
    progress bars for people; ``REELRANK_LOG_LEVEL`` asks for more), only errors when quiet,
    and our own progress bars instead of the libraries' (Feast, model loading). Everything
    is put back when the command ends, so that calling the app in process leaves no trace."""
    explicit = "REELRANK_LOG_LEVEL" in os.environ
    level = (
        logging.ERROR
        if out.mode is Mode.quiet
        else logging.getLevelName(s.log_level.upper() if explicit else "WARNING")
    )
    if not isinstance(level, int):  # an unknown level name
        level = logging.WARNING
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, root.manager.disable)
    saved_env = {k: os.environ.get(k) for k in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS")}
    os.environ.update({k: "1" for k in saved_env})
    handler: logging.Handler
    if out.human:
        from rich.logging import RichHandler

        handler = RichHandler(console=out.err, show_path=False, show_time=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)  # libraries that set their own loggers' levels (Feast) too
    root.handlers = [handler]
    root.setLevel(level)
    # libraries with handlers of their own (MLflow) obey only the global switch
    logging.disable(max(level - 10, logging.NOTSET))
    logging.getLogger("httpx").setLevel(logging.WARNING)

    quiet_warnings = level > logging.INFO  # libraries' deprecation chatter is not for users
    saved_show = warnings.showwarning
    if quiet_warnings:  # some libraries add "always" filters of their own: silence the display
        warnings.showwarning = lambda *args, **kwargs: None

    def restore() -> None:
        warnings.showwarning = saved_show
        root.handlers = saved[0]
        root.setLevel(saved[1])
        logging.disable(saved[2])
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    if out.ctx is not None:
        out.ctx.call_on_close(restore)


def _day(value: str | None, default: Callable[[], date]) -> date:
    if not value:
        return default()
    try:
        return date.fromisoformat(value)
    except ValueError as err:
        raise typer.BadParameter(f"{value!r} is not a day (YYYY-MM-DD)") from err


def _table(title: str, rows: list[tuple[str, str]]) -> Table:
    """The small two-column summary each long command ends with."""
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column(style="bold cyan", no_wrap=True)
    t.add_column()
    for k, v in rows:
        t.add_row(k, v)
    return t


def _fmt(v: Any, digits: int = 4) -> str:
    return f"{v:.{digits}f}" if isinstance(v, int | float) and v == v else "n/a"


@app.command()
def simulate(through: DayOpt = None) -> None:
    """Simulate the platform into the raw lake, day by day (a progress bar per day).

    Writes users, videos and each day's impressions up to --through (default: the last
    simulated day), validated against the lake's contracts; days already there are kept."""
    from ingest.pipeline import ingest_simulated

    s = _settings()
    out = _out()
    with out.progress() as progress:
        r = ingest_simulated(s, _day(through, lambda: s.sim.end_date), progress=progress)
    doc = r.to_dict()
    days = r.written.get("impressions", [])

    def human(c: Console) -> None:
        written = ", ".join(f"{t} {len(d)}" for t, d in r.written.items()) or "nothing new"
        c.print(
            _table(
                f"simulated world through {r.through}",
                [
                    ("partitions written", written),
                    ("impressions written", f"{r.impressions_rows:,}"),
                    ("days", f"{days[0]}..{days[-1]}" if days else "all already in the lake"),
                    ("lake", str(s.lake_dir)),
                ],
            )
        )

    out.result(doc, None, human)


@app.command()
def features(through: DayOpt = None) -> None:
    """Compute feature tables and caption embeddings, apply Feast and materialize.

    For every lake day up to --through that lacks them: the 1/7/28-day feature tables (per
    day and view), the MiniLM caption embeddings of new videos (per day), then `feast apply`
    and materialization into the online store; ends with a table of what was done."""
    from features.pipeline import run_features

    s = _settings()
    out = _out()
    with out.progress() as progress:
        r = run_features(s, _day(through, lambda: s.sim.end_date), progress=progress)
    doc = r.to_dict()
    emb = r.embedded

    def human(c: Console) -> None:
        rows = ", ".join(f"{v} {n:,}" for v, n in r.rows.items()) or "none (all up to date)"
        days = r.days_computed
        c.print(
            _table(
                f"features through {r.through}",
                [
                    ("days computed", f"{len(days)} ({days[0]}..{days[-1]})" if days else "0"),
                    ("rows written", rows),
                    (
                        "caption embeddings",
                        f"{emb.get('videos_embedded', 0):,} videos on "
                        f"{len(emb.get('days_embedded', []))} days embedded, "  # type: ignore[arg-type]
                        f"{emb.get('days_cached', 0)} days already embedded",
                    ),
                    ("Feast", f"applied, materialized ({r.materialized})"),
                ],
            )
        )

    out.result(doc, None, human)


@app.command()
def train(holdout: DayOpt = None) -> None:
    """Train retrieval and ranker, evaluate, register in MLflow and gate them.

    Point-in-time datasets from Feast, the two-tower (a progress bar per epoch) and the
    XGBoost ranker, both evaluated beside the baselines and the champion on --holdout
    (default: the latest featurized day); learning curves and review plots go to the MLflow
    run; the gate decides on promotion. Ends with a table of the metrics and the verdict."""
    from features.pipeline import latest_feature_day
    from reelrank.loop import run_training

    s = _settings()
    out = _out()
    with out.progress() as progress:
        r = run_training(s, _day(holdout, lambda: latest_feature_day(s)), progress=progress)
    gate, trained, retrieval = r.gate, r.trained, r.retrieval
    doc = {
        "version": gate.version,
        "promoted": gate.promoted,
        "pending_approval": gate.pending_approval,
        "metrics": trained.to_dict()["metrics"],
        "gate": gate.to_dict()["verdict"],
        "retrieval": {
            "version": retrieval.version,
            "promoted": retrieval.promoted,
            "verdict": retrieval.to_dict()["verdict"],
        },
        "run_id": trained.run_id,
    }
    verdict = (
        "promoted to champion"
        if gate.promoted
        else "passed, waiting for approval"
        if gate.pending_approval
        else "kept back by the gate"
    )
    line = f"{s.ranker_model_name} v{gate.version}: {verdict}"

    def human(c: Console) -> None:
        m = doc["metrics"]
        ch = m.get("challenger", {})
        vs = ", ".join(
            f"{k} {_fmt(m[k].get('ndcg_at_10'))}"
            for k in ("champion", "popularity", "recent_popularity", "oracle")
            if k in m
        )
        rm = retrieval.to_dict()["metrics"]
        w = r.datasets.window
        reasons = gate.verdict.summary
        c.print(
            _table(
                f"training on holdout {trained.holdout}",
                [
                    (
                        "window",
                        f"train {w['train_start']}..{w['train_end']}, holdout {w['holdout']}",
                    ),
                    (
                        "rows",
                        f"train {r.datasets.rows['train']:,}, "
                        f"holdout {r.datasets.rows['holdout']:,}",
                    ),
                    (
                        "retrieval",
                        f"v{retrieval.version}: R@100 "
                        f"{_fmt(rm.get('challenger', {}).get('recall_at_100'), 3)} vs popularity "
                        f"{_fmt(rm.get('popularity', {}).get('recall_at_100'), 3)}; gate "
                        + ("passed" if retrieval.verdict.promote else "failed"),
                    ),
                    (
                        "ranker NDCG@10",
                        f"{_fmt(ch.get('ndcg_at_10'))} (AUC {_fmt(ch.get('auc'), 3)}) vs {vs}",
                    ),
                    ("gate", f"{verdict}: {reasons}"),
                    ("MLflow run", f"{trained.run_id} (learning curves under review/)"),
                ],
            )
        )

    out.result(doc, line, human)


@app.command()
def monitor(day: DayOpt = None) -> None:
    """Check a day for drift against the champion's training data (exit 3 on drift).

    Evidently data and prediction drift, broken inputs, caption-embedding drift and online
    quality of --day (default: the latest featurized day) against the champion's training
    reference; alerts, writes the HTML report and ends with the verdict.

    A check by hand schedules no retraining and leaves the drift-episode state to the
    reelrank_monitoring DAG (whose first drifted check of an episode triggers training); to
    retrain now, run `reelrank dag reelrank_training`. Alerts are logged and, when
    REELRANK_DRIFT__WEBHOOK_URL is set, posted there as JSON (Slack-compatible `text`)."""
    from features.pipeline import latest_feature_day
    from monitoring.pipeline import run_monitoring

    s = _settings()
    out = _out()
    with out.progress() as progress:
        when = _day(day, lambda: latest_feature_day(s))
        result = run_monitoring(s, when, progress=progress, manual=True)
    verdict = "DRIFT" if result.drifted else "no drift"
    line = f"{result.day}: {verdict} (severity {result.severity}); {result.report_html}"

    def human(c: Console) -> None:
        c.print(
            _table(
                f"drift check of {result.day}",
                [
                    ("verdict", f"{verdict} (severity {result.severity})"),
                    ("compared", f"{result.source} vs champion v{result.champion_version}"),
                    ("share drifted", _fmt(result.share_drifted, 3)),
                    ("drifted columns", ", ".join(result.drifted_columns) or "none"),
                    ("broken inputs", ", ".join(result.broken_columns) or "none"),
                    ("retrain", result.action),
                    ("alerted", "yes" if result.alerted else "no"),
                    ("report", str(result.report_html)),
                ],
            )
        )

    out.result(result.to_dict(), line, human)
    if result.drifted:
        raise typer.Exit(code=ExitCode.STOPPED)


@app.command()
def serve(port: Annotated[int | None, typer.Option(help="port on 127.0.0.1")] = None) -> None:
    """Serve the champion over HTTP with BentoML until Ctrl-C (exit 4 if it does not start).

    Prints the URL once the server answers (in JSON mode a document with url, pid and log)."""
    from serving.server import start_server

    s = _settings()
    out = _out()
    # SIGTERM and SIGHUP stop it like Ctrl-C: the server runs in a session of its own, so
    # it is stopped here (SIGTERM to circusd, which stops its workers) or it outlives us
    with _signals_stop(signal.SIGTERM, signal.SIGHUP):
        try:
            with out.status("starting the BentoML server"):
                server = start_server(s, port=port)  # ServiceUnavailable (exit 4) if not
        except _Stopped:
            return  # start_server stopped what it had started
        line = f"serving {s.ranker_model_name}@champion at {server.url} (pid {server.pid})"
        out.result(
            {"url": server.url, "pid": server.pid, "log": server.log_path},
            line,
            lambda c: c.print(f"{line}; log: {server.log_path}; Ctrl-C stops it"),
        )
        try:
            server.process.wait()
        except (KeyboardInterrupt, _Stopped):
            pass
        finally:
            server.stop()


class _Stopped(Exception):
    """A stop signal arrived (raised in the main thread by :func:`_signals_stop`)."""


@contextlib.contextmanager
def _signals_stop(*signals: signal.Signals) -> Iterator[None]:
    """While inside, each of ``signals`` raises :class:`_Stopped` in the main thread, so
    ``finally`` blocks run; the previous handlers come back on the way out."""

    def stop(signum: int, frame: object) -> None:
        raise _Stopped(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, stop) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@app.command()
def bento(
    version: Annotated[
        str | None, typer.Option(help="the ranker version to pin (default: the champion)")
    ] = None,
) -> None:
    """Build a Bento of the service with the ranker pinned by version (``bentoml build``).

    The Bento holds the sources, the requirements and REELRANK_SERVING__PINNED_VERSION; its
    labels name the model, version, MLflow run and retrieval champion. Turn it into an image
    with ``bentoml containerize reelrank:<tag>``. Prints the tag (JSON: tag, path, labels)."""
    from serving.bento import build_bento

    s = _settings()
    out = _out()
    with out.status("bentoml build"):
        built = build_bento(s, version)
    line = built.tag
    out.result(
        built.to_dict(),
        line,
        lambda c: c.print(
            f"built {built.tag} with {s.ranker_model_name} v{built.ranker_version} pinned "
            f"({built.path}); `bentoml containerize {built.tag}` makes the image"
        ),
    )


@app.command()
def dag(
    dag_id: Annotated[
        str,
        typer.Argument(
            help="reelrank_features, reelrank_training, reelrank_deploy, reelrank_monitoring or "
            "reelrank_experiment"
        ),
    ],
    day: DayOpt = None,
) -> None:
    """Run one DAG for real through Airflow (`airflow dags test`), tasks shown as they run.

    The run's log goes to <home>/airflow/runs/<dag_id>.log; a failed task exits 1 with its
    error."""
    from reelrank.airflow_runner import migrate
    from reelrank.demo import run_dag_shown

    s = _settings()
    out = _out()
    with out.status("preparing the Airflow metadata DB"):
        migrate(s)
    r = run_dag_shown(
        s, dag_id, {"day": day} if day else None, f"for {day}" if day else "", out.live
    )
    line = f"{dag_id}: success in {r.seconds:.1f}s (log: {r.log_path})"
    out.result(
        {"dag_id": dag_id, "state": "success", "seconds": round(r.seconds, 1), "log": r.log_path},
        line,
        lambda c: c.print(f"[green]✓[/] {escape(line)}"),
    )


class ModelKind(StrEnum):
    ranker = "ranker"
    retrieval = "retrieval"


ModelOpt = Annotated[
    ModelKind, typer.Option("--model", help="which registered model: ranker or retrieval")
]


def _model_name(s: Settings, kind: ModelKind) -> str:
    return s.ranker_model_name if kind is ModelKind.ranker else s.retrieval_model_name


@models_app.command("list")
def models_list(model: ModelOpt = ModelKind.ranker) -> None:
    """List a registered model's versions: aliases, gate verdicts, review, key metric."""
    from models.registry import client

    s = _settings()
    out = _out()
    c = client(s)
    name = _model_name(s, model)
    metric = "ndcg_at_10" if model is ModelKind.ranker else "recall_at_100"
    by_version: dict[str, list[str]] = {}
    for alias, v in _registered_model(c, name).aliases.items():
        by_version.setdefault(str(v), []).append(alias)
    versions: list[dict[str, Any]] = [
        {
            "version": str(mv.version),
            "aliases": sorted(by_version.get(str(mv.version), [])),
            "gate": mv.tags.get("gate_verdict", ""),
            "review": mv.tags.get("review_status", ""),
            metric: mv.tags.get(metric, ""),
            "data_window": mv.tags.get("data_window", ""),
            "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(mv.creation_timestamp / 1e3)),
        }
        for mv in sorted(c.search_model_versions(f"name='{name}'"), key=lambda m: int(m.version))
    ]
    aliases = {a: v for v, names in by_version.items() for a in names}

    def human(console: Console) -> None:
        table = Table(
            "version", "aliases", "gate", "review", metric, "data window", "created", title=name
        )
        for v in versions:
            table.add_row(
                v["version"],
                ",".join(v["aliases"]),
                v["gate"],
                v["review"],
                v[metric],
                v["data_window"],
                v["created"],
            )
        console.print(table)

    out.result({"model": name, "aliases": aliases, "versions": versions}, None, human)


def _registered_model(c: Any, name: str) -> Any:
    """The registered model ``name``; :class:`ModelNotFound` when the registry has none (the
    model a person named with ``--model``), any other MLflow error as it is."""
    from mlflow.exceptions import MlflowException

    try:
        return c.get_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise ModelNotFound(f"{name} is not registered: train first") from err


WhyOpt = Annotated[str, typer.Option("--why", help="the reason, recorded on the version")]
WhoOpt = Annotated[str | None, typer.Option("--who", help="who decides (default: the OS user)")]


def _move_result(move: Any, verb: str) -> None:
    line = (
        f"{move.model}@champion: v{move.previous} -> v{move.version} "
        f"({verb}{move.who}, {move.at}: {move.why})"
    )
    doc = {
        "model": move.model,
        "alias": move.alias,
        "version": move.version,
        "previous": move.previous,
        "who": move.who,
        "why": move.why,
        "at": move.at,
    }
    _out().result(doc, line, lambda c: c.print(escape(line)))


@models_app.command("promote")
def models_promote(
    version: Annotated[str, typer.Argument(help="the version to make champion")],
    why: WhyOpt = "manual promotion",
    who: WhoOpt = None,
    model: ModelOpt = ModelKind.ranker,
) -> None:
    """Make VERSION the champion (approve a pending challenger, or pin any version).

    VERSION is loaded as serving would first: one that cannot serve is refused (exit 1).
    Who, when and why are recorded as tags on the version; serving follows."""
    from models.champion import verify_servable
    from models.registry import client
    from training.review import promote, reviewer

    s = _settings()
    name = _model_name(s, model)
    check = functools.partial(verify_servable, s, name)  # refuses a version that cannot serve
    move = promote(client(s), name, version, who or reviewer(), why, verify=check)
    _move_result(move, "by ")


@models_app.command("rollback")
def models_rollback(
    why: WhyOpt = "rollback",
    who: WhoOpt = None,
    model: ModelOpt = ModelKind.ranker,
) -> None:
    """Put the previous champion back (refused if it cannot be loaded); recorded as tags."""
    from models.champion import verify_servable
    from models.registry import client
    from training.review import reviewer, rollback

    s = _settings()
    name = _model_name(s, model)
    check = functools.partial(verify_servable, s, name)
    move = rollback(client(s), name, who or reviewer(), why, verify=check)
    _move_result(move, "rolled back by ")


def _record_rows(record: Any) -> list[tuple[str, str]]:
    return [
        ("experiment", record.salt),
        ("state", record.status),
        (
            "compares",
            f"{record.model} v{record.challenger_version} (challenger) vs "
            f"v{record.champion_version} (champion)",
        ),
        ("challenger share", f"{record.share:.1%} of users (salt {record.salt!r})"),
        ("start", f"{record.start_day}, horizon {record.horizon_days} days"),
    ]


@experiment_app.command("start")
def experiment_start(
    share: Annotated[
        float, typer.Option("--share", help="the challenger's share of users, in (0, 1)")
    ],
    salt: Annotated[
        str, typer.Option("--salt", help="the experiment's name and the split's hash salt (new)")
    ],
    day: Annotated[
        str | None, typer.Option(help="the first day, YYYY-MM-DD (default: today, UTC)")
    ] = None,
    horizon_days: Annotated[
        int, typer.Option("--horizon-days", min=1, help="planned length in days")
    ] = 14,
) -> None:
    """Start an A/B experiment of the challenger against the champion.

    Records the experiment in <home>/experiments/SALT.json (start day, share, champion and
    challenger versions) and makes it the running one: while it runs, the settings of
    every command carry its split (REELRANK_SERVING__CHALLENGER_SHARE and
    __EXPERIMENT_SALT), so serving started afterwards (`reelrank up`, `reelrank serve`)
    serves it. Refused (exit 1) without a challenger alias, and (exit 2) while another
    experiment runs or for a salt used before."""
    from experiments.lifecycle import start

    s = _settings()
    record = start(s, share, salt, _day(day, lambda: datetime.now(UTC).date()), horizon_days)
    line = f"experiment {record.salt} started on {record.start_day}"

    def human(c: Console) -> None:
        c.print(_table(line, _record_rows(record)))
        c.print(
            "serving reads the split when it starts: restart it (`reelrank down && reelrank "
            "up`); on the simulated world, `reelrank experiment simulate --days N` serves days"
        )

    _out().result({**record.to_dict(), "serving_env": record.serving_env}, line, human)


@experiment_app.command("status")
def experiment_status(
    salt: Annotated[
        str | None, typer.Option(help="an experiment (default: the running one)")
    ] = None,
) -> None:
    """Show the running experiment (or --salt): its split, versions, days with data and the
    last report's decision."""
    from experiments.lifecycle import active_salt, data_days, load

    s = _settings()
    out = _out()
    name = salt or active_salt(s)
    if name is None:
        out.result(
            {"experiment": None},
            "no experiment is running",
            lambda c: c.print("no experiment is running"),
        )
        return
    record = load(s, name)
    days = data_days(s, record)
    doc = {"experiment": record.to_dict(), "days_with_data": days}
    last = f"{record.decision} ({'; '.join(record.reasons)})" if record.decision else "none yet"
    rows = [
        *_record_rows(record),
        ("days with data", f"{days[0]}..{days[-1]} ({len(days)})" if days else "none yet"),
        ("last decision", last),
        ("last report", record.report or "none yet"),
    ]
    line = f"{record.salt}: {record.status}, decision {record.decision or 'none yet'}"
    out.result(doc, line, lambda c: c.print(_table(f"experiment {record.salt}", rows)))


@experiment_app.command("simulate")
def experiment_simulate(
    days: Annotated[int, typer.Option("--days", min=1, help="simulated days to serve")] = 3,
) -> None:
    """Serve the running experiment's first N days on the simulated world (closed loop).

    The real serving class answers every simulated request, champion and challenger split
    by the experiment's share and salt; each day's impressions (with the arm) and the
    oracle's truth per arm are stored under <home>/experiments/SALT/, for `report`."""
    from reelrank.experiment import simulate

    s = _settings()
    out = _out()
    with out.progress() as progress:
        record = simulate(s, days, progress)
    line = f"{record.salt}: simulated {record.simulated_days[0]}..{record.simulated_days[-1]}"
    out.result(
        {"experiment": record.salt, "simulated_days": record.simulated_days},
        line,
        lambda c: c.print(f"{line}; `reelrank experiment report` analyses them"),
    )


@experiment_app.command("report")
def experiment_report(
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="the HTML file (default: <home>/experiments/SALT/)"),
    ] = None,
    salt: Annotated[
        str | None, typer.Option(help="an experiment (default: the running one)")
    ] = None,
) -> None:
    """Analyse the days since the start and print the decision (ship, keep running, stop for
    harm, invalid, no detectable effect).

    Data: the experiment's simulated days, else the lake's feedback with the arm. Writes the
    HTML report (per-arm daily metrics, the always-valid interval, SRM, CUPED, MDE, the
    oracle's truth on simulated days), logs it on the challenger version's MLflow run and
    tags the version with the decision. "ship" promotes the challenger as `reelrank models
    promote` does, unless manual approval is on (REELRANK_GATE__MANUAL_APPROVAL): then it
    is only recommended."""
    from reelrank.experiment import report

    s = _settings()
    out = _out()
    with out.status("analysing the experiment"):
        r = report(s, out_file.resolve() if out_file else None, salt)
    line = f"{r.record.salt}: {r.decision}; {r.action}; report {r.html}"
    a = r.analysis

    def human(c: Console) -> None:
        rows = [("decision", f"[bold]{escape(r.decision)}[/]: {escape('; '.join(r.reasons))}")]
        if "primary" in a:
            p, av = a["primary"], a["primary_always_valid"]
            rows += [
                (
                    "users",
                    f"{a['users']['control']:,} champion / {a['users']['treatment']:,} challenger",
                ),
                (
                    "value per request",
                    f"{a['value_per_request']['control']:.4f} vs "
                    f"{a['value_per_request']['treatment']:.4f}: {p['estimate']:+.4f}, "
                    f"always-valid {av['low']:+.4f} .. {av['high']:+.4f}",
                ),
                ("SRM p", f"{a['srm']['p_value']:.3g}"),
            ]
            if a.get("truth_diff"):
                rows.append(
                    (
                        "oracle's difference",
                        ", ".join(f"{k} {v:+.4f}" for k, v in a["truth_diff"].items()),
                    )
                )
        rows += [("data", r.source), ("action", escape(r.action)), ("report", str(r.html))]
        if r.artifact:
            rows.append(("MLflow", r.artifact))
        c.print(_table(f"experiment {r.record.salt}", rows))

    out.result(r.to_dict(), line, human)


@experiment_app.command("stop")
def experiment_stop(
    salt: Annotated[
        str | None, typer.Option(help="an experiment (default: the running one)")
    ] = None,
) -> None:
    """Stop the running experiment: serving's split goes back to the settings' own (restart
    serving for it to take effect). The record and reports stay."""
    from experiments.lifecycle import stop

    record = stop(_settings(), salt)
    line = f"experiment {record.salt} {record.status}"
    _out().result(
        record.to_dict(),
        line,
        lambda c: c.print(
            f"{line}; restart serving (`reelrank down && reelrank up`) to end its split"
        ),
    )


def _loop_result(result: LoopSummary, path: Path) -> None:
    """The end of ``demo`` and ``run``: the summary is written to ``path``; exit 3 when the
    loop stopped because the gate kept the first model back."""
    summary = result.to_dict()
    path.write_text(json.dumps(summary, indent=2, default=str))
    stopped = result.stopped
    line = f"stopped: {stopped}; summary in {path}" if stopped else f"summary written to {path}"
    _out().result({**summary, "summary_path": path}, line, lambda c: c.print(f"\n{line}"))
    if stopped:
        raise typer.Exit(code=ExitCode.STOPPED)


@app.command()
def demo(
    scenario: Annotated[
        Scenario, typer.Option(help="simulated drift injected on the last day")
    ] = Scenario.none,
) -> None:
    """The whole loop once on the simulated world, through Airflow, ending with a summary.

    Every stage is a real Airflow DAG run (a progress bar shows its tasks), then one HTTP
    request to the BentoML server and a drift check of a new day. Exit 3 if the gate kept
    the first model back (nothing to deploy)."""
    from reelrank.demo import run_demo

    if scenario is Scenario.none:
        s = _settings()
    else:
        # a drifted world is another world: keep it apart from the stationary one
        home = f"var/scenario-{scenario.value}"
        s = _settings(home, sim={"scenario": scenario.setting})
    out = _out()
    summary = run_demo(s, out.console, out.live)
    _loop_result(summary, s.home / "demo_summary.json")


class Objective(StrEnum):
    value = "value"
    heads = "heads"


# the options models of the real sources: DataSettings is made of them
LOG_SOURCE_OPTIONS: tuple[type[SourceOptions], ...] = tuple(
    b for b in DataSettings.__bases__ if issubclass(b, SourceOptions)
)
if TYPE_CHECKING:  # a Literal built at run time: to a type checker it is a plain str
    LogDataset = str
else:  # typer shows and checks the choices
    LogDataset = Literal[tuple(m.source for m in LOG_SOURCE_OPTIONS)]


def _source_fields() -> dict[str, tuple[FieldInfo, list[str]]]:
    """Every real source's own options (the files aside: ``run`` names them itself), each
    with the sources that have it, in the order the options models declare them."""
    fields: dict[str, tuple[FieldInfo, list[str]]] = {}
    for model in LOG_SOURCE_OPTIONS:
        for name, info in model.model_fields.items():
            if name not in SourceOptions.model_fields:
                fields.setdefault(name, (info, []))[1].append(model.source)
    return fields


def _with_source_options(command: Callable[..., None]) -> Callable[..., None]:
    """One ``--option`` per real source's option, in place of the command's
    ``source_options`` parameter, which receives them as a dict (option name -> value).

    The options are generated from the sources' options models, so an option is added to
    the model alone: its type, default and description become the option's, and its
    environment variable (``REELRANK_DATA__...``) is the same field.
    """
    fields = _source_fields()
    signature = inspect.signature(command, eval_str=True)
    params: list[inspect.Parameter] = []
    for param in signature.parameters.values():
        if param.name != "source_options":
            params.append(param)
            continue
        for name, (info, sources) in fields.items():
            option = typer.Option(
                help=info.description,
                rich_help_panel=f"Options of --dataset {' or '.join(sources)}",
            )
            params.append(
                inspect.Parameter(
                    name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=info.get_default(call_default_factory=True),
                    annotation=Annotated[info.annotation, option],
                )
            )

    @functools.wraps(command)
    def with_options(**kwargs: Any) -> None:
        chosen = {name: kwargs.pop(name) for name in fields}
        command(**kwargs, source_options=chosen)

    with_options.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    with_options.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
    return with_options


@app.command()
@_with_source_options
def run(
    *,
    dataset: Annotated[LogDataset, typer.Option(help="the log's format")],
    path: Annotated[
        Path, typer.Option(help="the interaction log: a file, or a folder of KuaiRand logs")
    ],
    items: Annotated[
        Path | None,
        typer.Option(
            help="item metadata: KuaiRand's video_features_basic csv, or a csv/parquet with "
            "an id column and text columns (title, genres, tags)"
        ),
    ] = None,
    source_options: Mapping[str, Any],  # one option each: see _with_source_options
    objective: Annotated[
        Objective,
        typer.Option(
            help="ranker objective: 'value', one classifier of the logged positive (completed, "
            "liked or shared); 'heads', the simulator-tuned weighted heads"
        ),
    ] = Objective.value,
) -> None:
    """The whole loop on a real interaction log (KuaiRand or a generic interactions file).

    Adapts the log to the lake's contracts, then features, Feast, training, gate, registry,
    a serving smoke test and a drift check, with day boundaries from the data's own
    timestamps (train on earlier days, hold out the day before the last, check the last day
    for drift). Exit codes: 0 the loop ran; 1 the data or a stage failed (with a message);
    3 the first model did not pass the gate, so nothing was deployed (the evaluation is
    still shown)."""
    from ingest.sources import get_log_source
    from reelrank.demo import run_dataset

    # only the chosen source's options: another source's do not apply to this log
    own = get_log_source(dataset).options_type.model_fields
    data: dict[str, Any] = {k: v for k, v in source_options.items() if k in own and v is not None}
    data["path"] = path.resolve()
    if items is not None:
        data["items"] = items.resolve()
    s = _settings(
        # every dataset gets a home of its own: a lake holds one source
        f"var/{dataset}-{path.stem or 'data'}",
        dataset=dataset,
        data=data,
        training={"objective": objective.value},
    )
    out = _out()
    summary = run_dataset(s, out.console, out.live)
    _loop_result(summary, s.home / "run_summary.json")


@app.command()
def up(
    serve: Annotated[bool, typer.Option(help="also serve the champion with BentoML")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Start Airflow, the MLflow UI and BentoML on 127.0.0.1 and print their URLs.

    Airflow runs its api-server, scheduler, dag-processor and triggerer with the DAGs
    unpaused; BentoML serves the champion. Prints the URLs and the Airflow login. Pid files
    go to <home>/run, logs to <home>/logs; `reelrank down` stops exactly these processes.
    Exit 4 if a service does not answer in time."""
    from reelrank.stack import up as stack_up

    out = _out()
    if as_json:
        out.switch(Mode.json)
    s = _settings()
    with out.status("starting Airflow, MLflow and BentoML on 127.0.0.1"):
        result = stack_up(s, serve=serve)  # ServiceUnavailable (exit 4) if one does not answer
    line = "up: " + ", ".join(f"{k} {v}" for k, v in result.urls.items())

    def human(c: Console) -> None:
        t = Table(title=f"reelrank is up ({result.seconds_to_ready:.0f}s)", title_justify="left")
        t.add_column("service")
        t.add_column("URL")
        for name, url in result.urls.items():
            t.add_row(name, url)
        c.print(t)
        c.print(f"Airflow login: {result.airflow_login}")
        for name, why in result.skipped.items():
            c.print(f"[yellow]{name}[/]: {why}")
        c.print(f"pid files in {s.home / 'run'}; stop everything with `reelrank down`")

    out.result(result.to_dict(), line, human)


@app.command()
def down(as_json: JsonOpt = False) -> None:
    """Stop every process `reelrank up` started, by its pid file."""
    from reelrank.stack import down as stack_down

    out = _out()
    if as_json:
        out.switch(Mode.json)
    result = stack_down(_settings())

    def human(c: Console) -> None:
        for name, what in result.items():
            c.print(f"{name}: {what}")
        if not result:
            c.print("nothing was running")

    out.result(result, None, human)


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """Show what runs and which model versions serve (exit 4 if a service is down).

    Exit 0 when every started service answers, 4 when one does not; a service whose
    process is alive but not healthy yet is named "starting", not "not answering"."""
    from reelrank.stack import serving_lines
    from reelrank.stack import status as stack_status

    out = _out()
    if as_json:
        out.switch(Mode.json)
    result = stack_status(_settings())
    states = {n: r["state"] for n, r in result["services"].items()}
    starting = sorted(n for n, st in states.items() if st == "starting")
    down_ = sorted(n for n, st in states.items() if st in ("not answering", "stopped"))

    def human(c: Console) -> None:
        t = Table(title="reelrank services", title_justify="left")
        for col in ("service", "pid", "state", "URL"):
            t.add_column(col)
        for name, row in result["services"].items():
            colour = {"answering": "green", "starting": "yellow", "not answering": "red"}
            state = f"[{colour.get(row['state'], 'dim')}]{row['state']}[/]"
            t.add_row(name, str(row["pid"] or ""), state, row["url"] or "")
        c.print(t)
        for model, aliases in result["models"].items():
            c.print(f"{model}: " + ", ".join(f"{k} v{v}" for k, v in aliases.items()))
        login = result["airflow_login"]
        c.print(
            f"Airflow login: {login['user']}, password in {login['password_file']} (yours only)"
        )
        for line in serving_lines(result["services"].get("bentoml", {}).get("serving")):
            c.print(escape(line))  # the served version vs its alias, the store's health

    out.result(result, None, human)
    if down_ or starting:
        if out.mode is not Mode.json:  # the JSON document already says it
            why = [f"not answering: {', '.join(down_)}"] if down_ else []
            if starting:
                why.append(f"starting: {', '.join(starting)} (pid alive, not healthy yet)")
            out.error("; ".join(why), ExitCode.UNAVAILABLE)
        raise typer.Exit(code=ExitCode.UNAVAILABLE)


@app.command()
def logs(
    service: Annotated[
        str | None, typer.Argument(help="a service (e.g. bentoml, mlflow-ui); none: list")
    ] = None,
    lines: Annotated[int, typer.Option("-n", "--lines", min=1, help="lines to show")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List the services' logs under <home>/logs, or show the end of one (exit 2 if none)."""
    from reelrank.logs import find_log, list_logs, tail

    out = _out()
    if as_json:
        out.switch(Mode.json)
    settings = _settings()
    if service is None:
        found = list_logs(settings)

        def human(c: Console) -> None:
            if not found:
                c.print(f"no logs yet under {settings.home / 'logs'} (`reelrank up` writes them)")
            for f in found:
                c.print(f"{f.service:<24} {f.bytes:>12,} bytes  {f.modified}  {f.path}")

        out.result({"logs": [f.to_dict() for f in found]}, None, human)
        return
    log = find_log(settings, service)
    text = tail(log.path, lines)
    out.result(
        {**log.to_dict(), "lines": text},
        None,
        lambda c: c.out("\n".join(text), highlight=False),
    )


def _quiet_interpreter_exit() -> None:
    """Flush what the command printed, then point stderr at /dev/null for the interpreter's
    last steps: duckdb's nanobind bindings print ~40 lines of "leaked" objects while Python
    finalizes (a shutdown-order report, not a leak of ours; duckdb has no switch for it).
    Registered first, so it runs after every other exit handler has had its say."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)


def main() -> None:
    """Entry point (``reelrank``): expected failures (:mod:`reelrank.errors`) exit with their
    code and one message (see :class:`ReelrankGroup`); usage errors exit 2; anything else
    keeps its stack trace."""
    import atexit

    atexit.register(_quiet_interpreter_exit)
    app()


if __name__ == "__main__":
    main()
