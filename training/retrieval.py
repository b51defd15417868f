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
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from feature_repo.columns import USER_COLUMNS, USER_CREATOR_COLUMNS
from features.batch import FEATURE_DEFAULTS
from features.content import CAPTION_DIM, read_content
from features.pipeline import load_vocabulary
from ingest.lake import read_table
from reelrank.errors import InvalidDataError, MissingDataError
from reelrank.progress import ProgressFn, report
from reelrank.settings import Settings
from training.registry import CHALLENGER, CHAMPION, alias_version, client, configure_mlflow, git_sha
from training.two_tower import Catalog, TowerConfig, TrainData, history_rows, user_matrix

if TYPE_CHECKING:
    from feast import FeatureStore

    from serving.retriever import Retriever

log = logging.getLogger(__name__)
KS = (50, 100, 500)
SMALL_BUDGET = 100  # a second, tighter candidate budget for the end-to-end evaluation
USER_REFS = [f"user_engagement:{c}" for c in USER_COLUMNS] + ["user_history:hist_video_ids"]


# -- data ---------------------------------------------------------------------------------
def user_states(store: FeatureStore, pairs: pd.DataFrame) -> pd.DataFrame:
    """User features and history as of the start of each (user_id, day); defaults where the
    user has none yet (new users), none dropped."""
    keys = pairs[["user_id", "day"]].drop_duplicates().reset_index(drop=True)
    ent = pd.DataFrame(
        {
            "user_id": keys["user_id"],
            "event_timestamp": pd.to_datetime(keys["day"]).dt.tz_localize("UTC"),
            "key": np.arange(len(keys)),
        }
    )
    got = store.get_historical_features(entity_df=ent, features=USER_REFS).to_df()
    got = got.drop_duplicates("key")
    out = keys.assign(key=np.arange(len(keys))).merge(
        got.drop(columns=["user_id", "event_timestamp"]), on="key", how="left"
    )
    for c in USER_COLUMNS:
        out[c] = out[c].astype("float64").fillna(FEATURE_DEFAULTS[c])
    out["hist_video_ids"] = [
        list(h) if isinstance(h, list | np.ndarray) else [] for h in out["hist_video_ids"]
    ]
    return out.drop(columns=["key"])


def load_catalog(settings: Settings, through: date, cfg: TowerConfig) -> tuple[Catalog, int]:
    """Every video in the lake up to ``through`` with its content; count those without one."""
    videos = read_table(settings.lake_dir, "videos", end=through)
    content = read_content(settings)
    missing = int((~videos["video_id"].isin(content["video_id"])).sum())
    if missing:
        log.warning("%d videos have no content embedding yet; their content is zeros", missing)
    return Catalog.from_frames(videos, content, cfg), missing


def positives(settings: Settings, start: date, end: date) -> pd.DataFrame:
    imp = read_table(settings.lake_dir, "impressions", start=start, end=end)
    pos = imp[imp["completed"] | imp["liked"] | imp["shared"]]
    out = pos[["user_id", "video_id", "ts"]].copy()
    out["day"] = out["ts"].dt.tz_convert("UTC").dt.tz_localize(None).dt.normalize()
    return out.reset_index(drop=True)


def available_rows(catalog: Catalog, day: date, settings: Settings, end_of_day: bool) -> np.ndarray:
    """Catalog rows a feed could show on ``day``: uploaded before its start (or end), and
    not older than the catalog's lifetime."""
    start = np.datetime64(pd.Timestamp(day))
    edge = start + np.timedelta64(1, "D") if end_of_day else start
    oldest = start - np.timedelta64(settings.max_video_age_days, "D")
    up = catalog.upload_ts
    return np.flatnonzero((up < edge) & (up >= oldest))


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
    ranked = []
    for _, row in es.users.iterrows():
        feats = row[list(USER_COLUMNS)].to_numpy(np.float32)
        ids, _ = retriever.retrieve(retriever.user_vector(feats, row["hist_video_ids"]), n)
        ranked.append(ids)
    return recall(ranked, es.relevant, es.cold)


def evaluate_static(order: np.ndarray, es: EvalSet) -> RetrievalMetrics:
    """The same list for every user (popularity baselines)."""
    return recall([order] * len(es.relevant), es.relevant, es.cold)


def popularity_order(
    catalog: Catalog, pos: pd.DataFrame, available: np.ndarray, n: int = max(KS)
) -> np.ndarray:
    counts = pos["video_id"].value_counts()
    ids = catalog.video_ids[available]
    score = pd.Series(ids).map(counts).fillna(0.0).to_numpy()
    return ids[np.argsort(-score, kind="stable")[:n]]


def oracle_ranked(
    settings: Settings, catalog: Catalog, es: EvalSet, holdout: date, n: int = max(KS)
) -> list[np.ndarray] | None:
    if settings.dataset != "simulator":
        return None
    from ingest.simulator import generate_world

    world = generate_world(settings.sim)
    ids = catalog.video_ids[es.available]
    ranked = []
    for u in es.users["user_id"]:
        util = world.oracle_utility(np.repeat(u, len(ids)), ids, holdout)
        top = np.argpartition(-util, min(n, len(ids) - 1))[:n]
        ranked.append(ids[top[np.argsort(-util[top], kind="stable")]])
    return ranked


# -- training, registration, gate -----------------------------------------------------------
def _out(settings: Settings, holdout: date) -> Path:
    return settings.home / "training" / holdout.isoformat() / "retrieval"


def _tower_config(settings: Settings, content: pd.DataFrame) -> TowerConfig:
    r = settings.retrieval
    lengths = content["visual_embedding"].map(len) if len(content) else pd.Series([0])
    return TowerConfig(
        caption_dim=CAPTION_DIM,
        visual_dim=int(lengths.max()),
        topics=load_vocabulary(settings),
        dim=r.dim,
        id_buckets=r.id_buckets,
        history_len=r.history_len,
        temperature=r.temperature,
    )


def _validator(
    catalog: Catalog, states: pd.DataFrame, pos: pd.DataFrame, avail: np.ndarray, k: int
):
    """Recall@k on the validation day by exact search: the early-stopping signal."""
    from training.two_tower import all_item_vectors, user_vectors

    rel = pos.groupby("user_id")["video_id"].agg(set)
    users = states.drop_duplicates("user_id").set_index("user_id").loc[rel.index]
    x = user_matrix(users)
    histories = users["hist_video_ids"].tolist()
    # as wide as the longest history (the model reads its own history_len of it)
    width = max((len(h) for h in histories if h is not None), default=1)
    hist = history_rows(catalog, histories, max(width, 1))

    def validate(model: Any) -> float:
        h = hist[:, : model.cfg.history_len]
        u = user_vectors(model, catalog, x, h)
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


def champion_retriever(
    settings: Settings, alias: str = CHAMPION
) -> tuple[str | None, Retriever | None]:
    """The registered retrieval model behind ``alias``, loaded with its index and ids."""
    import mlflow

    c = client(settings)
    version = alias_version(c, settings.retrieval_model_name, alias)
    if version is None:
        return None, None
    model = mlflow.pyfunc.load_model(f"models:/{settings.retrieval_model_name}/{version}")
    return version, model.unwrap_python_model().retriever


def catch_up(retriever: Retriever, settings: Settings, through: date) -> int:
    """Add every lake video the retriever does not know yet (the fresh-items path)."""
    videos = read_table(settings.lake_dir, "videos", end=through)
    new = videos[~videos["video_id"].isin(retriever.catalog.index)]
    if new.empty:
        return 0
    content = read_content(settings)
    return retriever.add_videos(new, content[content["video_id"].isin(new["video_id"])])


def train_retrieval(
    settings: Settings, holdout: date, progress: ProgressFn | None = None
) -> dict[str, Any]:
    """Train the two-tower, build its index, evaluate beside the baselines and the current
    champion on the holdout day, register it as ``challenger`` and let the gate decide.
    ``progress`` hears of every training epoch (out of at most ``max_epochs``)."""
    import time

    import mlflow

    from features.store import feature_store
    from serving.retriever import RetrievalModel, Retriever
    from training.gate import decide
    from training.two_tower import fit

    r = settings.retrieval
    store = feature_store(settings)
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
    validate = _validator(
        catalog,
        states[states["day"] == val_day],
        val_pos,
        available_rows(catalog, valid_day, settings, end_of_day=True),
        100,
    )
    t0 = time.perf_counter()
    result = fit(
        catalog,
        data,
        cfg,
        validate=validate,
        batch_size=r.batch_size,
        learning_rate=r.learning_rate,
        max_epochs=r.max_epochs,
        patience=r.patience,
        id_dropout=r.id_dropout,
        seed=r.seed,
        threads=r.threads,
        on_epoch=lambda epoch, loss, recall: report(
            progress,
            f"two-tower epochs: loss {loss:.3f}, valid R@100 {recall:.3f}",
            epoch,
            r.max_epochs,
        ),
    )
    report(progress, "two-tower epochs", r.max_epochs, r.max_epochs)  # early stopping ends it
    train_s = time.perf_counter() - t0

    # the index holds what a feed could show at the holdout's start; the holdout day's
    # uploads arrive afterwards through the fresh-items path, exactly as in serving
    retriever = Retriever.build(
        result.model,
        catalog,
        available_rows(catalog, holdout, settings, end_of_day=False),
        exact_below=r.exact_below,
        hnsw_m=r.hnsw_m,
        ef_construction=r.hnsw_ef_construction,
        ef_search=r.hnsw_ef_search,
        max_age_days=float(settings.max_video_age_days),
        fresh_share=r.fresh_share,
    )
    fresh = catch_up(retriever, settings, holdout)
    es = eval_set(settings, store, retriever.catalog, holdout)
    metrics: dict[str, RetrievalMetrics] = {"challenger": evaluate_retriever(retriever, es)}
    metrics["popularity"] = evaluate_static(
        popularity_order(retriever.catalog, pos, es.available), es
    )
    metrics["recent_popularity"] = evaluate_static(
        popularity_order(retriever.catalog, val_pos, es.available), es
    )
    oracle = oracle_ranked(settings, retriever.catalog, es, holdout)
    if oracle is not None:
        metrics["oracle"] = recall(oracle, es.relevant, es.cold)
    n_avail = max(len(es.available), 1)
    random_recall = {k: min(1.0, k / n_avail) for k in KS}

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

    exp_id = configure_mlflow(settings)
    window = f"{first.isoformat()}..{holdout.isoformat()}"
    flat: dict[str, float] = {}
    for label, m in metrics.items():
        prefix = "" if label == "challenger" else f"{label}_"
        flat.update({k: v for k, v in m.to_dict(prefix).items() if not math.isnan(v)})
    flat.update({f"random_recall_at_{k}": v for k, v in random_recall.items()})
    flat.update(
        {
            "train_examples": float(len(data.item_rows)),
            "train_examples_per_s": result.examples_per_s,
            "train_seconds": train_s,
            "epochs": float(result.epochs),
            "best_epoch": float(result.best_epoch),
            "fresh_videos_added": float(fresh),
            "index_size": float(retriever.index.size),
        }
    )
    with mlflow.start_run(experiment_id=exp_id, run_name=f"retrieval-{holdout.isoformat()}") as run:
        mlflow.log_params(
            {
                **{f"retrieval_{k}": v for k, v in r.model_dump().items()},
                "caption_encoder": r.text_encoder,
                "visual_dim": cfg.visual_dim,
                "index_kind": retriever.index.kind,
                "data_window": window,
                "validation_day": valid_day.isoformat(),
                "feature_service": "retrieval_v1",
            }
        )
        mlflow.log_metrics(flat)
        for key, values in result.curves.items():
            for step, v in enumerate(values, start=1):
                mlflow.log_metric(key, v, step=step)
        with tempfile.TemporaryDirectory() as tmp:
            bundle = retriever.save(Path(tmp) / "bundle")
            evaluation = {
                "holdout": holdout.isoformat(),
                "metrics": {k: m.to_dict() for k, m in metrics.items()},
                "random_recall": random_recall,
                "available_videos": len(es.available),
                "cold_videos": len(es.cold_ids),
            }
            review = Path(tmp) / "review"
            review.mkdir()
            (review / "evaluation.json").write_text(json.dumps(evaluation, indent=2))
            from training.plots import two_tower_curve_plot

            two_tower_curve_plot(result.curves, review / "training_curve.png")
            mlflow.log_artifacts(str(review), artifact_path="review")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=RetrievalModel(),
                artifacts={"bundle": str(bundle)},
                registered_model_name=name,
            )
        version = str(info.registered_model_version)

    c.set_registered_model_alias(name, CHALLENGER, version)
    gate = settings.gate.model_copy(
        update={
            "metric": "recall_at_100",
            "min_margin_over_champion": r.min_margin_over_champion,
        }
    )
    refs = {k: m.to_dict() for k, m in metrics.items() if k in ("popularity", "recent_popularity")}
    champ_metrics = metrics["champion"].to_dict() if "champion" in metrics else None
    verdict = decide(metrics["challenger"].to_dict(), refs, champ_metrics, gate, blockers)
    tags = {
        "data_window": window,
        "feature_service": "retrieval_v1",
        "git_sha": git_sha(),
        "gate_verdict": verdict.label,
        "gate_reasons": " | ".join(verdict.reasons),
        "recall_at_100": f"{metrics['challenger'].recall_at_100:.4f}",
        "index_kind": retriever.index.kind,
        "run_id": run.info.run_id,
    }
    for k, v in tags.items():
        c.set_model_version_tag(name, version, k, v)
    c.update_model_version(
        name, version, description=retrieval_card(settings, window, metrics, random_recall, verdict)
    )
    # retrieval follows the same review rules as the ranker (manual approval included)
    from training.review import hold_for_approval, promote

    if verdict.promote and settings.gate.manual_approval:
        hold_for_approval(c, name, version, "; ".join(verdict.reasons))
    elif verdict.promote:
        promote(c, name, version, "gate", "gate passed: " + "; ".join(verdict.reasons))
    else:
        c.set_model_version_tag(name, version, "review_status", "rejected by the gate")
        log.warning("retrieval gate failed for v%s: %s", version, verdict.reasons)
    from training.evaluate import json_safe

    return json_safe(  # type: ignore[return-value]
        {
            "version": version,
            "promoted": verdict.promote and not settings.gate.manual_approval,
            "verdict": verdict.to_dict(),
            "metrics": {k: m.to_dict() for k, m in metrics.items()},
            "random_recall": random_recall,
            "holdout": holdout.isoformat(),
            "examples_per_s": result.examples_per_s,
        }
    )


def retrieval_card(
    settings: Settings,
    window: str,
    metrics: dict[str, RetrievalMetrics],
    random_recall: dict[int, float],
    verdict: Any,
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


# -- retrieval features for the ranker -------------------------------------------------------
def add_retrieval_features(
    store: FeatureStore, frame: pd.DataFrame, retriever: Retriever
) -> pd.DataFrame:
    """``x_retrieval_score`` (user . item vector) and ``x_content_similarity`` (the user's
    recent-positive caption centroid . the video's caption) for each (user, video, time) row,
    with the user as of the start of the row's day, exactly as serving computes them.
    Videos the retriever does not know get NaN, which XGBoost treats as missing."""
    from training.two_tower import user_vectors

    day = pd.to_datetime(frame["event_timestamp"], utc=True).dt.tz_localize(None).dt.normalize()
    pairs = pd.DataFrame({"user_id": frame["user_id"].to_numpy(), "day": day.to_numpy()})
    states = user_states(store, pairs)
    key = pd.MultiIndex.from_frame(states[["user_id", "day"]])
    which = key.get_indexer(pd.MultiIndex.from_frame(pairs))
    cat = retriever.catalog
    hist = history_rows(cat, states["hist_video_ids"].tolist(), retriever.model.cfg.history_len)
    u = user_vectors(retriever.model, cat, user_matrix(states), hist)
    # the caption centroid of each user's history, unit length (zeros without history)
    mask = (hist >= 0)[:, :, None]
    centroid = (cat.caption[np.clip(hist, 0, None)] * mask).sum(axis=1)
    norm = np.linalg.norm(centroid, axis=1, keepdims=True)
    centroid = centroid / np.where(norm > 0, norm, 1.0)
    rows = cat.rows(frame["video_id"].tolist())
    ok = rows >= 0
    score = np.full(len(frame), np.nan, np.float32)
    sim = np.full(len(frame), np.nan, np.float32)
    score[ok] = np.einsum("ij,ij->i", u[which[ok]], retriever.item_vectors[rows[ok]])
    sim[ok] = np.einsum("ij,ij->i", centroid[which[ok]], cat.caption[rows[ok]])
    out = frame.copy()
    out["x_retrieval_score"] = score
    out["x_content_similarity"] = sim
    return out


def with_retrieval_features(
    settings: Settings, store: FeatureStore, frames: Sequence[pd.DataFrame], through: date
) -> tuple[list[pd.DataFrame], str | None, Retriever | None]:
    """Add the retrieval features with the retrieval champion (caught up with the catalog up
    to ``through``) to each frame; without a champion they are missing (NaN)."""
    version, retriever = champion_retriever(settings)
    if retriever is None:
        log.warning("no retrieval champion: retrieval features are missing")
        out = [f.assign(x_retrieval_score=np.nan, x_content_similarity=np.nan) for f in frames]
        return out, None, None
    catch_up(retriever, settings, through)
    return [add_retrieval_features(store, f, retriever) for f in frames], version, retriever


# -- the whole pipeline offline: retrieve -> rank -> top 10 ---------------------------------------
def _ndcg(ranked: Sequence[str], gains: dict[str, float], k: int = 10) -> float:
    dcg = sum((2.0 ** gains.get(v, 0.0) - 1.0) / math.log2(i + 2) for i, v in enumerate(ranked[:k]))
    ideal = sorted(gains.values(), reverse=True)[:k]
    idcg = sum((2.0**g - 1.0) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else float("nan")


def pipeline_ndcg(
    settings: Settings,
    store: FeatureStore,
    ranker: Any,
    retriever: Retriever,
    holdout: date,
    max_users: int = 2000,
) -> dict[str, float]:
    """NDCG@10 of retrieve -> rank -> top 10 on the holdout day, per candidate source.

    The serving class itself does the work (:class:`serving.pipeline.Recommender`), fed
    with features as of the holdout's start (point-in-time). Logged: a video's gain is the
    value the user got from it that day (completed + liked + shared); videos the user was
    never shown count as zero, so this mostly measures overlap with the logging policy.
    Oracle-judged (simulated data): every video is judged by the simulator's hidden utility
    for the user, the counterfactual a real log cannot give.
    """
    from features.cross import MODEL_FEATURES
    from reelrank.objectives import ValueHeads
    from serving.pipeline import (
        ITEM_FEATURES,
        USER_FEATURES,
        ItemTable,
        RankedModel,
        Recommender,
        UserState,
    )
    from training.dataset import value_label
    from training.metrics import coverage, creator_diversity

    imp = read_table(settings.lake_dir, "impressions", start=holdout, end=holdout)
    imp = imp.assign(value=value_label(imp))
    imp = imp[imp["value"] > 0]
    gains_by_user = imp.groupby(["user_id", "video_id"])["value"].max()
    users = sorted(imp["user_id"].unique())[:max_users]
    start = pd.Timestamp(holdout, tz="UTC")

    # users and items as of the holdout's start, in the serving layout
    from serving.loader import _view_of

    u_ent = pd.DataFrame({"user_id": users, "event_timestamp": start})
    u_refs = (
        [f"{_view_of(c)}:{c}" for c in USER_FEATURES]
        + ["user_history:hist_video_ids"]
        + [f"user_creator_history:{c}" for c in USER_CREATOR_COLUMNS]
    )
    uf = store.get_historical_features(entity_df=u_ent, features=u_refs).to_df()
    uf = uf.drop_duplicates("user_id").set_index("user_id").reindex(users)
    states = {}
    for uid, row in uf.iterrows():
        feats = np.array(
            [FEATURE_DEFAULTS[c] if pd.isna(row[c]) else row[c] for c in USER_FEATURES],
            np.float32,
        )
        hist, uc = row["hist_video_ids"], [row[c] for c in USER_CREATOR_COLUMNS]
        uc = [list(v) if isinstance(v, list | np.ndarray) else [] for v in uc]
        states[uid] = UserState(
            feats, list(hist) if isinstance(hist, list | np.ndarray) else [], *uc
        )
    cat = retriever.catalog
    avail = available_rows(cat, holdout, settings, end_of_day=True)
    videos = read_table(settings.lake_dir, "videos", end=holdout)[["video_id", "creator_id"]]
    videos = videos[videos["video_id"].isin(set(cat.video_ids[avail]))]
    i_ent = videos.assign(event_timestamp=start)
    i_refs = [f"{_view_of(c)}:{c}" for c in ITEM_FEATURES]
    itf = store.get_historical_features(entity_df=i_ent, features=i_refs).to_df()
    itf = itf.drop_duplicates("video_id").set_index("video_id").reindex(videos["video_id"])
    items = ItemTable.from_columns(
        videos["video_id"].tolist(),
        {c: [None if pd.isna(v) else v for v in itf[c]] for c in ITEM_FEATURES},
        videos["creator_id"].tolist(),
    )
    model = RankedModel(
        ranker, "challenger", "offline", MODEL_FEATURES, ValueHeads.of_booster(ranker)
    )
    rec = Recommender(model, items, states.get, settings.serving.n_candidates, retriever)

    pos = positives(settings, holdout - timedelta(days=settings.training.train_days), holdout)
    pos = pos[pos["day"] < pd.Timestamp(holdout)]
    last = pos[pos["day"] == pos["day"].max()]
    n = settings.serving.n_candidates
    static = {
        "popularity": popularity_order(cat, pos, avail, n).tolist(),
        "recent_popularity": popularity_order(cat, last, avail, n).tolist(),
    }
    world = None
    if settings.dataset == "simulator":
        from ingest.simulator import generate_world

        world = generate_world(settings.sim)
    scores: dict[str, list[float]] = {"two_tower": [], **{k: [] for k in static}}
    top_lists: dict[str, list[list[str]]] = {k: [] for k in scores}
    judged: dict[str, list[float]] = {}
    if world is not None:
        scores["oracle"] = []
        judged = {k: [] for k in scores}
    for uid in users:
        state = states[uid]
        gains = gains_by_user.loc[uid].to_dict()
        user_vec = rec._user_vec(state)
        sources = {"two_tower": rec.candidates(state, user_vec)[0], **static}
        p_complete: dict[str, float] = {}
        if world is not None:
            ids = items.video_ids
            util = world.oracle_utility(np.repeat(uid, len(ids)), ids, holdout)
            top = np.argpartition(-util, min(n, len(ids) - 1))[:n]
            top = top[np.argsort(-util[top], kind="stable")]
            sources["oracle"] = ids[top].tolist()
            # graded by hidden utility, shifted so the user's worst available video is 0
            p_complete = dict(zip(ids.tolist(), (util - util.min()).tolist(), strict=True))
        for name, cands in sources.items():
            cands = [v for v in cands if v in items.index]
            rows = np.fromiter((items.index[v] for v in cands), np.int64, len(cands))
            feats = rec.retrieval_features(state, user_vec, cands)
            s = rec._score(state, rows, feats)
            order = np.argsort(-s, kind="stable")[:10]
            scores[name].append(_ndcg([cands[i] for i in order], gains))
            top_lists.setdefault(name, []).append([cands[i] for i in order])
            if p_complete:
                judged[name].append(_judged_ndcg([cands[i] for i in order], p_complete))
                # a tighter budget: only each source's own best 100 reach the ranker
                small = np.argsort(-s[:SMALL_BUDGET], kind="stable")[:10]
                judged.setdefault(f"{name}_{SMALL_BUDGET}", []).append(
                    _judged_ndcg([cands[i] for i in small], p_complete)
                )
    out = {name: float(np.nanmean(v)) for name, v in scores.items()}
    out.update({f"oracle_judged_{k}": float(np.nanmean(v)) for k, v in judged.items()})
    # what the top-10 lists look like as a whole: how much of the catalog they reach, and
    # how many different creators fill each list
    creator_of = dict(zip(items.video_ids.tolist(), items.creator_ids.tolist(), strict=True))
    for name, lists in top_lists.items():
        out[f"coverage_{name}"] = coverage(lists, len(items.video_ids))
        out[f"creator_diversity_{name}"] = creator_diversity(
            [[creator_of[v] for v in lst] for lst in lists]
        )
    return out


def _judged_ndcg(ranked: Sequence[str], p_complete: dict[str, float], k: int = 10) -> float:
    """NDCG@k where every video, shown or not, is judged by the oracle (its hidden utility
    for the user); the ideal list is the best k of the whole available catalog."""
    dcg = sum(p_complete[v] / math.log2(i + 2) for i, v in enumerate(ranked[:k]))
    ideal = sorted(p_complete.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else float("nan")
