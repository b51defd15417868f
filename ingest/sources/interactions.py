"""Generic interaction logs as a source: any (user, item, timestamp) CSV or Parquet file,
optionally with ratings, binary labels, watch times, durations and an items file with text.

The column mapping is :class:`reelrank.settings.InteractionsOptions` (also the
``REELRANK_DATA__*`` variables and the ``reelrank run`` options). Raw ids are kept, with an
optional prefix; there is no surface, so every impression is ``spotlight`` (counted).
``docs/datasets.md`` says how each contract column is filled.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ingest.sources.base import LogSource, register
from ingest.sources.common import (
    DEFAULT_DURATION_S,
    DEFAULT_SURFACE,
    MAX_DURATION_S,
    MAX_WATCH_S,
    MIN_DURATION_S,
    OUTCOMES,
    SKIP_WATCH_S,
    UNKNOWN,
    AdaptedDataset,
    AdapterError,
    AdapterReport,
    clip,
    count,
    drop_rows,
    finish,
    id_strings,
    impressions_frame,
    missing_column,
    numeric,
    parse_ts,
    read_columns,
    read_frame,
    truthy,
    users_frame,
    video_duration_s,
    videos_frame,
)
from reelrank.settings import InteractionsOptions

_LIST_TEXT_COLS = frozenset(
    {"genres", "genre", "tags", "tag", "categories", "category", "keywords", "hashtags"}
)


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
    """Durations in ms; zero, negative or unparseable -> NaN (unknown)."""
    num = numeric(values)
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
    raw = read_frame(path, None, used, as_str=[c for c in (item_id_col, creator_col) if c])
    meta = pd.DataFrame({"vid": id_strings(raw[item_id_col])})
    for c in texts:
        meta[c] = raw[c].astype(object).where(raw[c].notna(), None)
    if dur_col:
        meta["dur_ms"] = _duration_to_ms(raw[dur_col], dur_unit)
    if creator_col:
        meta["creator"] = id_strings(raw[creator_col])
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
        count(
            defaulted,
            f"impressions.liked: False ({label_col} missing)",
            (~log["label_known"]).sum(),
        )
        return log["label"].astype(bool), f"observed ({label_col} truthy)"
    if rating_col:
        count(
            defaulted,
            f"impressions.liked: False ({rating_col} missing)",
            log["rating"].isna().sum(),
        )
        liked = (log["rating"] >= like_threshold).fillna(False).astype(bool)
        return liked, f"derived: {rating_col} >= {like_threshold:g}"
    return None, "missing: False"


def _derived_signal(rules: list[str]) -> str:
    """The signal of an outcome derived by ``rules`` (tried in order), or missing."""
    return ("derived: " + ", else ".join(rules)) if rules else "missing: False"


@dataclass
class _Layout:
    """The files and where the named columns are, checked against the headers before any
    row is read, so that a wrong name fails at once with the columns that do exist."""

    path: Path
    items: Path | None
    columns: list[str]  # the interactions file's
    item_columns: list[str]  # the items file's ([] without one)
    log_dur_col: str | None  # duration_col when the interactions file has it
    log_creator_col: str | None  # creator_col when the interactions file has it

    @property
    def source(self) -> str:
        return str(self.path) + (f" + items {self.items}" if self.items is not None else "")


def _log_columns(o: InteractionsOptions) -> dict[str, str | None]:
    """The interactions file's named columns by option name."""
    return {
        "user_col": o.user_col,
        "item_col": o.item_col,
        # an ordered log's time is its order: its timestamp column is not read
        "ts_col": None if o.order_col else o.ts_col,
        "order_col": o.order_col,
        "rating_col": o.rating_col,
        "label_col": o.label_col,
        "watch_col": o.watch_col,
    }


def _layout(o: InteractionsOptions) -> _Layout:
    """Check that the files exist and have every named column (``duration_col`` and
    ``creator_col`` in either file, the interactions file first)."""
    if o.path is None:
        raise AdapterError("an interactions log needs a path (REELRANK_DATA__PATH or --path)")
    path = Path(o.path)
    if not path.is_file():
        raise AdapterError(f"{path} does not exist")
    columns = read_columns(path, o.sep)
    for role, col in _log_columns(o).items():
        if col is not None and col not in columns and role == "ts_col":
            raise AdapterError(
                f"{path.name} has no timestamp column {col!r} and no order column: name its "
                "time with --ts-col, or its per-user order (sequence position) with "
                f"--order-col; its columns are: {', '.join(columns)}"
            )
        if col is not None and col not in columns:
            raise missing_column(col, role, path, columns)
    items_path = Path(o.items) if o.items is not None else None
    item_columns: list[str] = []
    if items_path is not None:
        if not items_path.is_file():
            raise AdapterError(f"items file {items_path} does not exist")
        item_columns = read_columns(items_path, None)  # `sep` is the interactions file's
        if o.item_id_col not in item_columns:
            raise missing_column(o.item_id_col, "item_id_col", items_path, item_columns)
    for role, col in (("duration_col", o.duration_col), ("creator_col", o.creator_col)):
        if col is not None and col not in columns and col not in item_columns:
            where = path if items_path is None else items_path
            raise missing_column(col, role, where, [*columns, *item_columns])
    return _Layout(
        path=path,
        items=items_path,
        columns=columns,
        item_columns=item_columns,
        log_dur_col=o.duration_col if o.duration_col in columns else None,
        log_creator_col=o.creator_col if o.creator_col in columns else None,
    )


# the last synthetic day of an ordered log (a fixed, documented date: the order is the data)
ORDER_LAST_DAY = "2020-01-31"


def _order_key(s: pd.Series) -> pd.Series:
    """An order column as numbers: sequence positions as they are; times (a sparse log's
    timestamp column named as its order) as epoch microseconds."""
    num = numeric(s) if not pd.api.types.is_datetime64_any_dtype(s.dtype) else None
    if num is not None and num.notna().mean() >= 0.5:
        return num
    ts, _ = parse_ts(s, "auto")
    key = pd.Series(np.nan, index=s.index, dtype=float)
    known = ts.notna()
    key[known] = ts[known].astype("int64").astype(float)
    return key


def synthetic_times(users: pd.Series, order: pd.Series, days: int) -> pd.Series:
    """Times for a log that has a per-user order but no time.

    A user's n events, sorted by ``order`` (ties in file order), go on ``days`` synthetic
    days ending :data:`ORDER_LAST_DAY`: the event with r events after it lands on day
    ``days - 1 - floor(r * days / n)``, so every user's last event is on the last day (the
    drift check's day) and their earlier ones spread evenly before it, as a leave-last-out
    split expects. Within a day events are one second apart from 12:00 UTC, in order. A
    missing order gives no time (the row is dropped as unparseable)."""
    frame = pd.DataFrame({"u": users.to_numpy(dtype=object), "o": order.to_numpy(dtype=float)})
    known = frame["o"].notna() & frame["u"].notna()
    ranked = frame[known].sort_values(["u", "o"], kind="stable")
    n = ranked.groupby("u", sort=False)["o"].transform("size").to_numpy(dtype=np.int64)
    rank = ranked.groupby("u", sort=False).cumcount().to_numpy(dtype=np.int64)
    after = n - 1 - rank
    day = days - 1 - (after * days) // n
    first_in_day = pd.Series(rank).groupby([ranked["u"].to_numpy(), day]).transform("min")
    last = pd.Timestamp(ORDER_LAST_DAY, tz="UTC") + pd.Timedelta(hours=12)
    stamps = (
        last
        - pd.to_timedelta(days - 1 - day, unit="D")
        + pd.to_timedelta(rank - first_in_day.to_numpy(), unit="s")
    )
    out = pd.Series(pd.NaT, index=users.index, dtype="datetime64[ns, UTC]")
    out.loc[ranked.index] = stamps
    return out


def _implicit_negatives(log: pd.DataFrame, per_row: int, seed: int = 0) -> pd.DataFrame:
    """Negative impressions for an implicit log: for each row, ``per_row`` videos drawn
    uniformly (seeded) from the log's videos its user never interacted with, without
    repeats within the row, at the row's time, with every outcome False. A user who
    interacted with (nearly) every video gets fewer: draws that keep hitting their videos
    after 20 rounds are given up."""
    vids = pd.Index(pd.unique(log["vid"].to_numpy(dtype=object)))
    users = pd.Index(pd.unique(log["uid"].to_numpy(dtype=object)))
    nv = len(vids)
    v_of = vids.get_indexer(log["vid"]).astype(np.int64)
    u_of = users.get_indexer(log["uid"]).astype(np.int64)
    seen = np.unique(u_of * nv + v_of)
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(len(log)), per_row)
    draw = rng.integers(nv, size=len(rows))
    bad = np.ones(len(rows), dtype=bool)
    for _ in range(20):
        bad = (
            np.isin(u_of[rows] * nv + draw, seen)
            | pd.DataFrame({"r": rows, "d": draw}).duplicated().to_numpy()
        )
        if not bad.any():
            break
        draw[bad] = rng.integers(nv, size=int(bad.sum()))
    rows, draw = rows[~bad], draw[~bad]
    neg = log.iloc[rows].copy()
    neg["vid"] = vids.to_numpy()[draw]
    duration = log.drop_duplicates("vid").set_index("vid")["duration_s"]
    neg["duration_s"] = duration.reindex(neg["vid"]).to_numpy()
    for col in OUTCOMES:
        neg[col] = 0.0 if col == "watch_time_s" else False
    return neg.reset_index(drop=True)


def _read_log(
    o: InteractionsOptions, layout: _Layout, notes: list[str]
) -> tuple[pd.DataFrame, int, list[str]]:
    """The interactions file as a log with raw ids ``uid``/``vid``, ``ts`` and the mapped
    outcome columns (not yet cleaned); the rows read; the columns used."""
    named = (*_log_columns(o).values(), layout.log_dur_col, layout.log_creator_col)
    used = [c for c in layout.columns if c in named]
    as_str = (o.user_col, o.item_col) if o.order_col else (o.user_col, o.item_col, o.ts_col)
    raw = read_frame(layout.path, o.sep, used, as_str=as_str)
    if o.order_col:
        ts = synthetic_times(
            id_strings(raw[o.user_col]), _order_key(raw[o.order_col]), o.order_days
        )
        notes.append(
            f"no timestamps: events placed on {o.order_days} synthetic days by {o.order_col} "
            f"(each user's events spread evenly over the days ending {ORDER_LAST_DAY}, the "
            "last on the last day; one second apart within a day)"
        )
    else:
        ts, ts_how = parse_ts(raw[o.ts_col], o.ts_unit)
        notes.append(f"timestamps read as {ts_how}")
    log = pd.DataFrame(
        {"uid": id_strings(raw[o.user_col]), "vid": id_strings(raw[o.item_col]), "ts": ts}
    )
    if o.rating_col:
        log["rating"] = numeric(raw[o.rating_col])
    if o.label_col:
        log["label"], log["label_known"] = truthy(raw[o.label_col])
    if o.watch_col:
        watch_num = numeric(raw[o.watch_col])
        log["watch_ms"] = watch_num * 1000.0 if o.watch_unit == "s" else watch_num
    if layout.log_dur_col:
        log["dur_ms"] = _duration_to_ms(raw[layout.log_dur_col], o.duration_unit)
    if layout.log_creator_col:
        log["creator"] = id_strings(raw[layout.log_creator_col])
    return log, len(raw), used


def _item_meta(
    o: InteractionsOptions, layout: _Layout, notes: list[str]
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The items file's metadata by raw item id (empty without one), its text columns
    present, and its unused columns. Durations and creators the log has are not read here."""
    if layout.items is None:
        return pd.DataFrame(index=pd.Index([], dtype=object, name="vid")), [], []
    found = _read_items(
        layout.items,
        layout.item_columns,
        item_id_col=o.item_id_col,
        text_cols=o.text_cols,
        duration_col=None if layout.log_dur_col else o.duration_col,
        duration_unit=o.duration_unit,
        creator_col=None if layout.log_creator_col else o.creator_col,
    )
    if found.duplicates:
        notes.append(f"{found.duplicates} duplicate item ids in the items file; first kept")
    return found.meta, found.text_cols, found.unknown


def _videos(
    log: pd.DataFrame,
    meta: pd.DataFrame,
    text_cols: list[str],
    layout: _Layout,
    id_prefix: str,
    defaulted: dict[str, int],
) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """One VIDEOS row per item with interactions, uploaded at its first one. Also each
    video's unclipped duration (ms) and its source, which impressions fall back on."""
    first_ts = log.groupby("vid", sort=True)["ts"].min()
    vids = first_ts.index
    m = meta.reindex(vids)
    nothing = pd.Series(np.nan, index=vids)
    has_dur = layout.log_dur_col is not None
    log_dur = log.groupby("vid")["dur_ms"].median().reindex(vids) if has_dur else nothing
    meta_dur = m.get("dur_ms", nothing)
    v_duration, video_ms, video_src = video_duration_s(log_dur, meta_dur, defaulted)
    count(defaulted, "videos.upload_ts: first interaction", len(vids))
    if "creator" in m:
        creators = m["creator"]
    elif layout.log_creator_col:
        creators = log.dropna(subset=["creator"]).groupby("vid")["creator"].first().reindex(vids)
    else:
        creators = pd.Series(None, index=vids, dtype=object)
    creators = creators.astype(object)
    count(defaulted, "videos.creator_id: 'unknown'", creators.isna().sum())
    records = m[text_cols].to_dict("records") if text_cols else [{} for _ in vids]
    captions, hashtags, topics = zip(*(_item_text(r, text_cols) for r in records), strict=True)
    count(defaulted, "videos.caption: '' (no text)", sum(1 for c in captions if not c))
    count(defaulted, "videos.topic: 'unknown'", sum(1 for t in topics if t == UNKNOWN))
    videos = videos_frame(
        [f"{id_prefix}{v}" for v in vids],
        [UNKNOWN if pd.isna(c) else f"{id_prefix}{c}" for c in creators],
        first_ts,
        v_duration,
        captions,
        hashtags,
        topics,
    )
    return videos, video_ms, video_src


def _durations(
    log: pd.DataFrame,
    video_ms: pd.Series,
    video_src: pd.Series,
    layout: _Layout,
    defaulted: dict[str, int],
) -> tuple[pd.Series, pd.Series]:
    """Each impression's duration: the row's own, else its item's (the log's other rows, the
    items file, the median, the default). Returns (seconds clipped, whether it is known)."""
    src = video_src.reindex(log["vid"]).to_numpy()
    v_ms = pd.Series(video_ms.reindex(log["vid"]).to_numpy(dtype=float), index=log.index)
    row_dur = log["dur_ms"] if layout.log_dur_col else pd.Series(np.nan, index=log.index)
    fallback = row_dur.isna()
    if layout.log_dur_col:  # the log has durations: rows without one take their item's
        count(
            defaulted,
            "impressions.duration_s: items file duration (row has none)",
            (fallback & (src == "meta")).sum(),
        )
        count(
            defaulted,
            "impressions.duration_s: the item's duration on other rows",
            (fallback & (src == "log")).sum(),
        )
    count(
        defaulted,
        "impressions.duration_s: median of known durations",
        (fallback & (src == "median")).sum(),
    )
    count(
        defaulted,
        f"impressions.duration_s: default {DEFAULT_DURATION_S} s",
        (fallback & (src == "default")).sum(),
    )
    duration_s, clipped = clip(row_dur.fillna(v_ms) / 1000.0, MIN_DURATION_S, MAX_DURATION_S)
    count(
        defaulted,
        f"impressions.duration_s: clipped to [{MIN_DURATION_S}, {MAX_DURATION_S}]",
        clipped,
    )
    duration_known = row_dur.notna() | pd.Series(np.isin(src, ["log", "meta"]), index=log.index)
    return duration_s, duration_known


def _watch(
    log: pd.DataFrame, o: InteractionsOptions, defaulted: dict[str, int]
) -> tuple[pd.Series, pd.Series, str]:
    """Watch time in seconds (0.0 where unknown), where it is known, and its signal."""
    if not o.watch_col:
        return pd.Series(0.0, index=log.index), pd.Series(False, index=log.index), "missing: 0.0"
    known = log["watch_ms"].notna()
    count(defaulted, f"impressions.watch_time_s: 0.0 ({o.watch_col} missing)", (~known).sum())
    watch, clipped = clip(log["watch_ms"].fillna(0.0) / 1000.0, 0.0, MAX_WATCH_S)
    count(defaulted, f"impressions.watch_time_s: clipped to [0, {MAX_WATCH_S:g}]", clipped)
    return watch, known, f"observed ({o.watch_col}, {o.watch_unit})"


def _outcomes(
    log: pd.DataFrame,
    duration_s: pd.Series,
    duration_known: pd.Series,
    o: InteractionsOptions,
    defaulted: dict[str, int],
) -> tuple[dict[str, pd.Series], dict[str, str]]:
    """The contract's outcome columns, and how each was obtained (``report.signals``)."""
    signals: dict[str, str] = {}
    false = pd.Series(False, index=log.index)
    liked_or_none, signals["liked"] = _liked_and_signal(
        log, o.label_col, o.rating_col, o.like_threshold, defaulted
    )
    liked = false if liked_or_none is None else liked_or_none
    watch, watch_known, signals["watch_time_s"] = _watch(log, o, defaulted)

    # completed: watched to the end where watch time and duration are known, else = liked
    by_watch = watch_known & duration_known
    completed = (watch >= duration_s).where(by_watch, liked)
    rules = ["watch_time_s >= duration_s"] if by_watch.any() else []
    if (~by_watch).any() and liked_or_none is not None:
        rules.append("= liked" + (" where watch time or duration is unknown" if rules else ""))
    signals["completed"] = _derived_signal(rules)

    # skipped: a short play where the watch time is known, else a rating below the threshold
    low_rating = (log["rating"] < o.like_threshold).fillna(False) if o.rating_col else false
    skipped = (watch < np.minimum(SKIP_WATCH_S, duration_s)).where(watch_known, low_rating)
    rules = [f"watch_time_s < min({SKIP_WATCH_S:g} s, duration_s)"] if watch_known.any() else []
    if (~watch_known).any() and o.rating_col:
        rules.append(
            f"{o.rating_col} < {o.like_threshold:g}" + (" where no watch time" if rules else "")
        )
    signals["skipped"] = _derived_signal(rules)
    for col in ("shared", "commented", "followed"):
        signals[col] = "missing: False"
    columns = {
        "watch_time_s": watch,
        "completed": completed.astype(bool),
        "liked": liked.astype(bool),
        "shared": false,
        "commented": false,
        "followed": false,
        "skipped": skipped.astype(bool),
    }
    return columns, {k: signals[k] for k in OUTCOMES}


def load_interactions(options: InteractionsOptions, *, id_prefix: str = "") -> AdaptedDataset:
    """Adapt a generic (user, item, timestamp[, rating/label, watch, duration]) log.

    ``options.path`` and ``options.items`` are CSV (separator sniffed from the header;
    ``options.sep`` forces the interactions file's) or Parquet (``.parquet`` / ``.pq``).
    Every named column must exist (``duration_col`` and ``creator_col`` in either file, the
    interactions file first); present but unused columns are reported in
    ``unknown_columns``. ``id_prefix`` is put before user, item and creator ids.
    """
    layout = _layout(options)
    notes: list[str] = []
    log, rows_read, used = _read_log(options, layout, notes)
    dropped: dict[str, int] = {}
    defaulted: dict[str, int] = {}
    log = drop_rows(log, dropped, notes)
    if log.empty:
        raise AdapterError(f"no usable row left in {layout.path} after cleaning ({dropped})")
    meta, text_cols, item_unknown = _item_meta(options, layout, notes)
    missing_metadata = int((~log["vid"].isin(meta.index)).sum()) if layout.items else 0

    videos, video_ms, video_src = _videos(log, meta, text_cols, layout, id_prefix, defaulted)
    duration_s, duration_known = _durations(log, video_ms, video_src, layout, defaulted)
    outcomes, signals = _outcomes(log, duration_s, duration_known, options, defaulted)
    count(
        defaulted,
        f"impressions.surface: '{DEFAULT_SURFACE}' (no surface in the source)",
        len(log),
    )
    log = log.assign(surface=DEFAULT_SURFACE, duration_s=duration_s, **outcomes)
    added = 0
    if not (options.label_col or options.rating_col or options.watch_col):
        # an implicit log: every row is an interaction, so a positive; the negatives that
        # training and evaluation need are drawn from what each user did not interact with
        log["completed"] = True
        signals["completed"] = "implicit: every row of the log is an interaction"
        negatives = _implicit_negatives(log, options.implicit_negatives)
        added = len(negatives)
        log = pd.concat([log, negatives], ignore_index=True)
        notes.append(
            f"implicit log (no rating, label or watch column): each of the {len(log) - added:,} "
            f"rows is a positive (completed); {added:,} negatives drawn, up to "
            f"{options.implicit_negatives} per row, uniformly from the videos its user never "
            "interacted with, at the row's time (seeded)"
        )
    user_ids = id_prefix + log["uid"].astype(str)
    video_ids = id_prefix + log["vid"].astype(str)
    impressions = impressions_frame(log, user_ids, video_ids, id_prefix)
    users = users_frame(impressions, defaulted)
    report = AdapterReport(
        dataset="interactions",
        source=layout.source,
        rows_read=rows_read,
        rows_kept=len(impressions) - added,
        rows_added=added,
        dropped=dropped,
        defaulted=defaulted,
        unknown_columns=[c for c in layout.columns if c not in used] + item_unknown,
        missing_metadata=missing_metadata,
        signals=signals,
        notes=notes,
    )
    return finish("interactions", users, videos, impressions, report)


class InteractionsSource(LogSource[InteractionsOptions]):
    """Any interactions file, mapped by :class:`InteractionsOptions`."""

    name = "interactions"
    options_type = InteractionsOptions

    def load(self, options: InteractionsOptions) -> AdaptedDataset:
        return load_interactions(options)


register(InteractionsSource())
