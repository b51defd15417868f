"""Recommendation quality on real data: one table, rows = datasets, columns = models.

Each cell is Precision@10 / Recall@50 / NDCG@10 per user, averaged, over the full catalog
of the dataset's evaluation block. The cold-start column is content-only Recall@50 on videos
withheld from training, ranked among themselves, with its ratio to a random order.

Rows:

* ``kuairec``: KuaiRec's fully observed block (:mod:`training.kuairec`), 1,411 users x
  3,327 videos, every cell labelled; models tuned on the big log's valid split.

Adding a row (for example "simulator v2" or the "KuaiRand subset"): write a function that
takes the parsed arguments and returns a :class:`Row` (its ``metrics`` keyed by the model
names of ``MODELS``; a model it does not run is simply absent and shows as "n/a"), then
register it in ``DATASETS``. Nothing else changes: the table, the MLflow logging and the
``--datasets`` option pick it up.

    python bench/quality.py [--data ../shared/data] [--datasets kuairec]
        [--encoder multilingual] [--cold-encoders multilingual,minilm]
        [--cache-dir DIR] [--mlflow-uri sqlite:///DIR/mlflow.db]

Caption embeddings are cached in ``--cache-dir`` (default: a folder in the system's temp
directory), so only the first run pays for encoding 10,728 captions (about 5 minutes with
the multilingual encoder on 2 cores); the rest takes a few minutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.table import Table

from training import kuairec

MODELS: dict[str, str] = {
    "random": "random",
    "popularity": "popularity",
    "item_knn": "item-kNN",
    "mf_als": "MF (ALS)",
    "two_tower": "two-tower",
}
METRICS = ("precision_at_10", "recall_at_50", "ndcg_at_10")


@dataclass
class Row:
    """One dataset's figures: model -> metric -> value, plus the cold-start line."""

    dataset: str
    metrics: dict[str, dict[str, float]]
    cold_start: list[kuairec.ColdStart] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def kuairec_row(args: argparse.Namespace, say: Callable[[str], None]) -> Row:
    report = kuairec.run_study(
        Path(args.data) / "kuairec",
        encoder=args.encoder,
        cold_encoders=[e for e in args.cold_encoders.split(",") if e],
        seed=args.seed,
        progress=say,
        cache_dir=Path(args.cache_dir),
    )
    params = {f"{m}.{k}": str(v) for m, t in report.tuned.items() for k, v in t.params.items()}
    params["two_tower.caption_encoder"] = report.encoder
    notes = [
        f"{m}: valid NDCG@10 {t.valid_ndcg:.4f} with {t.params}" for m, t in report.tuned.items()
    ]
    notes += [f"{name}: {s:.0f} s" for name, s in report.seconds.items()]
    return Row("KuaiRec block", report.metrics, report.cold, params, notes)


# Rows of the table. "simulator v2" and "KuaiRand subset" are added here by whoever builds
# their evaluations; they are not filled in until they are measured.
DATASETS: dict[str, Callable[[argparse.Namespace, Callable[[str], None]], Row]] = {
    "kuairec": kuairec_row,
}


def cell(values: dict[str, float] | None) -> str:
    if not values:
        return "n/a"
    return " / ".join(f"{values[m]:.3f}" for m in METRICS)


def cold_cell(row: Row) -> str:
    if not row.cold_start:
        return "n/a"
    return "\n".join(
        f"{c.encoder}: {c.recall:.3f} vs random {c.random_recall:.3f} ({c.lift:.1f}x)"
        for c in row.cold_start
    )


def table(rows: list[Row]) -> Table:
    t = Table(
        title="Quality on real data: P@10 / R@50 / NDCG@10 per user, full catalog",
        show_lines=True,
    )
    t.add_column("dataset")
    for name in MODELS.values():
        t.add_column(name)
    t.add_column("cold start R@50 (content only)")
    for r in rows:
        t.add_row(r.dataset, *(cell(r.metrics.get(m)) for m in MODELS), cold_cell(r))
    return t


def log_mlflow(uri: str, rows: list[Row]) -> None:
    """One MLflow run per dataset: every model's metrics, the tuned parameters, cold start."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("reelrank-quality")
    for r in rows:
        with mlflow.start_run(run_name=r.dataset):
            mlflow.log_params(r.params)
            for model, values in r.metrics.items():
                mlflow.log_metrics({f"{model}.{k}": v for k, v in values.items()})
            for c in r.cold_start:
                mlflow.log_metrics(
                    {
                        f"cold_start.{c.encoder}.recall_at_50": c.recall,
                        f"cold_start.{c.encoder}.random_recall_at_50": c.random_recall,
                    }
                )


def main(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    repo = Path(__file__).resolve().parents[1]
    ap.add_argument("--data", default=str(repo.parent / "shared" / "data"))
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--encoder", default="multilingual", help="caption encoder of the two-tower")
    ap.add_argument(
        "--cold-encoders",
        default="multilingual",
        help="comma-separated caption encoders measured on cold start (e.g. multilingual,minilm)",
    )
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "reelrank-quality"))
    ap.add_argument("--mlflow-uri", default=None, help="log the figures to this tracking URI")
    args = ap.parse_args(argv)
    console = Console(width=160)  # the table is wide; a log file would wrap it at 80
    started = time.perf_counter()

    def say(msg: str) -> None:
        console.print(f"[dim]{time.perf_counter() - started:6.0f} s[/dim] {msg}")

    rows = [DATASETS[name](args, say) for name in args.datasets.split(",") if name]
    console.print(table(rows))
    for r in rows:
        for note in r.notes:
            console.print(f"[dim]{r.dataset}: {note}[/dim]")
    if args.mlflow_uri:
        log_mlflow(args.mlflow_uri, rows)
        console.print(f"logged to MLflow at {args.mlflow_uri}")
    return rows


if __name__ == "__main__":
    main()
