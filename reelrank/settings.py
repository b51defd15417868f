"""One typed Settings object for the whole loop.

Every stage reads its knobs from here, so the same code runs on a laptop (`local`, no server)
and on real infrastructure (`cluster`) with only environment variables changed. Values come
from the environment with the prefix ``REELRANK_`` (nested groups use ``__``, e.g.
``REELRANK_SIM__N_USERS=500``). Nothing here touches the disk or global state at import time:
paths are computed, never created, until a stage needs them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path
from typing import ClassVar, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The ranker's objectives ("heads"). completion: watched to the end; watch: watch time as its
# quantile among videos of similar duration (D2Q); like, share: explicit positives; skip:
# swiped away within seconds. ``models.objectives`` turns weights into a value score.
HEADS: tuple[str, ...] = ("completion", "watch", "like", "share", "skip")
DEFAULT_WEIGHTS: dict[str, float] = {
    "completion": 1.0,
    "watch": 0.5,
    "like": 1.0,
    "share": 1.0,
    "skip": -0.5,
}


def check_objective_weights(weights: dict[str, float]) -> None:
    """Raise ``ValueError`` naming the known heads when ``weights`` cannot make a value score."""
    unknown = sorted(set(weights) - set(HEADS))
    if unknown:
        raise ValueError(f"unknown objective(s) {unknown}; known: {list(HEADS)}")
    if not any(weights.get(h, 0.0) for h in HEADS):
        raise ValueError("at least one objective needs a non-zero weight")


class SimulationSettings(BaseModel):
    """Size and seed of the simulated short-video world."""

    seed: int = 7
    n_users: int = 2000
    n_creators: int = 150
    n_videos: int = 4000
    catalog_history_days: int = Field(
        60,
        ge=1,
        description="videos are uploaded at a constant rate from this many days before "
        "day 0, and the feed retires videos older than this",
    )
    start_date: date = date(2025, 6, 1)
    days: int = Field(40, ge=3, description="simulated days; 28-day windows fill after 28")
    requests_per_active_user: float = 2.0
    impressions_per_request: int = Field(10, ge=2, le=50)
    fresh_slot_share: float = Field(
        0.1, ge=0.0, le=0.25, description="share of feed slots given to videos under 24 h old"
    )
    scenario: Literal["none", "topic_surge", "interest_shift", "broken_feature"] = Field(
        "none",
        description="drift injected from scenario_day on: a trend takes over (topic_surge), a "
        "user segment changes taste (interest_shift), or an upstream feed starts reporting "
        "watch time in minutes (broken_feature)",
    )
    scenario_day: int | None = Field(
        None, description="day index the scenario starts; default last"
    )
    version: int = Field(
        2,
        ge=1,
        le=2,
        description="simulator version: 2 (default) adds session intents, taste drift over "
        "days, boredom with repeats and creator bonds that grow with engagement; 1 is the "
        "static world of earlier releases, kept draw for draw",
    )

    @property
    def end_date(self) -> date:
        return self.start_date + timedelta(days=self.days - 1)


class SourceOptions(BaseModel):
    """The files every real source reads; a source's options model adds its own fields.

    Each source's options are defined once, here, because the settings must not depend on
    the code that reads the sources (``ingest.sources`` imports these models, never the
    reverse). :class:`DataSettings` is the union of them all, so every option is also a
    ``REELRANK_DATA__*`` variable and a ``reelrank run`` option. ``source`` names the
    ``settings.dataset`` the options belong to. A source's options refuse unknown names (a
    misspelt column option must not pass silently).
    """

    model_config = ConfigDict(extra="forbid")
    source: ClassVar[str]

    path: Path | None = Field(None, description="the interaction log: a file or a folder")
    items: Path | None = Field(
        None, description="item metadata: KuaiRand's video_features_basic csv, or a file with text"
    )


class KuaiRandOptions(SourceOptions):
    """A KuaiRand log: the format fixes its columns, so only the files are options."""

    source: ClassVar[str] = "kuairand"


class InteractionsOptions(SourceOptions):
    """The column mapping of a generic (user, item, timestamp) interactions file."""

    source: ClassVar[str] = "interactions"

    user_col: str = Field("user_id", description="user id column")
    item_col: str = Field("item_id", description="item id column")
    ts_col: str = Field("timestamp", description="timestamp column")
    ts_unit: Literal["auto", "s", "ms", "iso"] = Field(
        "auto", description="timestamp unit: auto, s, ms (epoch) or iso"
    )
    rating_col: str | None = Field(None, description="rating column")
    like_threshold: float = Field(4.0, description="a rating at least this is a like")
    label_col: str | None = Field(None, description="binary label column (1 = liked)")
    watch_col: str | None = Field(None, description="watch time column")
    watch_unit: Literal["s", "ms"] = Field("s", description="watch time unit: s or ms")
    duration_col: str | None = Field(
        None, description="item duration column (interactions or items file)"
    )
    duration_unit: Literal["s", "ms"] = Field("s", description="duration unit: s or ms")
    item_id_col: str = Field("item_id", description="id column of the items file")
    text_cols: list[str] = Field(
        default_factory=lambda: ["title", "genres", "tags"],
        description="text columns of the items file (list-like ones, e.g. genres, give "
        "hashtags and the topic)",
    )
    creator_col: str | None = Field(None, description="creator column (interactions or items file)")
    order_col: str | None = Field(
        None,
        description="per-user order column (sequence position) of a log without timestamps: "
        "events go on synthetic days by order (ts_col is then not read; docs/datasets.md)",
    )
    order_days: int = Field(
        14, ge=3, description="synthetic days an ordered log's events are spread over"
    )
    implicit_negatives: int = Field(
        4,
        ge=1,
        le=100,
        description="an implicit log (no rating, label or watch column: every row is an "
        "interaction): negatives drawn per row from videos its user never interacted with",
    )
    sep: str | None = Field(
        None, description="separator of the interactions file; unset: sniffed from its header"
    )


class DataSettings(KuaiRandOptions, InteractionsOptions):
    """A real dataset's location and column mapping (``dataset`` kuairand or interactions):
    every source's options (a new source's options model joins the bases), plus what no
    single source owns."""

    # like every group of settings: a REELRANK_DATA__* variable no option has is ignored
    model_config = ConfigDict(extra="ignore")
    source: ClassVar[str] = ""  # every real source's

    max_video_age_days: int = Field(
        3650, ge=1, description="videos older than this are not recommended (real data)"
    )


class TrainingSettings(BaseModel):
    """Training window and XGBoost parameters of the ranker."""

    train_days: int = Field(7, ge=1, description="days of impressions before the holdout day")
    drift_half_life_days: float | None = Field(
        0.5,
        gt=0,
        description="while a drift episode is open, training rows from its first day on weigh "
        "1 and older rows halve in weight every this many days before it (the retrain "
        "follows the changed world); unset: every row weighs the same",
    )
    n_estimators: int = 200
    max_depth: int = 6
    learning_rate: float = 0.08
    min_child_weight: float = 5.0
    subsample: float = 0.9
    colsample_bytree: float = 0.9
    nthread: int = 2
    seed: int = 13
    reference_sample_rows: int = Field(5000, description="training rows kept as drift reference")
    feature_backfill_days: int = Field(
        28,
        ge=0,
        description="days of feature tables computed before the training windows, so that a "
        "retrain on an earlier holdout finds them; older lake days get no table",
    )
    max_train_rows: int = Field(
        500_000,
        ge=1000,
        description="training impressions kept from the window: beyond this, whole requests "
        "are sampled uniformly (a stable hash of the request id), the same share each day",
    )
    max_holdout_rows: int = Field(
        250_000,
        ge=1000,
        description="holdout impressions kept: beyond this, whole users are sampled (a stable "
        "hash of the user id), so per-user and per-request metrics stay exact for those kept",
    )
    objective: Literal["heads", "value"] = Field(
        "heads",
        description="'heads': one output per objective, combined with objective_weights; "
        "'value': a single classifier on 'completed, liked or shared'",
    )
    objective_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_WEIGHTS),
        description="weight of each head (completion, watch, like, share, skip) in the value "
        "score the feed is ordered by; a head with weight 0 is not trained",
    )

    engine: Literal["auto", "local", "dask"] = Field(
        "auto",
        description="where the ranker trains: 'local', XGBoost in this process; 'dask', "
        "xgboost.dask on a dask.distributed cluster (dask_scheduler, or a LocalCluster); "
        "'auto' is dask in the cluster profile and local otherwise",
    )
    dask_scheduler: str | None = Field(
        None,
        description="address of a running Dask scheduler (e.g. tcp://dask-scheduler:8786); "
        "unset starts a LocalCluster for the duration of the fit",
    )
    dask_workers: int = Field(2, ge=1, description="LocalCluster workers (unset scheduler)")

    @field_validator("objective_weights")
    @classmethod
    def _known_objectives(cls, v: dict[str, float]) -> dict[str, float]:
        check_objective_weights(v)  # raises with the list of known heads
        return v


RetrievalKind = Literal["pooled", "sequence"]


def _all_kinds() -> list[RetrievalKind]:
    return ["pooled", "sequence"]


class RetrievalSettings(BaseModel):
    """The two-tower retrieval model, its content encoder and its candidate index."""

    text_encoder: Literal["minilm", "multilingual", "hashing"] = Field(
        "minilm",
        description="caption encoder: all-MiniLM-L6-v2 (English, shipped offline), "
        "multilingual (Universal Sentence Encoder multilingual v3, shipped offline, reads "
        "Chinese captions), or a hashing encoder for tests that must not load a language model",
    )
    train_days: int = Field(14, ge=1, description="days of positive engagements to train on")
    history_len: int = Field(20, ge=1, description="recent positives pooled by the user tower")
    kinds: list[RetrievalKind] = Field(
        default_factory=_all_kinds,
        min_length=1,
        description="user-side model kinds trained each time; the best of them on the holdout "
        "faces the gate (pooled: recent positives averaged; sequence: a causal transformer "
        "over the last seq_len events)",
    )
    seq_len: int = Field(
        50, ge=2, description="events the sequence model reads (the user_sequence feature)"
    )
    seq_dim: int = Field(64, ge=8, description="width of the sequence model's transformer")
    seq_layers: int = Field(2, ge=1, description="transformer blocks of the sequence model")
    seq_heads: int = Field(2, ge=1, description="attention heads per block")
    seq_batch_size: int = Field(128, ge=2, description="sequences per sequence-model batch")
    device: str = Field(
        "cpu", description="where retrieval models train: cpu, or cuda when a GPU is present"
    )
    dim: int = Field(64, ge=8, description="output vector size of both towers")
    id_buckets: int = Field(1 << 15, ge=16, description="hashed id embedding buckets")
    id_dropout: float = Field(
        0.25, ge=0.0, le=1.0, description="share of training items seen without their id"
    )
    temperature: float = 0.07
    batch_size: int = 1024
    learning_rate: float = 2e-3
    max_epochs: int = 12
    patience: int = Field(2, description="epochs without validation recall gain before stopping")
    seed: int = 17
    threads: int = 2
    exact_below: int = Field(50_000, description="catalogs smaller than this use exact search")
    fresh_share: float = Field(
        0.1,
        ge=0.0,
        le=0.5,
        description="share of retrieved candidates kept for videos uploaded after the index "
        "was built (they lack a trained id embedding and would otherwise rarely surface)",
    )
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 256
    min_margin_over_champion: float = Field(
        0.0, description="Recall@100 a retrieval challenger must gain over the champion"
    )
    min_margin_over_baseline: float = Field(
        0.005,
        description="Recall@100 a retrieval challenger must gain over each popularity baseline "
        "(its own setting: the ranker's gate margins do not move the retrieval gate)",
    )


class GateSettings(BaseModel):
    """Promotion rules: a challenger becomes champion only by clearing these margins."""

    metric: str = "ndcg_at_10"
    manual_approval: bool = Field(
        False,
        description="a passing challenger waits under the 'pending-approval' alias until "
        "'reelrank models promote VERSION' instead of becoming champion",
    )
    min_margin_over_baseline: float = Field(
        0.005,
        description="the lower bound of the bootstrap interval of (challenger - baseline) "
        "must exceed this",
    )
    min_margin_over_champion: float = Field(
        0.0,
        description="the lower bound of the bootstrap interval of (challenger - champion) "
        "must exceed this (0: significantly better, so a retrain on the same data does not "
        "churn deployments)",
    )
    min_holdout_rows: int = Field(
        1000, ge=0, description="a holdout with fewer rows is too small to judge: no promotion"
    )
    min_holdout_users: int = Field(
        100, ge=0, description="a holdout with fewer users is too small to judge: no promotion"
    )
    bootstrap_samples: int = Field(
        1000, ge=100, description="resamples of the paired bootstrap over holdout users"
    )
    confidence: float = Field(
        0.95, gt=0.5, lt=1.0, description="two-sided level of the bootstrap interval"
    )
    bootstrap_seed: int = Field(0, description="seed of the bootstrap: the verdict is reproducible")


class ExplorationSettings(BaseModel):
    """How the served feed is drawn from the re-ranked list (``serving/exploration.py``), so
    that every shown item has a known, logged probability (its propensity) and another
    policy's value can be estimated off-policy from the served log. ``epsilon`` 0 (or
    ``temperature`` 0, or ``top_m`` 1) serves the re-ranked list as is, each item with
    propensity 1."""

    kind: Literal["epsilon_greedy", "plackett_luce"] = Field(
        "epsilon_greedy",
        description="epsilon_greedy: each slot takes the best remaining item, or with "
        "probability epsilon one of the top_m remaining at random; plackett_luce: each slot "
        "draws from the top_m remaining, weighted exp(-place / temperature)",
    )
    epsilon: float = Field(
        0.05, ge=0.0, le=1.0, description="epsilon_greedy: share of slots drawn at random"
    )
    temperature: float = Field(
        1.0, ge=0.0, allow_inf_nan=False, description="plackett_luce: 0 serves the list as is"
    )
    top_m: int = Field(
        10, ge=1, description="each slot is drawn from the best top_m items not yet served"
    )


class ServingSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 3000
    workers: int = Field(
        2, ge=1, description="server processes; more than one shares served state (shared_state)"
    )
    threads: int = Field(
        1,
        ge=1,
        description="threads per worker for /feedback (lake writes); /recommend and /rank "
        "compute on the worker's event loop, one request at a time",
    )
    trace_requests: bool = Field(
        False,
        description="OpenTelemetry spans for /recommend, /rank and /feedback (exported where "
        "BentoML's tracing configuration says; it samples none by default). Off, those "
        "endpoints skip the tracing middleware, about 4% of a worker's time",
    )
    access_log: bool = Field(
        False,
        description="BentoML's access log, one line per HTTP request; off by default: it "
        "costs about 1 ms per request on 2 cores, and the served-request log and /metrics "
        "already record every request",
    )
    n_candidates: int = Field(500, ge=10, description="candidates retrieved, then ranked")
    pinned_version: str | None = Field(
        None,
        description="serve exactly this ranker version and do not follow the registry's "
        "aliases (a Bento built with `reelrank bento` sets it); unset: the champion, hot-"
        "reloaded when the alias moves",
    )
    catalog_refresh_s: float = Field(
        30.0, description="how often the service looks for newly uploaded videos"
    )
    startup_timeout_s: float = 120.0
    model_poll_s: float = Field(
        5.0, gt=0, description="how often the service checks the registry aliases (hot reload)"
    )
    features_poll_s: float = Field(
        30.0, gt=0, description="how often it checks Feast for a new materialization"
    )
    # re-ranking
    diversity: float = Field(0.2, ge=0.0, le=1.0, description="MMR weight of creator/topic spread")
    exploration_position: int | None = Field(
        3, ge=0, description="0-based feed slot kept for a fresh upload; null turns it off"
    )
    fresh_hours: float = Field(24.0, gt=0, description="a video this young counts as fresh")
    max_age_hours: float | None = Field(
        None, gt=0, description="older videos are unavailable (retired); null keeps all"
    )
    exploration: ExplorationSettings = Field(
        ExplorationSettings(),
        description="the feed's exploration policy and its exact, logged propensities",
    )
    # experiments
    challenger_share: float = Field(
        0.0, ge=0.0, le=1.0, description="share of users (stable hash) served by the challenger"
    )
    shadow: bool = Field(
        False, description="score the challenger on champion traffic without serving it"
    )
    experiment_salt: str = "reelrank"
    # the served-request log and authentication
    log_flush_s: float = Field(5.0, gt=0, description="served rows are flushed at least this often")
    log_max_rows: int = Field(50_000, ge=1, description="rows buffered before a flush")
    api_key: SecretStr | None = Field(
        None, description="when set, /recommend, /rank and /feedback need it as x-api-key"
    )
    # the HTTP guard (serving/guards.py) and the server's log
    max_body_bytes: int = Field(
        1 << 20, ge=1, description="larger bodies on /recommend, /rank, /feedback get 413 unread"
    )
    max_concurrency: int | None = Field(
        64,
        ge=1,
        description="requests in flight per worker; more get 503 with Retry-After (null: off)",
    )
    retry_after_s: int = Field(1, ge=1, description="Retry-After of a 503 (overload, shutdown)")
    drain_grace_s: float = Field(
        1.0,
        ge=0.0,
        description="on SIGTERM, in-flight requests finish, then new ones get 503 this long "
        "before the worker stops",
    )
    log_max_bytes: int = Field(
        10_000_000, ge=1024, description="the server's log file is rotated at this size"
    )
    log_backups: int = Field(3, ge=0, description="rotated server logs kept (bentoml.log.1, ...)")
    user_cache_size: int = Field(
        100_000,
        ge=0,
        description="users whose online features a worker keeps until the next "
        "materialization (0: read Feast on every request)",
    )
    shared_state: Literal["auto", "memory", "sqlite", "redis"] = Field(
        "auto",
        description="where recently served videos and served lists live: 'auto' is redis in "
        "the cluster profile, sqlite with several workers on one host, memory otherwise",
    )
    served_ttl_hours: float = Field(
        24.0, gt=0, description="served lists accept feedback, and count as seen, this long"
    )
    realtime_events: int = Field(
        50,
        ge=0,
        description="engagement events accepted by /feedback kept per user in the served "
        "state and merged into the user's next request before retrieval (the newest; "
        "0: off, the next feed waits for a materialization)",
    )
    realtime_weight: float = Field(
        0.35,
        ge=0.0,
        le=1.0,
        description="weight of the session's short-term interest (the mean item vector of "
        "videos engaged with since the last materialization) in the retrieval vector; 0: "
        "the recent events only enter the user tower's inputs",
    )
    state_prefix: str = Field("reelrank:", description="key prefix of the served state in Redis")
    state_dir: Path | None = Field(
        None,
        description="directory of the SQLite served state (several workers on one host); "
        "unset: a memory filesystem (/dev/shm) when the host has one, else <home>/serving",
    )


class UiSettings(BaseModel):
    """Ports of the UIs ``reelrank up`` starts on 127.0.0.1 (BentoML: ``serving.port``)."""

    airflow_port: int = 8080
    mlflow_port: int = 5000
    feast_port: int = 8888
    evidently_port: int = 8000
    mlflow_auth: bool = Field(
        False,
        description="the MLflow UI behind MLflow's basic-auth app: every request but /health "
        "needs a login (admin's in <home>/mlflow/auth/basic_auth.ini, 0600)",
    )


class DriftSettings(BaseModel):
    """Evidently data drift: a column drifts when its test fires; the set drifts by share."""

    drift_share: float = Field(0.3, ge=0.0, le=1.0)
    sample_rows: int = 5000
    column_threshold: float | None = Field(
        None,
        gt=0,
        description="per-column drift threshold for numeric columns (normed Wasserstein; "
        "Evidently's default 0.1 when null); raise it for small, noisy populations",
    )
    prediction_threshold: float = Field(
        0.15, gt=0, description="drift threshold of the model's prediction, which alone alerts"
    )
    max_auc_drop: float = Field(
        0.03,
        gt=0,
        description="the champion's AUC on a day's delayed labels may fall this far below its "
        "holdout AUC before the day counts as drifted (tastes changed)",
    )
    embedding_sample_rows: int = Field(
        5000, ge=200, description="impressions per side in the caption-embedding check"
    )
    min_served_rows: int = Field(
        500,
        ge=1,
        description="served rows of the champion a day needs for drift to be checked on the "
        "served log (fewer: on the day's impressions)",
    )
    webhook_url: SecretStr | None = Field(
        None, description="alerts are POSTed here as JSON (Slack-compatible 'text')"
    )


class Settings(BaseSettings):
    """The whole configuration; build it with :func:`get_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="REELRANK_", env_nested_delimiter="__", extra="ignore"
    )

    profile: Literal["local", "cluster"] = "local"
    home: Path = Field(Path("var"), description="root of every file the loop writes")
    mlflow_tracking_uri: SecretStr | None = Field(
        None, description="MLflow tracking store; unset: SQLite under home (local) or <db>_mlflow"
    )
    mlflow_artifact_root: str | None = None
    # cluster profile servers (see reelrank/cluster.py); URLs may carry passwords, so they
    # are secrets: never logged, shown masked
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        description="Redis for Feast's online store and the serving state (cluster profile)",
    )
    postgres_url: SecretStr = Field(
        SecretStr("postgresql+psycopg://postgres@127.0.0.1:5432/reelrank"),
        description="PostgreSQL server and base database: <db> holds Feast's registry, "
        "<db>_mlflow the MLflow tracking store, <db>_airflow Airflow's metadata",
    )
    celery_broker_url: SecretStr | None = Field(
        None, description="Celery broker (redis:// or amqp://); unset: redis_url"
    )
    celery_worker_concurrency: int = Field(2, ge=1, description="tasks one Celery worker runs")
    dataset: Literal["simulator", "kuairand", "interactions"] = Field(
        "simulator",
        description="where the lake's data comes from: the simulator (which has an oracle), "
        "a KuaiRand log, or a generic interactions file (see ``data``)",
    )
    ranker_model_name: str = "reelrank-ranker"
    retrieval_model_name: str = "reelrank-retrieval"
    feature_service: str = "ranker_v2"
    log_level: str = "INFO"

    sim: SimulationSettings = SimulationSettings()
    data: DataSettings = DataSettings()
    training: TrainingSettings = TrainingSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    gate: GateSettings = GateSettings()
    serving: ServingSettings = ServingSettings()
    drift: DriftSettings = DriftSettings()
    ui: UiSettings = UiSettings()

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        # Stages run in other processes (Airflow tasks, BentoML workers) with other working
        # directories; an absolute home keeps them all on the same files.
        return value.expanduser().resolve()

    @property
    def training_engine(self) -> Literal["local", "dask"]:
        """``training.engine`` with ``auto`` resolved by the profile."""
        if self.training.engine == "auto":
            return "dask" if self.profile == "cluster" else "local"
        return self.training.engine

    @property
    def max_video_age_days(self) -> int:
        """Videos older than this are retired from the feed."""
        if self.dataset == "simulator":
            return self.sim.catalog_history_days
        return self.data.max_video_age_days

    # -- derived paths (computed, never created here) -------------------------------------
    @property
    def lake_dir(self) -> Path:
        return self.home / "lake"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine"

    @property
    def features_dir(self) -> Path:
        return self.home / "features"

    @property
    def feast_dir(self) -> Path:
        return self.home / "feast"

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def evidently_dir(self) -> Path:
        """The Evidently workspace: one snapshot per daily check, read by ``evidently ui``."""
        return self.home / "evidently"

    @property
    def serving_dir(self) -> Path:
        return self.home / "serving"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @cached_property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri.get_secret_value()
        if self.profile == "cluster":
            return database_url(self, "mlflow")
        return f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @cached_property
    def artifact_root(self) -> str:
        if self.mlflow_artifact_root:
            return self.mlflow_artifact_root
        return (self.mlflow_dir / "artifacts").as_uri()

    def to_env(self) -> dict[str, str]:
        """These settings as ``REELRANK_*`` environment variables, for child processes
        (Airflow tasks, BentoML workers) that must see exactly the same configuration."""
        env: dict[str, str] = {}
        for key, value in self.model_dump(mode="json", exclude_none=True).items():
            if isinstance(value, dict):
                for sub, v in value.items():
                    if v is not None:  # nested values (dicts, lists) travel as JSON
                        text = json.dumps(v) if isinstance(v, dict | list) else str(v)
                        env[f"REELRANK_{key.upper()}__{sub.upper()}"] = text
            else:
                env[f"REELRANK_{key.upper()}"] = str(value)
        for key in ("redis_url", "postgres_url", "celery_broker_url", "mlflow_tracking_uri"):
            secret = getattr(self, key)
            if secret is not None:  # dumped masked; the child needs the value
                env[f"REELRANK_{key.upper()}"] = secret.get_secret_value()
        if self.serving.api_key is not None:  # dumped masked; the child needs the value
            env["REELRANK_SERVING__API_KEY"] = self.serving.api_key.get_secret_value()
        if self.drift.webhook_url is not None:
            env["REELRANK_DRIFT__WEBHOOK_URL"] = self.drift.webhook_url.get_secret_value()
        return env


# The settings that are secrets (what :meth:`Settings.to_env` writes in clear), and the
# variable that names a file holding them (see :func:`move_secrets_to_file`).
SECRET_VARS = (
    "REELRANK_REDIS_URL",
    "REELRANK_POSTGRES_URL",
    "REELRANK_CELERY_BROKER_URL",
    "REELRANK_MLFLOW_TRACKING_URI",
    "REELRANK_SERVING__API_KEY",
    "REELRANK_DRIFT__WEBHOOK_URL",
)
SECRETS_FILE_VAR = "REELRANK_SECRETS_FILE"


def get_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with keyword overrides winning; the secrets come
    from the file ``REELRANK_SECRETS_FILE`` names when it is set (a variable set in the
    environment still wins over the file)."""
    secrets_file = os.environ.get(SECRETS_FILE_VAR)
    if secrets_file:
        if not os.path.isfile(secrets_file):
            raise FileNotFoundError(f"{SECRETS_FILE_VAR} names {secrets_file}, which is missing")
        return Settings(_env_file=secrets_file, **overrides)  # type: ignore[arg-type]
    return Settings(**overrides)  # type: ignore[arg-type]


def move_secrets_to_file(env: dict[str, str], path: Path) -> dict[str, str]:
    """``env`` without its secret settings, which go to ``path`` (created 0600, so only the
    owner reads it) and are found there by :func:`get_settings` through
    ``REELRANK_SECRETS_FILE``.

    For child processes whose environment others can read: BentoML's process manager
    answers its workers' environment to whoever reaches its control endpoint."""
    secrets = {k: v for k, v in env.items() if k in SECRET_VARS}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file from before keeps no wider mode
    with os.fdopen(fd, "w") as f:
        for key, value in secrets.items():  # dotenv, single-quoted: \\ and \' are escapes
            quoted = value.replace("\\", "\\\\").replace("'", "\\'")
            f.write(f"{key}='{quoted}'\n")
    public = {k: v for k, v in env.items() if k not in SECRET_VARS}
    return {**public, SECRETS_FILE_VAR: str(path)}


# -- the cluster profile's servers, as named by settings (``reelrank.cluster`` acts on them) --
PURPOSES = ("feast", "mlflow", "airflow", "mlflow_auth")


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def base_database(settings: Settings) -> str:
    name = urlsplit(settings.postgres_url.get_secret_value()).path.lstrip("/")
    return name or "reelrank"


def database_url(settings: Settings, purpose: str) -> str:
    """The SQLAlchemy URL of the database for ``purpose`` (feast, mlflow, airflow or
    mlflow_auth: the users of the MLflow UI's basic-auth app)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown database purpose {purpose!r}; known: {PURPOSES}")
    base = base_database(settings)
    name = base if purpose == "feast" else f"{base}_{purpose}"
    return _with_database(settings.postgres_url.get_secret_value(), name)


@dataclass(frozen=True)
class RedisTarget:
    host: str
    port: int
    db: int
    password: str | None

    def feast_connection_string(self) -> str:
        """Feast's ``host:port[,db=N][,password=...]`` form."""
        out = f"{self.host}:{self.port}"
        if self.db:
            out += f",db={self.db}"
        if self.password:
            out += f",password={self.password}"
        return out


def redis_target(settings: Settings) -> RedisTarget:
    parts = urlsplit(settings.redis_url.get_secret_value())
    db = parts.path.lstrip("/")
    return RedisTarget(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        db=int(db) if db else 0,
        password=parts.password,
    )
