"""Retrieval training, evaluation, registration and gate, keyed on the holdout day.

Windows: the two-tower trains on positive engagements of ``retrieval.train_days`` days before
the holdout, minus the last one, which is its early-stopping validation day; the holdout day
itself is only evaluated on. Users are described as of the start of each event's day
(Feast point-in-time join of ``user_engagement`` and ``user_history``), so no event sees its
own outcome.

Evaluation, on the holdout day, for every user with a positive engagement that day:
Recall@50/100/500 of the two-tower, global popularity, recent popularity and (simulated data)
the oracle; and cold-start recall on videos uploaded during the holdout day, which no model
saw in training and which reach the index through the fresh-items path, as in serving.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd

from feature_repo.columns import SEQUENCE_COLUMNS, USER_COLUMNS
from features.content import encoder_dim, read_content
from features.pipeline import load_vocabulary
from features.sequence import ordered_events, sequences_before
from features.store import feature_store
from ingest.lake import read_table
from ingest.simulator import world_for
from models.candidates import KS, available_rows, popularity_order, positives
from models.champion import catch_up, champion_retriever
from models.registry import (
    CHALLENGER,
    CHAMPION,
    RETRIEVAL_EXPERIMENT,
    alias_version,
    client,
    configure_mlflow,
    git_sha,
)
from models.retrieval_features import state_events, user_states
from models.retriever import RetrievalModel, Retriever
from models.sequence import (
    POOLED,
    SEQUENCE,
    SequenceTower,
    SequenceTrainData,
    fit_sequence,
    sequence_inputs,
    sequence_user_vectors,
    training_sequences,
)
from models.two_tower import (
    CATALOG_ARRAYS,
    Catalog,
    FitResult,
    TowerConfig,
    TrainData,
    TwoTower,
    fit,
    history_rows,
    user_matrix,
)
from reelrank.errors import InvalidDataError, MissingDataError
from reelrank.progress import ProgressFn, report
from reelrank.settings import Settings
from training.evaluate import json_safe
from training.gate import GateVerdict, decide
from training.plots import two_tower_curve_plot
from training.review import hold_for_approval, promote
from training.tracking import log_dataset, log_references

if TYPE_CHECKING:
    from feast import FeatureStore


log = logging.getLogger(__name__)


# -- data ---------------------------------------------------------------------------------
def load_catalog(settings: Settings, through: date, cfg: TowerConfig) -> tuple[Catalog, int]:
    """Every video in the lake up to ``through`` with its content; count those without one."""
    videos = read_table(settings.lake_dir, "videos", end=through)
    content = read_content(settings)
    missing = int((~videos["video_id"].isin(content["video_id"])).sum())
    if missing:
        log.warning("%d videos have no content embedding yet; their content is zeros", missing)
    return Catalog.from_frames(videos, content, cfg), missing


def _train_data(
    catalog: Catalog, pos: pd.DataFrame, states: pd.DataFrame, length: int
) -> TrainData:
    df = pos.merge(states, on=["user_id", "day"], how="left", validate="many_to_one")
    rows = catalog.rows(df["video_id"].tolist())
    keep = rows >= 0
    df = df[keep]
    return TrainData(
        user_x=user_matrix(df),
        history=history_rows(catalog, df["hist_video_ids"].tolist(), length),
        item_rows=rows[keep],
    )


# -- evaluation ---------------------------------------------------------------------------
@dataclass
class RetrievalMetrics:
    recall_at_50: float
    recall_at_100: float
    recall_at_500: float
    n_users: int
    cold_recall_at_100: float = float("nan")
    cold_recall_at_500: float = float("nan")
    n_cold_users: int = 0

    def to_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}": float(v) for k, v in asdict(self).items()}


def recall(
    ranked: Sequence[np.ndarray],
    relevant: Sequence[set[str]],
    cold: Sequence[set[str]] | None = None,
) -> RetrievalMetrics:
    """Mean per-user recall of ``relevant`` ids in the top-K of each user's ranked ids."""
    vals: dict[int, list[float]] = {k: [] for k in KS}
    cold_vals: dict[int, list[float]] = {100: [], 500: []}
    for i, (ids, rel) in enumerate(zip(ranked, relevant, strict=True)):
        for k in KS:
            vals[k].append(len(rel.intersection(ids[:k])) / len(rel))
        if cold is not None and cold[i]:
            for k in cold_vals:
                cold_vals[k].append(len(cold[i].intersection(ids[:k])) / len(cold[i]))

    def mean(x: list[float]) -> float:
        return float(np.mean(x)) if x else float("nan")

    return RetrievalMetrics(
        recall_at_50=mean(vals[50]),
        recall_at_100=mean(vals[100]),
        recall_at_500=mean(vals[500]),
        n_users=len(relevant),
        cold_recall_at_100=mean(cold_vals[100]),
        cold_recall_at_500=mean(cold_vals[500]),
        n_cold_users=len(cold_vals[100]),
    )


@dataclass
class EvalSet:
    """The holdout day's users, their states, what they enjoyed, and the catalog that day."""

    users: pd.DataFrame  # user_id, USER_COLUMNS, hist_video_ids
    relevant: list[set[str]]
    cold: list[set[str]]
    available: np.ndarray  # catalog rows available during the holdout day
    cold_ids: set[str]


def eval_set(settings: Settings, store: FeatureStore, catalog: Catalog, holdout: date) -> EvalSet:
    pos = positives(settings, holdout, holdout)
    if pos.empty:
        raise InvalidDataError(f"no positive engagements on the holdout day {holdout}")
    states = user_states(store, pos)
    start = np.datetime64(pd.Timestamp(holdout))
    new_rows = np.flatnonzero(
        (catalog.upload_ts >= start) & (catalog.upload_ts < start + np.timedelta64(1, "D"))
    )
    cold_ids = set(catalog.video_ids[new_rows].tolist())
    rel = pos.groupby("user_id")["video_id"].agg(set)
    users = states.set_index("user_id").loc[rel.index].reset_index()
    return EvalSet(
        users=users,
        relevant=[set(r) for r in rel],
        cold=[r & cold_ids for r in rel],
        available=available_rows(catalog, holdout, settings, end_of_day=True),
        cold_ids=cold_ids,
    )


def evaluate_retriever(retriever: Retriever, es: EvalSet, n: int = max(KS)) -> RetrievalMetrics:
    """Recall of the served path: each user's vector from the numpy forward of serving."""
    ranked = []
    has_events = all(c in es.users.columns for c in SEQUENCE_COLUMNS)
    events = state_events(es.users) if has_events else [None] * len(es.users)
    for (_, row), ev in zip(es.users.iterrows(), events, strict=True):
        feats = row[list(USER_COLUMNS)].to_numpy(np.float32)
        vec = retriever.user_vector(feats, row["hist_video_ids"], ev)
        ids, _ = retriever.retrieve(vec, n)
        ranked.append(ids)
    return recall(ranked, es.relevant, es.cold)


def evaluate_static(order: np.ndarray, es: EvalSet) -> RetrievalMetrics:
    """The same list for every user (popularity baselines)."""
    return recall([order] * len(es.relevant), es.relevant, es.cold)


def oracle_ranked(
    settings: Settings, catalog: Catalog, es: EvalSet, holdout: date, n: int = max(KS)
) -> list[np.ndarray] | None:
    if settings.dataset != "simulator":
        return None
    world = world_for(settings.sim)
    ids = catalog.video_ids[es.available]
    return [world.oracle_top(u, ids, holdout, n)[0] for u in es.users["user_id"]]


# -- training, registration, gate -----------------------------------------------------------
def _out(settings: Settings, holdout: date) -> Path:
    return settings.home / "training" / holdout.isoformat() / "retrieval"


def _tower_config(settings: Settings, content: pd.DataFrame) -> TowerConfig:
    r = settings.retrieval
    lengths = content["visual_embedding"].map(len) if len(content) else pd.Series([0])
    return TowerConfig(
        caption_dim=encoder_dim(r.text_encoder),
        visual_dim=int(lengths.max()),
        topics=load_vocabulary(settings),
        dim=r.dim,
        id_buckets=r.id_buckets,
        history_len=r.history_len,
        temperature=r.temperature,
        seq_len=r.seq_len,
        seq_dim=r.seq_dim,
        seq_layers=r.seq_layers,
        seq_heads=r.seq_heads,
    )


def _validator(
    catalog: Catalog,
    states: pd.DataFrame,
    pos: pd.DataFrame,
    avail: np.ndarray,
    k: int,
    events: pd.DataFrame | None = None,
):
    """Recall@k on the validation day by exact search: the early-stopping signal. A
    sequence model reads each user's events before the day (``events`` from the lake,
    :func:`features.sequence.ordered_events`); a pooled one the users' states."""
    from models.two_tower import all_item_vectors, user_vectors

    rel = pos.groupby("user_id")["video_id"].agg(set)
    users = states.drop_duplicates("user_id").set_index("user_id").loc[rel.index]
    x = user_matrix(users)
    histories = users["hist_video_ids"].tolist()
    # as wide as the longest history (the model reads its own history_len of it)
    width = max((len(h) for h in histories if h is not None), default=1)
    hist = history_rows(catalog, histories, max(width, 1))
    seqs = None
    if events is not None:
        day = pd.Timestamp(pos["day"].min()).tz_localize("UTC").timestamp()
        seqs = sequences_before(events, pd.Series(rel.index), pd.Series([day] * len(rel)), 10**6)

    def validate(model: Any) -> float:
        if isinstance(model, SequenceTower):
            assert seqs is not None, "a sequence model is validated on events"
            inputs = sequence_inputs(catalog, seqs, model.cfg.seq_len)
            u = sequence_user_vectors(model, catalog, inputs)
        else:
            u = user_vectors(model, catalog, x, hist[:, : model.cfg.history_len])
        v = all_item_vectors(model, catalog)[avail]
        ids_avail = catalog.video_ids[avail]
        found = []
        for lo in range(0, len(u), 512):  # bounded memory: users x catalog in blocks
            s = u[lo : lo + 512] @ v.T
            kk = min(k, s.shape[1] - 1)
            top = np.argpartition(-s, kk, axis=1)[:, :k]
            found.extend(ids_avail[top])
        ids = found
        return float(
            np.mean([len(r.intersection(i)) / len(r) for r, i in zip(rel, ids, strict=True)])
        )

    return validate


@dataclass(frozen=True)
class RetrievalResult:
    """A registered two-tower version, its holdout metrics beside every reference, and the
    gate's verdict on it."""

    version: str
    promoted: bool
    verdict: GateVerdict
    metrics: dict[str, RetrievalMetrics]
    random_recall: dict[int, float]
    holdout: str
    examples_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return json_safe(  # type: ignore[return-value]  # json_safe keeps a dict a dict
            {
                "version": self.version,
                "promoted": self.promoted,
                "verdict": self.verdict.to_dict(),
                "metrics": {k: m.to_dict() for k, m in self.metrics.items()},
                "random_recall": self.random_recall,
                "holdout": self.holdout,
                "examples_per_s": self.examples_per_s,
            }
        )


@dataclass
class _Window:
    """The two-tower's data: the catalog through the validation day, the positives of the
    window (training days and the validation day) and their users' states."""

    first: date
    valid_day: date
    cfg: TowerConfig
    catalog: Catalog
    pos: pd.DataFrame
    val_pos: pd.DataFrame
    states: pd.DataFrame
    data: TrainData
    # the window's impressions as ordered events (the sequence kind's input), or None when
    # no sequence model is trained
    events: pd.DataFrame | None = None

    @property
    def label(self) -> str:
        return f"{self.first.isoformat()}..{(self.valid_day + timedelta(days=1)).isoformat()}"


def _window(settings: Settings, store: FeatureStore, holdout: date) -> _Window:
    r = settings.retrieval
    valid_day = holdout - timedelta(days=1)
    first = holdout - timedelta(days=r.train_days)
    content = read_content(settings)
    cfg = _tower_config(settings, content)
    videos = read_table(settings.lake_dir, "videos", end=valid_day)
    catalog = Catalog.from_frames(videos, content, cfg)
    pos = positives(settings, first, valid_day)
    if pos.empty:
        raise MissingDataError(f"no positive engagements between {first} and {valid_day}")
    states = user_states(store, pos)
    val_day = pd.Timestamp(valid_day)
    train_pos, val_pos = pos[pos["day"] < val_day], pos[pos["day"] >= val_day]
    if train_pos.empty or val_pos.empty:
        raise InvalidDataError(f"retrieval needs >= 2 days of positives before {holdout}")
    data = _train_data(catalog, train_pos, states, cfg.history_len)
    events = None
    if SEQUENCE in r.kinds:
        imp = read_table(settings.lake_dir, "impressions", start=first, end=valid_day)
        events = ordered_events(imp)
    return _Window(first, valid_day, cfg, catalog, pos, val_pos, states, data, events)


def _sequence_data(w: _Window, catalog: Catalog) -> SequenceTrainData:
    """Training sequences of the window's training days (the validation day excluded)."""
    assert w.events is not None
    cutoff = pd.Timestamp(w.valid_day).tz_localize("UTC").timestamp()
    ev = w.events[w.events["t"] < cutoff]
    users = [
        (g["video_id"].tolist(), g["action"].tolist(), g["t"].tolist())
        for _, g in ev.groupby("user_id", sort=True)
    ]
    return training_sequences(catalog, users, w.cfg.seq_len)


def _copy_catalog(catalog: Catalog) -> Catalog:
    """Each kind's own catalog: fitting sets which ids were trained (``id_known``)."""
    return Catalog(**{n: getattr(catalog, n).copy() for n in CATALOG_ARRAYS})


def _fit_tower(
    settings: Settings, w: _Window, progress: ProgressFn | None, kind: str = POOLED
) -> tuple[FitResult, float, Catalog]:
    """Fit one kind with early stopping on the validation day's Recall@100;
    (result, seconds, the catalog it was fitted on)."""
    r = settings.retrieval
    catalog = w.catalog if kind == POOLED else _copy_catalog(w.catalog)
    val_day = pd.Timestamp(w.valid_day)
    validate = _validator(
        catalog,
        w.states[w.states["day"] == val_day],
        w.val_pos,
        available_rows(catalog, w.valid_day, settings, end_of_day=True),
        100,
        events=w.events if kind == SEQUENCE else None,
    )
    label = "two-tower" if kind == POOLED else "sequence model"

    def on_epoch(epoch: int, loss: float, recall: float) -> None:
        report(
            progress,
            f"{label} epochs: loss {loss:.3f}, valid R@100 {recall:.3f}",
            epoch,
            r.max_epochs,
        )

    common: dict[str, Any] = {
        "validate": validate,
        "learning_rate": r.learning_rate,
        "max_epochs": r.max_epochs,
        "patience": r.patience,
        "id_dropout": r.id_dropout,
        "seed": r.seed,
        "threads": r.threads,
        "on_epoch": on_epoch,
    }
    t0 = time.perf_counter()
    if kind == SEQUENCE:
        cfg = replace(w.cfg, kind=SEQUENCE)
        data = _sequence_data(w, catalog)
        if not len(data.targets):
            raise InvalidDataError("no training sequence has a positive to predict")
        result = fit_sequence(
            catalog, data, cfg, batch_size=r.seq_batch_size, device=r.device, **common
        )
    else:
        result = fit(catalog, w.data, w.cfg, batch_size=r.batch_size, **common)
    report(progress, f"{label} epochs", r.max_epochs, r.max_epochs)  # early stopping ends it
    return result, time.perf_counter() - t0, catalog


def pick_kind(by_kind: dict[str, RetrievalMetrics]) -> str:
    """The kind that goes before the gate: the best holdout Recall@100 (NaN never wins);
    a tie goes to the kind listed first (the configured order, pooled by default)."""

    def score(kind: str) -> float:
        v = by_kind[kind].recall_at_100
        return -math.inf if math.isnan(v) else v

    return max(by_kind, key=score)  # max keeps the first of equal scores


def _build_retriever(
    settings: Settings, model: TwoTower, catalog: Catalog, holdout: date
) -> Retriever:
    """The index holds what a feed could show at the holdout's start; the holdout day's
    uploads arrive afterwards through the fresh-items path, exactly as in serving."""
    r = settings.retrieval
    return Retriever.build(
        model,
        catalog,
        available_rows(catalog, holdout, settings, end_of_day=False),
        exact_below=r.exact_below,
        hnsw_m=r.hnsw_m,
        ef_construction=r.hnsw_ef_construction,
        ef_search=r.hnsw_ef_search,
        max_age_days=float(settings.max_video_age_days),
        fresh_share=r.fresh_share,
    )


def _evaluate_all(
    settings: Settings,
    retriever: Retriever,
    es: EvalSet,
    w: _Window,
    holdout: date,
    challenger: RetrievalMetrics | None = None,
) -> tuple[dict[str, RetrievalMetrics], list[str]]:
    """The challenger beside popularity, recent popularity, the oracle (simulated data) and
    the champion on the same eval set; and why the champion cannot compete, if it cannot."""
    metrics: dict[str, RetrievalMetrics] = {
        "challenger": challenger or evaluate_retriever(retriever, es)
    }
    cat = retriever.catalog
    metrics["popularity"] = evaluate_static(popularity_order(cat, w.pos, es.available), es)
    metrics["recent_popularity"] = evaluate_static(
        popularity_order(cat, w.val_pos, es.available), es
    )
    oracle = oracle_ranked(settings, cat, es, holdout)
    if oracle is not None:
        metrics["oracle"] = recall(oracle, es.relevant, es.cold)
    name = settings.retrieval_model_name
    c = client(settings)
    champ_version = alias_version(c, name, CHAMPION)
    blockers: list[str] = []
    if champ_version is not None:
        window = c.get_model_version(name, champ_version).tags.get("data_window", "")
        end = window.split("..")[-1]
        if end and date.fromisoformat(end) > holdout:
            blockers.append(
                f"champion v{champ_version} used data up to {end}, which includes this "
                f"holdout ({holdout}); not comparable"
            )
        else:
            _, champ = champion_retriever(settings)
            assert champ is not None
            catch_up(champ, settings, holdout)
            metrics["champion"] = evaluate_retriever(champ, es)
    return metrics, blockers


def _log_retrieval(
    settings: Settings,
    w: _Window,
    fitted: tuple[FitResult, float],
    retriever: Retriever,
    evaluation: dict[str, Any],
    flat: dict[str, float],
) -> tuple[str, str]:
    """One MLflow run: params, metrics, the epoch curves, the review files and the bundle
    (model + index + ids), registered under the retrieval model's name; (run id, version)."""
    r = settings.retrieval
    result, _ = fitted
    exp_id = configure_mlflow(settings, RETRIEVAL_EXPERIMENT)
    holdout = evaluation["holdout"]
    with mlflow.start_run(experiment_id=exp_id, run_name=f"retrieval-{holdout}") as run:
        impressions = settings.lake_dir / "impressions"
        log_dataset(w.pos, f"retrieval-positives-{w.label}", impressions, "training")
        log_dataset(w.val_pos, f"retrieval-positives-{w.valid_day}", impressions, "validation")
        log_references(exp_id, run.info.run_id, str(holdout), evaluation["metrics"])
        mlflow.log_params(
            {
                **{f"retrieval_{k}": v for k, v in r.model_dump().items()},
                "caption_encoder": r.text_encoder,
                "visual_dim": w.cfg.visual_dim,
                "index_kind": retriever.index.kind,
                "data_window": w.label,
                "validation_day": w.valid_day.isoformat(),
                "feature_service": _feature_service(retriever.kind),
                "retrieval_kind": retriever.kind,
            }
        )
        mlflow.log_metrics(flat)
        for key, values in result.curves.items():
            for step, v in enumerate(values, start=1):
                mlflow.log_metric(key, v, step=step)
        with tempfile.TemporaryDirectory() as tmp:
            bundle = retriever.save(Path(tmp) / "bundle")
            review = Path(tmp) / "review"
            review.mkdir()
            (review / "evaluation.json").write_text(json.dumps(evaluation, indent=2))
            two_tower_curve_plot(result.curves, review / "training_curve.png")
            mlflow.log_artifacts(str(review), artifact_path="review")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=RetrievalModel(),
                artifacts={"bundle": str(bundle)},
                registered_model_name=settings.retrieval_model_name,
            )
    return run.info.run_id, str(info.registered_model_version)


def _flat_metrics(
    metrics: dict[str, RetrievalMetrics],
    random_recall: dict[int, float],
    fitted: tuple[FitResult, float],
    w: _Window,
    fresh: int,
    index_size: int,
) -> dict[str, float]:
    result, train_s = fitted
    flat: dict[str, float] = {}
    for label, m in metrics.items():
        prefix = "" if label == "challenger" else f"{label}_"
        flat.update({k: v for k, v in m.to_dict(prefix).items() if not math.isnan(v)})
    flat.update({f"random_recall_at_{k}": v for k, v in random_recall.items()})
    flat.update(
        {
            "train_examples": float(len(w.data.item_rows)),
            "train_examples_per_s": result.examples_per_s,
            "train_seconds": train_s,
            "epochs": float(result.epochs),
            "best_epoch": float(result.best_epoch),
            "fresh_videos_added": float(fresh),
            "index_size": float(index_size),
        }
    )
    return flat


def _feature_service(kind: str) -> str:
    """The Feast feature service a kind reads (retrieval_v2 adds the user's events)."""
    return "retrieval_v2" if kind == SEQUENCE else "retrieval_v1"


def _gate_retrieval(
    settings: Settings,
    version: str,
    run_id: str,
    w: _Window,
    metrics: dict[str, RetrievalMetrics],
    random_recall: dict[int, float],
    blockers: list[str],
    index_kind: str,
    kind: str = POOLED,
) -> GateVerdict:
    """Alias ``challenger``, decide on Recall@100 (the same review rules as the ranker,
    manual approval included), tag the version and write its card."""
    r, name, c = settings.retrieval, settings.retrieval_model_name, client(settings)
    c.set_registered_model_alias(name, CHALLENGER, version)
    gate = settings.gate.model_copy(
        update={
            "metric": "recall_at_100",
            "min_margin_over_champion": r.min_margin_over_champion,
            "min_margin_over_baseline": r.min_margin_over_baseline,
        }
    )
    refs = {k: m.to_dict() for k, m in metrics.items() if k in ("popularity", "recent_popularity")}
    champ_metrics = metrics["champion"].to_dict() if "champion" in metrics else None
    verdict = decide(metrics["challenger"].to_dict(), refs, champ_metrics, gate, blockers)
    tags = {
        "data_window": w.label,
        "feature_service": _feature_service(kind),
        "retrieval_kind": kind,
        "git_sha": git_sha(),
        "gate_verdict": verdict.label,
        "gate_reasons": verdict.summary,
        "recall_at_100": f"{metrics['challenger'].recall_at_100:.4f}",
        "index_kind": index_kind,
        "run_id": run_id,
    }
    for k, v in tags.items():
        c.set_model_version_tag(name, version, k, v)
    card = retrieval_card(settings, w.label, metrics, random_recall, verdict, kind)
    c.update_model_version(name, version, description=card)
    if verdict.promote and settings.gate.manual_approval:
        hold_for_approval(c, name, version, "; ".join(verdict.reasons))
    elif verdict.promote:
        promote(c, name, version, "gate", "gate passed: " + "; ".join(verdict.reasons))
        log.info("retrieval gate passed for v%s: %s", version, verdict.reasons)
    else:
        c.set_model_version_tag(name, version, "review_status", "rejected by the gate")
        log.warning("retrieval gate %s for v%s", verdict.summary, version)
    return verdict


def train_retrieval(
    settings: Settings, holdout: date, progress: ProgressFn | None = None
) -> RetrievalResult:
    """Train the two-tower, build its index, evaluate beside the baselines and the current
    champion on the holdout day, register it as ``challenger`` and let the gate decide.
    ``progress`` hears of every training epoch (out of at most ``max_epochs``)."""
    store = feature_store(settings)
    w = _window(settings, store, holdout)
    fits: dict[str, tuple[FitResult, float]] = {}
    built: dict[str, Retriever] = {}
    added: dict[str, int] = {}
    for kind in settings.retrieval.kinds:
        result, seconds, catalog = _fit_tower(settings, w, progress, kind)
        fits[kind] = (result, seconds)
        built[kind] = _build_retriever(settings, result.model, catalog, holdout)
        added[kind] = catch_up(built[kind], settings, holdout)
    first = settings.retrieval.kinds[0]
    es = eval_set(settings, store, built[first].catalog, holdout)
    by_kind = {kind: evaluate_retriever(ret, es) for kind, ret in built.items()}
    chosen = pick_kind(by_kind)
    fitted, retriever, fresh = fits[chosen], built[chosen], added[chosen]
    log.info(
        "retrieval kinds on the holdout (R@100): %s; %s goes before the gate",
        {k: round(m.recall_at_100, 4) for k, m in by_kind.items()},
        chosen,
    )
    metrics, blockers = _evaluate_all(settings, retriever, es, w, holdout, by_kind[chosen])
    for other, m in by_kind.items():
        if other != chosen:
            metrics[f"{other}_kind"] = m  # the kind that lost, beside the references
    random_recall = {k: min(1.0, k / max(len(es.available), 1)) for k in KS}
    flat = _flat_metrics(metrics, random_recall, fitted, w, fresh, retriever.index.size)
    evaluation = {
        "holdout": holdout.isoformat(),
        "metrics": {k: m.to_dict() for k, m in metrics.items()},
        "random_recall": random_recall,
        "available_videos": len(es.available),
        "cold_videos": len(es.cold_ids),
    }
    run_id, version = _log_retrieval(settings, w, fitted, retriever, evaluation, flat)
    verdict = _gate_retrieval(
        settings,
        version,
        run_id,
        w,
        metrics,
        random_recall,
        blockers,
        retriever.index.kind,
        chosen,
    )
    return RetrievalResult(
        version=version,
        promoted=verdict.promote and not settings.gate.manual_approval,
        verdict=verdict,
        metrics=metrics,
        random_recall=random_recall,
        holdout=holdout.isoformat(),
        examples_per_s=fitted[0].examples_per_s,
    )


_KIND_TEXT = {
    POOLED: "The user side pools the user's recent positives (described above).",
    SEQUENCE: "The user side is a causal transformer over the user's latest events (video, "
    "action, time gap), trained to predict each next positive; it replaces the pooled user "
    "tower described above, and the item tower is the same.",
}


def retrieval_card(
    settings: Settings,
    window: str,
    metrics: dict[str, RetrievalMetrics],
    random_recall: dict[int, float],
    verdict: Any,
    kind: str = POOLED,
) -> str:
    rows = "\n".join(
        f"| {k} | {m.recall_at_50:.4f} | {m.recall_at_100:.4f} | {m.recall_at_500:.4f} | "
        f"{m.cold_recall_at_100:.4f} |"
        for k, m in metrics.items()
    )
    r = settings.retrieval
    return f"""# reelrank retrieval: model card

**What it does.** Finds the few hundred videos (of the whole catalog) that `/recommend` ranks.
A two-tower model: the user tower reads engagement rates and the pooled content of the user's
{r.history_len} most recent positive videos; the item tower reads a hashed id, the caption
embedding ({r.text_encoder}), the visual embedding, topic, creator and duration. Videos
uploaded after training are embedded from their content and added to the index.

**Kind: {kind}.** {_KIND_TEXT.get(kind, "")}

**Data.** Positive engagements (completed, liked or shared) {window}; the day before the
holdout is the early-stopping validation day. In-batch sampled softmax with log-Q correction,
temperature {r.temperature}, {r.dim}-d vectors, id dropout {r.id_dropout}.

**Holdout recall** (users with a positive engagement on the holdout day; cold = videos
uploaded that day, never seen in training; random recall@100 = {random_recall[100]:.4f}):

| retriever | R@50 | R@100 | R@500 | cold R@100 |
|---|---|---|---|---|
{rows}

**Gate** (Recall@100): **{verdict.label}**: {"; ".join(verdict.reasons)}

**Known limits.** Positives only (no skips as negatives); exposure bias of the logging
policy; user features are daily snapshots, so a session's own engagement is not seen.
"""
