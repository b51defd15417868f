"""The daily feature tables as DuckDB SQL over the lake's Parquet files.

:mod:`features.batch` defines every feature with pandas; it stays the reference and the place
to read a definition. This module computes the same tables (same rows in the same order,
same columns, float64 values, lists in the same order) without loading the window's
impressions into Python: each table is a query (two for the views that stage their top rows
first) that reads only the partitions of its window, aggregates them in DuckDB under a fixed
memory budget and streams the result into the Parquet file Feast reads. The per-user
aggregates are small; the user x video and user x creator ones grow with traffic, and what
exceeds the budget spills to a temporary directory, so a 28-day window of 4M impressions a
day runs in the same memory as a small one.

How each pandas detail is kept:

- window boundaries are compared as microseconds since the epoch, ``[as_of(day - n),
  as_of(day))`` exactly as :func:`features.batch._window`; days are UTC days;
- the row order of the pandas frame (partitions by day, rows in file order) is carried as
  ``pos = (partition day << 40) | file row``, so "first appearance" (``Series.unique``) and
  the stable sorts' ties are decided the same way;
- priors are global means of the window, taken from the per-entity aggregates (sums of 0/1
  counts are exact, so the means are the same numbers);
- every float constant goes in as a string cast to DOUBLE, never as a SQL decimal literal,
  so ``(k + 5 p) / (n + 5)`` is the same floating-point expression as ``_rate``; float sums
  are compensated (``fsum``), so they match pandas' to far below 1e-9.

A window reads the partitions of its days: the lake partitions impressions by the UTC day of
``ts`` (simulator and dataset adapters alike), so no row of the window lies elsewhere. One
case differs on purpose: an impression whose video is missing from the catalog (which the
lake's id check rules out) would give pandas a creator row keyed NaN; here it has none.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from pathlib import Path
from types import TracebackType

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from feature_repo.columns import (
    AFFINITY_COLUMNS,
    CREATOR_COLUMNS,
    N_TOPIC_SLOTS,
    USER_COLUMNS,
    VIDEO_COLUMNS,
)
from features.batch import SMOOTHING, as_of_timestamp
from features.sequence import (
    COMPLETED,
    LIKED,
    RATIO_BUCKETS,
    RATIO_SHIFT,
    SHARED,
    SKIPPED,
)
from ingest.lake import atomic_write, partition_days, partition_path

# DuckDB's buffer budget: hash tables and sorts beyond it spill to disk. With the Python
# process, the Parquet readers and the output batches around it, a whole run stays well under
# twice this figure.
DEFAULT_MEMORY_LIMIT_GB = 3.0
DEFAULT_PRIORS = {"completed": 0.3, "liked": 0.05, "shared": 0.01, "skipped": 0.3, "followed": 0.01}
DEFAULT_WATCH_FRAC_PRIOR = 0.4
AFFINITY_SMOOTHING = 2.0  # the ``m`` of user_topic_affinity
US_PER_DAY = 86_400_000_000
BATCH_ROWS = 262_144  # rows per Arrow batch streamed from DuckDB into the Parquet writer
TS = pa.timestamp("us", tz="UTC")
# intermediate tables some views stage before their last query (dropped after each table)
STAGED_TABLES = ("cs_imp", "cs_cat", "cs_order", "uh_top", "uc_top", "us_top")


def _schema(
    key: str, floats: Sequence[str], lists: Sequence[tuple[str, pa.DataType]] = ()
) -> pa.Schema:
    fields = [pa.field(key, pa.string()), pa.field("event_timestamp", TS)]
    fields += [pa.field(name, t) for name, t in lists]
    fields += [pa.field(c, pa.float64()) for c in floats]
    return pa.schema(fields)


# The Arrow schema of each table, as the pandas builders write it (column order included).
SCHEMAS: dict[str, pa.Schema] = {
    "user_engagement": _schema("user_id", USER_COLUMNS),
    "user_topic_affinity": _schema("user_id", AFFINITY_COLUMNS),
    "video_stats": _schema("video_id", VIDEO_COLUMNS),
    "creator_stats": _schema("creator_id", CREATOR_COLUMNS),
    "user_history": _schema("user_id", ["hist_len"], [("hist_video_ids", pa.list_(pa.string()))]),
    "user_sequence": pa.schema(
        [
            pa.field("user_id", pa.string()),
            pa.field("event_timestamp", TS),
            pa.field("seq_video_ids", pa.list_(pa.string())),
            pa.field("seq_actions", pa.list_(pa.int64())),
            pa.field("seq_ts", pa.list_(pa.float64())),
        ]
    ),
    "user_creator_history": pa.schema(
        [
            pa.field("user_id", pa.string()),
            pa.field("event_timestamp", TS),
            pa.field("uc_creator_ids", pa.list_(pa.string())),
            pa.field("uc_imp_28d", pa.list_(pa.float64())),
            pa.field("uc_pos_28d", pa.list_(pa.float64())),
        ]
    ),
}


def _f(x: float) -> str:
    """A DOUBLE literal with the exact value of ``x`` (a bare ``0.1`` would be a DECIMAL)."""
    return f"'{float(x)!r}'::DOUBLE"


def _s(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _us(day: date) -> int:
    """``as_of_timestamp(day)`` in microseconds since the epoch."""
    return int(as_of_timestamp(day).timestamp()) * 1_000_000


def _ts(day: date) -> str:
    return f"make_timestamptz({_us(day)}::BIGINT)"


def _rate(k: str, n: str, prior: str) -> str:
    """``features.batch._rate`` as SQL: ``(k + SMOOTHING * prior) / (n + SMOOTHING)``."""
    m = _f(SMOOTHING)
    return f"(({k})::DOUBLE + {m} * {prior}) / (({n})::DOUBLE + {m})"


class FeatureSQL:
    """A DuckDB session over one lake that writes the feature tables of any day.

    The video catalog up to ``through`` (what :func:`features.pipeline.compute_features`
    reads) is loaded once, with each video's topic slot from ``vocab``; every table then
    reads only the impression partitions of its own window. DuckDB runs ``threads`` threads
    and keeps ``memory_limit_gb`` in memory, spilling the rest under ``spill_dir`` (the
    system's temporary folder when None). Use it as a context manager.
    """

    def __init__(
        self,
        lake_dir: Path,
        vocab: Sequence[str],
        through: date,
        threads: int = 2,
        memory_limit_gb: float = DEFAULT_MEMORY_LIMIT_GB,
        spill_dir: Path | None = None,
    ) -> None:
        self.lake_dir = lake_dir
        self.n_topics = len(vocab)
        self.imp_days = set(partition_days(lake_dir, "impressions"))
        if spill_dir is not None:
            spill_dir.mkdir(parents=True, exist_ok=True)
        # what DuckDB spills beyond its memory budget; removed when the session closes
        self._tmp = tempfile.TemporaryDirectory(prefix=".duckdb-spill-", dir=spill_dir)
        self.con = duckdb.connect(
            config={
                "threads": max(1, int(threads)),
                "memory_limit": f"{int(memory_limit_gb * 1024)}MiB",
                "temp_directory": os.path.join(self._tmp.name, "spill"),
                # every query orders its output itself; this lets operators spill more freely
                "preserve_insertion_order": False,
            }
        )
        self._load_catalog(vocab, through)

    def __enter__(self) -> FeatureSQL:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()
        self._tmp.cleanup()

    # -- inputs ------------------------------------------------------------------------------
    def _load_catalog(self, vocab: Sequence[str], through: date) -> None:
        """Videos uploaded up to ``through``: id, creator, topic slot, upload time, duration,
        and their position in the pandas frame (for its order and first appearances)."""
        self.con.execute("CREATE TEMP TABLE vocab (topic VARCHAR, slot BIGINT)")
        rows = [(topic, slot) for slot, topic in enumerate(vocab)]
        if rows:
            self.con.executemany("INSERT INTO vocab VALUES (?, ?)", rows)
        files = [
            partition_path(self.lake_dir, "videos", d)
            for d in partition_days(self.lake_dir, "videos")
            if d <= through
        ]
        if not files:
            self.con.execute(
                "CREATE TEMP TABLE catalog (video_id VARCHAR, creator_id VARCHAR, "
                "topic_slot BIGINT, upload_t BIGINT, duration_s DOUBLE, vpos BIGINT)"
            )
            return
        self.con.execute(
            f"""
            CREATE TEMP TABLE catalog AS
            SELECT v.video_id, v.creator_id, coalesce(t.slot, {N_TOPIC_SLOTS - 1}) AS topic_slot,
                   epoch_us(v.upload_ts) AS upload_t, v.duration_s,
                   ((v.day - DATE '1970-01-01')::BIGINT << 40) | v.file_row_number AS vpos
            FROM {self._scan(files)} v LEFT JOIN vocab t ON t.topic = v.topic
            """
        )

    @staticmethod
    def _scan(files: Sequence[Path]) -> str:
        listing = ", ".join(_s(str(f)) for f in files)
        return (
            f"read_parquet([{listing}], hive_partitioning = true, "
            "hive_types = {'day': DATE}, file_row_number = true)"
        )

    def _impressions(self, day: date, days: int, catalog: bool = True) -> str:
        """The enriched impressions of ``[as_of(day - days), as_of(day))`` as a subquery
        (``features.batch.enrich_impressions`` + ``_window``), reading only those partitions.
        Without ``catalog`` the creator and topic columns are NULL and the join is skipped
        (a left join on a unique key changes no row; tables that never look at them save
        the probe of every impression)."""
        files = [
            partition_path(self.lake_dir, "impressions", d)
            for d in (day - timedelta(days=i) for i in range(days - 1, -1, -1))
            if d in self.imp_days
        ]
        lo, hi = _us(day - timedelta(days=days)), _us(day)
        if not files:  # keeps the columns, no rows
            files = [partition_path(self.lake_dir, "impressions", min(self.imp_days))]
            lo = hi
        if catalog:
            creator, join = (
                "c.creator_id, c.topic_slot",
                "LEFT JOIN catalog c ON c.video_id = i.video_id",
            )
        else:
            creator, join = "NULL::VARCHAR AS creator_id, NULL::BIGINT AS topic_slot", ""
        return f"""(
            SELECT i.user_id, i.video_id, {creator},
                   epoch_us(i.ts) AS t,
                   ((i.day - DATE '1970-01-01')::BIGINT << 40) | i.file_row_number AS pos,
                   i.completed, i.liked, i.shared, i.skipped, i.followed,
                   i.completed OR i.liked OR i.shared AS positive,
                   i.watch_time_s,
                   least(greatest(i.watch_time_s / i.duration_s, 0.0), 1.0) AS watch_frac
            FROM {self._scan(files)} i {join}
            WHERE epoch_us(i.ts) >= {lo} AND epoch_us(i.ts) < {hi}
        )"""

    # -- the six tables ------------------------------------------------------------------------
    def user_engagement(self, day: date) -> str:
        """``features.batch.user_engagement``: every user of the 28-day window, by user id."""
        lo1, lo7 = _us(day - timedelta(days=1)), _us(day - timedelta(days=7))
        d = DEFAULT_PRIORS
        prior = {
            c: f"coalesce(sum(k_{c}) OVER ()::DOUBLE / sum(n28) OVER (), {_f(d[c])})"
            for c in ("completed", "liked", "shared", "skipped")
        }
        return f"""
        WITH a AS (
            SELECT user_id,
                   count(*) FILTER (WHERE t >= {lo1}) AS n1,
                   count(*) FILTER (WHERE t >= {lo7}) AS n7,
                   count(*) AS n28,
                   coalesce(fsum(watch_time_s) FILTER (WHERE t >= {lo7}), 0.0) AS wt7,
                   fsum(watch_time_s) AS wt28,
                   count(*) FILTER (WHERE t >= {lo7} AND completed) AS k7_completed,
                   count(*) FILTER (WHERE t >= {lo7} AND skipped) AS k7_skipped,
                   count(*) FILTER (WHERE completed) AS k_completed,
                   count(*) FILTER (WHERE liked) AS k_liked,
                   count(*) FILTER (WHERE shared) AS k_shared,
                   count(*) FILTER (WHERE skipped) AS k_skipped,
                   count(DISTINCT t // {US_PER_DAY}) AS days_active
            FROM {self._impressions(day, 28, catalog=False)}
            GROUP BY user_id
        ), p AS (
            SELECT *, {prior["completed"]} AS p_completed, {prior["liked"]} AS p_liked,
                   {prior["shared"]} AS p_shared, {prior["skipped"]} AS p_skipped
            FROM a
        )
        SELECT user_id, {_ts(day)} AS event_timestamp,
               n1::DOUBLE AS imp_1d, n7::DOUBLE AS imp_7d, n28::DOUBLE AS imp_28d,
               wt7 AS watch_time_7d, wt28 AS watch_time_28d,
               {_rate("k7_completed", "n7", "p_completed")} AS completion_rate_7d,
               {_rate("k_completed", "n28", "p_completed")} AS completion_rate_28d,
               {_rate("k_liked", "n28", "p_liked")} AS like_rate_28d,
               {_rate("k_shared", "n28", "p_shared")} AS share_rate_28d,
               {_rate("k7_skipped", "n7", "p_skipped")} AS skip_rate_7d,
               {_rate("k_skipped", "n28", "p_skipped")} AS skip_rate_28d,
               days_active::DOUBLE AS days_active_28d
        FROM p ORDER BY user_id
        """

    def user_topic_affinity(self, day: date) -> str:
        """``features.batch.user_topic_affinity``: users in order of first appearance."""
        n = max(self.n_topics, 1)
        m = _f(AFFINITY_SMOOTHING)
        counts = ",\n".join(
            f"count(*) FILTER (WHERE positive AND topic_slot = {i}) AS c{i}"
            for i in range(N_TOPIC_SLOTS)
        )
        aff = ",\n".join(
            f"(c{i}::DOUBLE + {_f(AFFINITY_SMOOTHING * (1.0 / n if i < n else 0.0))}) "
            f"/ (total::DOUBLE + {m}) AS {col}"
            for i, col in enumerate(AFFINITY_COLUMNS)
        )
        return f"""
        WITH a AS (
            SELECT user_id, min(pos) AS first,
                   count(*) FILTER (WHERE positive AND topic_slot IS NOT NULL) AS total,
                   {counts}
            FROM {self._impressions(day, 28)}
            GROUP BY user_id
        )
        SELECT user_id, {_ts(day)} AS event_timestamp, {aff}
        FROM a ORDER BY first
        """

    def video_stats(self, day: date) -> str:
        """``features.batch.video_stats``: every video uploaded by ``day``, catalog order."""
        lo1, asof = _us(day - timedelta(days=1)), _us(day)
        d = DEFAULT_PRIORS
        cols = ("completed", "liked", "shared", "skipped")
        priors = ", ".join(
            f"coalesce(sum(k_{c})::DOUBLE / sum(n7), {_f(d[c])}) AS p_{c}" for c in cols
        )
        rates = ",\n".join(
            f"{_rate(f'coalesce(a.k_{c}, 0)', 'coalesce(a.n7, 0)', f'p.p_{c}')} AS v_{r}_rate_7d"
            for c, r in zip(cols, ("completion", "like", "share", "skip"), strict=True)
        )
        return f"""
        WITH a AS (
            SELECT video_id,
                   count(*) FILTER (WHERE t >= {lo1}) AS n1, count(*) AS n7,
                   count(*) FILTER (WHERE completed) AS k_completed,
                   count(*) FILTER (WHERE liked) AS k_liked,
                   count(*) FILTER (WHERE shared) AS k_shared,
                   count(*) FILTER (WHERE skipped) AS k_skipped,
                   fsum(watch_frac) AS frac
            FROM {self._impressions(day, 7, catalog=False)}
            GROUP BY video_id
        ), p AS (
            SELECT {priors},
                   coalesce(fsum(frac) / sum(n7), {_f(DEFAULT_WATCH_FRAC_PRIOR)}) AS p_frac
            FROM a
        )
        SELECT c.video_id, {_ts(day)} AS event_timestamp,
               coalesce(a.n1, 0)::DOUBLE AS v_imp_1d, coalesce(a.n7, 0)::DOUBLE AS v_imp_7d,
               {rates},
               {_rate("coalesce(a.frac, 0.0)", "coalesce(a.n7, 0)", "p.p_frac")}
                   AS v_watch_frac_7d,
               (({asof} - c.upload_t)::DOUBLE / {_f(1e6)}) / {_f(3600.0)} AS v_age_hours,
               coalesce(a.n1, 0)::DOUBLE / (coalesce(a.n7, 0)::DOUBLE / {_f(7.0)} + {_f(1.0)})
                   AS v_velocity,
               c.duration_s AS v_duration_s,
               c.topic_slot::DOUBLE AS v_topic_slot
        FROM catalog c LEFT JOIN a ON a.video_id = c.video_id CROSS JOIN p
        WHERE c.upload_t < {asof}
        ORDER BY c.vpos
        """

    def _creator_order(self, day: date) -> None:
        """Aggregate creators into temp tables and fix their row order the way
        ``creator_stats`` does: ``Index(recent uploaders).union(Index(creators seen))``
        (sorted, except when one side is empty or both are the same sequence)."""
        lo, asof = _us(day - timedelta(days=28)), _us(day)
        self.con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE cs_imp AS
            SELECT creator_id, min(pos) AS first, count(*) AS n,
                   count(*) FILTER (WHERE completed) AS k_completed,
                   count(*) FILTER (WHERE liked) AS k_liked,
                   count(*) FILTER (WHERE followed) AS k_followed
            FROM {self._impressions(day, 28)}
            GROUP BY creator_id
            """
        )
        self.con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE cs_cat AS
            SELECT creator_id, min(vpos) AS first, count(*) AS n_videos
            FROM catalog WHERE upload_t < {asof} AND upload_t >= {lo}
            GROUP BY creator_id
            """
        )
        uploaders = self.con.execute("SELECT creator_id FROM cs_cat ORDER BY first").fetchall()
        seen = self.con.execute(
            "SELECT creator_id FROM cs_imp WHERE creator_id IS NOT NULL ORDER BY first"
        ).fetchall()
        order = pd.Index([r[0] for r in uploaders], dtype=object).union(
            pd.Index([r[0] for r in seen], dtype=object)
        )
        ids = pa.table(
            {
                "creator_id": pa.array(list(order), pa.string()),
                "ord": pa.array(range(len(order)), pa.int64()),
            }
        )
        self.con.register("cs_order_ids", ids)
        self.con.execute("CREATE OR REPLACE TEMP TABLE cs_order AS SELECT * FROM cs_order_ids")
        self.con.unregister("cs_order_ids")

    def creator_stats(self, day: date) -> str:
        """``features.batch.creator_stats`` (needs :meth:`_creator_order` first)."""
        d = DEFAULT_PRIORS
        cols = ("completed", "liked", "followed")
        priors = ", ".join(
            f"coalesce(sum(k_{c})::DOUBLE / sum(n), {_f(d[c])}) AS p_{c}" for c in cols
        )
        rates = ",\n".join(
            f"{_rate(f'coalesce(i.k_{c}, 0)', 'coalesce(i.n, 0)', f'p.p_{c}')} AS c_{r}_28d"
            for c, r in zip(cols, ("completion_rate", "like_rate", "follow_rate"), strict=True)
        )
        return f"""
        WITH p AS (SELECT {priors} FROM cs_imp)
        SELECT o.creator_id, {_ts(day)} AS event_timestamp,
               coalesce(v.n_videos, 0)::DOUBLE AS c_videos_28d,
               coalesce(i.n, 0)::DOUBLE AS c_imp_28d,
               {rates}
        FROM cs_order o
        LEFT JOIN cs_cat v ON v.creator_id = o.creator_id
        LEFT JOIN cs_imp i ON i.creator_id = o.creator_id
        CROSS JOIN p
        ORDER BY o.ord
        """

    def _user_history_top(self, day: date, length: int) -> None:
        """Stage ``user_history``'s rows: per user the ``length`` distinct positive videos
        with the latest positive ``ts``; equal times keep the frame's row order (the stable
        sort), so the key is ``(-ts, pos)``, packed into one HUGEINT (``pos`` < 2^56) so that
        every aggregate state has a fixed size and can spill to disk."""
        self.con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE uh_top AS
            WITH uv AS (
                SELECT user_id, video_id, min((-t)::HUGEINT * {2**56} + pos) AS k
                FROM {self._impressions(day, 28, catalog=False)}
                WHERE positive
                GROUP BY user_id, video_id
            )
            SELECT user_id, video_id, k FROM uv
            QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY k) <= {int(length)}
            """
        )

    def user_history(self, day: date) -> str:
        """``features.batch.user_history`` (needs :meth:`_user_history_top` first): the
        staged videos as one list per user, newest first."""
        return f"""
        SELECT user_id, {_ts(day)} AS event_timestamp,
               list(video_id ORDER BY k) AS hist_video_ids, count(*)::DOUBLE AS hist_len
        FROM uh_top GROUP BY user_id ORDER BY user_id
        """

    def _user_sequence_top(self, day: date, length: int) -> None:
        """Stage ``user_sequence``'s rows: per user the ``length`` latest impressions of the
        28-day window with their action codes (:func:`features.sequence.action_codes`: the
        four action bits plus the watch-ratio bucket) and times; equal times keep the
        frame's row order (``pos``), as the stable sort does."""
        self.con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE us_top AS
            SELECT user_id, video_id, t, pos,
                   (completed::BIGINT * {COMPLETED} + liked::BIGINT * {LIKED}
                    + shared::BIGINT * {SHARED} + skipped::BIGINT * {SKIPPED}
                    + (least(floor(coalesce(watch_frac, 0.0) * {RATIO_BUCKETS}),
                             {RATIO_BUCKETS - 1})::BIGINT << {RATIO_SHIFT})) AS action
            FROM {self._impressions(day, 28, catalog=False)}
            QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY t DESC, pos DESC)
                    <= {int(length)}
            """
        )

    def user_sequence(self, day: date) -> str:
        """``features.sequence.user_sequence`` (needs :meth:`_user_sequence_top` first):
        three parallel lists per user, oldest event first."""
        return f"""
        SELECT user_id, {_ts(day)} AS event_timestamp,
               list(video_id ORDER BY t, pos) AS seq_video_ids,
               list(action ORDER BY t, pos) AS seq_actions,
               list(t::DOUBLE / 1000000.0 ORDER BY t, pos) AS seq_ts
        FROM us_top GROUP BY user_id ORDER BY user_id
        """

    def _user_creator_top(self, day: date, length: int) -> None:
        """Stage ``user_creator_history``'s rows: per user the ``length`` creators seen most
        (ties by creator id) with their rank."""
        self.con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE uc_top AS
            WITH uc AS (
                SELECT user_id, creator_id, count(*) AS n, count(*) FILTER (WHERE positive) AS k
                FROM {self._impressions(day, 28)}
                WHERE creator_id IS NOT NULL
                GROUP BY user_id, creator_id
            )
            SELECT *, row_number() OVER (PARTITION BY user_id ORDER BY n DESC, creator_id) AS r
            FROM uc QUALIFY r <= {int(length)}
            """
        )

    def user_creator_history(self, day: date) -> str:
        """``features.batch.user_creator_history`` (needs :meth:`_user_creator_top` first):
        three parallel lists per user, most seen creator first."""
        return f"""
        SELECT user_id, {_ts(day)} AS event_timestamp,
               list(creator_id ORDER BY r) AS uc_creator_ids,
               list(n::DOUBLE ORDER BY r) AS uc_imp_28d,
               list(k::DOUBLE ORDER BY r) AS uc_pos_28d
        FROM uc_top GROUP BY user_id ORDER BY user_id
        """

    # -- running them ----------------------------------------------------------------------------
    def query(
        self, view: str, day: date, history_len: int, uc_history_len: int, seq_len: int = 50
    ) -> str:
        """The SQL that returns ``view``'s table of ``day``, after running the steps that
        stage its intermediate tables (each a query of its own: DuckDB then frees the
        memory of one step before the next, which one query holding every operator's
        state at once would not)."""
        if view == "user_engagement":
            return self.user_engagement(day)
        if view == "user_topic_affinity":
            return self.user_topic_affinity(day)
        if view == "video_stats":
            return self.video_stats(day)
        if view == "creator_stats":
            self._creator_order(day)
            return self.creator_stats(day)
        if view == "user_history":
            self._user_history_top(day, history_len)
            return self.user_history(day)
        if view == "user_creator_history":
            self._user_creator_top(day, uc_history_len)
            return self.user_creator_history(day)
        if view == "user_sequence":
            self._user_sequence_top(day, seq_len)
            return self.user_sequence(day)
        raise KeyError(f"unknown feature view {view!r}")

    def _drop_staged(self) -> None:
        for table in STAGED_TABLES:
            self.con.execute(f"DROP TABLE IF EXISTS {table}")

    def reader(
        self, view: str, day: date, history_len: int, uc_history_len: int, seq_len: int = 50
    ) -> pa.RecordBatchReader:
        """The table's rows as a stream of Arrow batches in the pandas builder's schema;
        the staged tables are dropped once the stream is read to its end."""
        sql = self.query(view, day, history_len, uc_history_len, seq_len)
        stream = self.con.sql(sql).to_arrow_reader(BATCH_ROWS)
        schema = SCHEMAS[view]

        def batches() -> Iterator[pa.RecordBatch]:
            for batch in stream:
                yield batch.select(schema.names).cast(schema)
            stream.close()
            self._drop_staged()

        return pa.RecordBatchReader.from_batches(schema, batches())

    def frame(
        self, view: str, day: date, history_len: int, uc_history_len: int, seq_len: int = 50
    ) -> pd.DataFrame:
        """The table as a pandas frame (tests and small worlds; the pipeline streams)."""
        reader = self.reader(view, day, history_len, uc_history_len, seq_len)
        return reader.read_all().to_pandas()

    def write(
        self,
        view: str,
        day: date,
        path: Path,
        history_len: int,
        uc_history_len: int,
        seq_len: int = 50,
    ) -> int:
        """Stream the table into ``path`` (atomically); the number of rows written."""
        rows = 0

        def _write(tmp: Path) -> None:
            nonlocal rows
            stream = self.reader(view, day, history_len, uc_history_len, seq_len)
            with pq.ParquetWriter(tmp, stream.schema) as writer:
                for batch in stream:
                    writer.write_batch(batch)
                    rows += batch.num_rows

        atomic_write(path, _write)
        return rows
