"""What every real-log source shares: the report, file reading, value parsing, and the
assembly of the three contract frames from a cleaned log.

A source module (:mod:`ingest.sources.kuairand`, :mod:`ingest.sources.interactions`) reads its
own format into a log with raw ids ``uid``/``vid``, a UTC ``ts`` and its outcome columns, then
hands it to these helpers, so that every source drops, sessions, counts and checks rows the
same way (``docs/datasets.md`` has the rules):

* ids become strings; a source may put a prefix before them (KuaiRand: ``kr-u<user>``).
* neither source has feed requests, so a request is a *session*: consecutive events of one
  user less than :data:`SESSION_GAP_S` seconds apart. ``request_id`` is derived from the user
  and the session's first event time, ``position`` is the event's rank in its session.
* ``event_id`` is derived from (user, video, event time), which is why rows repeating that
  triple are dropped as duplicates (the first one is kept).
* outcomes a source does not have are ``False`` (``0.0`` for watch time) and named as
  missing in ``report.signals``; derived ones (e.g. ``completed`` from watch time and
  duration) are named with their rule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ingest.schema import IMPRESSIONS, USERS, VIDEOS, Contract, validate
from reelrank.errors import DataError

SESSION_GAP_S = 60.0  # events of one user closer than this form one request (session)
MAX_POSITION = 1000  # the contract's largest feed position
MAX_WATCH_S = 36000.0
MIN_DURATION_S, MAX_DURATION_S = 0.5, 3600.0
DEFAULT_DURATION_S = 30.0  # when no duration is known for any item of a dataset
SKIP_WATCH_S = 3.0  # a play shorter than min(this, duration) is a skip (KuaiRand's short play)
MODEL_VERSION = "logged"
UNKNOWN = "unknown"
LANGUAGE = "und"  # BCP 47 "undetermined": neither source says which language a video is in
DEFAULT_SURFACE = "spotlight"  # where a source names no surface
# epoch bounds of a plausible event time (1970 .. 2100); outside is "unparseable"
_MAX_EPOCH_S = 4_102_444_800.0
_TRUE = frozenset({"1", "true", "t", "yes", "y"})
_FALSE = frozenset({"0", "false", "f", "no", "n"})
_SEPARATORS = ("\t", ",", ";", "|")
OUTCOMES = ("watch_time_s", "completed", "liked", "shared", "commented", "followed", "skipped")


class AdapterError(DataError, ValueError):
    """The input cannot be adapted: unreadable file, a named column missing, nothing left."""


@dataclass
class AdapterReport:
    """What an adapter read, dropped, defaulted and derived.

    ``dropped`` counts every dropped row under exactly one reason (the first that applies, in
    the order: missing ids, unparseable timestamp, duplicate rows), so its values sum to
    ``rows_read - rows_kept``. ``defaulted`` keys are ``"<table>.<column>: <how>"`` and count
    rows of that table given a default value; an outcome missing from the source altogether
    is not counted there but named in ``signals``. ``missing_metadata`` counts kept
    interaction rows whose item has no row in the catalog / items file.
    """

    dataset: str
    source: str
    rows_read: int
    rows_kept: int
    rows_added: int = 0  # impressions the adapter drew (an implicit log's negatives)
    dropped: dict[str, int] = field(default_factory=dict)
    defaulted: dict[str, int] = field(default_factory=dict)
    unknown_columns: list[str] = field(default_factory=list)
    missing_metadata: int = 0
    signals: dict[str, str] = field(default_factory=dict)
    n_users: int = 0
    n_videos: int = 0
    first_ts: str = ""
    last_ts: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "dataset": self.dataset,
            "source": self.source,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "rows_added": self.rows_added,
            "dropped": dict(self.dropped),
            "defaulted": dict(self.defaulted),
            "unknown_columns": list(self.unknown_columns),
            "missing_metadata": self.missing_metadata,
            "signals": dict(self.signals),
            "n_users": self.n_users,
            "n_videos": self.n_videos,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        lines = [
            f"{self.dataset}: {self.rows_kept:,} of {self.rows_read:,} rows kept"
            + (f" (+{self.rows_added:,} sampled negatives)" if self.rows_added else "")
            + f" ({self.n_users:,} users, {self.n_videos:,} videos, {self.first_ts} .. "
            f"{self.last_ts})",
            f"  source: {self.source}",
        ]
        counted = max((len(k) for k in (*self.dropped, *self.defaulted)), default=0)

        def block(title: str, items: dict[str, int] | dict[str, str]) -> None:
            lines.append(f"  {title}:" + ("" if items else " none"))
            for key, value in items.items():
                if isinstance(value, int):
                    lines.append(f"    {key:<{counted}}  {value:>9,}")
                else:
                    lines.append(f"    {key + ':':<14}{value}")

        block("dropped", self.dropped)
        block("defaulted", self.defaulted)
        block("signals", self.signals)
        lines.append(f"  missing metadata: {self.missing_metadata:,} rows")
        lines.append(f"  unknown columns: {', '.join(self.unknown_columns) or 'none'}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclass
class AdaptedDataset:
    """A real log as the lake's three contract frames, with the report of how it got there."""

    name: str
    users: pd.DataFrame
    videos: pd.DataFrame
    impressions: pd.DataFrame
    report: AdapterReport

    @property
    def days(self) -> list[dt.date]:
        """Sorted distinct UTC days of the impressions."""
        if self.impressions.empty:
            return []
        return sorted(set(self.impressions["ts"].dt.tz_convert("UTC").dt.date))

    def known_ids(self) -> dict[str, set[str]]:
        return {"users": set(self.users["user_id"]), "videos": set(self.videos["video_id"])}


# -- reading ------------------------------------------------------------------------------------


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def sniff_sep(path: Path) -> str:
    """The separator of a delimited text file, from its header line."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as f:
            header = f.readline()
    except OSError as e:
        raise AdapterError(f"cannot read {path}: {e}") from e
    if not header.strip():
        raise AdapterError(f"{path} is empty (no header line)")
    counts = {s: header.count(s) for s in _SEPARATORS}
    best = max(counts, key=lambda s: counts[s])
    return best if counts[best] else ","


def read_columns(path: Path, sep: str | None) -> list[str]:
    try:
        if is_parquet(path):
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        return list(pd.read_csv(path, sep=sep or sniff_sep(path), nrows=0).columns)
    except AdapterError:
        raise
    except Exception as e:  # pandas / pyarrow raise many types for a bad file
        raise AdapterError(f"cannot read the header of {path}: {e}") from e


def read_frame(
    path: Path,
    sep: str | None,
    columns: Sequence[str],
    as_str: Iterable[str] = (),
) -> pd.DataFrame:
    """Read ``columns`` of a CSV or Parquet file (``as_str`` ones as text, for CSV)."""
    try:
        if is_parquet(path):
            return pd.read_parquet(path, columns=list(columns))
        dtypes = {c: str for c in as_str if c in columns}
        return pd.read_csv(
            path, sep=sep or sniff_sep(path), usecols=list(columns), dtype=dtypes, low_memory=False
        )
    except AdapterError:
        raise
    except Exception as e:
        raise AdapterError(f"cannot read {path}: {e}") from e


def missing_column(column: str, role: str, path: Path, columns: Sequence[str]) -> AdapterError:
    return AdapterError(
        f"column {column!r} ({role}) is not in {path.name}; its columns are: {', '.join(columns)}"
    )


# -- value helpers ------------------------------------------------------------------------------


def id_strings(s: pd.Series) -> pd.Series:
    """Ids as Python strings (object dtype); null or blank -> None, 12.0 -> "12"."""
    if pd.api.types.is_float_dtype(s.dtype):
        whole = s.notna() & np.isfinite(s) & (s == np.floor(s))
        out = pd.Series([None] * len(s), index=s.index, dtype=object)
        out[whole] = s[whole].astype(np.int64).astype(str)
        other = s.notna() & ~whole
        out[other] = s[other].astype(str)
        return out
    if pd.api.types.is_integer_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        out = s.astype("Int64").astype(str).astype(object)
        return out.where(s.notna(), None)
    text = s.astype(object).where(s.notna(), None)
    text = text.map(lambda v: None if v is None else str(v).strip())
    return text.where(text.map(lambda v: bool(v)), None).astype(object)


def numeric(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype(float)


def truthy(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(value, known) of a binary label column: 1/0, true/false, yes/no; else unknown."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.fillna(False).astype(bool), s.notna()
    if pd.api.types.is_numeric_dtype(s.dtype):
        num = numeric(s)
        return (num.fillna(0.0) != 0.0), num.notna()
    text = s.astype(object).map(lambda v: None if pd.isna(v) else str(v).strip().lower())
    num = pd.to_numeric(text, errors="coerce")
    value = text.isin(_TRUE) | (num.notna() & (num != 0))
    known = text.isin(_TRUE) | text.isin(_FALSE) | num.notna()
    return value.astype(bool), known.astype(bool)


def epoch_to_ts(values: pd.Series, unit: Literal["s", "ms"]) -> pd.Series:
    """Epoch numbers -> UTC timestamps; NaN or implausible (before 1970, after 2100) -> NaT."""
    num = numeric(values)
    seconds = num / 1000.0 if unit == "ms" else num
    ok = seconds.notna() & (seconds >= 0) & (seconds < _MAX_EPOCH_S)
    us = (seconds.where(ok, 0.0) * 1e6).round().astype(np.int64)
    ts = pd.Series(pd.to_datetime(us, unit="us", utc=True), index=values.index)
    return ts.where(ok, pd.NaT).astype("datetime64[us, UTC]")


def parse_ts(s: pd.Series, unit: Literal["auto", "s", "ms", "iso"]) -> tuple[pd.Series, str]:
    """Timestamps as datetime64[us, UTC] (NaT when unparseable), and the unit used."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert("UTC").astype("datetime64[us, UTC]"), "datetime"
    if pd.api.types.is_datetime64_dtype(s.dtype):
        return s.dt.tz_localize("UTC").astype("datetime64[us, UTC]"), "datetime (naive, as UTC)"
    if unit == "auto":
        num = pd.to_numeric(s, errors="coerce")
        present = s.notna() & (s.astype(str).str.strip() != "")
        if present.any() and num[present].notna().mean() >= 0.5:
            unit = "ms" if float(num.abs().median()) > 1e11 else "s"
        else:
            unit = "iso"
    if unit in ("s", "ms"):
        return epoch_to_ts(s, unit), f"epoch {unit}"
    text = s.astype(object).where(s.notna(), None)
    ts = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    return pd.Series(ts, index=s.index).astype("datetime64[us, UTC]"), "ISO 8601 (naive as UTC)"


def clip(values: pd.Series, lo: float, hi: float) -> tuple[pd.Series, int]:
    out = values.clip(lower=lo, upper=hi)
    return out, int(((values < lo) | (values > hi)).sum())


def count(counts: dict[str, int], key: str, n: int | np.integer) -> None:
    if int(n):
        counts[key] = counts.get(key, 0) + int(n)


def _stamp(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S UTC")


# -- shared assembly ---------------------------------------------------------------------------


def drop_rows(log: pd.DataFrame, dropped: dict[str, int], notes: list[str]) -> pd.DataFrame:
    """Drop rows without ids, without a time, or repeating (user, item, time); count each."""
    no_id = log["uid"].isna() | log["vid"].isna()
    count(dropped, "missing user or item id", no_id.sum())
    log = log[~no_id]
    no_ts = log["ts"].isna()
    count(dropped, "unparseable timestamp", no_ts.sum())
    log = log[~no_ts]
    key = ["uid", "vid", "ts"]
    dup = log.duplicated(key, keep="first")
    if dup.any():
        count(dropped, "duplicate rows", dup.sum())
        compare = [c for c in log.columns if c not in key]
        exact = log.duplicated(key + compare, keep="first")
        differ = int(dup.sum() - (dup & exact).sum())
        if differ:
            notes.append(
                f"{differ} of the {int(dup.sum())} duplicate rows (same user, item, time) "
                "differ in other fields; the first occurrence was kept"
            )
    return log[~dup]


def _sessions(uid: np.ndarray, ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Session start (epoch ms) and position of each event; input sorted by (user, time)."""
    n = len(uid)
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int32)
    new = np.ones(n, dtype=bool)
    new[1:] = (uid[1:] != uid[:-1]) | (np.diff(ms) >= SESSION_GAP_S * 1000)
    start_idx = np.maximum.accumulate(np.where(new, np.arange(n), 0))
    position = np.minimum(np.arange(n) - start_idx, MAX_POSITION).astype(np.int32)
    return ms[start_idx], position


def impressions_frame(
    log: pd.DataFrame, user_ids: pd.Series, video_ids: pd.Series, prefix: str
) -> pd.DataFrame:
    """The IMPRESSIONS frame from a cleaned log with raw ids ``uid``/``vid`` and ``ts``."""
    log = log.assign(_ms=log["ts"].astype("int64") // 1000)
    log = log.sort_values(["uid", "_ms", "vid"], kind="stable")
    uid = log["uid"].to_numpy(dtype=object)
    vid = log["vid"].to_numpy(dtype=object)
    ms = log["_ms"].to_numpy(dtype=np.int64)
    start, position = _sessions(uid, ms)
    request_id = [f"{prefix}r-{u}-{s}" for u, s in zip(uid, start, strict=True)]
    event_id = pd.Series(
        [f"{prefix}e-{u}-{v}-{m}" for u, v, m in zip(uid, vid, ms, strict=True)], dtype=object
    )
    clash = event_id.duplicated(keep=False)
    if clash.any():  # sub-millisecond times, or ids containing the separator
        seq = event_id[clash].groupby(event_id[clash]).cumcount().astype(str)
        event_id[clash] = event_id[clash] + "-" + seq
    out = pd.DataFrame(
        {
            "event_id": event_id.to_numpy(dtype=object),
            "request_id": np.array(request_id, dtype=object),
            "ts": log["ts"].array,
            "user_id": user_ids.loc[log.index].to_numpy(dtype=object),
            "video_id": video_ids.loc[log.index].to_numpy(dtype=object),
            "surface": log["surface"].to_numpy(dtype=object),
            "position": position,
            "watch_time_s": log["watch_time_s"].to_numpy(dtype=float),
            "duration_s": log["duration_s"].to_numpy(dtype=float),
            "completed": log["completed"].to_numpy(dtype=bool),
            "liked": log["liked"].to_numpy(dtype=bool),
            "shared": log["shared"].to_numpy(dtype=bool),
            "commented": log["commented"].to_numpy(dtype=bool),
            "followed": log["followed"].to_numpy(dtype=bool),
            "skipped": log["skipped"].to_numpy(dtype=bool),
            "model_version": MODEL_VERSION,
        }
    )
    out["ts"] = out["ts"].astype("datetime64[us, UTC]")
    out["model_version"] = out["model_version"].astype(object)
    out = out.sort_values(["ts", "event_id"], kind="stable").reset_index(drop=True)
    return out[IMPRESSIONS.names]


def users_frame(impressions: pd.DataFrame, defaulted: dict[str, int]) -> pd.DataFrame:
    first = impressions.groupby("user_id", sort=True)["ts"].min()
    users = pd.DataFrame(
        {
            "user_id": first.index.to_numpy(dtype=object),
            "signup_ts": first.array,
            "country": UNKNOWN,
            "age_bucket": UNKNOWN,
            "device": UNKNOWN,
        }
    )
    users["signup_ts"] = users["signup_ts"].astype("datetime64[us, UTC]")
    for c in ("country", "age_bucket", "device"):
        users[c] = users[c].astype(object)
    count(defaulted, "users.signup_ts: first event time", len(users))
    count(defaulted, "users.country, age_bucket, device: 'unknown'", len(users))
    return users[USERS.names]


def _video_durations(
    log_ms: pd.Series, meta_ms: pd.Series, default_s: float
) -> tuple[pd.Series, pd.Series]:
    """Per-video duration (ms) and its source: the log, the metadata, else the median."""
    source = pd.Series("log", index=log_ms.index, dtype=object)
    dur = log_ms.copy()
    use_meta = dur.isna() & meta_ms.notna()
    dur[use_meta] = meta_ms[use_meta]
    source[use_meta] = "meta"
    known = dur.dropna()
    fill_ms = float(known.median()) if len(known) else default_s * 1000.0
    missing = dur.isna()
    dur[missing] = fill_ms
    source[missing] = "median" if len(known) else "default"
    return dur, source


def video_duration_s(
    log_ms: pd.Series, meta_ms: pd.Series, defaulted: dict[str, int]
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Per-video duration in seconds (see :func:`_video_durations`), clipped to the
    contract's range, with every defaulted or clipped video counted in ``defaulted``; also
    the unclipped milliseconds and their source, which the impressions fall back on."""
    video_ms, source = _video_durations(log_ms, meta_ms, DEFAULT_DURATION_S)
    count(defaulted, "videos.duration_s: median of known durations", (source == "median").sum())
    count(
        defaulted, f"videos.duration_s: default {DEFAULT_DURATION_S} s", (source == "default").sum()
    )
    duration, clipped = clip(video_ms / 1000.0, MIN_DURATION_S, MAX_DURATION_S)
    count(defaulted, f"videos.duration_s: clipped to [{MIN_DURATION_S}, {MAX_DURATION_S}]", clipped)
    return duration, video_ms, source


def videos_frame(
    video_ids: Sequence[str],
    creator_ids: Sequence[str],
    upload_ts: pd.Series,
    duration_s: pd.Series,
    captions: Sequence[str],
    hashtags: Sequence[list[str]],
    topics: Sequence[str],
) -> pd.DataFrame:
    videos = pd.DataFrame(
        {
            "video_id": np.array(video_ids, dtype=object),
            "creator_id": np.array(creator_ids, dtype=object),
            "upload_ts": upload_ts.array,
            "duration_s": duration_s.to_numpy(dtype=float),
            "caption": np.array(captions, dtype=object),
            "hashtags": list(hashtags),
            "topic": np.array(topics, dtype=object),
            "language": LANGUAGE,
            "visual_embedding": None,
        }
    )
    videos["upload_ts"] = videos["upload_ts"].astype("datetime64[us, UTC]")
    for c in ("language", "visual_embedding"):
        videos[c] = videos[c].astype(object)
    return videos[VIDEOS.names]


def check_contract(contract: Contract, df: pd.DataFrame, known: dict[str, set[str]] | None) -> None:
    report = validate(contract, df, known)
    if not report.ok:  # an adapter bug, never the input's fault
        raise AdapterError(f"adapted frame breaks its contract: {report}")


def finish(
    name: str,
    users: pd.DataFrame,
    videos: pd.DataFrame,
    impressions: pd.DataFrame,
    report: AdapterReport,
) -> AdaptedDataset:
    check_contract(USERS, users, None)
    check_contract(VIDEOS, videos, None)
    known = {"users": set(users["user_id"]), "videos": set(videos["video_id"])}
    check_contract(IMPRESSIONS, impressions, known)
    report.rows_kept = len(impressions) - report.rows_added
    report.n_users = len(users)
    report.n_videos = len(videos)
    report.first_ts = _stamp(impressions["ts"].min())
    report.last_ts = _stamp(impressions["ts"].max())
    if sum(report.dropped.values()) != report.rows_read - report.rows_kept:
        raise AdapterError(f"adapter bug: dropped rows do not add up: {report.to_dict()}")
    return AdaptedDataset(name, users, videos, impressions, report)
