"""The ``reelrank`` command line: every stage of the loop, and the whole loop as ``demo``."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from reelrank.settings import Settings, get_settings

app = typer.Typer(
    help="reelrank: short-video recommendation as a closed MLOps loop.",
    no_args_is_help=True,
    add_completion=False,
)
models_app = typer.Typer(
    help="Inspect and move model aliases in the MLflow registry.", no_args_is_help=True
)
app.add_typer(models_app, name="models")
console = Console()


class Scenario(StrEnum):
    none = "none"
    topic_surge = "topic-surge"
    interest_shift = "interest-shift"
    broken_feature = "broken-feature"

    @property
    def setting(self) -> str:
        return self.value.replace("-", "_")


DayOpt = Annotated[str | None, typer.Option(help="day to process, YYYY-MM-DD")]


def _settings() -> Settings:
    s = get_settings()
    logging.basicConfig(level=s.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return s


def _day(value: str | None, default: Callable[[], date]) -> date:
    if not value:
        return default()
    try:
        return date.fromisoformat(value)
    except ValueError as err:
        raise typer.BadParameter(f"{value!r} is not a day (YYYY-MM-DD)") from err


def _print_json(obj: Any) -> None:
    console.print_json(json.dumps(obj, default=str))


@app.command()
def simulate(through: DayOpt = None) -> None:
    """Write the simulated world into the raw lake up to a day (default: the last)."""
    from ingest.pipeline import ingest_simulated

    s = _settings()
    _print_json(ingest_simulated(s, _day(through, lambda: s.sim.end_date)).to_dict())


@app.command()
def features(through: DayOpt = None) -> None:
    """Compute batch features and caption embeddings, apply Feast and materialize."""
    from features.pipeline import run_features

    s = _settings()
    _print_json(run_features(s, _day(through, lambda: s.sim.end_date), progress=True).to_dict())


@app.command()
def train(holdout: DayOpt = None) -> None:
    """Train, evaluate, register and gate a ranker (holdout: the latest featurized day)."""
    from features.pipeline import latest_feature_day
    from training.pipeline import run_training

    s = _settings()
    out = run_training(s, _day(holdout, lambda: latest_feature_day(s)))
    _print_json(
        {
            "version": out["gate"]["version"],
            "promoted": out["gate"]["promoted"],
            "metrics": out["trained"]["metrics"],
            "gate": out["gate"]["verdict"],
        }
    )


@app.command()
def monitor(day: DayOpt = None) -> None:
    """Check a day's features for drift against the champion's training reference."""
    from features.pipeline import latest_feature_day
    from monitoring.pipeline import run_monitoring

    s = _settings()
    result = run_monitoring(s, _day(day, lambda: latest_feature_day(s)))
    _print_json(result)
    raise typer.Exit(code=3 if result["drifted"] else 0)


@app.command()
def serve(port: Annotated[int | None, typer.Option(help="port on 127.0.0.1")] = None) -> None:
    """Serve the champion over HTTP with BentoML (Ctrl-C stops it)."""
    from serving.server import start_server

    s = _settings()
    server = start_server(s, port=port)
    console.print(
        f"serving {s.ranker_model_name}@champion at {server.url} (pid {server.pid}); "
        f"log: {server.log_path}"
    )
    try:
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@app.command()
def dag(dag_id: str, day: DayOpt = None) -> None:
    """Run one DAG for real through Airflow (``airflow dags test``) on this profile."""
    from reelrank.airflow_runner import migrate, run_dag

    s = _settings()
    migrate(s)
    r = run_dag(s, dag_id, {"day": day} if day else None)
    console.print(f"{dag_id}: success in {r.seconds:.1f}s (log: {r.log_path})")


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
    """Versions of a registered model with their aliases, gate verdicts and key metric."""
    from training.registry import client

    s = _settings()
    c = client(s)
    name = _model_name(s, model)
    metric = "ndcg_at_10" if model is ModelKind.ranker else "recall_at_100"
    table = Table(
        "version", "aliases", "gate", "review", metric, "data window", "created", title=name
    )
    by_version: dict[str, list[str]] = {}
    for alias, v in c.get_registered_model(name).aliases.items():
        by_version.setdefault(str(v), []).append(alias)
    for mv in sorted(c.search_model_versions(f"name='{name}'"), key=lambda m: int(m.version)):
        table.add_row(
            str(mv.version),
            ",".join(sorted(by_version.get(str(mv.version), []))),
            mv.tags.get("gate_verdict", ""),
            mv.tags.get("review_status", ""),
            mv.tags.get(metric, ""),
            mv.tags.get("data_window", ""),
            time.strftime("%Y-%m-%d %H:%M", time.localtime(mv.creation_timestamp / 1e3)),
        )
    console.print(table)


WhyOpt = Annotated[str, typer.Option("--why", help="the reason, recorded on the version")]
WhoOpt = Annotated[str | None, typer.Option("--who", help="who decides (default: the OS user)")]


@models_app.command("promote")
def models_promote(
    version: str,
    why: WhyOpt = "manual promotion",
    who: WhoOpt = None,
    model: ModelOpt = ModelKind.ranker,
) -> None:
    """Make VERSION the champion (approve a pending challenger, or pin any version).
    Who, when and why are recorded as tags on the version; serving follows."""
    from training.registry import client
    from training.review import ReviewError, promote, reviewer

    s = _settings()
    try:
        move = promote(client(s), _model_name(s, model), version, who or reviewer(), why)
    except ReviewError as err:
        console.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(code=1) from err
    console.print(
        f"{move.model}@champion: v{move.previous} -> v{move.version} "
        f"(by {move.who}, {move.at}: {move.why})"
    )


@models_app.command("rollback")
def models_rollback(
    why: WhyOpt = "rollback",
    who: WhoOpt = None,
    model: ModelOpt = ModelKind.ranker,
) -> None:
    """Put the previous champion back; recorded as tags on both versions."""
    from training.registry import client
    from training.review import ReviewError, reviewer, rollback

    s = _settings()
    try:
        move = rollback(client(s), _model_name(s, model), who or reviewer(), why)
    except ReviewError as err:
        console.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(code=1) from err
    console.print(
        f"{move.model}@champion: v{move.previous} -> v{move.version} "
        f"(rolled back by {move.who}, {move.at}: {move.why})"
    )


@app.command()
def demo(
    scenario: Annotated[
        Scenario, typer.Option(help="simulated drift injected on the last day")
    ] = Scenario.none,
) -> None:
    """The whole loop once, through Airflow, ending with a readable summary."""
    from reelrank.demo import run_demo

    if scenario is not Scenario.none:
        os.environ["REELRANK_SIM__SCENARIO"] = scenario.setting
        # a drifted world is another world: keep it apart from the stationary one
        os.environ.setdefault("REELRANK_HOME", f"var/scenario-{scenario.value}")
    s = _settings()
    summary = run_demo(s, console)
    path = s.home / "demo_summary.json"
    path.write_text(json.dumps(summary, indent=2, default=str))
    console.print(f"\nsummary written to {path}")
    if summary.get("stopped"):
        raise typer.Exit(code=3)


class DatasetKind(StrEnum):
    kuairand = "kuairand"
    interactions = "interactions"


class Objective(StrEnum):
    value = "value"
    heads = "heads"


@app.command()
def run(
    dataset: Annotated[DatasetKind, typer.Option(help="the log's format")],
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
    user_col: Annotated[str, typer.Option(help="interactions: user id column")] = "user_id",
    item_col: Annotated[str, typer.Option(help="interactions: item id column")] = "item_id",
    ts_col: Annotated[str, typer.Option(help="interactions: timestamp column")] = "timestamp",
    ts_unit: Annotated[str, typer.Option(help="interactions: auto, s, ms (epoch) or iso")] = "auto",
    rating_col: Annotated[str | None, typer.Option(help="interactions: rating column")] = None,
    like_threshold: Annotated[float, typer.Option(help="a rating at least this is a like")] = 4.0,
    label_col: Annotated[
        str | None, typer.Option(help="interactions: binary label column (1 = liked)")
    ] = None,
    watch_col: Annotated[str | None, typer.Option(help="interactions: watch time column")] = None,
    watch_unit: Annotated[str, typer.Option(help="watch time unit: s or ms")] = "s",
    duration_col: Annotated[
        str | None, typer.Option(help="interactions: item duration column")
    ] = None,
    duration_unit: Annotated[str, typer.Option(help="duration unit: s or ms")] = "s",
    item_id_col: Annotated[str, typer.Option(help="items file: id column")] = "item_id",
    creator_col: Annotated[str | None, typer.Option(help="items file: creator column")] = None,
    objective: Annotated[
        Objective,
        typer.Option(
            help="ranker objective: 'value', one classifier of the logged positive (completed, "
            "liked or shared); 'heads', the simulator-tuned weighted heads"
        ),
    ] = Objective.value,
) -> None:
    """The whole loop on a real interaction log: adapt it to the lake's contracts, then
    features, Feast, training, gate, registry, a serving smoke test and a drift check, with
    day boundaries from the data's own timestamps (train on earlier days, hold out the
    day before the last, check the last day for drift).

    Exit codes: 0 the loop ran; 1 the data or a stage failed (with a message); 3 the first
    model did not pass the gate, so nothing was deployed (the evaluation is still shown)."""
    from reelrank.demo import run_dataset

    env = {
        "REELRANK_DATASET": dataset.value,
        "REELRANK_DATA__PATH": str(path.resolve()),
        "REELRANK_TRAINING__OBJECTIVE": objective.value,
    }
    if items is not None:
        env["REELRANK_DATA__ITEMS"] = str(items.resolve())
    if dataset is DatasetKind.interactions:
        options: dict[str, object] = {
            "user_col": user_col,
            "item_col": item_col,
            "ts_col": ts_col,
            "ts_unit": ts_unit,
            "rating_col": rating_col,
            "like_threshold": like_threshold,
            "label_col": label_col,
            "watch_col": watch_col,
            "watch_unit": watch_unit,
            "duration_col": duration_col,
            "duration_unit": duration_unit,
            "item_id_col": item_id_col,
            "creator_col": creator_col,
        }
        env.update({f"REELRANK_DATA__{k.upper()}": str(v) for k, v in options.items() if v})
    os.environ.update(env)
    # every dataset gets a home of its own: a lake holds one source
    os.environ.setdefault("REELRANK_HOME", f"var/{dataset.value}-{path.stem or 'data'}")
    s = _settings()
    summary = run_dataset(s, console)
    out = s.home / "run_summary.json"
    out.write_text(json.dumps(summary, indent=2, default=str))
    console.print(f"\nsummary written to {out}")
    if summary.get("stopped"):
        raise typer.Exit(code=3)


@app.command()
def up(
    serve: Annotated[bool, typer.Option(help="also serve the champion with BentoML")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Start Airflow (api-server, scheduler, dag-processor, triggerer; the DAGs unpaused), the
    MLflow UI and the BentoML service with the champion, on 127.0.0.1; print the URLs and the
    Airflow login. Pid files go to <home>/run, logs to <home>/logs; `reelrank down` stops
    exactly these processes."""
    from reelrank.stack import up as stack_up

    s = _settings()
    with console.status("starting Airflow, MLflow and BentoML on 127.0.0.1"):
        result = stack_up(s, serve=serve)
    if as_json:
        _print_json(result.to_dict())
        return
    t = Table(title=f"reelrank is up ({result.seconds_to_ready:.0f}s)", title_justify="left")
    t.add_column("service")
    t.add_column("URL")
    for name, url in result.urls.items():
        t.add_row(name, url)
    console.print(t)
    console.print(f"Airflow login: {result.airflow_login}")
    for name, why in result.skipped.items():
        console.print(f"[yellow]{name}[/]: {why}")
    console.print(f"pid files in {s.home / 'run'}; stop everything with `reelrank down`")


@app.command()
def down(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Stop every process `reelrank up` started, by its pid file."""
    from reelrank.stack import down as stack_down

    result = stack_down(_settings())
    if as_json:
        _print_json(result)
        return
    for name, what in result.items():
        console.print(f"{name}: {what}")
    if not result:
        console.print("nothing was running")


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """What runs (pid, answering) and which model versions serve. Exit 0 when every
    started service answers, 4 when one is down."""
    from reelrank.stack import status as stack_status

    result = stack_status(_settings())
    if as_json:
        _print_json(result)
    else:
        t = Table(title="reelrank services", title_justify="left")
        for col in ("service", "pid", "state", "URL"):
            t.add_column(col)
        for name, row in result["services"].items():
            state = (
                "[green]answering[/]"
                if row["answering"]
                else "[yellow]starting[/]"
                if row["running"]
                else "[dim]stopped[/]"
            )
            t.add_row(name, str(row["pid"] or ""), state, row["url"] or "")
        console.print(t)
        for model, aliases in result["models"].items():
            console.print(f"{model}: " + ", ".join(f"{k} v{v}" for k, v in aliases.items()))
    started = [r for r in result["services"].values() if r["pid"] is not None]
    if any(not r["answering"] for r in started):
        raise typer.Exit(code=4)


def main() -> None:
    """Entry point: expected failures (missing data, a rejected batch, a failed DAG run)
    print one clear message and exit 1 instead of a stack trace."""
    from ingest.adapters import AdapterError
    from ingest.lake import BatchRejected
    from reelrank.airflow_runner import DagRunFailed

    try:
        app(standalone_mode=True)
    except (FileNotFoundError, AdapterError, BatchRejected, DagRunFailed, ValueError) as err:
        console.print(f"[bold red]error:[/] {err}")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
