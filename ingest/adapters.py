"""Adapters that turn real interaction datasets into the raw lake's contracts.

Two entry points produce the same three frames (USERS, VIDEOS, IMPRESSIONS, see
:mod:`ingest.schema`) plus an :class:`AdapterReport` that says what was read, dropped, defaulted
or derived, so that a person can judge how far the data is from a real impression log:

* :func:`load_kuairand` reads KuaiRand logs (the official ``log_standard_*.csv`` format, or
  the tab-separated KuaiRand-27K like/hate subset), optionally joined with the official
  ``video_features_basic_*.csv`` catalog (:func:`load_kuairand_catalog` reads it alone).
* :func:`load_interactions` reads any (user, item, timestamp) CSV or Parquet file, optionally
  with ratings, binary labels, watch times, durations and an items file with text.

The mapping in brief (``docs/datasets.md`` has the full tables):

* ids become strings (KuaiRand: ``kr-u<user>``, ``kr-v<video>``, ``kr-c<author>``); the
  generic loader keeps raw ids, with an optional ``id_prefix``.
* neither source has feed requests, so a request is a *session*: consecutive events of one
  user less than :data:`SESSION_GAP_S` seconds apart. ``request_id`` is derived from the user
  and the session's first event time, ``position`` is the event's rank in its session.
* ``event_id`` is derived from (user, video, event time), which is why rows repeating that
  triple are dropped as duplicates (the first one is kept).
* outcomes a source does not have are ``False`` (``0.0`` for watch time) and named as
  missing in ``report.signals``; derived ones (e.g. ``completed`` from watch time and
  duration) are named with their rule.
* the contract's ``surface`` comes from KuaiRand's ``tab`` field where present (tab 1, the
  main single-column feed -> ``spotlight``; tab 0, the two-column page -> ``discover``; every
  other sub-scenario -> ``stories``), otherwise it is ``spotlight`` everywhere (counted).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ingest.schema import IMPRESSIONS, SURFACES, USERS, VIDEOS, Contract, validate
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
# epoch bounds of a plausible event time (1970 .. 2100); outside is "unparseable"
_MAX_EPOCH_S = 4_102_444_800.0

# KuaiRand's ``tab``: the maintainers say the most frequent value is the app's main
# single-column (full-screen) feed and the second the main two-column page; the other 13 are
# sub-scenarios (web, mini programs, ...). Tab 1 is the most frequent and tab 0 the second in
# the official logs, so: tab 1 -> spotlight, tab 0 -> discover, any other tab -> stories.
KUAIRAND_TAB_SURFACE: dict[int, str] = {1: "spotlight", 0: "discover"}
KUAIRAND_OTHER_TAB_SURFACE = "stories"
DEFAULT_SURFACE = "spotlight"

_KR_REQUIRED = (
    "user_id",
    "video_id",
    "time_ms",
    "is_click",
    "is_follow",
    "is_comment",
    "is_forward",
    "long_view",
    "play_time_ms",
    "duration_ms",
)
_KR_CATALOG_REQUIRED = ("video_id", "author_id", "upload_dt", "video_duration", "tag")
_KR_CATALOG_USED = (*_KR_CATALOG_REQUIRED, "video_type")
_LIST_TEXT_COLS = frozenset(
    {"genres", "genre", "tags", "tag", "categories", "category", "keywords", "hashtags"}
)
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
            f"{self.dataset}: {self.rows_kept:,} of {self.rows_read:,} rows kept "
            f"({self.n_users:,} users, {self.n_videos:,} videos, {self.first_ts} .. "
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


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _sniff_sep(path: Path) -> str:
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


def _columns(path: Path, sep: str | None) -> list[str]:
    try:
        if _is_parquet(path):
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        return list(pd.read_csv(path, sep=sep or _sniff_sep(path), nrows=0).columns)
    except AdapterError:
        raise
    except Exception as e:  # pandas / pyarrow raise many types for a bad file
        raise AdapterError(f"cannot read the header of {path}: {e}") from e


def _read(
    path: Path,
    sep: str | None,
    columns: Sequence[str],
    as_str: Iterable[str] = (),
) -> pd.DataFrame:
    """Read ``columns`` of a CSV or Parquet file (``as_str`` ones as text, for CSV)."""
    try:
        if _is_parquet(path):
            return pd.read_parquet(path, columns=list(columns))
        dtypes = {c: str for c in as_str if c in columns}
        return pd.read_csv(
            path, sep=sep or _sniff_sep(path), usecols=list(columns), dtype=dtypes, low_memory=False
        )
    except AdapterError:
        raise
    except Exception as e:
        raise AdapterError(f"cannot read {path}: {e}") from e


def _missing_column(column: str, role: str, path: Path, columns: Sequence[str]) -> AdapterError:
    return AdapterError(
        f"column {column!r} ({role}) is not in {path.name}; its columns are: {', '.join(columns)}"
    )


# -- value helpers ------------------------------------------------------------------------------


def _id_strings(s: pd.Series) -> pd.Series:
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


def _numeric(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype(float)


def _truthy(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(value, known) of a binary label column: 1/0, true/false, yes/no; else unknown."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.fillna(False).astype(bool), s.notna()
    if pd.api.types.is_numeric_dtype(s.dtype):
        num = _numeric(s)
        return (num.fillna(0.0) != 0.0), num.notna()
    text = s.astype(object).map(lambda v: None if pd.isna(v) else str(v).strip().lower())
    num = pd.to_numeric(text, errors="coerce")
    value = text.isin(_TRUE) | (num.notna() & (num != 0))
    known = text.isin(_TRUE) | text.isin(_FALSE) | num.notna()
    return value.astype(bool), known.astype(bool)


def _epoch_to_ts(values: pd.Series, unit: Literal["s", "ms"]) -> pd.Series:
    """Epoch numbers -> UTC timestamps; NaN or implausible (before 1970, after 2100) -> NaT."""
    num = _numeric(values)
    seconds = num / 1000.0 if unit == "ms" else num
    ok = seconds.notna() & (seconds >= 0) & (seconds < _MAX_EPOCH_S)
    us = (seconds.where(ok, 0.0) * 1e6).round().astype(np.int64)
    ts = pd.Series(pd.to_datetime(us, unit="us", utc=True), index=values.index)
    return ts.where(ok, pd.NaT).astype("datetime64[us, UTC]")


def _parse_ts(s: pd.Series, unit: Literal["auto", "s", "ms", "iso"]) -> tuple[pd.Series, str]:
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
        return _epoch_to_ts(s, unit), f"epoch {unit}"
    text = s.astype(object).where(s.notna(), None)
    ts = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    return pd.Series(ts, index=s.index).astype("datetime64[us, UTC]"), "ISO 8601 (naive as UTC)"


def _clip(values: pd.Series, lo: float, hi: float) -> tuple[pd.Series, int]:
    out = values.clip(lower=lo, upper=hi)
    return out, int(((values < lo) | (values > hi)).sum())


def _count(counts: dict[str, int], key: str, n: int | np.integer) -> None:
    if int(n):
        counts[key] = counts.get(key, 0) + int(n)


def _stamp(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S UTC")


# -- shared assembly ---------------------------------------------------------------------------


def _drop_rows(log: pd.DataFrame, dropped: dict[str, int], notes: list[str]) -> pd.DataFrame:
    """Drop rows without ids, without a time, or repeating (user, item, time); count each."""
    no_id = log["uid"].isna() | log["vid"].isna()
    _count(dropped, "missing user or item id", no_id.sum())
    log = log[~no_id]
    no_ts = log["ts"].isna()
    _count(dropped, "unparseable timestamp", no_ts.sum())
    log = log[~no_ts]
    key = ["uid", "vid", "ts"]
    dup = log.duplicated(key, keep="first")
    if dup.any():
        _count(dropped, "duplicate rows", dup.sum())
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


def _impressions(
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


def _users(impressions: pd.DataFrame, defaulted: dict[str, int]) -> pd.DataFrame:
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
    _count(defaulted, "users.signup_ts: first event time", len(users))
    _count(defaulted, "users.country, age_bucket, device: 'unknown'", len(users))
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


def _video_duration_s(
    log_ms: pd.Series, meta_ms: pd.Series, defaulted: dict[str, int]
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Per-video duration in seconds (see :func:`_video_durations`), clipped to the
    contract's range, with every defaulted or clipped video counted in ``defaulted``; also
    the unclipped milliseconds and their source, which the impressions fall back on."""
    video_ms, source = _video_durations(log_ms, meta_ms, DEFAULT_DURATION_S)
    _count(defaulted, "videos.duration_s: median of known durations", (source == "median").sum())
    _count(
        defaulted, f"videos.duration_s: default {DEFAULT_DURATION_S} s", (source == "default").sum()
    )
    duration, clipped = _clip(video_ms / 1000.0, MIN_DURATION_S, MAX_DURATION_S)
    _count(
        defaulted, f"videos.duration_s: clipped to [{MIN_DURATION_S}, {MAX_DURATION_S}]", clipped
    )
    return duration, video_ms, source


def _videos_frame(
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


def _check(contract: Contract, df: pd.DataFrame, known: dict[str, set[str]] | None) -> None:
    report = validate(contract, df, known)
    if not report.ok:  # an adapter bug, never the input's fault
        raise AdapterError(f"adapted frame breaks its contract: {report}")


def _finish(
    name: str,
    users: pd.DataFrame,
    videos: pd.DataFrame,
    impressions: pd.DataFrame,
    report: AdapterReport,
) -> AdaptedDataset:
    _check(USERS, users, None)
    _check(VIDEOS, videos, None)
    known = {"users": set(users["user_id"]), "videos": set(videos["video_id"])}
    _check(IMPRESSIONS, impressions, known)
    report.rows_kept = len(impressions)
    report.n_users = len(users)
    report.n_videos = len(videos)
    report.first_ts = _stamp(impressions["ts"].min())
    report.last_ts = _stamp(impressions["ts"].max())
    if sum(report.dropped.values()) != report.rows_read - report.rows_kept:
        raise AdapterError(f"adapter bug: dropped rows do not add up: {report.to_dict()}")
    return AdaptedDataset(name, users, videos, impressions, report)


# -- KuaiRand ---------------------------------------------------------------------------------


def _kuairand_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(set(path.glob("log_standard_*.csv")) | set(path.glob("*.tsv")))
        if not files:
            raise AdapterError(f"no log_standard_*.csv or *.tsv file in {path}")
        return files
    if path.is_file():
        return [path]
    raise AdapterError(f"{path} does not exist")


def _read_kuairand_catalog(path: Path) -> tuple[pd.DataFrame, list[str], int]:
    """The catalog's used fields, one row per video id; its unused columns; duplicates."""
    if not path.is_file():
        raise AdapterError(f"catalog {path} does not exist")
    sep = None if _is_parquet(path) else _sniff_sep(path)
    columns = _columns(path, sep)
    for c in _KR_CATALOG_REQUIRED:
        if c not in columns:
            raise _missing_column(c, "KuaiRand catalog field", path, columns)
    used = [c for c in columns if c in _KR_CATALOG_USED]
    raw = _read(path, sep, used, as_str=("video_id", "author_id", "tag", "upload_dt"))
    cat = pd.DataFrame(
        {
            "vid": _id_strings(raw["video_id"]),
            "author": _id_strings(raw["author_id"]),
            "upload": pd.to_datetime(
                raw["upload_dt"].astype(object), utc=True, errors="coerce", format="ISO8601"
            ).astype("datetime64[us, UTC]"),
            "duration_ms": _numeric(raw["video_duration"]).where(lambda x: x > 0),
            "tag": _id_strings(raw["tag"]).map(
                lambda v: None if v is None else (v.split(",")[0].strip() or None)
            ),
            "video_type": (
                raw["video_type"].astype(object).where(raw["video_type"].notna(), None)
                if "video_type" in raw
                else None
            ),
        }
    )
    cat = cat[cat["vid"].notna()]
    dup = cat["vid"].duplicated(keep="first")
    unused = [f"catalog.{c}" for c in columns if c not in _KR_CATALOG_USED]
    return cat[~dup].set_index("vid"), unused, int(dup.sum())


def _kr_caption(video_type: object, tag: object) -> str:
    kind = str(video_type).strip().lower() if isinstance(video_type, str) else ""
    words = [kind or "kuairand", "video"]
    if isinstance(tag, str):
        words += ["tag", tag]
    return " ".join(words)


def load_kuairand_catalog(path: Path) -> pd.DataFrame:
    """The VIDEOS frame of a KuaiRand ``video_features_basic_*.csv`` catalog on its own.

    upload_ts is the upload date at UTC midnight; rows without a parseable upload date are
    left out (the contract needs one). duration_s is ``video_duration`` / 1000, the median
    when missing, clipped to the contract's range. ``df.attrs["defaulted"]`` counts defaults.
    """
    cat, _unused, _dups = _read_kuairand_catalog(Path(path))
    defaulted: dict[str, int] = {}
    no_upload = cat["upload"].isna()
    _count(defaulted, "videos: dropped, no parseable upload_dt", no_upload.sum())
    cat = cat[~no_upload]
    if cat.empty:
        raise AdapterError(f"no catalog row of {path} has a video id and an upload date")
    dur_ms = cat["duration_ms"]
    _count(defaulted, "videos.duration_s: median of the catalog", dur_ms.isna().sum())
    median = float(dur_ms.median()) if dur_ms.notna().any() else DEFAULT_DURATION_S * 1000
    duration, clipped = _clip(dur_ms.fillna(median) / 1000.0, MIN_DURATION_S, MAX_DURATION_S)
    _count(
        defaulted, f"videos.duration_s: clipped to [{MIN_DURATION_S}, {MAX_DURATION_S}]", clipped
    )
    no_author = cat["author"].isna()
    _count(defaulted, "videos.creator_id: 'unknown' (no author_id)", no_author.sum())
    tags = cat["tag"]
    videos = _videos_frame(
        [f"kr-v{v}" for v in cat.index],
        [UNKNOWN if a is None else f"kr-c{a}" for a in cat["author"]],
        cat["upload"],
        duration,
        [_kr_caption(k, t) for k, t in zip(cat["video_type"], tags, strict=True)],
        [[] if t is None else [f"tag{t}"] for t in tags],
        [UNKNOWN if t is None else t for t in tags],
    )
    videos.attrs["defaulted"] = defaulted
    _check(VIDEOS, videos, None)
    return videos


def _read_kuairand_log(
    files: Sequence[Path],
) -> tuple[pd.DataFrame, int, list[str], set[str]]:
    """Concatenated log with normalised columns; rows read; unused columns; liked sources."""
    frames: list[pd.DataFrame] = []
    unknown: list[str] = []
    like_sources: set[str] = set()
    rows = 0
    for f in files:
        sep = None if _is_parquet(f) else _sniff_sep(f)
        columns = _columns(f, sep)
        for c in _KR_REQUIRED:
            if c not in columns:
                raise _missing_column(c, "KuaiRand log field", f, columns)
        if "is_like" not in columns and "label" not in columns:
            raise _missing_column("is_like", "KuaiRand like signal (or label)", f, columns)
        like_src = "is_like" if "is_like" in columns else "label"
        wanted = {*_KR_REQUIRED, like_src, "tab"}
        used = [c for c in columns if c in wanted]
        unknown += [c for c in columns if c not in used and c not in unknown]
        raw = _read(f, sep, used, as_str=("user_id", "video_id"))
        rows += len(raw)
        liked_raw = raw[like_src]
        like_sources.add(like_src)
        frame = pd.DataFrame(
            {
                "uid": _id_strings(raw["user_id"]),
                "vid": _id_strings(raw["video_id"]),
                "ts": _epoch_to_ts(raw["time_ms"], "ms"),
                "play_ms": _numeric(raw["play_time_ms"]),
                "dur_ms": _numeric(raw["duration_ms"]),
                "tab": _numeric(raw["tab"]) if "tab" in raw else np.nan,
                "has_tab": "tab" in raw,
                "like_raw": _numeric(liked_raw),
            }
        )
        for c in ("is_click", "long_view", "is_forward", "is_comment", "is_follow"):
            frame[c] = _numeric(raw[c])
        frames.append(frame)
    log = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return log, rows, unknown, like_sources


def load_kuairand(path: Path, catalog: Path | None = None) -> AdaptedDataset:
    """Adapt KuaiRand logs (official ``log_standard_*.csv`` or the 27K like/hate subset).

    ``path`` is a log file or a directory of ``log_standard_*.csv`` / ``*.tsv`` files (all
    read and concatenated). ``catalog`` is an optional ``video_features_basic_*.csv``: it
    gives authors, upload dates, durations and tags; log videos absent from it are kept with
    defaults and counted in ``report.missing_metadata``.
    """
    path = Path(path)
    files = _kuairand_files(path)
    log, rows_read, unknown, like_sources = _read_kuairand_log(files)
    notes: list[str] = []
    dropped: dict[str, int] = {}
    defaulted: dict[str, int] = {}
    log = _drop_rows(log, dropped, notes)
    if log.empty:
        raise AdapterError(f"no usable row left in {path} after cleaning ({dropped})")

    cat_unknown: list[str] = []
    if catalog is not None:
        cat, cat_unknown, cat_dups = _read_kuairand_catalog(Path(catalog))
        if cat_dups:
            notes.append(f"{cat_dups} duplicate catalog video ids; the first row was kept")
    else:
        cat = pd.DataFrame(
            columns=["author", "upload", "duration_ms", "tag", "video_type"],
            index=pd.Index([], dtype=object, name="vid"),
        )
    in_catalog = log["vid"].isin(cat.index)
    missing_metadata = int((~in_catalog).sum()) if catalog is not None else 0

    # -- videos: one row per video seen in the log
    by_video = log.groupby("vid", sort=True)
    first_ts = by_video["ts"].min()
    log_dur = log[log["dur_ms"] > 0].groupby("vid")["dur_ms"].median().reindex(first_ts.index)
    meta = cat.reindex(first_ts.index)
    v_duration, video_ms, video_src = _video_duration_s(
        log_dur, _numeric(meta["duration_ms"]), defaulted
    )

    upload = meta["upload"].astype("datetime64[us, UTC]")
    usable = upload.notna() & (upload <= first_ts)
    _count(
        defaulted,
        "videos.upload_ts: first impression (no catalog upload_dt)",
        upload.isna().sum(),
    )
    _count(
        defaulted,
        "videos.upload_ts: first impression (catalog upload_dt after it)",
        (upload.notna() & ~usable).sum(),
    )
    upload_ts = upload.where(usable, first_ts)
    author = meta["author"].astype(object)
    _count(defaulted, "videos.creator_id: 'unknown' (no catalog author)", author.isna().sum())
    tags = meta["tag"].astype(object).where(meta["tag"].notna(), None)
    kinds = meta["video_type"].astype(object)
    has_meta = pd.Series(first_ts.index.isin(cat.index), index=first_ts.index)
    _count(defaulted, "videos.caption: '' (no catalog row)", (~has_meta).sum())
    _count(defaulted, "videos.topic: 'unknown' (no catalog tag)", tags.isna().sum())
    videos = _videos_frame(
        [f"kr-v{v}" for v in first_ts.index],
        [UNKNOWN if pd.isna(a) else f"kr-c{a}" for a in author],
        upload_ts,
        v_duration,
        [_kr_caption(k, t) if m else "" for k, t, m in zip(kinds, tags, has_meta, strict=True)],
        [[] if t is None else [f"tag{t}"] for t in tags],
        [UNKNOWN if t is None else t for t in tags],
    )

    # -- impressions
    row_known = log["dur_ms"] > 0
    src = video_src.reindex(log["vid"]).to_numpy()
    v_ms = video_ms.reindex(log["vid"]).to_numpy(dtype=float)
    dur_ms = log["dur_ms"].where(row_known, pd.Series(v_ms, index=log.index))
    fallback = ~row_known
    _count(
        defaulted,
        "impressions.duration_s: catalog video_duration (duration_ms 0)",
        (fallback & (src == "meta")).sum(),
    )
    _count(
        defaulted,
        "impressions.duration_s: median of known durations (duration_ms 0)",
        (fallback & np.isin(src, ["median", "default"])).sum(),
    )
    duration_s, clipped = _clip(dur_ms / 1000.0, MIN_DURATION_S, MAX_DURATION_S)
    _count(
        defaulted,
        f"impressions.duration_s: clipped to [{MIN_DURATION_S}, {MAX_DURATION_S}]",
        clipped,
    )
    duration_known = row_known | (src == "meta") | (src == "log")
    play_ms = log["play_ms"]
    _count(defaulted, "impressions.watch_time_s: 0.0 (play_time_ms missing)", play_ms.isna().sum())
    watch, clipped = _clip(play_ms.fillna(0.0) / 1000.0, 0.0, MAX_WATCH_S)
    _count(defaulted, f"impressions.watch_time_s: clipped to [0, {MAX_WATCH_S:g}]", clipped)

    outcome_of = {
        "is_click": "skipped",
        "long_view": "completed",
        "is_forward": "shared",
        "is_comment": "commented",
        "is_follow": "followed",
        "like_raw": "liked",
    }
    flags: dict[str, pd.Series] = {}
    for col, outcome in outcome_of.items():
        source = "is_like or label" if col == "like_raw" else col
        missing = log[col].isna() & (~duration_known if col == "long_view" else True)
        _count(defaulted, f"impressions.{outcome}: False ({source} missing)", missing.sum())
        flags[col] = log[col].notna() & (log[col] != 0)
    # a missing is_click is no evidence of a skip: skipped only where is_click is a known 0
    skipped = log["is_click"] == 0
    liked = flags["like_raw"]
    completed = (play_ms.fillna(0.0) >= dur_ms).where(duration_known, flags["long_view"])
    _count(
        defaulted,
        "impressions.completed: long_view (duration unknown)",
        (~duration_known).sum(),
    )

    tab = log["tab"]
    has_tab = log["has_tab"].astype(bool)
    surface = pd.Series(DEFAULT_SURFACE, index=log.index, dtype=object)
    other = tab.notna()
    surface[other] = KUAIRAND_OTHER_TAB_SURFACE
    for value, name in KUAIRAND_TAB_SURFACE.items():
        surface[tab == value] = name
    _count(defaulted, f"impressions.surface: '{DEFAULT_SURFACE}' (no tab field)", (~has_tab).sum())
    _count(
        defaulted,
        f"impressions.surface: '{DEFAULT_SURFACE}' (tab missing)",
        (has_tab & tab.isna()).sum(),
    )
    if has_tab.any():
        counts = surface[has_tab & tab.notna()].value_counts()
        notes.append(
            "surface from tab: "
            + ", ".join(f"{s} {int(counts.get(s, 0)):,}" for s in SURFACES)
            + " (tab 1 -> spotlight, tab 0 -> discover, other tabs -> stories)"
        )

    log = log.assign(
        surface=surface,
        watch_time_s=watch,
        duration_s=duration_s,
        completed=completed.astype(bool),
        liked=liked.astype(bool),
        shared=flags["is_forward"],
        commented=flags["is_comment"],
        followed=flags["is_follow"],
        skipped=skipped,
    )
    user_ids = "kr-u" + log["uid"].astype(str)
    video_ids = "kr-v" + log["vid"].astype(str)
    impressions = _impressions(log, user_ids, video_ids, "kr-")
    users = _users(impressions, defaulted)

    subset = "label" in like_sources
    if like_sources == {"is_like"}:
        liked_signal = "observed (is_like)"
    elif like_sources == {"label"}:
        liked_signal = (
            "derived: label == 1 (every row of the like/hate subset is an explicit like (1) "
            "or hate (0), so liked is the label)"
        )
    else:
        liked_signal = "observed (is_like) where present, else derived: label == 1"
    signals = {
        "watch_time_s": "observed (play_time_ms / 1000)",
        "completed": "derived: play_time_ms >= duration_ms where the duration is known, "
        "else long_view",
        "liked": liked_signal,
        "shared": "observed (is_forward)",
        "commented": "observed (is_comment)",
        "followed": "observed (is_follow)",
        "skipped": "derived: is_click == 0 (not a valid play)"
        + (
            "; explicit like/hate rows only, so not an impression log's skip rate" if subset else ""
        ),
    }
    if subset:
        notes.append(
            "label-format log (the KuaiRand-27K like/hate subset): only rows with an explicit "
            "like or hate, 15-core filtered on positives; liked is the label, skips and "
            "popularity are not those of an impression log"
        )
    if not (videos["caption"] != "").any():
        notes.append("no video text: captions are empty, a caption embedding learns nothing")
    report = AdapterReport(
        dataset="kuairand",
        source=", ".join(str(f) for f in files) + (f" + catalog {catalog}" if catalog else ""),
        rows_read=rows_read,
        rows_kept=len(impressions),
        dropped=dropped,
        defaulted=defaulted,
        unknown_columns=unknown + cat_unknown,
        missing_metadata=missing_metadata,
        signals=signals,
        notes=notes,
    )
    return _finish("kuairand", users, videos, impressions, report)


# -- generic interactions ---------------------------------------------------------------------


def _tokens(value: object) -> list[str]:
    """Genre-like list text ("Action|Comedy", "a, b") -> ["action", "comedy"]."""
    if not isinstance(value, str):
        return []
    out: list[str] = []
    for part in re.split(r"[|,;]", value):
        token = part.strip().lower()
        if token and not (token.startswith("(") and token.endswith(")")) and token not in out:
            out.append(token)
    return out


def _item_text(
    values: Mapping[str, object], text_cols: Sequence[str]
) -> tuple[str, list[str], str]:
    """(caption, hashtags, topic) of one item from its text columns.

    List-like columns (genres, tags, ...: "Action|Comedy") give lower-cased hashtags, and
    their first token is the topic; every column's text is joined into the caption.
    """
    parts: list[str] = []
    tags: list[str] = []
    topic = UNKNOWN
    for c in text_cols:
        value = values.get(c)
        if not isinstance(value, str) or not value.strip():
            continue
        if c.lower() in _LIST_TEXT_COLS:
            toks = _tokens(value)
            if toks and topic == UNKNOWN:
                topic = toks[0]
            tags += [t for t in toks if t not in tags]
            parts.append(" ".join(toks))
        else:
            parts.append(" ".join(value.split()))
    return " ".join(p for p in parts if p), tags, topic


def _duration_to_ms(values: pd.Series, unit: Literal["s", "ms"]) -> pd.Series:
    num = _numeric(values)
    return (num * 1000.0 if unit == "s" else num).where(lambda x: x > 0)


@dataclass
class _Items:
    """The used fields of an items file, indexed by raw item id."""

    meta: pd.DataFrame  # index vid; text columns, optional dur_ms and creator
    text_cols: list[str]
    unknown: list[str]
    duplicates: int


def _read_items(
    path: Path,
    columns: Sequence[str],
    *,
    item_id_col: str,
    text_cols: Sequence[str],
    duration_col: str | None,
    duration_unit: Literal["s", "ms"],
    creator_col: str | None,
) -> _Items:
    """Read an items file; ``duration_col`` None looks for duration_s / duration_ms / duration."""
    dur_col, dur_unit = duration_col, duration_unit
    if duration_col is None:
        candidates: tuple[tuple[str, Literal["s", "ms"]], ...] = (
            ("duration_s", "s"),
            ("duration_ms", "ms"),
            ("duration", duration_unit),
        )
        dur_col, dur_unit = next(((c, u) for c, u in candidates if c in columns), (None, "s"))
    texts = [c for c in text_cols if c in columns and c != item_id_col]
    wanted = {item_id_col, *texts, dur_col, creator_col}
    used = [c for c in columns if c in wanted]
    raw = _read(path, None, used, as_str=[c for c in (item_id_col, creator_col) if c])
    meta = pd.DataFrame({"vid": _id_strings(raw[item_id_col])})
    for c in texts:
        meta[c] = raw[c].astype(object).where(raw[c].notna(), None)
    if dur_col:
        meta["dur_ms"] = _duration_to_ms(raw[dur_col], dur_unit)
    if creator_col:
        meta["creator"] = _id_strings(raw[creator_col])
    meta = meta[meta["vid"].notna()]
    dup = meta["vid"].duplicated(keep="first")
    return _Items(
        meta=meta[~dup].set_index("vid"),
        text_cols=texts,
        unknown=[f"items.{c}" for c in columns if c not in used],
        duplicates=int(dup.sum()),
    )


def _liked_and_signal(
    log: pd.DataFrame,
    label_col: str | None,
    rating_col: str | None,
    like_threshold: float,
    defaulted: dict[str, int],
) -> tuple[pd.Series | None, str]:
    """liked from a binary label, else from a rating threshold; None when neither exists."""
    if label_col:
        _count(
            defaulted,
            f"impressions.liked: False ({label_col} missing)",
            (~log["label_known"]).sum(),
        )
        return log["label"].astype(bool), f"observed ({label_col} truthy)"
    if rating_col:
        _count(
            defaulted,
            f"impressions.liked: False ({rating_col} missing)",
            log["rating"].isna().sum(),
        )
        liked = (log["rating"] >= like_threshold).fillna(False).astype(bool)
        return liked, f"derived: {rating_col} >= {like_threshold:g}"
    return None, "missing: False"


def _derived_signal(rules: list[str]) -> str:
    return ("derived: " + ", else ".join(rules)) if rules else "missing: False"


def load_interactions(
    path: Path,
    items: Path | None = None,
    *,
    user_col: str = "user_id",
    item_col: str = "item_id",
    ts_col: str = "timestamp",
    ts_unit: Literal["auto", "s", "ms", "iso"] = "auto",
    rating_col: str | None = None,
    like_threshold: float = 4.0,
    label_col: str | None = None,
    watch_col: str | None = None,
    watch_unit: Literal["s", "ms"] = "s",
    duration_col: str | None = None,
    duration_unit: Literal["s", "ms"] = "s",
    item_id_col: str = "item_id",
    text_cols: Sequence[str] = ("title", "genres", "tags"),
    creator_col: str | None = None,
    sep: str | None = None,
    id_prefix: str = "",
) -> AdaptedDataset:
    """Adapt a generic (user, item, timestamp[, rating/label, watch, duration]) log.

    ``path`` and ``items`` are CSV (separator sniffed from the header; ``sep`` forces the
    interactions file's) or Parquet (``.parquet`` / ``.pq``). Every named column must exist
    (``duration_col`` and ``creator_col`` in either file, the interactions file first);
    present but unused columns are reported in ``unknown_columns``. ``id_prefix`` is put
    before user, item and creator ids. ``docs/datasets.md`` says how each contract column
    is filled.
    """
    path = Path(path)
    if not path.is_file():
        raise AdapterError(f"{path} does not exist")
    columns = _columns(path, sep)
    named = {
        "user_col": user_col,
        "item_col": item_col,
        "ts_col": ts_col,
        "rating_col": rating_col,
        "label_col": label_col,
        "watch_col": watch_col,
    }
    for role, col in named.items():
        if col is not None and col not in columns:
            raise _missing_column(col, role, path, columns)
    items_path = Path(items) if items is not None else None
    item_columns: list[str] = []
    if items_path is not None:
        if not items_path.is_file():
            raise AdapterError(f"items file {items_path} does not exist")
        item_columns = _columns(items_path, None)  # `sep` is the interactions file's
        if item_id_col not in item_columns:
            raise _missing_column(item_id_col, "item_id_col", items_path, item_columns)
    for role, col in (("duration_col", duration_col), ("creator_col", creator_col)):
        if col is not None and col not in columns and col not in item_columns:
            where = path if items_path is None else items_path
            raise _missing_column(col, role, where, [*columns, *item_columns])
    log_dur_col = duration_col if duration_col in columns else None
    log_creator_col = creator_col if creator_col in columns else None

    # -- the log, cleaned
    used = [c for c in columns if c in (*named.values(), log_dur_col, log_creator_col)]
    raw = _read(path, sep, used, as_str=(user_col, item_col, ts_col))
    ts, ts_how = _parse_ts(raw[ts_col], ts_unit)
    log = pd.DataFrame(
        {"uid": _id_strings(raw[user_col]), "vid": _id_strings(raw[item_col]), "ts": ts}
    )
    if rating_col:
        log["rating"] = _numeric(raw[rating_col])
    if label_col:
        log["label"], log["label_known"] = _truthy(raw[label_col])
    if watch_col:
        watch_num = _numeric(raw[watch_col])
        log["watch_ms"] = watch_num * 1000.0 if watch_unit == "s" else watch_num
    if log_dur_col:
        log["dur_ms"] = _duration_to_ms(raw[log_dur_col], duration_unit)
    if log_creator_col:
        log["creator"] = _id_strings(raw[log_creator_col])
    dropped: dict[str, int] = {}
    defaulted: dict[str, int] = {}
    notes: list[str] = [f"timestamps read as {ts_how}"]
    log = _drop_rows(log, dropped, notes)
    if log.empty:
        raise AdapterError(f"no usable row left in {path} after cleaning ({dropped})")

    # -- item metadata
    meta = pd.DataFrame(index=pd.Index([], dtype=object, name="vid"))
    text_present: list[str] = []
    item_unknown: list[str] = []
    if items_path is not None:
        found = _read_items(
            items_path,
            item_columns,
            item_id_col=item_id_col,
            text_cols=text_cols,
            duration_col=None if log_dur_col else duration_col,
            duration_unit=duration_unit,
            creator_col=None if log_creator_col else creator_col,
        )
        meta, text_present, item_unknown = found.meta, found.text_cols, found.unknown
        if found.duplicates:
            notes.append(f"{found.duplicates} duplicate item ids in the items file; first kept")
    missing_metadata = int((~log["vid"].isin(meta.index)).sum()) if items_path else 0

    # -- videos: one row per item with interactions
    first_ts = log.groupby("vid", sort=True)["ts"].min()
    vids = first_ts.index
    m = meta.reindex(vids)
    nothing = pd.Series(np.nan, index=vids)
    log_dur = log.groupby("vid")["dur_ms"].median().reindex(vids) if log_dur_col else nothing
    meta_dur = m.get("dur_ms", nothing)
    v_duration, video_ms, video_src = _video_duration_s(log_dur, meta_dur, defaulted)
    _count(defaulted, "videos.upload_ts: first interaction", len(vids))
    if "creator" in m:
        creators = m["creator"]
    elif log_creator_col:
        creators = log.dropna(subset=["creator"]).groupby("vid")["creator"].first().reindex(vids)
    else:
        creators = pd.Series(None, index=vids, dtype=object)
    creators = creators.astype(object)
    _count(defaulted, "videos.creator_id: 'unknown'", creators.isna().sum())
    records = m[text_present].to_dict("records") if text_present else [{} for _ in vids]
    captions, hashtags, topics = zip(*(_item_text(r, text_present) for r in records), strict=True)
    _count(defaulted, "videos.caption: '' (no text)", sum(1 for c in captions if not c))
    _count(defaulted, "videos.topic: 'unknown'", sum(1 for t in topics if t == UNKNOWN))
    videos = _videos_frame(
        [f"{id_prefix}{v}" for v in vids],
        [UNKNOWN if pd.isna(c) else f"{id_prefix}{c}" for c in creators],
        first_ts,
        v_duration,
        captions,
        hashtags,
        topics,
    )

    # -- impressions: durations, then outcomes
    src = video_src.reindex(log["vid"]).to_numpy()
    v_ms = pd.Series(video_ms.reindex(log["vid"]).to_numpy(dtype=float), index=log.index)
    row_dur = log["dur_ms"] if log_dur_col else pd.Series(np.nan, index=log.index)
    fallback = row_dur.isna()
    if log_dur_col:  # the log has durations: rows without one take their item's
        _count(
            defaulted,
            "impressions.duration_s: items file duration (row has none)",
            (fallback & (src == "meta")).sum(),
        )
        _count(
            defaulted,
            "impressions.duration_s: the item's duration on other rows",
            (fallback & (src == "log")).sum(),
        )
    _count(
        defaulted,
        "impressions.duration_s: median of known durations",
        (fallback & (src == "median")).sum(),
    )
    _count(
        defaulted,
        f"impressions.duration_s: default {DEFAULT_DURATION_S} s",
        (fallback & (src == "default")).sum(),
    )
    duration_s, clipped = _clip(row_dur.fillna(v_ms) / 1000.0, MIN_DURATION_S, MAX_DURATION_S)
    _count(
        defaulted,
        f"impressions.duration_s: clipped to [{MIN_DURATION_S}, {MAX_DURATION_S}]",
        clipped,
    )
    duration_known = row_dur.notna() | pd.Series(np.isin(src, ["log", "meta"]), index=log.index)

    signals: dict[str, str] = {}
    false = pd.Series(False, index=log.index)
    liked_or_none, signals["liked"] = _liked_and_signal(
        log, label_col, rating_col, like_threshold, defaulted
    )
    liked = false if liked_or_none is None else liked_or_none
    if watch_col:
        watch_known = log["watch_ms"].notna()
        _count(
            defaulted, f"impressions.watch_time_s: 0.0 ({watch_col} missing)", (~watch_known).sum()
        )
        watch, clipped = _clip(log["watch_ms"].fillna(0.0) / 1000.0, 0.0, MAX_WATCH_S)
        _count(defaulted, f"impressions.watch_time_s: clipped to [0, {MAX_WATCH_S:g}]", clipped)
        signals["watch_time_s"] = f"observed ({watch_col}, {watch_unit})"
    else:
        watch_known = false
        watch = pd.Series(0.0, index=log.index)
        signals["watch_time_s"] = "missing: 0.0"

    # completed: watched to the end where watch time and duration are known, else = liked
    by_watch = watch_known & duration_known
    completed = (watch >= duration_s).where(by_watch, liked)
    rules = ["watch_time_s >= duration_s"] if by_watch.any() else []
    if (~by_watch).any() and liked_or_none is not None:
        rules.append("= liked" + (" where watch time or duration is unknown" if rules else ""))
    signals["completed"] = _derived_signal(rules)

    # skipped: a short play where the watch time is known, else a rating below the threshold
    low_rating = (log["rating"] < like_threshold).fillna(False) if rating_col else false
    skipped = (watch < np.minimum(SKIP_WATCH_S, duration_s)).where(watch_known, low_rating)
    rules = [f"watch_time_s < min({SKIP_WATCH_S:g} s, duration_s)"] if watch_known.any() else []
    if (~watch_known).any() and rating_col:
        rules.append(
            f"{rating_col} < {like_threshold:g}" + (" where no watch time" if rules else "")
        )
    signals["skipped"] = _derived_signal(rules)
    for col in ("shared", "commented", "followed"):
        signals[col] = "missing: False"
    _count(
        defaulted,
        f"impressions.surface: '{DEFAULT_SURFACE}' (no surface in the source)",
        len(log),
    )

    log = log.assign(
        surface=DEFAULT_SURFACE,
        watch_time_s=watch,
        duration_s=duration_s,
        completed=completed.astype(bool),
        liked=liked.astype(bool),
        shared=False,
        commented=False,
        followed=False,
        skipped=skipped.astype(bool),
    )
    user_ids = id_prefix + log["uid"].astype(str)
    video_ids = id_prefix + log["vid"].astype(str)
    impressions = _impressions(log, user_ids, video_ids, id_prefix)
    users = _users(impressions, defaulted)
    report = AdapterReport(
        dataset="interactions",
        source=str(path) + (f" + items {items_path}" if items_path is not None else ""),
        rows_read=len(raw),
        rows_kept=len(impressions),
        dropped=dropped,
        defaulted=defaulted,
        unknown_columns=[c for c in columns if c not in used] + item_unknown,
        missing_metadata=missing_metadata,
        signals={k: signals[k] for k in OUTCOMES},
        notes=notes,
    )
    return _finish("interactions", users, videos, impressions, report)


__all__ = [
    "AdaptedDataset",
    "AdapterError",
    "AdapterReport",
    "load_interactions",
    "load_kuairand",
    "load_kuairand_catalog",
]
