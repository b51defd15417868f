"""Two Evidently checks the tabular drift report does not cover: caption embeddings, ranked lists.

**Caption-embedding drift** (:func:`embedding_drift`). Captions reach the models as sentence
embeddings (e.g. 384 MiniLM dimensions). A new trending topic moves a share of the day's
captions into a region of that space the models never saw, while each single dimension barely
moves; per-column tests would also mean hundreds of tests on wide data, which is slow in
Evidently and drowns the one signal in multiple-testing noise. Evidently's answer is the
*domain classifier* (``ModelDriftMethod``): a logistic-loss ``SGDClassifier`` learns to tell
reference rows from current rows on half of them and is scored by ROC AUC on the other half.
About 0.5 means the two samples cannot be told apart; the more rows moved somewhere new, the
closer it gets to 1 (when a share ``s`` of the current rows moved and the rest did not, the
ceiling is about ``0.5 + s / 2``). Dimensions are z-scored with the reference's statistics
first, because Evidently's classifier (an unscaled ``SGDClassifier``) often fails to converge
on raw features (see :func:`embedding_drift`).

**Online ranking quality** (:func:`ranking_report`). Engagement arrives after the feed was
served (delayed labels). Once the served lists are joined to it (``relevance`` per served
item, e.g. ``completed + liked + shared`` as in :mod:`monitoring.quality`), Evidently's recsys
metrics (NDCG, MAP, MRR, HitRate, Precision, Recall at k, plus popularity bias and novelty when
the training interactions are given) score the lists *as they were served*, and the HTML
report gives the per-k curves for a human to look at.

Evidently 0.7 notes, learnt from its source (``evidently/metrics/embeddings.py``,
``evidently/metrics/recsys.py`` and their ``evidently/legacy`` implementations):

* ``EmbeddingsDrift`` always computes a t-SNE projection of up to 2,500 rows per side for its
  plot (unseeded, so the picture changes from run to run). That projection, not the drift
  score, is the cost: for 2,000 x 384 rows per side on a busy 2-core box, 0.3 s for the
  classifier against 27-29 s for the Report with one OpenMP thread, 67 s with the default
  threads (t-SNE's OpenMP threads fight over shared cores). So the Report only runs when an
  HTML report is asked for (``out_dir``); otherwise Evidently's ``ModelDriftMethod`` is called
  directly, which is exactly what the metric calls (same data, fixed ``random_state=42``
  split and classifier), and which returns Evidently's own drift decision.
* The new ``EmbeddingsDrift`` result is a bare ``SingleValue`` (the score); the legacy result's
  ``drift_detected`` flag is not in the snapshot. The Report therefore carries an Evidently
  ``lte(threshold)`` test on the metric: it fails exactly when ``score > threshold``, which is
  the rule ``ModelDriftMethod(bootstrap=False)`` applies.
* Recsys metrics group rows into lists by the column declared as ``Recsys.user_id``. We declare
  ``request_id`` there, so each served list is one "user" (per-list metrics, as in
  :mod:`monitoring.quality`); the real ``user_id`` is unused by the top-k metrics.
* ``NDCG`` and ``MRR`` come back with their ``rank`` labels shifted by one (the wrapper adds 1
  to an index that is already 1-based for these two, 0-based for the others), so values are
  read by position: the k-th row is always the value at k.
* A top-k metric raises ``KeyError`` when k exceeds the longest list; k is clamped to it (a
  metric at k on lists shorter than k equals the metric at their length).
* ``MAP`` reads each list's relevance at rank k as the *last row* of the list in frame order,
  so rows are sorted by list and served position before the report; lists shorter than the
  evaluated k still count their last item again (an Evidently bug; served lists normally all
  have the same length, and a warning is logged when they do not).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

__all__ = ["EmbeddingDrift", "embedding_drift", "ranking_report"]

EMBEDDING_HTML = "embedding_drift.html"
RANKING_HTML = "ranking_report.html"
RANKING_SNAPSHOT = "ranking_snapshot.json"  # the run in Evidently's own (loadable) format
MIN_ROWS = 10
TSNE_PERPLEXITY = 30  # sklearn's default, used by EmbeddingsDrift's plot: needs more rows
SERVED_COLUMNS = ("request_id", "user_id", "video_id", "position", "score", "relevance")
TRAIN_COLUMNS = ("user_id", "video_id")


# --------------------------------------------------------------------------------------------
# Caption-embedding drift
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddingDrift:
    """Evidently's verdict on one embedding column (see :func:`embedding_drift`)."""

    column: str  # e.g. "caption_embedding"
    method: str  # "model": a domain classifier scored by ROC AUC
    score: float  # for "model": the domain classifier's ROC AUC (0.5: no drift)
    threshold: float
    drifted: bool
    n_reference: int  # rows compared, after sampling
    n_current: int
    report_html: str | None  # path of the saved HTML report, when one was asked for

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _as_matrix(name: str, values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (rows x dims), got shape {arr.shape}")
    if arr.shape[0] < MIN_ROWS:
        raise ValueError(
            f"{name} has {arr.shape[0]} rows; at least {MIN_ROWS} are needed to train and "
            "score the domain classifier"
        )
    if arr.shape[1] < 1:
        raise ValueError(f"{name} has no embedding dimension")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise ValueError(f"{name} has non-finite values (NaN or inf) in {bad} rows")
    return arr


def _sample(arr: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    if len(arr) <= rows:
        return arr
    return arr[np.sort(rng.choice(len(arr), size=rows, replace=False))]


def _sampled_pair(
    reference: np.ndarray, current: np.ndarray, sample_rows: int, threshold: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Both sides validated (see :func:`embedding_drift`) and sampled to ``sample_rows``."""
    ref = _as_matrix("reference", reference)
    cur = _as_matrix("current", current)
    if ref.shape[1] != cur.shape[1]:
        raise ValueError(
            f"embedding dimensions differ: reference has {ref.shape[1]}, current {cur.shape[1]}"
        )
    if sample_rows < MIN_ROWS:
        raise ValueError(f"sample_rows must be at least {MIN_ROWS}, got {sample_rows}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold is a ROC AUC and must lie in (0, 1), got {threshold}")
    rng = np.random.default_rng(seed)
    return _sample(ref, sample_rows, rng), _sample(cur, sample_rows, rng)


def _dimension_frames(
    ref: np.ndarray, cur: np.ndarray, column: str, standardize: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One named column per dimension (``<column>_<i>``), z-scored with the reference's
    statistics when ``standardize`` (see :func:`embedding_drift` for why)."""
    if standardize:
        mean, std = ref.mean(axis=0), ref.std(axis=0)
        std[std < 1e-12] = 1.0  # a constant dimension is only centred
        ref, cur = (ref - mean) / std, (cur - mean) / std
    width = len(str(ref.shape[1] - 1))
    cols = [f"{column}_{i:0{width}d}" for i in range(ref.shape[1])]
    return pd.DataFrame(ref, columns=cols), pd.DataFrame(cur, columns=cols)


def embedding_drift(
    reference: np.ndarray,
    current: np.ndarray,
    out_dir: Path | None = None,
    *,
    column: str = "caption_embedding",
    threshold: float = 0.55,
    sample_rows: int = 2000,
    seed: int = 0,
    standardize: bool = True,
) -> EmbeddingDrift:
    """Compare two samples of an embedding with Evidently's domain-classifier drift method.

    ``reference`` and ``current`` are 2-D arrays (rows: impressions or videos; columns: the
    embedding's dimensions). Each side is sampled to at most ``sample_rows`` rows (seeded by
    ``seed``; Evidently's own split and classifier are seeded with 42). The score is the ROC AUC
    of a classifier telling the two apart; the embedding drifted when it exceeds ``threshold``.

    With ``standardize`` (the default), every dimension is z-scored with the reference sample's
    mean and standard deviation first. That changes nothing a linear classifier can separate,
    but Evidently's ``SGDClassifier`` (default settings, no scaling) often stops far from its
    optimum on unscaled features: on a Gaussian mixture with half of the current rows moved
    to a new cluster (ROC AUC ceiling 0.75) it scored 0.62-0.75 over 8 seeds raw, and
    0.73-0.75 standardized, with unchanged distributions at 0.48-0.53 either way.

    With ``out_dir``, Evidently's Report with the ``EmbeddingsDrift`` metric runs and its HTML
    is saved as ``embedding_drift.html`` there; the score and decision are then read from that
    report. This is the slow path (a t-SNE plot: tens of seconds for a few thousand rows).

    Raises ``ValueError`` for arrays that are not 2-D, have different widths, fewer than 10
    rows on a side, or NaN/inf values, and when an HTML report is asked for on 30 rows or
    fewer in all (its t-SNE plot cannot run on them).
    """
    from evidently.metrics.embeddings import ModelDriftMethod

    ref, cur = _sampled_pair(reference, current, sample_rows, threshold, seed)
    if out_dir is not None and len(ref) + len(cur) <= TSNE_PERPLEXITY:
        raise ValueError(
            f"an HTML report needs more than {TSNE_PERPLEXITY} rows in all (Evidently's t-SNE "
            f"plot, perplexity {TSNE_PERPLEXITY}); got {len(ref)} + {len(cur)}"
        )
    ref_df, cur_df = _dimension_frames(ref, cur, column, standardize)
    # bootstrap=False: drifted means ROC AUC > threshold. (bootstrap=True compares with the
    # 95th percentile of 100 random scorers instead, and reseeds numpy's global RNG doing so.)
    method = ModelDriftMethod(threshold=threshold, bootstrap=False)

    if out_dir is None:
        # What EmbeddingsDrift calls, minus the t-SNE plot. It adds a "target" column to the
        # frames it is given, so it gets frames of its own.
        score, drifted, name = method(cur_df.copy(), ref_df.copy())
        html: str | None = None
    else:
        score, drifted = _embedding_report(ref_df, cur_df, column, method, threshold, out_dir)
        name, html = "model", str(out_dir / EMBEDDING_HTML)
    result = EmbeddingDrift(
        column=column,
        method=str(name),
        score=float(score),
        threshold=float(threshold),
        drifted=bool(drifted),
        n_reference=len(ref),
        n_current=len(cur),
        report_html=html,
    )
    log.info(
        "embedding drift %s: ROC AUC %.3f (threshold %.2f) -> %s",
        column,
        result.score,
        threshold,
        "DRIFT" if result.drifted else "ok",
    )
    return result


def _embedding_report(
    ref_df: pd.DataFrame,
    cur_df: pd.DataFrame,
    column: str,
    method: Any,
    threshold: float,
    out_dir: Path,
) -> tuple[float, bool]:
    """Run Evidently's Report with ``EmbeddingsDrift``; save its HTML; return score and verdict."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift
    from evidently.tests import lte

    cols = list(ref_df.columns)
    # declaring the dimensions numerical up front skips type inference on hundreds of columns
    definition = DataDefinition(numerical_columns=cols, embeddings={column: cols})
    metric = EmbeddingsDrift(embeddings_name=column, drift_method=method, tests=[lte(threshold)])
    snap = Report([metric]).run(
        Dataset.from_pandas(cur_df, data_definition=definition),
        Dataset.from_pandas(ref_df, data_definition=definition),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    snap.save_html(str(out_dir / EMBEDDING_HTML))
    # Robust read-out: snapshot.dict() lists metrics with "id" (the metric's fingerprint) and
    # "value" (the SingleValue: the score), and tests with metric_config.metric_id pointing
    # back to that fingerprint. Matching on the fingerprint does not depend on list order or
    # on display names. The lte test fails exactly when score > threshold, the legacy
    # metric's own drift_detected rule, which the new snapshot does not carry.
    fp = metric.get_fingerprint()
    snapshot = snap.dict()
    values = [m["value"] for m in snapshot["metrics"] if m.get("id") == fp]
    statuses = [t["status"] for t in snapshot["tests"] if t["metric_config"]["metric_id"] == fp]
    if len(values) != 1 or len(statuses) != 1:
        raise RuntimeError(f"EmbeddingsDrift result not found in the Evidently snapshot ({fp})")
    score = float(values[0])
    drifted = str(statuses[0]).upper().endswith("FAIL")
    if drifted != (score > threshold):  # guards against a change of Evidently's semantics
        log.warning(
            "Evidently test %s disagrees with score %.4f > %.2f", statuses[0], score, threshold
        )
    return score, drifted


# --------------------------------------------------------------------------------------------
# Online ranking quality
# --------------------------------------------------------------------------------------------


def _served_lists(served: pd.DataFrame) -> pd.DataFrame:
    """Validated served lists, sorted by list and served order, with a 1-based ``rank``."""
    missing = [c for c in SERVED_COLUMNS if c not in served.columns]
    if missing:
        raise ValueError(f"served frame lacks columns {missing}")
    if served.empty:
        raise ValueError("served frame is empty")
    df = served[list(SERVED_COLUMNS)].copy()
    if df[["request_id", "video_id"]].isna().any().any():
        raise ValueError("served frame has missing request_id or video_id")
    for col in ("position", "relevance"):
        if not pd.api.types.is_numeric_dtype(df[col]) or not np.isfinite(df[col]).all():
            raise ValueError(f"served {col} must be finite numbers")
    if (df["relevance"] < 0).any():
        raise ValueError("served relevance must not be negative")
    df["relevance"] = df["relevance"].astype(float)
    df["score"] = pd.to_numeric(df["score"], errors="coerce").astype(float)
    # The served order is the ranking judged (what the user saw, after any re-ranking), not the
    # model score; the score only breaks ties between duplicated positions. Positions are
    # renumbered 1..n per list, so gaps left by unlogged items do not leave holes in the ranks
    # (Evidently's top-k curves stop at the largest rank and index them from 1). Sorting by
    # list and rank is also required by Evidently's MAP, which reads "the item at rank k" as
    # the last row of the list in frame order.
    df = df.sort_values(
        ["request_id", "position", "score"], ascending=[True, True, False], kind="stable"
    )
    df["rank"] = df.groupby("request_id", sort=False).cumcount() + 1
    return df.reset_index(drop=True)


def _value_at(value: Any, k: int) -> float | None:
    """The value at k of an Evidently top-k metric, or of a single-value metric."""
    if isinstance(value, dict) and "value" in value:
        # DataframeValue with "rank" and "value" columns, one row per k = 1..max_k in order.
        # The "rank" labels of NDCG and MRR are shifted by one in Evidently 0.7 (see the
        # module docstring), so the k-th row is taken by position rather than by label.
        series = pd.Series(value["value"])
        if len(series) < k:
            return None
        return float(series.iloc[k - 1])
    if isinstance(value, int | float):
        return float(value)
    return None


def ranking_report(
    served: pd.DataFrame,
    out_dir: Path | None = None,
    *,
    k: int = 10,
    train: pd.DataFrame | None = None,
    include_no_feedback: bool = False,
) -> dict[str, float]:
    """Evidently's recsys metrics on served lists scored against their logged relevance.

    ``served`` has one row per served item: ``request_id`` (the list), ``user_id``,
    ``video_id``, ``position`` (0-based served rank), ``score`` and ``relevance`` (>= 0, 0
    without engagement). Each request is one list, ranked in served order.

    Returns plain floats keyed ``evidently_<metric>_at_<k>`` for ndcg, map, mrr, hit_rate,
    precision and recall; with ``train`` (the training interactions: ``user_id``,
    ``video_id``) also ``evidently_popularity_arp_at_<k>`` (per list, the mean number of
    training users of its top-k items, over the items known to training; then the mean over
    lists), ``evidently_coverage_at_<k>`` (share of training items served in a top k),
    ``evidently_gini_at_<k>`` (concentration of the top-k items served) and
    ``evidently_novelty_at_<k>`` (the same means of -log2 of the share of training users who
    interacted with the item); these cover every served list, engaged or not. Also
    ``evidently_requests`` and ``evidently_requests_with_feedback`` (counts, as floats). A
    metric Evidently cannot compute (NaN) is left out and the reason logged.

    Definitions (Evidently's): NDCG uses the graded relevance with a *linear* gain,
    ``rel / log2(rank + 1)``, so it equals the usual ``2**rel - 1`` NDCG only on binary
    relevance; the other metrics use binary relevance ``relevance > 0``. MAP divides by the
    number of relevant items in the whole served list; Recall counts relevant items among
    the served list; Precision divides by ``min(k, list length)``. Requests without any
    engagement have no ideal ranking and are left out of the means (as in
    :func:`models.metrics.ndcg_at_k`), so HitRate is then the share of engaged lists that
    had an engagement in the top k; ``include_no_feedback=True`` averages over all requests
    instead (they score 0). With ``out_dir``, the HTML report is saved as
    ``ranking_report.html`` there, and the run as ``ranking_snapshot.json`` (Evidently's
    snapshot, which :mod:`monitoring.workspace` adds to the drift project).
    """
    from evidently import Dataset, Report

    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    df = _served_lists(served)
    lists = df.groupby("request_id", sort=False).agg(
        length=("rank", "max"), relevant=("relevance", lambda r: bool((r > 0).any()))
    )
    out: dict[str, float] = {
        "evidently_requests": float(len(lists)),
        "evidently_requests_with_feedback": float(lists["relevant"].sum()),
    }
    judged = lists if include_no_feedback else lists[lists["relevant"]]
    if not lists["relevant"].any():
        log.warning("ranking report: no served item has relevance > 0; no metric computed")
        return out
    k_eval = _evaluated_k(judged, k)
    metrics = _top_k_metrics(k, k_eval, include_no_feedback)
    additional: dict[str, Any] | None = None
    if train is not None:
        popularity, additional = _popularity_metrics(train, k)
        metrics |= popularity
    snap = Report(list(metrics.values())).run(
        Dataset.from_pandas(df, data_definition=_recsys_definition()),
        None,
        additional_data=additional,
    )
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        snap.save_html(str(out_dir / RANKING_HTML))
        (out_dir / RANKING_SNAPSHOT).write_text(snap.dumps())  # for the workspace
    return out | _finite_values(snap.dict(), metrics, k_eval)


def _evaluated_k(judged: pd.DataFrame, k: int) -> int:
    """The k the top-k metrics run at: ``k`` clamped to the longest judged list.

    Evidently raises KeyError for k beyond its longest list; a metric at k equals the metric
    at the list length on shorter lists, so clamping changes no value."""
    k_eval = int(min(k, judged["length"].max()))
    if k_eval < k:
        log.info(
            "ranking report: longest list has %d items; metrics at %d use k=%d", k_eval, k, k_eval
        )
    if judged["length"].min() < k_eval:
        log.warning(
            "ranking report: lists have %d to %d items; Evidently's MAP over-counts the last "
            "item of lists shorter than %d",
            judged["length"].min(),
            judged["length"].max(),
            k_eval,
        )
    return k_eval


def _top_k_metrics(k: int, k_eval: int, nf: bool) -> dict[str, Any]:
    """Evidently's top-k relevance metrics at ``k_eval``, keyed by their names at ``k``."""
    from evidently.metrics import MAP, MRR, NDCG, HitRate, PrecisionTopK, RecallTopK

    return {
        f"evidently_ndcg_at_{k}": NDCG(k=k_eval, no_feedback_users=nf),
        f"evidently_map_at_{k}": MAP(k=k_eval, no_feedback_users=nf),
        f"evidently_mrr_at_{k}": MRR(k=k_eval, no_feedback_users=nf),
        f"evidently_hit_rate_at_{k}": HitRate(k=k_eval, no_feedback_users=nf),
        f"evidently_precision_at_{k}": PrecisionTopK(k=k_eval, no_feedback_users=nf),
        f"evidently_recall_at_{k}": RecallTopK(k=k_eval, no_feedback_users=nf),
    }


def _popularity_metrics(
    train: pd.DataFrame, k: int
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Popularity bias and novelty against the training interactions, and the additional
    data Evidently needs for them (none without any interaction)."""
    from evidently import Dataset
    from evidently.metrics.recsys import Novelty, PopularityBiasMetric

    interactions = _train_interactions(train)
    if interactions is None:
        return {}, None
    # Evidently counts training users per item by grouping the training frame on the
    # column declared as Recsys.user_id (here request_id), so the training user ids
    # are put under that name.
    additional = {
        "current_train_data": Dataset.from_pandas(
            interactions.rename(columns={"user_id": "request_id"})
        )
    }
    # These only filter rank <= k (no KeyError beyond the longest list), and look at
    # every served list, engaged or not: what was exposed, not how it was received.
    metrics = {
        f"evidently_popularity_arp_at_{k}": PopularityBiasMetric(k=k, metric="arp"),
        f"evidently_coverage_at_{k}": PopularityBiasMetric(k=k, metric="coverage"),
        f"evidently_gini_at_{k}": PopularityBiasMetric(k=k, metric="gini"),
        f"evidently_novelty_at_{k}": Novelty(k=k),
    }
    return metrics, additional


def _recsys_definition() -> Any:
    """The served lists as Evidently sees them: one list per request, in served order."""
    from evidently import DataDefinition, Recsys

    return DataDefinition(
        numerical_columns=["rank", "score", "relevance"],
        categorical_columns=["request_id", "user_id", "video_id"],
        ranking=[
            Recsys(
                user_id="request_id",  # one served list per request: per-list metrics
                item_id="video_id",
                target="relevance",
                prediction="rank",
                recommendations_type="rank",  # 1-based served rank, not the model score
            )
        ],
    )


def _finite_values(
    snapshot: dict[str, Any], metrics: dict[str, Any], k_eval: int
) -> dict[str, float]:
    """Each metric's value at ``k_eval`` from the snapshot, matched by fingerprint (the
    snapshot's metric "id"); a metric without a finite value is left out and logged."""
    by_id = {m.get("id"): m.get("value") for m in snapshot["metrics"]}
    out: dict[str, float] = {}
    for key, metric in metrics.items():
        value = _value_at(by_id.get(metric.get_fingerprint()), k_eval)
        if value is None or not math.isfinite(value):
            log.warning("ranking report: Evidently gave no finite %s (%r); left out", key, value)
            continue
        out[key] = value
    return out


def _train_interactions(train: pd.DataFrame) -> pd.DataFrame | None:
    missing = [c for c in TRAIN_COLUMNS if c not in train.columns]
    if missing:
        raise ValueError(f"train frame lacks columns {missing}")
    interactions = train[list(TRAIN_COLUMNS)].dropna().drop_duplicates()
    if interactions.empty:
        log.warning("ranking report: train frame has no interaction; popularity metrics skipped")
        return None
    return interactions
