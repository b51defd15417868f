"""The demo: the whole loop once, through Airflow, with a summary a person can read.

1. ``reelrank_features`` for the day before the last: ingest the world, features, Feast.
2. ``reelrank_training``: datasets, ranker, MLflow registry, gate.
3. ``reelrank_deploy``: load and smoke-test the champion.
4. The real BentoML server answers one ``POST /recommend`` over HTTP, then stops.
5. ``reelrank_features`` for the last day: a new day arrives.
6. ``reelrank_monitoring``: Evidently drift of the new day against the training reference.
Every figure in the summary is read back from the stores (lake, Feast, MLflow, reports).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from rich.console import Console
from rich.table import Table

from reelrank.errors import InvalidDataError
from reelrank.settings import Settings
from reelrank.summary import (
    DataSummary,
    DriftSummary,
    FeaturesSummary,
    LoopSummary,
    RegistrySummary,
    RetrainSummary,
    RetrievalSummary,
    TrainingSummary,
)

if TYPE_CHECKING:
    from reelrank.airflow_runner import DagProgress, DagRunResult


def _status(live: Console | None, text: str) -> contextlib.AbstractContextManager[Any]:
    """A spinner on ``live`` while the block runs; nothing when progress is off."""
    return live.status(text) if live is not None else contextlib.nullcontext()


def run_dag_shown(
    settings: Settings,
    dag_id: str,
    conf: Mapping[str, object] | None,
    what: str,
    live: Console | None,
) -> DagRunResult:
    """One real DAG run, with a progress bar on ``live`` of its tasks (done / total) and
    the task running now, read from the run's log as Airflow writes it."""
    from reelrank.airflow_runner import run_dag

    if live is None:
        return run_dag(settings, dag_id, conf)
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        SpinnerColumn(),
        TextColumn(f"[bold]{escape(dag_id)}[/] {escape(what)}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TextColumn("tasks {task.description}"),
        TimeElapsedColumn(),
        console=live,
        transient=True,
    ) as bar:
        task = bar.add_task("", total=None)

        def show(p: DagProgress) -> None:
            now = f"[cyan]{escape(p.running)}[/]" if p.running else ""
            if p.running and p.attempts.get(p.running, 1) > 1:
                now += f" (attempt {p.attempts[p.running]})"
            bar.update(task, completed=p.n_done, total=p.total or None, description=now)

        return run_dag(settings, dag_id, conf, on_progress=show)


def _lake_counts(settings: Settings) -> dict[str, int]:
    import pyarrow.parquet as pq

    from ingest.lake import partition_days, partition_path

    return {
        t: sum(
            pq.read_metadata(partition_path(settings.lake_dir, t, d)).num_rows
            for d in partition_days(settings.lake_dir, t)
        )
        for t in ("users", "videos", "impressions")
    }


def _pick_user(settings: Settings, day: date) -> str:
    """The most active viewer of ``day``: someone the feature store knows well."""
    from ingest.lake import read_table

    imp = read_table(settings.lake_dir, "impressions", start=day, end=day, columns=["user_id"])
    return str(imp["user_id"].value_counts().index[0])


def run_demo(settings: Settings, console: Console, live: Console | None = None) -> LoopSummary:
    """The loop on the simulated world: train through the day before the last, then the
    last day arrives and is checked for drift. Results go to ``console``; spinners and the
    DAG runs' progress bars to ``live`` (none when it is None)."""
    sim = settings.sim
    first_day = sim.end_date - timedelta(days=1)
    return run_loop(settings, console, sim.start_date, first_day, sim.end_date, live)


def undefined_metrics(settings: Settings, report: dict[str, Any] | None) -> list[str]:
    """What the metric table cannot say for this data, in words (real datasets)."""
    if settings.dataset == "simulator" or report is None:
        return []
    notes = [
        "no oracle: real logs have no hidden utility, so '% of oracle' is undefined",
        "NDCG@10 ranks each user's whole holdout day (real logs have sessions, not served "
        "requests); relevance is the logged value (completed + liked + shared)",
    ]
    signals = report.get("signals", {})
    if str(signals.get("watch_time_s", "")).startswith("missing"):
        notes.append("XAUC (watch time) is undefined: the data has no watch time")
    defaulted = report.get("defaulted", {})
    if any(k.startswith("impressions.surface") for k in defaulted):
        notes.append(
            "per-surface NDCG: the data has no surface, every row is 'spotlight' "
            "(discover and stories are n/a)"
        )
    for outcome, how in signals.items():
        if str(how).startswith("missing"):
            notes.append(f"{outcome}: {how} ({_what_misses_it(settings, outcome)})")
    return notes


# the logged outcome each ranker head learns from
_HEAD_OF = {
    "completed": "completion",
    "watch_time_s": "watch",
    "liked": "like",
    "shared": "share",
    "skipped": "skip",
}


def _what_misses_it(settings: Settings, outcome: str) -> str:
    """What a missing outcome costs the ranker that this configuration trains."""
    t = settings.training
    if t.objective == "value":
        if outcome in ("completed", "liked", "shared"):
            return "the value label, completed or liked or shared, goes without it"
        return "the value objective does not use it"
    head = _HEAD_OF.get(outcome)
    if head is None:
        return "no head uses it"
    if t.objective_weights.get(head, 0.0) == 0.0:
        return f"its head, {head}, has weight 0 and is not trained"
    return f"its head, {head}, learns nothing"


def run_dataset(settings: Settings, console: Console, live: Console | None = None) -> LoopSummary:
    """The loop on a real dataset: adapt and stage it, then hold out the day before its
    last day and check its last day for drift."""
    from ingest.datasets import staged, window_problems

    with _status(live, f"adapting the {settings.dataset} log to the lake's contracts"):
        data = staged(settings)
    console.print(str(data.report))
    days = data.days
    if len(days) < 3:
        raise InvalidDataError(
            f"the data covers {len(days)} day(s); the loop needs at least 3 "
            "(training days, a holdout day, a day to check for drift)"
        )
    # before any heavy work: a holdout the gate cannot judge, or a drift day too thin to
    # check, would only fail at the end of the loop
    if problems := window_problems(data, days[-2], days[-1], settings.gate):
        order_hint = (
            " A sparse log can be regrouped by order: --order-col "
            f"{settings.data.ts_col} spreads each user's events over --order-days synthetic "
            "days, every user's last event on the last day (docs/datasets.md)."
            if settings.dataset == "interactions" and not settings.data.order_col
            else ""
        )
        raise InvalidDataError(
            "the log cannot hold out and check a day: " + "; ".join(problems) + "." + order_hint
        )
    summary = run_loop(settings, console, days[0], days[-2], days[-1], live)
    summary.adapter = data.report.to_dict()
    return summary


def _retrieval_summary(settings: Settings) -> RetrievalSummary:
    """What the last training registered for retrieval, read back from MLflow."""
    from models.registry import CHALLENGER, alias_version, client

    c = client(settings)
    name = settings.retrieval_model_name
    version = alias_version(c, name, CHALLENGER)
    mv = c.get_model_version(name, version) if version else None
    metrics = c.get_run(mv.run_id).data.metrics if mv and mv.run_id else {}
    return RetrievalSummary(
        model=name,
        version=version,
        gate=mv.tags.get("gate_verdict") if mv else None,
        index_kind=mv.tags.get("index_kind") if mv else None,
        metrics={k: round(v, 4) for k, v in sorted(metrics.items())},
    )


def _retrieval_recalls(s: RetrievalSummary) -> str:
    """The retrieval model's R@50/100/500 beside the popularity baselines (and the oracle)."""
    rm = s.metrics

    def recall(prefix: str) -> str:
        return "/".join(
            f"{rm.get(f'{prefix}recall_at_{k}', float('nan')):.3f}" for k in (50, 100, 500)
        )

    oracle_recall = f", oracle {recall('oracle_')}" if "oracle_recall_at_100" in rm else ""
    return (
        f"two-tower {recall('')}  vs popularity {recall('popularity_')}, recent "
        f"{recall('recent_popularity_')}{oracle_recall} "
        f"({int(rm.get('index_size', 0)):,} videos, {s.index_kind} index)"
    )


def _gate_stop(
    settings: Settings,
    console: Console,
    start: date,
    first_day: date,
    last: date,
    timings: dict[str, float],
) -> LoopSummary:
    """The first ranker did not pass the gate: there is no champion to deploy, serve or
    check for drift. Say why, show the evaluation, and stop there."""
    from ingest.datasets import staged_report
    from models.registry import CHALLENGER, alias_version, client

    c = client(settings)
    name = settings.ranker_model_name
    version = alias_version(c, name, CHALLENGER)
    mv = c.get_model_version(name, version) if version else None
    metrics = c.get_run(mv.run_id).data.metrics if mv and mv.run_id else {}
    reasons = mv.tags.get("gate_reasons", "") if mv else "no model was registered"
    console.print(
        f"[bold red]✗[/] the gate kept {name} v{version} back and there is no champion yet, "
        f"so nothing is deployed, served or checked for drift. Gate: {reasons}"
    )
    console.print(_metric_table(metrics))
    # retrieval trained and was gated on its own before the ranker's gate stopped the loop
    retrieval = _retrieval_summary(settings)
    if retrieval.metrics:
        console.print(
            f"retrieval {retrieval.model} v{retrieval.version} (gate {retrieval.gate}), "
            f"R@50/100/500: {_retrieval_recalls(retrieval)}"
        )
    undefined = undefined_metrics(settings, staged_report(settings))
    for note in undefined:
        console.print(f"  [dim]note:[/] {note}")
    return LoopSummary(
        data=DataSummary(
            **_lake_counts(settings), source=settings.dataset, days=f"{start}..{last}"
        ),
        holdout=first_day.isoformat(),
        metrics={k: round(v, 4) for k, v in sorted(metrics.items())},
        retrieval=retrieval,
        registry=RegistrySummary(
            model=name,
            challenger=version,
            champion=None,
            gate="failed",
            gate_reasons=reasons,
            tracking_uri=settings.tracking_uri,
        ),
        stopped="no champion: the first model did not pass the gate",
        undefined=undefined,
        dag_seconds=timings,
    )


def run_loop(
    settings: Settings,
    console: Console,
    start: date,
    first_day: date,
    last: date,
    live: Console | None = None,
) -> LoopSummary:
    """Features and training through ``first_day`` (its holdout), deploy, one HTTP
    request, then ``last`` arrives and is checked for drift (retraining if it drifted)."""
    from models.registry import CHALLENGER, CHAMPION, alias_version, client
    from reelrank.airflow_runner import migrate
    from serving.server import free_port, start_server

    timings: dict[str, float] = {}

    with _status(live, "preparing the Airflow metadata DB"):
        migrate(settings)
    steps = [
        ("reelrank_features", {"day": first_day.isoformat()}, f"features through {first_day}"),
        ("reelrank_training", {"day": first_day.isoformat()}, "train, evaluate, register, gate"),
        ("reelrank_deploy", None, "load and smoke-test the champion"),
    ]
    for dag_id, conf, what in steps:
        if (
            dag_id == "reelrank_deploy"
            and alias_version(client(settings), settings.ranker_model_name, CHAMPION) is None
        ):
            return _gate_stop(settings, console, start, first_day, last, timings)
        r = run_dag_shown(settings, dag_id, conf, what, live)
        timings[dag_id] = round(r.seconds, 1)
        console.print(f"[green]✓[/] {dag_id} ({what}) in {r.seconds:.1f}s")

    # what the first training registered, read back from MLflow
    c = client(settings)
    name = settings.ranker_model_name
    champion = alias_version(c, name, CHAMPION)
    challenger = alias_version(c, name, CHALLENGER)
    mv = c.get_model_version(name, challenger) if challenger else None
    metrics = c.get_run(mv.run_id).data.metrics if mv and mv.run_id else {}
    retrieval = _retrieval_summary(settings)

    user = _pick_user(settings, first_day)
    with _status(live, "starting the BentoML server"):
        server = start_server(settings, port=free_port())
    try:
        resp = httpx.post(f"{server.url}/recommend", json={"user_id": user, "k": 5}, timeout=30)
        resp.raise_for_status()
        recommendation = resp.json()
        cold = httpx.post(
            f"{server.url}/recommend", json={"user_id": "someone-new", "k": 3}, timeout=30
        ).json()
    finally:
        server.stop()
    console.print(f"[green]✓[/] BentoML answered POST {server.url}/recommend (server stopped)")

    for dag_id, conf, what in [
        ("reelrank_features", {"day": last.isoformat()}, f"a new day arrives: {last}"),
        ("reelrank_monitoring", {"day": last.isoformat()}, f"drift check of {last}"),
    ]:
        r = run_dag_shown(settings, dag_id, conf, what, live)
        timings[f"{dag_id}:{last}" if dag_id == "reelrank_features" else dag_id] = round(
            r.seconds, 1
        )
        console.print(f"[green]✓[/] {dag_id} ({what}) in {r.seconds:.1f}s")

    # The scheduler would now run reelrank_training on the "drift detected" Asset (and
    # reelrank_deploy on "model promoted"); `airflow dags test` does not follow Assets, so the
    # demo runs what they would schedule.
    drift_file = settings.reports_dir / "drift" / last.isoformat() / "verdict.json"
    retrain: RetrainSummary | None = None
    # drift retrains (once per episode); a broken input alerts and never retrains
    if json.loads(drift_file.read_text())["severity"] == "critical":
        before = alias_version(c, name, CHAMPION)
        r = run_dag_shown(settings, "reelrank_training", None, "retraining on drift", live)
        timings["reelrank_training:drift"] = round(r.seconds, 1)
        after = alias_version(c, name, CHAMPION)
        new = alias_version(c, name, CHALLENGER)
        tags = c.get_model_version(name, new).tags if new else {}
        retrain = RetrainSummary(
            champion_before=before,
            champion_after=after,
            challenger=new,
            gate=tags.get("gate_verdict"),
            gate_reasons=tags.get("gate_reasons", ""),
        )
        console.print(f"[green]✓[/] reelrank_training (retrain on drift) in {r.seconds:.1f}s")
        if after != before:
            r = run_dag_shown(settings, "reelrank_deploy", None, f"deploying v{after}", live)
            timings["reelrank_deploy:drift"] = round(r.seconds, 1)
            console.print(f"[green]✓[/] reelrank_deploy (v{after}) in {r.seconds:.1f}s")

    verdict = json.loads(drift_file.read_text())
    counts = _lake_counts(settings)
    datasets = json.loads(
        (settings.home / "training" / first_day.isoformat() / "datasets.json").read_text()
    )
    feature_files = sorted((settings.features_dir / "user_engagement").glob("*.parquet"))

    summary = LoopSummary(
        data=DataSummary(
            **counts,
            source=settings.dataset,
            days=f"{start}..{last}",
            scenario=settings.sim.scenario if settings.dataset == "simulator" else None,
        ),
        features=FeaturesSummary(
            days=len(feature_files),
            first_day=feature_files[0].stem if feature_files else "",
            feature_service=settings.feature_service,
            online_store=settings.feast_dir / "online_store.db",
        ),
        training=TrainingSummary(window=datasets["window"], rows=datasets["rows"]),
        objective_weights=mv.tags.get("objective_weights", "") if mv else "",
        metrics={
            k: round(v, 4)
            for k, v in sorted(metrics.items())
            if not k.endswith(("n_rows", "n_requests")) and "logloss" not in k and k != "valid_auc"
        },
        retrieval=retrieval,
        registry=RegistrySummary(
            model=name,
            challenger=challenger,
            champion=champion,
            gate=mv.tags.get("gate_verdict") if mv else None,
            tracking_uri=settings.tracking_uri,
        ),
        recommendation=recommendation,
        cold_start_recommendation=cold,
        drift=DriftSummary(
            drifted=verdict["drifted"],
            severity=verdict["severity"],
            drifted_columns=verdict["drifted_columns"],
            broken_columns=verdict.get("broken_columns", []),
            # the drift project in Evidently's UI (`reelrank up`), where every day's check is
            index=verdict.get("tags", {}).get("dashboard", verdict["report_html"]),
            share_drifted=round(verdict["share_drifted"], 3),
            report_html=verdict["report_html"],
        ),
        retrain_on_drift=retrain,
        dag_seconds=timings,
    )
    from ingest.datasets import staged_report

    summary.undefined = undefined_metrics(settings, staged_report(settings))
    _print_summary(console, summary)
    return summary


def _print_summary(console: Console, s: LoopSummary) -> None:
    assert s.features and s.training and s.retrieval and s.drift  # the loop ran through
    assert s.recommendation is not None and s.cold_start_recommendation is not None
    m = s.metrics
    source = s.data.source
    title = "reelrank demo: the whole loop" + (f" on {source}" if source != "simulator" else "")
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column(style="bold cyan")
    t.add_column()
    d = s.data
    if d.source == "simulator":
        t.add_row(
            "data generated",
            f"{d.impressions:,} impressions, {d.users:,} users, "
            f"{d.videos:,} videos ({d.days}, scenario {d.scenario})",
        )
    else:
        t.add_row(
            f"data ({d.source})",
            f"{d.impressions:,} impressions, {d.users:,} users, "
            f"{d.videos:,} videos ({d.days}, UTC days from the data's timestamps)",
        )
    from features.pipeline import VIEWS

    f = s.features
    t.add_row(
        "features",
        f"{f.days} days from {f.first_day} (the training windows') x {len(VIEWS)} views "
        f"+ caption embeddings, FeatureServices {f.feature_service} + retrieval_v1 "
        "(pooled) / retrieval_v2 (sequence), materialized to SQLite online store",
    )
    w = s.training.window
    t.add_row(
        "training set",
        f"{w['train_start']}..{w['train_end']} "
        f"({s.training.rows['train']:,} rows), holdout {w['holdout']} "
        f"({s.training.rows['holdout']:,} rows)",
    )
    rm = s.retrieval.metrics
    if rm:
        t.add_row("retrieval R@50/100/500", _retrieval_recalls(s.retrieval))
        t.add_row(
            "cold-start R@100",
            f"{rm.get('cold_recall_at_100', float('nan')):.3f} on videos uploaded on the holdout "
            f"day ({int(rm.get('n_cold_users', 0))} users) vs random "
            f"{rm.get('random_recall_at_100', float('nan')):.3f}, popularity "
            f"{rm.get('popularity_cold_recall_at_100', float('nan')):.3f}",
        )
        sources = ("two_tower", "popularity", "recent_popularity", "oracle")

        def judged(suffix: str) -> str:
            return ", ".join(
                f"{k} {m[f'pipeline_ndcg_at_10_oracle_judged_{k}{suffix}']:.4f}"
                for k in sources
                if f"pipeline_ndcg_at_10_oracle_judged_{k}{suffix}" in m
            )

        if "pipeline_ndcg_at_10_oracle_judged_two_tower" in m:
            t.add_row("NDCG@10 after ranking", f"oracle-judged, 500 candidates: {judged('')}")
            t.add_row("", f"oracle-judged, 100 candidates: {judged('_100')}")
        logged = ", ".join(
            f"{k} {m[f'pipeline_ndcg_at_10_{k}']:.4f}"
            for k in sources
            if f"pipeline_ndcg_at_10_{k}" in m
        )
        if logged:
            t.add_row("", f"logged outcomes, 500 candidates: {logged}")
        if "top10_coverage_two_tower" in m:
            t.add_row(
                "top-10 lists",
                "catalog coverage / creator diversity: "
                + ", ".join(
                    f"{k} {m[f'top10_coverage_{k}']:.3f} / "
                    f"{m.get(f'top10_creator_diversity_{k}', float('nan')):.3f}"
                    for k in sources
                    if f"top10_coverage_{k}" in m
                ),
            )
        t.add_row(
            "retrieval registry",
            f"{s.retrieval.model} v{s.retrieval.version} "
            f"(gate {s.retrieval.gate}, model + index + ids in one bundle)",
        )
    oracle = (
        f", oracle {m['oracle_ndcg_at_10']:.4f} ({m.get('pct_of_oracle_ndcg', float('nan')):.1f}% "
        "of oracle)"
        if "oracle_ndcg_at_10" in m
        else ""
    )
    t.add_row(
        "ranker NDCG@10",
        f"{m.get('ndcg_at_10', float('nan')):.4f}  vs popularity "
        f"{m.get('popularity_ndcg_at_10', float('nan')):.4f}, recent popularity "
        f"{m.get('recent_popularity_ndcg_at_10', float('nan')):.4f}{oracle} (table below)",
    )
    heads = [h for h in ("completion", "watch", "like", "share", "skip") if f"head_{h}_auc" in m]
    if heads:
        t.add_row(
            "ranker heads",
            "AUC / ECE per objective: "
            + ", ".join(f"{h} {m[f'head_{h}_auc']:.3f} / {m[f'head_{h}_ece']:.3f}" for h in heads)
            + f"; value = {s.objective_weights}",
        )
    r = s.registry
    t.add_row(
        "registry",
        f"{r.model} v{r.challenger} (challenger, gate {r.gate}); champion -> v{r.champion}",
    )
    rec = s.recommendation
    items = ", ".join(f"{i['video_id']} ({i['score']:.3f})" for i in rec["items"])
    rv = rec.get("retrieval_version")
    retrieval = f"v{rv}" if rv else "none (no retrieval champion: popular + fresh candidates)"
    t.add_row(
        "HTTP /recommend",
        f"user {rec['user_id']} -> {items}; ranker v{rec['model_version']}, retrieval "
        f"{retrieval}, request_id {rec['request_id'][:12]}…",
    )
    t.add_row(
        "cold start",
        f"unknown user -> {len(s.cold_start_recommendation['items'])} "
        f"items, cold_start={s.cold_start_recommendation['cold_start']}",
    )
    dr = s.drift
    cols = ", ".join(dr.drifted_columns[:6]) or "none"
    broken = ", ".join(dr.broken_columns) or "none"
    t.add_row(
        "drift verdict",
        f"{'DRIFT' if dr.drifted else 'no drift'} (severity "
        f"{dr.severity}, share {dr.share_drifted}, drifted: {cols}; broken inputs: "
        f"{broken}); dashboard (after `reelrank up`): {dr.index}",
    )
    if s.retrain_on_drift:
        rt = s.retrain_on_drift
        moved = rt.champion_after != rt.champion_before
        t.add_row(
            "retrain on drift",
            f"challenger v{rt.challenger}: "
            + (
                f"promoted, champion v{rt.champion_before} -> v{rt.champion_after}"
                if moved
                else f"gate failed, champion stays v{rt.champion_before}"
            )
            + f" (gate: {rt.gate_reasons[:300]})",
        )
    console.print(t)
    console.print(_metric_table(m))
    for note in s.undefined:
        console.print(f"  [dim]note:[/] {note}")
    console.print(f"drift report: {dr.report_html}")


def _metric_table(m: dict[str, float]) -> Table:
    """The ranker's holdout metrics beside the baselines, the champion and the oracle."""
    surfaces = ("spotlight", "discover", "stories")
    cols = (
        "ndcg_at_10",
        "auc",
        "gauc",
        "xauc_watch",
        "ece",
        *(f"ndcg_at_10_{s}" for s in surfaces),
    )
    from rich import box
    from rich.table import Column

    t = Table(
        Column("model", no_wrap=True),
        *(Column(h, no_wrap=True) for h in ("NDCG@10", "AUC", "GAUC", "XAUC", "ECE")),
        *(Column(h, no_wrap=True) for h in ("spot", "disc", "stor")),
        title="ranker on the holdout (same rows for every model); spot, disc, stor = NDCG@10 "
        "on the spotlight, discover and stories surfaces",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
    )
    for label, prefix in (
        ("challenger", ""),
        ("champion", "champion_"),
        ("popularity", "popularity_"),
        ("recent pop.", "recent_popularity_"),
        ("oracle", "oracle_"),
    ):
        if f"{prefix}ndcg_at_10" not in m:
            continue
        values = [m.get(f"{prefix}{c}") for c in cols]
        t.add_row(label, *("n/a" if v is None else f"{v:.3f}" for v in values))
    return t
