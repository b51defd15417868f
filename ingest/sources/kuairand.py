"""KuaiRand logs as a source: the official ``log_standard_*.csv`` format, or the tab-separated
KuaiRand-27K like/hate subset, optionally joined with the official
``video_features_basic_*.csv`` catalog (:func:`load_kuairand_catalog` reads it alone).

Ids become ``kr-u<user>``, ``kr-v<video>``, ``kr-c<author>``. The contract's ``surface``
comes from KuaiRand's ``tab`` field where present (tab 1, the main single-column feed ->
``spotlight``; tab 0, the two-column page -> ``discover``; every other sub-scenario ->
``stories``), otherwise it is ``spotlight`` everywhere (counted). ``docs/datasets.md`` has the
full mapping.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ingest.schema import SURFACES, VIDEOS
from ingest.sources.base import LogSource, register
from ingest.sources.common import (
    DEFAULT_DURATION_S,
    DEFAULT_SURFACE,
    MAX_DURATION_S,
    MAX_WATCH_S,
    MIN_DURATION_S,
    UNKNOWN,
    AdaptedDataset,
    AdapterError,
    AdapterReport,
    check_contract,
    clip,
    count,
    drop_rows,
    epoch_to_ts,
    finish,
    id_strings,
    impressions_frame,
    is_parquet,
    missing_column,
    numeric,
    read_columns,
    read_frame,
    sniff_sep,
    users_frame,
    video_duration_s,
    videos_frame,
)
from reelrank.settings import KuaiRandOptions

# KuaiRand's ``tab``: the maintainers say the most frequent value is the app's main
# single-column (full-screen) feed and the second the main two-column page; the other 13 are
# sub-scenarios (web, mini programs, ...). Tab 1 is the most frequent and tab 0 the second in
# the official logs, so: tab 1 -> spotlight, tab 0 -> discover, any other tab -> stories.
KUAIRAND_TAB_SURFACE: dict[int, str] = {1: "spotlight", 0: "discover"}
KUAIRAND_OTHER_TAB_SURFACE = "stories"

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
    sep = None if is_parquet(path) else sniff_sep(path)
    columns = read_columns(path, sep)
    for c in _KR_CATALOG_REQUIRED:
        if c not in columns:
            raise missing_column(c, "KuaiRand catalog field", path, columns)
    used = [c for c in columns if c in _KR_CATALOG_USED]
    raw = read_frame(path, sep, used, as_str=("video_id", "author_id", "tag", "upload_dt"))
    cat = pd.DataFrame(
        {
            "vid": id_strings(raw["video_id"]),
            "author": id_strings(raw["author_id"]),
            "upload": pd.to_datetime(
                raw["upload_dt"].astype(object), utc=True, errors="coerce", format="ISO8601"
            ).astype("datetime64[us, UTC]"),
            "duration_ms": numeric(raw["video_duration"]).where(lambda x: x > 0),
            "tag": id_strings(raw["tag"]).map(
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
    count(defaulted, "videos: dropped, no parseable upload_dt", no_upload.sum())
    cat = cat[~no_upload]
    if cat.empty:
        raise AdapterError(f"no catalog row of {path} has a video id and an upload date")
    dur_ms = cat["duration_ms"]
    count(defaulted, "videos.duration_s: median of the catalog", dur_ms.isna().sum())
    median = float(dur_ms.median()) if dur_ms.notna().any() else DEFAULT_DURATION_S * 1000
    duration, clipped = clip(dur_ms.fillna(median) / 1000.0, MIN_DURATION_S, MAX_DURATION_S)
    count(defaulted, f"videos.duration_s: clipped to [{MIN_DURATION_S}, {MAX_DURATION_S}]", clipped)
    no_author = cat["author"].isna()
    count(defaulted, "videos.creator_id: 'unknown' (no author_id)", no_author.sum())
    tags = cat["tag"]
    videos = videos_frame(
        [f"kr-v{v}" for v in cat.index],
        [UNKNOWN if a is None else f"kr-c{a}" for a in cat["author"]],
        cat["upload"],
        duration,
        [_kr_caption(k, t) for k, t in zip(cat["video_type"], tags, strict=True)],
        [[] if t is None else [f"tag{t}"] for t in tags],
        [UNKNOWN if t is None else t for t in tags],
    )
    videos.attrs["defaulted"] = defaulted
    check_contract(VIDEOS, videos, None)
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
        sep = None if is_parquet(f) else sniff_sep(f)
        columns = read_columns(f, sep)
        for c in _KR_REQUIRED:
            if c not in columns:
                raise missing_column(c, "KuaiRand log field", f, columns)
        if "is_like" not in columns and "label" not in columns:
            raise missing_column("is_like", "KuaiRand like signal (or label)", f, columns)
        like_src = "is_like" if "is_like" in columns else "label"
        wanted = {*_KR_REQUIRED, like_src, "tab"}
        used = [c for c in columns if c in wanted]
        unknown += [c for c in columns if c not in used and c not in unknown]
        raw = read_frame(f, sep, used, as_str=("user_id", "video_id"))
        rows += len(raw)
        liked_raw = raw[like_src]
        like_sources.add(like_src)
        frame = pd.DataFrame(
            {
                "uid": id_strings(raw["user_id"]),
                "vid": id_strings(raw["video_id"]),
                "ts": epoch_to_ts(raw["time_ms"], "ms"),
                "play_ms": numeric(raw["play_time_ms"]),
                "dur_ms": numeric(raw["duration_ms"]),
                "tab": numeric(raw["tab"]) if "tab" in raw else np.nan,
                "has_tab": "tab" in raw,
                "like_raw": numeric(liked_raw),
            }
        )
        for c in ("is_click", "long_view", "is_forward", "is_comment", "is_follow"):
            frame[c] = numeric(raw[c])
        frames.append(frame)
    log = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return log, rows, unknown, like_sources


def _catalog(catalog: Path | None, notes: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The catalog's rows by raw video id (an empty frame without a catalog); its unused
    columns. Duplicate video ids keep their first row, noted."""
    if catalog is None:
        empty = pd.DataFrame(
            columns=["author", "upload", "duration_ms", "tag", "video_type"],
            index=pd.Index([], dtype=object, name="vid"),
        )
        return empty, []
    cat, cat_unknown, cat_dups = _read_kuairand_catalog(Path(catalog))
    if cat_dups:
        notes.append(f"{cat_dups} duplicate catalog video ids; the first row was kept")
    return cat, cat_unknown


def _videos(
    log: pd.DataFrame, cat: pd.DataFrame, defaulted: dict[str, int]
) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """One VIDEOS row per video seen in the log: the log's duration, else the catalog's; the
    catalog's upload date (unless after the first impression), author, type and tag. Also
    each video's unclipped duration (ms) and its source, which impressions fall back on."""
    first_ts = log.groupby("vid", sort=True)["ts"].min()
    log_dur = log[log["dur_ms"] > 0].groupby("vid")["dur_ms"].median().reindex(first_ts.index)
    meta = cat.reindex(first_ts.index)
    v_duration, video_ms, video_src = video_duration_s(
        log_dur, numeric(meta["duration_ms"]), defaulted
    )

    upload = meta["upload"].astype("datetime64[us, UTC]")
    usable = upload.notna() & (upload <= first_ts)
    count(
        defaulted,
        "videos.upload_ts: first impression (no catalog upload_dt)",
        upload.isna().sum(),
    )
    count(
        defaulted,
        "videos.upload_ts: first impression (catalog upload_dt after it)",
        (upload.notna() & ~usable).sum(),
    )
    upload_ts = upload.where(usable, first_ts)
    author = meta["author"].astype(object)
    count(defaulted, "videos.creator_id: 'unknown' (no catalog author)", author.isna().sum())
    tags = meta["tag"].astype(object).where(meta["tag"].notna(), None)
    kinds = meta["video_type"].astype(object)
    has_meta = pd.Series(first_ts.index.isin(cat.index), index=first_ts.index)
    count(defaulted, "videos.caption: '' (no catalog row)", (~has_meta).sum())
    count(defaulted, "videos.topic: 'unknown' (no catalog tag)", tags.isna().sum())
    videos = videos_frame(
        [f"kr-v{v}" for v in first_ts.index],
        [UNKNOWN if pd.isna(a) else f"kr-c{a}" for a in author],
        upload_ts,
        v_duration,
        [_kr_caption(k, t) if m else "" for k, t, m in zip(kinds, tags, has_meta, strict=True)],
        [[] if t is None else [f"tag{t}"] for t in tags],
        [UNKNOWN if t is None else t for t in tags],
    )
    return videos, video_ms, video_src


def _durations(
    log: pd.DataFrame, video_ms: pd.Series, video_src: pd.Series, defaulted: dict[str, int]
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Each impression's duration: its own duration_ms, else its video's (the catalog's, or
    the median). Returns (ms, seconds clipped to the contract, whether it is known)."""
    row_known = log["dur_ms"] > 0
    src = video_src.reindex(log["vid"]).to_numpy()
    v_ms = video_ms.reindex(log["vid"]).to_numpy(dtype=float)
    dur_ms = log["dur_ms"].where(row_known, pd.Series(v_ms, index=log.index))
    fallback = ~row_known
    count(
        defaulted,
        "impressions.duration_s: catalog video_duration (duration_ms 0)",
        (fallback & (src == "meta")).sum(),
    )
    count(
        defaulted,
        "impressions.duration_s: median of known durations (duration_ms 0)",
        (fallback & np.isin(src, ["median", "default"])).sum(),
    )
    duration_s, clipped = clip(dur_ms / 1000.0, MIN_DURATION_S, MAX_DURATION_S)
    count(
        defaulted,
        f"impressions.duration_s: clipped to [{MIN_DURATION_S}, {MAX_DURATION_S}]",
        clipped,
    )
    duration_known = row_known | (src == "meta") | (src == "log")
    return dur_ms, duration_s, duration_known


def _outcomes(
    log: pd.DataFrame, dur_ms: pd.Series, duration_known: pd.Series, defaulted: dict[str, int]
) -> dict[str, pd.Series]:
    """The contract's outcome columns from KuaiRand's flags and play time."""
    play_ms = log["play_ms"]
    count(defaulted, "impressions.watch_time_s: 0.0 (play_time_ms missing)", play_ms.isna().sum())
    watch, clipped = clip(play_ms.fillna(0.0) / 1000.0, 0.0, MAX_WATCH_S)
    count(defaulted, f"impressions.watch_time_s: clipped to [0, {MAX_WATCH_S:g}]", clipped)

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
        count(defaulted, f"impressions.{outcome}: False ({source} missing)", missing.sum())
        flags[col] = log[col].notna() & (log[col] != 0)
    # a missing is_click is no evidence of a skip: skipped only where is_click is a known 0
    skipped = log["is_click"] == 0
    completed = (play_ms.fillna(0.0) >= dur_ms).where(duration_known, flags["long_view"])
    count(
        defaulted,
        "impressions.completed: long_view (duration unknown)",
        (~duration_known).sum(),
    )
    return {
        "watch_time_s": watch,
        "completed": completed.astype(bool),
        "liked": flags["like_raw"].astype(bool),
        "shared": flags["is_forward"],
        "commented": flags["is_comment"],
        "followed": flags["is_follow"],
        "skipped": skipped,
    }


def _surfaces(log: pd.DataFrame, defaulted: dict[str, int], notes: list[str]) -> pd.Series:
    """The contract's surface of each impression from its ``tab`` (see the module doc)."""
    tab = log["tab"]
    has_tab = log["has_tab"].astype(bool)
    surface = pd.Series(DEFAULT_SURFACE, index=log.index, dtype=object)
    other = tab.notna()
    surface[other] = KUAIRAND_OTHER_TAB_SURFACE
    for value, name in KUAIRAND_TAB_SURFACE.items():
        surface[tab == value] = name
    count(defaulted, f"impressions.surface: '{DEFAULT_SURFACE}' (no tab field)", (~has_tab).sum())
    count(
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
    return surface


def _signals(like_sources: set[str], notes: list[str]) -> dict[str, str]:
    """How each outcome was obtained; the like/hate subset's ``label`` changes what liked and
    skipped mean, which a note says."""
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
    return signals


def load_kuairand(options: KuaiRandOptions) -> AdaptedDataset:
    """Adapt KuaiRand logs (official ``log_standard_*.csv`` or the 27K like/hate subset).

    ``options.path`` is a log file or a directory of ``log_standard_*.csv`` / ``*.tsv`` files
    (all read and concatenated). ``options.items`` is an optional
    ``video_features_basic_*.csv`` catalog: it gives authors, upload dates, durations and
    tags; log videos absent from it are kept with defaults and counted in
    ``report.missing_metadata``.
    """
    if options.path is None:
        raise AdapterError("a KuaiRand log needs a path (REELRANK_DATA__PATH or --path)")
    path, catalog = Path(options.path), options.items
    files = _kuairand_files(path)
    log, rows_read, unknown, like_sources = _read_kuairand_log(files)
    notes: list[str] = []
    dropped: dict[str, int] = {}
    defaulted: dict[str, int] = {}
    log = drop_rows(log, dropped, notes)
    if log.empty:
        raise AdapterError(f"no usable row left in {path} after cleaning ({dropped})")
    cat, cat_unknown = _catalog(catalog, notes)
    missing_metadata = int((~log["vid"].isin(cat.index)).sum()) if catalog is not None else 0

    videos, video_ms, video_src = _videos(log, cat, defaulted)
    dur_ms, duration_s, duration_known = _durations(log, video_ms, video_src, defaulted)
    outcomes = _outcomes(log, dur_ms, duration_known, defaulted)
    log = log.assign(surface=_surfaces(log, defaulted, notes), duration_s=duration_s, **outcomes)
    user_ids = "kr-u" + log["uid"].astype(str)
    video_ids = "kr-v" + log["vid"].astype(str)
    impressions = impressions_frame(log, user_ids, video_ids, "kr-")
    users = users_frame(impressions, defaulted)

    signals = _signals(like_sources, notes)
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
    return finish("kuairand", users, videos, impressions, report)


class KuaiRandSource(LogSource[KuaiRandOptions]):
    """KuaiRand logs, with the catalog as ``items``."""

    name = "kuairand"
    options_type = KuaiRandOptions

    def load(self, options: KuaiRandOptions) -> AdaptedDataset:
        return load_kuairand(options)


register(KuaiRandSource())
