"""The served-request log and the delayed-feedback table: their layout and their readers.

Serving writes both (``serving.request_log``, ``serving.feedback``); monitoring and training
read them. This module is the contract between the two sides, so neither imports the other.

Served log layout::

    <root>/served/day=YYYY-MM-DD/part-<utc stamp>-<pid>-<seq>.parquet

one row per served item, partitioned by the UTC day of the request. The feature vector is a
positional ``list<float32>`` column; its names are in the file's key-value metadata, so a
file never mixes two feature sets. ``propensity`` is the probability with which the serving
policy showed the item in its position given the positions before it (``serving.exploration``;
1.0 where the policy was deterministic), what off-policy estimates of another policy divide
by; it is null in logs written before it existed (version 1) and for callers that did not
say. Feedback rows live in the lake table ``feedback``
(``<lake>/feedback/day=YYYY-MM-DD/part-*.parquet``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ingest.schema import FEEDBACK

SERVED_DIR = "served"
FEATURE_NAMES_KEY = b"reelrank.feature_names"
LOG_VERSION_KEY = b"reelrank.served_log_version"
LOG_VERSION = b"2"  # 2: the propensity column
#: Column holding each row's feature names (a JSON list) in :func:`read_served`'s frame.
FEATURE_SET_COLUMN = "feature_set"

SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("arm", pa.string(), nullable=False),
        pa.field("ranker_version", pa.string(), nullable=False),
        pa.field("retrieval_version", pa.string()),
        pa.field("surface", pa.string(), nullable=False),
        pa.field("position", pa.int32(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
        pa.field("propensity", pa.float64()),
        pa.field("features", pa.list_(pa.float32()), nullable=False),
    ]
)


def partition_dir(root: Path, day: date) -> Path:
    return root / SERVED_DIR / f"day={day.isoformat()}"


def feedback_dir(lake_dir: Path, day: date) -> Path:
    return lake_dir / FEEDBACK.table / f"day={day.isoformat()}"


def read_feedback(
    lake_dir: Path, start: date | None = None, end: date | None = None
) -> pd.DataFrame:
    """Every accepted feedback row with ``start <= day <= end`` (hidden temp files skipped)."""
    root = lake_dir / FEEDBACK.table
    frames = []
    if root.exists():
        for d in sorted(root.glob("day=*")):
            day = date.fromisoformat(d.name[4:])
            if (start and day < start) or (end and day > end):
                continue
            frames += [pq.read_table(p).to_pandas() for p in sorted(d.glob("part-*.parquet"))]
    if not frames:
        return FEEDBACK.arrow_schema().empty_table().to_pandas()
    return pd.concat(frames, ignore_index=True)


# -- reading -----------------------------------------------------------------------------------


def served_files(root: Path, start: date | None = None, end: date | None = None) -> list[Path]:
    """Visible partition files for days in [start, end] (temporary files skipped), in order."""
    base = Path(root) / SERVED_DIR
    if not base.is_dir():
        return []
    files: list[Path] = []
    for day_dir in sorted(base.iterdir()):
        if not (day_dir.is_dir() and day_dir.name.startswith("day=")):
            continue
        try:
            day = date.fromisoformat(day_dir.name.removeprefix("day="))
        except ValueError:
            continue
        if (start is not None and day < start) or (end is not None and day > end):
            continue
        files.extend(
            p
            for p in sorted(day_dir.iterdir())
            if p.is_file()
            and p.name.startswith("part-")
            and p.name.endswith(".parquet")
            and not p.name.endswith(".tmp")
        )
    return files


def read_served(root: Path, start: date | None = None, end: date | None = None) -> pd.DataFrame:
    """Served items logged for UTC days in [start, end] (both inclusive, None = open).

    One row per served item with the :data:`SCHEMA` columns (``features`` holds one float32
    array per row) plus ``feature_set``: the row's feature names as a JSON list (categorical),
    which :func:`feature_frame` uses to pick features by name across feature-set changes.
    """
    tables: list[pa.Table] = []
    for path in served_files(root, start, end):
        table = _with_every_column(pq.ParquetFile(path).read())
        meta = table.schema.metadata or {}
        names = json.loads(meta.get(FEATURE_NAMES_KEY, b"[]"))
        feature_set = pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(table.num_rows, dtype=np.int32)),
            pa.array([json.dumps(names)], pa.string()),
        )
        table = table.replace_schema_metadata(None).append_column(FEATURE_SET_COLUMN, feature_set)
        tables.append(table)
    if not tables:
        empty = SCHEMA.empty_table().append_column(
            FEATURE_SET_COLUMN, pa.array([], pa.dictionary(pa.int32(), pa.string()))
        )
        return empty.to_pandas()
    combined = pa.concat_tables(tables).unify_dictionaries().combine_chunks()
    return combined.to_pandas()


def _with_every_column(table: pa.Table) -> pa.Table:
    """A file of an older log version with the columns it lacks added as nulls, in schema
    order (a version-1 file has no ``propensity``)."""
    for i, f in enumerate(SCHEMA):
        if f.name not in table.column_names and f.nullable:
            table = table.add_column(i, f, pa.nulls(table.num_rows, f.type))
    return table


def feature_frame(df: pd.DataFrame, feature_names: Sequence[str]) -> pd.DataFrame:
    """Expand the ``features`` vectors into one float32 column per requested name.

    With a ``feature_set`` column (as :func:`read_served` returns), values are taken by name
    from each row's own feature set and a name that set lacks is NaN. Without it the vectors
    are taken as positional in ``feature_names`` order and must have exactly that length.
    """
    wanted = list(feature_names)
    out = np.full((len(df), len(wanted)), np.nan, dtype=np.float32)
    if len(df) == 0:
        return pd.DataFrame(out, columns=wanted, index=df.index)
    vectors = df["features"].to_numpy()
    if FEATURE_SET_COLUMN not in df.columns:
        mat = _stack(vectors, len(wanted))
        return pd.DataFrame(mat, columns=wanted, index=df.index)
    sets = df[FEATURE_SET_COLUMN].astype(str).to_numpy()
    for key in pd.unique(sets):
        rows = np.flatnonzero(sets == key)
        names = json.loads(key)
        position = {name: j for j, name in enumerate(names)}
        mat = _stack(vectors[rows], len(names))
        for i, name in enumerate(wanted):
            if name in position:
                out[rows, i] = mat[:, position[name]]
    return pd.DataFrame(out, columns=wanted, index=df.index)


def _stack(vectors: np.ndarray, width: int) -> np.ndarray:
    lengths = {len(v) for v in vectors}
    if lengths - {width}:
        raise ValueError(f"feature vectors of length {sorted(lengths)}, expected {width}")
    if width == 0:
        return np.empty((len(vectors), 0), dtype=np.float32)
    return np.stack([np.asarray(v, dtype=np.float32) for v in vectors])
