"""Training as three idempotent steps keyed on the holdout day, each callable from a DAG task.

1. :func:`build_datasets`: point-in-time training and holdout sets (Parquet on disk).
2. :func:`train_and_register`: fit, evaluate beside the baselines and the current champion
   on the same holdout, log everything to MLflow, register, alias ``challenger``.
3. :func:`gate_and_promote`: the gate decides; the verdict is written on the version, and
   ``champion`` moves only when it passed.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.cross import MODEL_FEATURES, model_matrix
from features.store import feature_store
from ingest.lake import atomic_write
from ingest.simulator import world_for
from models.metrics import D2QLabeler
from models.objectives import ValueHeads
from models.ranker import KIND_TAG, XGBoostRanker, load_ranker
from models.registry import CHALLENGER, CHAMPION, alias_version, client, configure_mlflow, git_sha
from models.retrieval_features import with_retrieval_features
from reelrank.progress import ProgressFn, Stages
from reelrank.settings import Settings
from training import baselines
from training.checks import behavioural_checks, feature_service_check
from training.curves import holdout_curve
from training.dataset import DataWindow, build_sets
from training.engine import training_client
from training.evaluate import (
    Metrics,
    evaluate_scores,
    head_metrics,
    surface_slices,
    with_eval_groups,
)
from training.gate import Evidence, GateVerdict, decide, significance
from training.plots import learning_curve_plot
from training.ranker import D2Q_ATTR, head_predictions, objective_labels, predict, train_ranker
from training.recency import recency_weights
from training.results import DatasetsResult, GateInputs, GateResult, HeadsSummary, TrainingResult
from training.review import hold_for_approval, promote
from training.tracking import log_dataset, log_references

log = logging.getLogger(__name__)


def _dir(settings: Settings, holdout: date) -> Path:
    return settings.home / "training" / holdout.isoformat()


def build_datasets(settings: Settings, holdout: date) -> DatasetsResult:
    """Join features for the window ending at ``holdout``; write train/holdout Parquet."""
    window = DataWindow.ending_at(holdout, settings.training.train_days)
    train, hold, reports = build_sets(settings, feature_store(settings), window)
    out = _dir(settings, holdout)
    atomic_write(out / "train.parquet", lambda tmp: train.to_parquet(tmp, index=False))
    atomic_write(out / "holdout.parquet", lambda tmp: hold.to_parquet(tmp, index=False))
    info = {
        "dir": str(out),
        "window": window.to_dict(),
        "rows": {"train": len(train), "holdout": len(hold)},
        "join": {k: r.to_dict() for k, r in reports.items()},
    }
    text = json.dumps(info, indent=2)
    atomic_write(out / "datasets.json", lambda tmp: tmp.write_text(text))
    log.info(
        "datasets for holdout %s: train %s..%s, %d train rows, %d holdout rows, written to %s",
        holdout,
        window.train_start,
        window.train_end,
        len(train),
        len(hold),
        out,
    )
    return DatasetsResult(**info)  # type: ignore[arg-type]


def world_oracle_scores(settings: Settings, hold: pd.DataFrame, holdout: date) -> np.ndarray:
    return world_for(settings.sim).oracle_utility(hold["user_id"], hold["video_id"], holdout)


def _oracle_metrics(settings: Settings, hold: pd.DataFrame, holdout: date) -> Metrics | None:
    """The best ranking possible: the simulator's hidden utility (simulated data only)."""
    if settings.dataset != "simulator":
        return None
    return evaluate_scores(hold, world_oracle_scores(settings, hold, holdout))


def _champion_metrics(
    settings: Settings, hold: pd.DataFrame, holdout: date
) -> tuple[str | None, Metrics | None, str | None, np.ndarray | None]:
    """The champion on the challenger's holdout: (version, metrics, why it cannot compete,
    its scores).

    A champion whose training data already contains the holdout day would be judged on data
    it has seen; such a comparison is refused (a replay must not replace a newer champion).
    """
    c = client(settings)
    version = alias_version(c, settings.ranker_model_name, CHAMPION)
    if version is None:
        return None, None, None, None
    window = c.get_model_version(settings.ranker_model_name, version).tags.get("data_window", "")
    champion_holdout = window.split("..")[-1]
    if champion_holdout and date.fromisoformat(champion_holdout) > holdout:
        why = (
            f"champion v{version} used data up to {champion_holdout}, which "
            f"includes this holdout ({holdout}); not comparable"
        )
        log.warning(why)
        return version, None, why, None
    champion = load_ranker(settings, version=version)
    assert champion is not None  # a version, not an alias: it exists or load_ranker raised
    if champion.features != tuple(MODEL_FEATURES):
        log.warning("champion v%s uses other features; not comparable on this holdout", version)
        return version, None, None, None
    scores = champion.predict(model_matrix(hold).to_numpy())
    single = champion.heads.heads == ("value",)
    return version, evaluate_scores(hold, scores, probabilities=single), None, scores


def _fmt(v: float | None) -> str:  # undefined metrics arrive as NaN, or None after JSON
    return "n/a" if v is None or math.isnan(v) else f"{v:.4f}"


def _objective_text(weights: dict[str, float]) -> tuple[str, str]:
    """What the model does and what kind of model it is, for the card."""
    if list(weights) == ["value"]:
        what = (
            "Scores (user, video) pairs by the probability that the impression creates value "
            "(completed, liked or shared)."
        )
        return what, "XGBoost binary classifier on the value label"
    formula = " + ".join(f"{v:g} x P({k})" for k, v in weights.items()).replace("+ -", "- ")
    what = (
        "Predicts each short-video objective of an impression (completion; watch time as "
        "its quantile among videos of similar duration, after Kuaishou's D2Q; like; share; "
        f"skip) and orders the feed by the value score = {formula}."
    )
    kind = (
        f"One XGBoost booster with {len(weights)} logistic heads (multi-target "
        "`reg:logistic`); the heads, weights and D2Q labeller are stored in the model file"
    )
    return what, kind


def _head_table(weights: dict[str, float], per_head: dict[str, dict[str, float]]) -> str:
    head_rows = "\n".join(
        f"| {h} | {weights.get(h, 0):g} | {_fmt(m['auc'])} | {_fmt(m['ece'])} "
        f"| {_fmt(m['mean_prediction'])} | {_fmt(m['mean_label'])} |"
        for h, m in per_head.items()
    )
    if not head_rows:
        return ""
    return (
        "\n**Heads on the holdout** (watch: AUC against watching above the bucket median):\n\n"
        "| head | weight | AUC | ECE | mean prediction | mean label |\n|---|---|---|---|---|---|\n"
        f"{head_rows}\n"
    )


def model_card(
    settings: Settings,
    info: dict[str, Any],
    metrics: dict[str, Metrics],
    verdict: GateVerdict | None,
    checks: dict[str, str | None] | None = None,
    heads: HeadsSummary | None = None,
    evidence: Evidence | None = None,
) -> str:
    """The version's description in the MLflow UI: what it does, its data, its metrics
    beside every reference, its heads, checks and the gate's verdict."""
    w = info["window"]
    weights: dict[str, float] = (heads.weights if heads else None) or {"value": 1.0}
    rows = "\n".join(
        f"| {name} | {_fmt(m.ndcg_at_10)} | {_fmt(m.auc)} | {_fmt(m.gauc)} "
        f"| {_fmt(m.xauc_watch)} | {_fmt(m.ece)} |"
        for name, m in metrics.items()
    )
    oracle = metrics.get("oracle")
    pct = (
        f" The challenger reaches {100 * metrics['challenger'].ndcg_at_10 / oracle.ndcg_at_10:.1f}%"
        " of the oracle's NDCG@10."
        if oracle is not None and oracle.ndcg_at_10 > 0
        else ""
    )
    checks = checks or {}
    check_lines = (
        ", ".join(f"{k} {'passed' if v is None else 'FAILED: ' + v}" for k, v in checks.items())
        or "not run"
    )
    gate = (f"**{verdict.label}**: " + "; ".join(verdict.reasons)) if verdict else "pending"
    significance_text = _significance_table(evidence, settings)
    what, model_kind = _objective_text(weights)
    head_table = _head_table(weights, heads.holdout if heads else {})
    return f"""# reelrank ranker: model card

**What it does.** {what} `/rank` and `/recommend` sort candidates by this score.

**Data.** Impressions {w["train_start"]} .. {w["train_end"]} (train, {info["rows"]["train"]} rows),
holdout {w["holdout"]} ({info["rows"]["holdout"]} rows), dataset `{settings.dataset}`.
Features: Feast service `{settings.feature_service}` ({len(MODEL_FEATURES)} model inputs incl.
user x topic affinity, user x creator history, video freshness and velocity), point-in-time
joined; rows imputed: {info["join"]["train"]}. Plus the retrieval score and the user-video
caption similarity from `{settings.retrieval_model_name}` (the champion at training time; the
version is tagged `retrieval_version`), and context: surface, and feed position (trained on
the logged position, scored at position 0, so the old feed's order is not learned as merit).

**Model.** {model_kind}; {settings.training.max_depth} deep, learning rate
{settings.training.learning_rate}; early stopping on the last training day picks the number of
trees, then the model is refitted with exactly that many (what is evaluated is what serves).

**Holdout metrics** (same rows for every line; NDCG@10 within each feed request on the value
label completed + liked + shared; GAUC = per-user AUC, impression-weighted; XAUC = pairwise
watch-time order within a request; ECE = calibration of P(value) for a probability model,
the mean over heads for a multi-head model):

| model | NDCG@10 | AUC | GAUC | XAUC watch | ECE |
|---|---|---|---|---|---|
{rows}
{pct}
{head_table}
Per-surface NDCG@10, calibration, feature importance, score distribution vs the champion and
the learning curve (holdout log-loss and AUC per head by boosting round, also as the run's
`holdout_*` metric charts) are PNG artifacts under `review/`; every number is in
`review/evaluation.json`.

**Behavioural checks:** {check_lines}.

**Gate** (metric `{settings.gate.metric}`, margin over baselines
{settings.gate.min_margin_over_baseline}, over champion {settings.gate.min_margin_over_champion},
cleared by the lower bound of a paired bootstrap interval over users; holdout at least
{settings.gate.min_holdout_rows} rows and {settings.gate.min_holdout_users} users):
{significance_text}
{gate}

**Known limits.** Trained on logs of a mixed popularity/topic policy, so it inherits that
policy's exposure bias beyond position; the head weights are a product choice, not learned;
share and like are rare, so their heads are the least certain.
"""


def _significance_table(evidence: Evidence | None, settings: Settings) -> str:
    """The challenger's NDCG@10 advantage over each reference with its bootstrap interval."""
    if evidence is None or not evidence.intervals:
        return ""
    level = round(100 * evidence.confidence)
    margins = {"champion": settings.gate.min_margin_over_champion}
    rows = "\n".join(
        f"| {ref} | {_fmt(iv.mean)} | [{_fmt(iv.low)}, {_fmt(iv.high)}] "
        f"| {margins.get(ref, settings.gate.min_margin_over_baseline)} |"
        for ref, iv in evidence.intervals.items()
    )
    return (
        f"\nHoldout: {evidence.rows} rows, {evidence.users} users; {evidence.samples} "
        f"bootstrap resamples of users.\n\n"
        f"| challenger minus | NDCG@10 difference | {level}% interval | margin |\n"
        f"|---|---|---|---|\n{rows}\n"
    )


def _calibration_curve(y: np.ndarray, p: np.ndarray, bins: int = 10) -> tuple[list, list]:
    """Mean prediction and mean target per non-empty prediction bin (binary or [0, 1])."""
    p = np.clip(p, 0.0, 1.0)
    b = np.minimum((p * bins).astype(int), bins - 1)
    n = np.bincount(b, minlength=bins)
    keep = n > 0
    mean_p = np.bincount(b, weights=p, minlength=bins)[keep] / n[keep]
    mean_y = np.bincount(b, weights=y, minlength=bins)[keep] / n[keep]
    return mean_p.tolist(), mean_y.tolist()


def _review_plots(
    out: Path,
    model: Any,
    scores: dict[str, np.ndarray],
    slices: dict[str, dict[str, float]],
    per_head: dict[str, dict[str, float]],
    head_pred: np.ndarray,
    head_labels: np.ndarray,
    heads: ValueHeads,
) -> None:
    from training.plots import (
        calibration_plot,
        importance_plot,
        score_distribution_plot,
        slices_plot,
    )

    slices_plot(slices, out / "ndcg_by_surface.png")
    curves = {
        f"{h} (ECE {per_head[h]['ece']:.3f})": _calibration_curve(
            head_labels[:, j], head_pred[:, j]
        )
        for j, h in enumerate(heads.heads)
    }
    calibration_plot(curves, out / "calibration.png")
    gain = model.get_booster().get_score(importance_type="total_gain")
    importance_plot(gain, out / "feature_importance.png")
    score_distribution_plot(
        {k: scores[k] for k in ("challenger", "champion") if k in scores},
        out / "score_distribution.png",
    )


# -- the ranker: fit -> evaluate -> collect blockers -> log -> register ---------------------
@dataclass
class FittedRanker:
    """A freshly fitted ranker with the data it was fitted and is judged on."""

    model: Any  # the fitted XGBoost model (the trainer's own type)
    curves: dict[str, list[float]]
    train: pd.DataFrame
    hold: pd.DataFrame
    info: dict[str, Any]  # datasets.json: window, rows, join report
    retrieval_version: str | None
    drift_since: date | None = None  # first day of the open drift episode, when weighted

    @property
    def ranker(self) -> XGBoostRanker:
        """The fitted model behind the one ranker interface (unregistered)."""
        return XGBoostRanker(self.model.get_booster(), "challenger", "unregistered")


@dataclass
class Evaluation:
    """The challenger beside the baselines, the champion and the oracle, on one holdout."""

    metrics: dict[str, Metrics]
    scores: dict[str, np.ndarray]
    slices: dict[str, dict[str, float]]
    per_head: dict[str, dict[str, float]]
    head_pred: np.ndarray
    head_labels: np.ndarray
    heads: ValueHeads
    champion_version: str | None
    champion_blocker: str | None
    evidence: Evidence


@dataclass(frozen=True)
class Review:
    """What a reviewer needs beyond metrics: the behavioural checks (name -> failure, None =
    passed), the feature contract's failure (None = kept) and every blocker found."""

    checks: dict[str, str | None]
    contract: str | None
    blockers: list[str]


def fit_step(settings: Settings, holdout: date, drift_since: date | None = None) -> FittedRanker:
    """Read the point-in-time sets, add the retrieval champion's features (the model serving
    will pair this ranker with) and fit on all but the last training day, which early
    stopping watches.

    ``drift_since``: the first day of a drift episode still open (the monitoring's state);
    rows before it then count less (``training.drift_half_life_days``,
    :mod:`training.recency`), so the retrain follows the changed world."""
    out = _dir(settings, holdout)
    info = json.loads((out / "datasets.json").read_text())
    train = pd.read_parquet(out / "train.parquet")
    hold = pd.read_parquet(out / "holdout.parquet")
    store = feature_store(settings)
    (train, hold), retrieval_version, _ = with_retrieval_features(
        settings, store, [train, hold], holdout
    )
    hold = with_eval_groups(hold, settings.dataset)
    last_day = train["event_timestamp"].max().normalize()
    fit_part = train[train["event_timestamp"] < last_day]
    valid_part = train[train["event_timestamp"] >= last_day]
    # a Dask cluster in the cluster profile (its own name: ``client`` is the registry's)
    half_life = settings.training.drift_half_life_days
    weights = None
    if drift_since is not None and half_life is not None and drift_since <= holdout:
        weights = recency_weights(fit_part["event_timestamp"], drift_since, half_life)
    if weights is not None:
        log.info(
            "drift episode open since %s: training rows weighted by recency (half-life %g "
            "days, mean weight %.3f)",
            drift_since,
            half_life,
            float(weights.mean()),
        )
    with training_client(settings) as dask_client:
        model, curves = train_ranker(
            fit_part, valid_part, settings.training, dask_client, sample_weight=weights
        )
    return FittedRanker(
        model,
        curves,
        train,
        hold,
        info,
        retrieval_version,
        drift_since if weights is not None else None,
    )


def evaluate_step(settings: Settings, fitted: FittedRanker, holdout: date) -> Evaluation:
    """Every model on the same holdout rows: heads, value score, per-surface slices."""
    model, train, hold = fitted.model, fitted.train, fitted.hold
    heads = ValueHeads.of_booster(model.get_booster())
    head_pred = head_predictions(model, hold)
    d2q = D2QLabeler.from_dict(json.loads(model.get_booster().attr(D2Q_ATTR) or "{}"))
    head_labels = objective_labels(hold, heads, d2q)
    per_head = head_metrics(hold, head_pred, heads.heads, head_labels)
    scores = {
        "challenger": heads.combine(head_pred),
        "popularity": baselines.score(baselines.popularity(train), hold["video_id"]),
        "recent_popularity": baselines.score(baselines.recent_popularity(train), hold["video_id"]),
    }
    single = heads.heads == ("value",)
    challenger = evaluate_scores(hold, scores["challenger"], probabilities=single)
    if not single:  # the value score is not a probability: report the heads' mean ECE
        challenger = replace(
            challenger, ece=float(np.nanmean([m["ece"] for m in per_head.values()]))
        )
    metrics: dict[str, Metrics] = {
        "challenger": challenger,
        "popularity": evaluate_scores(hold, scores["popularity"]),
        "recent_popularity": evaluate_scores(hold, scores["recent_popularity"]),
    }
    champ_version, champ, blocker, champ_scores = _champion_metrics(settings, hold, holdout)
    if champ is not None and champ_scores is not None:
        metrics["champion"], scores["champion"] = champ, champ_scores
    oracle = _oracle_metrics(settings, hold, holdout)
    if oracle is not None:
        metrics["oracle"] = oracle
        scores["oracle"] = world_oracle_scores(settings, hold, holdout)
    slices = {k: surface_slices(hold, v) for k, v in scores.items()}
    references = {k: v for k, v in scores.items() if k not in ("challenger", "oracle")}
    evidence = significance(hold, scores["challenger"], references, settings.gate)
    return Evaluation(
        metrics,
        scores,
        slices,
        per_head,
        head_pred,
        head_labels,
        heads,
        champ_version,
        blocker,
        evidence,
    )


def blockers_step(settings: Settings, fitted: FittedRanker, evaluation: Evaluation) -> Review:
    """Run the behavioural checks and the feature contract; collect what blocks promotion
    (those failures, and a champion that cannot be compared)."""
    hold = fitted.hold
    checks = behavioural_checks(
        lambda df: predict(fitted.model, df), hold.sample(min(len(hold), 400), random_state=0)
    )
    blockers = [evaluation.champion_blocker] if evaluation.champion_blocker else []
    blockers += [f"behavioural check {k} failed: {v}" for k, v in checks.items() if v]
    contract = feature_service_check(
        feature_store(settings), settings.feature_service, MODEL_FEATURES
    )
    if contract:
        blockers.append(contract)
    return Review(checks, contract, blockers)


def _flat_metrics(evaluation: Evaluation, checks: dict[str, str | None]) -> dict[str, float]:
    """Every figure of the evaluation as one flat MLflow metric dict (NaN left out)."""
    metrics = evaluation.metrics
    flat: dict[str, float] = {}
    for name, m in metrics.items():
        prefix = "" if name == "challenger" else f"{name}_"
        flat.update({k: v for k, v in m.to_dict(prefix).items() if not math.isnan(v)})
    oracle = metrics.get("oracle")
    if oracle is not None and oracle.ndcg_at_10 > 0:
        flat["pct_of_oracle_ndcg"] = 100.0 * metrics["challenger"].ndcg_at_10 / oracle.ndcg_at_10
    for label, per_surface in evaluation.slices.items():
        prefix = "" if label == "challenger" else f"{label}_"
        flat.update(
            {f"{prefix}ndcg_at_10_{k}": v for k, v in per_surface.items() if not math.isnan(v)}
        )
    flat.update({f"check_{k}": 0.0 if v else 1.0 for k, v in checks.items()})
    flat.update(
        {
            f"ndcg_diff_{name}_{part}": v
            for name, iv in evaluation.evidence.intervals.items()
            for part, v in iv.to_dict().items()
            if not math.isnan(v)
        }
    )
    flat.update(
        {
            f"head_{h}_{k}": v
            for h, m in evaluation.per_head.items()
            for k, v in m.items()
            if not math.isnan(v)
        }
    )
    return flat


def pipeline_metrics(pipeline: dict[str, float]) -> dict[str, float]:
    """The offline pipeline evaluation as MLflow metrics (NaN left out)."""
    return {
        (
            f"top10_{k}"
            if k.startswith(("coverage_", "creator_diversity_"))
            else f"pipeline_ndcg_at_10_{k}"
        ): v
        for k, v in pipeline.items()
        if not math.isnan(v)
    }


def _review_artifacts(
    directory: Path,
    settings: Settings,
    fitted: FittedRanker,
    evaluation: Evaluation,
    review: Review,
    holdout: date,
) -> Any:
    """Write the reviewer's files (evaluation.json, plots, the drift reference) into
    ``directory``; returns the learning curve on the holdout (also logged as metrics)."""
    model, e = fitted.model, evaluation
    learning = holdout_curve(
        model.get_booster(),
        model_matrix(fitted.hold).to_numpy(),
        e.head_labels,
        fitted.hold["positive"].to_numpy(),
        e.heads,
    )
    spec = {"feature_service": settings.feature_service, "features": list(MODEL_FEATURES)}
    (directory / "feature_spec.json").write_text(json.dumps(spec, indent=2))
    evaluation_json = {
        "holdout": holdout.isoformat(),
        "metrics": {k: m.to_dict() for k, m in e.metrics.items()},
        "surface_ndcg_at_10": e.slices,
        "heads": {"weights": e.heads.as_dict(), "holdout": e.per_head},
        "behavioural_checks": review.checks,
        "feature_contract": review.contract or "ok",
    }
    (directory / "evaluation.json").write_text(json.dumps(evaluation_json, indent=2))
    _review_plots(
        directory, model, e.scores, e.slices, e.per_head, e.head_pred, e.head_labels, e.heads
    )
    learning_curve_plot(
        learning.rounds, learning.metrics, fitted.curves, directory / "learning_curve.png"
    )
    (directory / "datasets.json").write_text(json.dumps(fitted.info, indent=2))
    train = fitted.train
    ref = model_matrix(
        train.sample(min(len(train), settings.training.reference_sample_rows), random_state=0)
    )
    ref["prediction"] = e.heads.combine(
        model.get_booster().inplace_predict(ref.to_numpy(), validate_features=False)
    ).astype(np.float32)
    ref.to_parquet(directory / "reference.parquet", index=False)
    return learning


def log_step(
    settings: Settings,
    fitted: FittedRanker,
    evaluation: Evaluation,
    review: Review,
    holdout: date,
) -> tuple[str, str]:
    """One MLflow run with params, metrics, curves, the review files and the model,
    registered under the ranker's name; returns (run id, version)."""
    import mlflow
    from mlflow.entities import Metric
    from mlflow.models import infer_signature

    model, e = fitted.model, evaluation
    exp_id = configure_mlflow(settings)
    with mlflow.start_run(experiment_id=exp_id, run_name=f"ranker-{holdout.isoformat()}") as run:
        mlflow.log_params(
            {
                **{f"xgb_{k}": v for k, v in settings.training.model_dump().items()},
                "n_trees": model.n_estimators,
                "objective": settings.training.objective,
                "objective_weights": json.dumps(e.heads.as_dict()),
                "feature_service": settings.feature_service,
                "n_features": len(MODEL_FEATURES),
                "retrieval_version": fitted.retrieval_version,
                "rows_train": len(fitted.train),
                "rows_holdout": len(fitted.hold),
                "drift_since": fitted.drift_since.isoformat() if fitted.drift_since else None,
                **{f"window_{k}": v for k, v in fitted.info["window"].items()},
            }
        )
        mlflow.log_metrics(_flat_metrics(e, review.checks))
        sets = _dir(settings, holdout)
        day = holdout.isoformat()
        log_dataset(fitted.train, f"train-{day}", sets / "train.parquet", "training", "value")
        log_dataset(fitted.hold, f"holdout-{day}", sets / "holdout.parquet", "holdout", "value")
        log_references(exp_id, run.info.run_id, day, {k: m.to_dict() for k, m in e.metrics.items()})
        with tempfile.TemporaryDirectory() as tmp:
            learning = _review_artifacts(Path(tmp), settings, fitted, e, review, holdout)
            mlflow.log_artifacts(tmp, artifact_path="review")
        now = int(pd.Timestamp.now().timestamp() * 1000)
        mlflow.MlflowClient().log_batch(
            run.info.run_id,
            metrics=[
                Metric(name, float(v), now, step)
                for name, values in fitted.curves.items()
                for step, v in enumerate(values)
            ]
            # the final model on the holdout, step = boosting rounds: charts in the MLflow UI
            + [Metric(name, v, now, step) for name, step, v in learning.points()],
        )
        x_hold = model_matrix(fitted.hold)
        info_model = XGBoostRanker.log_model(
            model,
            name="model",
            signature=infer_signature(x_hold.head(100), e.head_pred[:100]),
            input_example=x_hold.head(3),
            registered_model_name=settings.ranker_model_name,
        )
    return run.info.run_id, str(info_model.registered_model_version)


def register_step(settings: Settings, trained: TrainingResult) -> None:
    """Alias the new version ``challenger``, tag it for reviewers and write its model card."""
    c = client(settings)
    name, version = settings.ranker_model_name, trained.version
    c.set_registered_model_alias(name, CHALLENGER, version)
    checks = trained.checks
    w = trained.info["window"]
    tags = {
        "data_window": f"{w['train_start']}..{w['holdout']}",
        "feature_service": settings.feature_service,
        "git_sha": git_sha(),
        "gate_verdict": "pending",
        "ndcg_at_10": f"{trained.metrics['challenger'].ndcg_at_10:.4f}",
        "retrieval_version": trained.retrieval_version or "none",
        "objective_weights": json.dumps(trained.heads.weights),
        "behavioural_checks": "passed"
        if not any(checks.values())
        else "failed: " + ", ".join(k for k, v in checks.items() if v),
        "run_id": trained.run_id,
        KIND_TAG: XGBoostRanker.kind,
    }
    for k, v in tags.items():
        c.set_model_version_tag(name, version, k, v)
    card = model_card(
        settings, trained.info, trained.metrics, None, checks, trained.heads, trained.evidence
    )
    c.update_model_version(name, version, description=card)


def train_and_register(
    settings: Settings,
    holdout: date,
    progress: ProgressFn | None = None,
    drift_since: date | None = None,
) -> TrainingResult:
    """Fit, evaluate, log and register a challenger (alias ``challenger``); the result is
    also written next to the datasets (``trained.json``) for the gate's step.
    ``progress`` hears of each stage (fit, evaluation, checks, MLflow); ``drift_since``, the
    first day of an open drift episode, weighs the days since it (:func:`fit_step`)."""
    stages = Stages(progress, "ranker", 4)
    stages.next("XGBoost fit")
    fitted = fit_step(settings, holdout, drift_since)
    stages.next("evaluation vs baselines, champion, oracle")
    evaluation = evaluate_step(settings, fitted, holdout)
    stages.next("behavioural checks and feature contract")
    review = blockers_step(settings, fitted, evaluation)
    stages.next("MLflow: metrics, learning curve, review plots, model")
    run_id, version = log_step(settings, fitted, evaluation, review, holdout)
    stages.finish()
    trained = TrainingResult(
        version=version,
        run_id=run_id,
        holdout=holdout.isoformat(),
        champion_version=evaluation.champion_version,
        retrieval_version=fitted.retrieval_version,
        blockers=review.blockers,
        checks=review.checks,
        metrics=evaluation.metrics,
        heads=HeadsSummary(evaluation.heads.as_dict(), evaluation.per_head),
        info=fitted.info,
        evidence=evaluation.evidence,
    )
    register_step(settings, trained)
    trained.save(_dir(settings, holdout) / "trained.json")
    m = evaluation.metrics
    log.info(
        "registered %s v%s (run %s) on holdout %s: NDCG@10 %s",
        settings.ranker_model_name,
        version,
        run_id,
        holdout,
        ", ".join(f"{k} {_fmt(v.ndcg_at_10)}" for k, v in m.items()),
    )
    return trained


def record_pipeline_evaluation(
    settings: Settings, trained: TrainingResult, pipeline: dict[str, float]
) -> TrainingResult:
    """Add the offline evaluation of the whole serving pipeline (computed by the serving
    layer on this version) to the version's run and to the training result."""
    if not pipeline:
        return trained
    log.info("NDCG@10 after ranking, by candidate source: %s", pipeline)
    c = client(settings)
    now = int(pd.Timestamp.now().timestamp() * 1000)
    from mlflow.entities import Metric

    c.log_batch(
        trained.run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in pipeline_metrics(pipeline).items()],
    )
    c.log_text(trained.run_id, json.dumps(pipeline, indent=2), "review/pipeline_ndcg.json")
    out = replace(trained, pipeline_ndcg=pipeline)
    out.save(_dir(settings, date.fromisoformat(trained.holdout)) / "trained.json")
    return out


def _evidence_tags(evidence: Evidence | None) -> dict[str, str]:
    """The holdout size and each bootstrap interval as version tags (searchable in MLflow)."""
    if evidence is None:
        return {}
    level = round(100 * evidence.confidence)
    tags = {"gate_holdout": f"{evidence.rows} rows, {evidence.users} users"}
    for ref, iv in evidence.intervals.items():
        tags[f"gate_ci{level}_{ref}"] = f"{iv.mean:+.4f} [{iv.low:+.4f}, {iv.high:+.4f}]"
    return tags


def load_trained(settings: Settings, holdout: date) -> TrainingResult:
    """The training result the ranker step wrote for ``holdout``."""
    return TrainingResult.load(_dir(settings, holdout) / "trained.json")


def gate_and_promote(
    settings: Settings, trained: TrainingResult, inputs: GateInputs | None = None
) -> GateResult:
    """Decide on the challenger; on a pass, point ``champion`` at it. ``inputs`` carry what
    other layers found (days with broken inputs in the training window)."""
    inputs = inputs or GateInputs()
    all_metrics = trained.metrics
    refs = {
        k: m.to_dict()
        for k, m in all_metrics.items()
        if k not in ("challenger", "champion", "oracle")
    }
    champion = all_metrics["champion"].to_dict() if "champion" in all_metrics else None
    verdict = decide(
        all_metrics["challenger"].to_dict(),
        refs,
        champion,
        settings.gate,
        blockers=[*trained.blockers, *inputs.blockers()],
        evidence=trained.evidence,
    )
    c = client(settings)
    name, version = settings.ranker_model_name, trained.version
    c.set_model_version_tag(name, version, "gate_verdict", verdict.label)
    c.set_model_version_tag(name, version, "gate_reasons", verdict.summary)
    for k, v in _evidence_tags(trained.evidence).items():
        c.set_model_version_tag(name, version, k, v)
    level = logging.INFO if verdict.promote else logging.WARNING
    log.log(
        level,
        "gate %s for %s v%s: %s",
        verdict.label,
        name,
        version,
        verdict.summary.removeprefix("failed: "),
    )
    card = model_card(
        settings,
        trained.info,
        all_metrics,
        verdict,
        trained.checks,
        trained.heads,
        trained.evidence,
    )
    c.update_model_version(name, version, description=card)
    promoted = pending = False
    if verdict.promote and settings.gate.manual_approval:
        hold_for_approval(c, name, version, "; ".join(verdict.reasons))
        pending = True
    elif verdict.promote:
        promote(c, name, version, "gate", "gate passed: " + "; ".join(verdict.reasons))
        promoted = True
    else:
        c.set_model_version_tag(name, version, "review_status", "rejected by the gate")
    return GateResult(version, promoted, pending, verdict)
