"""Raw-lake contracts: the columns, types and ranges every batch must satisfy.

A contract is data, not code paths: each column names its Arrow type, whether nulls are
allowed, and an optional value range or allowed set. :func:`validate` checks a whole batch and
returns every problem at once (so a person fixing an upstream feed sees all of them), and the
lake writer refuses the batch whole when the report is not clean.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

SURFACES = ("spotlight", "discover", "stories")


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Contract:
    table: str
    columns: tuple[Column, ...]
    key: str
    partition_ts: str
    # column -> table whose key it references ("unknown ids" check)
    references: Mapping[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns])


TS = pa.timestamp("us", tz="UTC")

VIDEOS = Contract(
    table="videos",
    key="video_id",
    partition_ts="upload_ts",
    columns=(
        Column("video_id", pa.string()),
        Column("creator_id", pa.string()),
        Column("upload_ts", TS),
        Column("duration_s", pa.float64(), min=0.5, max=3600.0),
        Column("caption", pa.string()),
        Column("hashtags", pa.list_(pa.string())),
        Column("topic", pa.string()),
        Column("language", pa.string()),
        Column("visual_embedding", pa.list_(pa.float32()), nullable=True),
    ),
)

USERS = Contract(
    table="users",
    key="user_id",
    partition_ts="signup_ts",
    columns=(
        Column("user_id", pa.string()),
        Column("signup_ts", TS),
        Column("country", pa.string()),
        Column("age_bucket", pa.string()),
        Column("device", pa.string()),
    ),
)

IMPRESSIONS = Contract(
    table="impressions",
    key="event_id",
    partition_ts="ts",
    references={"user_id": "users", "video_id": "videos"},
    columns=(
        Column("event_id", pa.string()),
        Column("request_id", pa.string()),
        Column("ts", TS),
        Column("user_id", pa.string()),
        Column("video_id", pa.string()),
        Column("surface", pa.string(), allowed=SURFACES),
        Column("position", pa.int32(), min=0, max=1000),
        Column("watch_time_s", pa.float64(), min=0.0, max=36000.0),
        Column("duration_s", pa.float64(), min=0.5, max=3600.0),
        Column("completed", pa.bool_()),
        Column("liked", pa.bool_()),
        Column("shared", pa.bool_()),
        Column("commented", pa.bool_()),
        Column("followed", pa.bool_()),
        Column("skipped", pa.bool_()),
        Column("model_version", pa.string()),
    ),
)

# Delayed feedback from the serving path: an impression row the server completes from what it
# served (user, surface, position, model), plus the experiment arm that served it. Appended
# in parts (``serving.feedback``), not written one partition file per day.
FEEDBACK = Contract(
    table="feedback",
    key="event_id",
    partition_ts="ts",
    references={"user_id": "users", "video_id": "videos"},
    columns=(*IMPRESSIONS.columns, Column("arm", pa.string(), allowed=("champion", "challenger"))),
)

CONTRACTS: dict[str, Contract] = {c.table: c for c in (VIDEOS, USERS, IMPRESSIONS)}


@dataclass(frozen=True)
class Problem:
    column: str
    check: str
    count: int
    examples: tuple[str, ...] = ()

    def __str__(self) -> str:
        ex = f" e.g. {', '.join(self.examples)}" if self.examples else ""
        return f"{self.column}: {self.check} ({self.count} rows){ex}"


@dataclass(frozen=True)
class ValidationReport:
    table: str
    n_rows: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, object]:
        return {
            "table": self.table,
            "n_rows": self.n_rows,
            "ok": self.ok,
            "problems": [
                {"column": p.column, "check": p.check, "count": p.count, "examples": p.examples}
                for p in self.problems
            ],
        }

    def __str__(self) -> str:
        if self.ok:
            return f"{self.table}: {self.n_rows} rows, valid"
        lines = [f"{self.table}: {self.n_rows} rows rejected, {len(self.problems)} problem(s):"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def _examples(values: Iterable[object], n: int = 3) -> tuple[str, ...]:
    return tuple(str(v) for v in list(values)[:n])


def _type_ok(series: pd.Series, col: Column) -> bool:
    t = col.type
    non_null = series.dropna()
    if pa.types.is_timestamp(t):
        return isinstance(series.dtype, pd.DatetimeTZDtype) or (
            pd.api.types.is_datetime64_any_dtype(series.dtype)
        )
    if pa.types.is_boolean(t):
        return pd.api.types.is_bool_dtype(series.dtype)
    if pa.types.is_integer(t):
        return pd.api.types.is_integer_dtype(series.dtype)
    if pa.types.is_floating(t):
        return pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
            series.dtype
        )
    if pa.types.is_string(t):
        return bool(non_null.map(lambda v: isinstance(v, str)).all())
    if pa.types.is_list(t):
        return bool(non_null.map(lambda v: isinstance(v, list | tuple | np.ndarray)).all())
    return True


def validate(
    contract: Contract,
    df: pd.DataFrame,
    known_ids: Mapping[str, set[str]] | None = None,
) -> ValidationReport:
    """Check a batch against its contract; never raises, reports every problem found."""
    problems: list[Problem] = []
    n = len(df)
    missing = [c for c in contract.names if c not in df.columns]
    if missing:
        problems.append(Problem(",".join(missing), "missing column", n))
    extra = [c for c in df.columns if c not in contract.names]
    if extra:
        problems.append(Problem(",".join(map(str, extra)), "unknown column", n))

    for col in contract.columns:
        if col.name not in df.columns:
            continue
        s = df[col.name]
        nulls = s.isna()
        if not col.nullable and nulls.any():
            problems.append(Problem(col.name, "null in non-nullable column", int(nulls.sum())))
        if not _type_ok(s, col):
            problems.append(Problem(col.name, f"wrong type {s.dtype}, expected {col.type}", n))
            continue
        values = s[~nulls]
        if col.min is not None or col.max is not None:
            num = pd.to_numeric(values, errors="coerce")
            bad = pd.Series(False, index=num.index)
            if col.min is not None:
                bad |= num < col.min
            if col.max is not None:
                bad |= num > col.max
            bad |= ~np.isfinite(num.astype(float))
            if bad.any():
                rng = f"[{col.min}, {col.max}]"
                problems.append(
                    Problem(col.name, f"out of range {rng}", int(bad.sum()), _examples(num[bad]))
                )
        if col.allowed is not None:
            bad = ~values.isin(col.allowed)
            if bad.any():
                problems.append(
                    Problem(
                        col.name,
                        f"not one of {list(col.allowed)}",
                        int(bad.sum()),
                        _examples(values[bad].unique()),
                    )
                )

    if contract.key in df.columns:
        dup = df[contract.key].duplicated()
        if dup.any():
            problems.append(
                Problem(
                    contract.key, "duplicate key", int(dup.sum()), _examples(df[contract.key][dup])
                )
            )

    for column, table in contract.references.items():
        if column not in df.columns or known_ids is None or table not in known_ids:
            continue
        unknown = ~df[column].isin(known_ids[table])
        if unknown.any():
            problems.append(
                Problem(
                    column,
                    f"unknown id (not in {table})",
                    int(unknown.sum()),
                    _examples(df.loc[unknown, column].unique()),
                )
            )
    return ValidationReport(contract.table, n, tuple(problems))


def to_arrow(contract: Contract, df: pd.DataFrame) -> pa.Table:
    """Cast a validated batch to the contract's exact Arrow schema (column order included)."""
    return pa.Table.from_pandas(
        df[contract.names], schema=contract.arrow_schema(), preserve_index=False
    )
