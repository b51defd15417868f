"""The whole serving pipeline, offline: retrieve -> rank -> top 10 on a holdout day.

The serving class itself does the work (:class:`serving.pipeline.Recommender`, through its
public methods only), fed with features as of the holdout's start (point-in-time), so what
is measured is what would serve. The figures reach the gate and the model card as an input
(training never imports serving).

Two judgements, per candidate source (the two-tower, popularity, recent popularity and, on
simulated data, the oracle's own top list):

- logged: a video's gain is the value the user got from it that day (completed + liked +
  shared); videos the user was never shown count as zero, so this mostly measures overlap
  with the logging policy;
- oracle-judged (simulated data): every video is judged by the simulator's hidden utility
  for the user, the counterfactual a real log cannot give; also with a tighter budget where
  only each source's best :data:`SMALL_BUDGET` reach the ranker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from feature_repo.columns import (
    SEQUENCE_COLUMNS,
    USER_CREATOR_COLUMNS,
    USER_STATE_REFS,
    feature_refs,
)
from features.batch import FEATURE_DEFAULTS
from features.pit import value_label
from ingest.lake import read_table
from ingest.simulator import world_for
from models.candidates import available_rows, popularity_order, positives
from models.metrics import coverage, creator_diversity, list_ndcg
from models.ranker import Ranker
from models.retriever import Retriever
from reelrank.settings import Settings
from serving.pipeline import ITEM_FEATURES, USER_FEATURES, ItemTable, Recommender, UserState

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)
SMALL_BUDGET = 100  # a second, tighter candidate budget for the oracle-judged evaluation


def _list_or_empty(value: object) -> list:
    return list(value) if isinstance(value, list | np.ndarray) else []


def user_states_at(
    store: FeatureStore, users: list[str], start: pd.Timestamp
) -> dict[str, UserState]:
    """Each user's serving state (:class:`UserState`) as of ``start``, defaults filled in."""
    ent = pd.DataFrame({"user_id": users, "event_timestamp": start})
    uf = store.get_historical_features(entity_df=ent, features=list(USER_STATE_REFS)).to_df()
    uf = uf.drop_duplicates("user_id").set_index("user_id").reindex(users)
    states: dict[str, UserState] = {}
    for uid, row in uf.iterrows():
        feats = np.array(
            [FEATURE_DEFAULTS[c] if pd.isna(row[c]) else row[c] for c in USER_FEATURES],
            np.float32,
        )
        uc = [_list_or_empty(row[c]) for c in USER_CREATOR_COLUMNS]
        ids, acts, ts = (_list_or_empty(row[c]) for c in SEQUENCE_COLUMNS)
        states[uid] = UserState(
            feats,
            _list_or_empty(row["hist_video_ids"]),
            uc[0],
            uc[1],
            uc[2],
            (list(ids), [int(a) for a in acts], [float(t) for t in ts]),
        )
    return states


def item_table_at(
    settings: Settings, store: FeatureStore, rows: np.ndarray, retriever: Retriever, day: date
) -> ItemTable:
    """The serving item table of the catalog ``rows`` available on ``day``, with features as
    of the day's start."""
    cat = retriever.catalog
    videos = read_table(settings.lake_dir, "videos", end=day)[["video_id", "creator_id"]]
    videos = videos[videos["video_id"].isin(set(cat.video_ids[rows]))]
    ent = videos.assign(event_timestamp=pd.Timestamp(day, tz="UTC"))
    itf = store.get_historical_features(entity_df=ent, features=feature_refs(ITEM_FEATURES))
    itf = itf.to_df().drop_duplicates("video_id").set_index("video_id")
    itf = itf.reindex(videos["video_id"])
    return ItemTable.from_columns(
        videos["video_id"].tolist(),
        {c: [None if pd.isna(v) else v for v in itf[c]] for c in ITEM_FEATURES},
        videos["creator_id"].tolist(),
    )


@dataclass
class _Tally:
    """Per-source NDCG lists and top-10 lists, folded into the flat result at the end."""

    logged: dict[str, list[float]] = field(default_factory=dict)
    judged: dict[str, list[float]] = field(default_factory=dict)
    tops: dict[str, list[list[str]]] = field(default_factory=dict)

    def result(self, items: ItemTable) -> dict[str, float]:
        out = {name: float(np.nanmean(v)) for name, v in self.logged.items()}
        out.update({f"oracle_judged_{k}": float(np.nanmean(v)) for k, v in self.judged.items()})
        # what the top-10 lists look like as a whole: how much of the catalog they reach,
        # and how many different creators fill each list
        creator_of = dict(zip(items.video_ids.tolist(), items.creator_ids.tolist(), strict=True))
        for name, lists in self.tops.items():
            out[f"coverage_{name}"] = coverage(lists, len(items.video_ids))
            out[f"creator_diversity_{name}"] = creator_diversity(
                [[creator_of[v] for v in lst] for lst in lists]
            )
        return out


def _static_sources(
    settings: Settings, retriever: Retriever, available: np.ndarray, holdout: date
) -> dict[str, list[str]]:
    """The popularity lists over the training window and over its last day."""
    pos = positives(settings, holdout - timedelta(days=settings.training.train_days), holdout)
    pos = pos[pos["day"] < pd.Timestamp(holdout)]
    last = pos[pos["day"] == pos["day"].max()]
    n, cat = settings.serving.n_candidates, retriever.catalog
    return {
        "popularity": popularity_order(cat, pos, available, n).tolist(),
        "recent_popularity": popularity_order(cat, last, available, n).tolist(),
    }


def pipeline_ndcg(
    settings: Settings,
    store: FeatureStore,
    ranker: Ranker,
    retriever: Retriever,
    holdout: date,
    max_users: int = 2000,
) -> dict[str, float]:
    """NDCG@10 of retrieve -> rank -> top 10 on the holdout day, per candidate source (see
    the module's docstring), with each source's catalog coverage and creator diversity."""
    imp = read_table(settings.lake_dir, "impressions", start=holdout, end=holdout)
    imp = imp.assign(value=value_label(imp))
    imp = imp[imp["value"] > 0]
    gains_by_user = imp.groupby(["user_id", "video_id"])["value"].max()
    users = sorted(imp["user_id"].unique())[:max_users]
    states = user_states_at(store, users, pd.Timestamp(holdout, tz="UTC"))
    avail = available_rows(retriever.catalog, holdout, settings, end_of_day=True)
    items = item_table_at(settings, store, avail, retriever, holdout)
    n = settings.serving.n_candidates
    rec = Recommender(ranker, items, lambda uid: states.get(uid), n, retriever)
    static = _static_sources(settings, retriever, avail, holdout)
    world = world_for(settings.sim) if settings.dataset == "simulator" else None
    tally = _Tally()
    for uid in users:
        state = states[uid]
        user_vec = rec.user_vector(state)
        sources = {"two_tower": rec.candidates(state, user_vec)[0], **static}
        utility: dict[str, float] = {}
        if world is not None:
            top, util = world.oracle_top(uid, items.video_ids, holdout, n)
            sources["oracle"] = top.tolist()
            # graded by hidden utility, shifted so the user's worst available video is 0
            utility = dict(zip(items.video_ids.tolist(), (util - util.min()).tolist(), strict=True))
        gains = gains_by_user.loc[uid].to_dict()
        for name, cands in sources.items():
            _judge(rec, state, user_vec, name, cands, gains, utility, tally)
    return tally.result(items)


def _judge(
    rec: Recommender,
    state: UserState,
    user_vec: object,
    name: str,
    candidates: list[str],
    gains: dict[str, float],
    utility: dict[str, float],
    tally: _Tally,
) -> None:
    """Rank one source's candidates for one user and record how good its top 10 is."""
    items = rec.items
    cands = [v for v in candidates if v in items.index]
    rows = np.fromiter((items.index[v] for v in cands), np.int64, len(cands))
    s = rec.score_rows(state, rows, rec.retrieval_features(state, user_vec, cands))
    top10 = [cands[i] for i in np.argsort(-s, kind="stable")[:10]]
    tally.logged.setdefault(name, []).append(list_ndcg(top10, gains))
    tally.tops.setdefault(name, []).append(top10)
    if utility:
        tally.judged.setdefault(name, []).append(list_ndcg(top10, utility, exponential=False))
        # a tighter budget: only each source's own best SMALL_BUDGET reach the ranker
        small = [cands[i] for i in np.argsort(-s[:SMALL_BUDGET], kind="stable")[:10]]
        tally.judged.setdefault(f"{name}_{SMALL_BUDGET}", []).append(
            list_ndcg(small, utility, exponential=False)
        )


def evaluate_version(settings: Settings, version: str, holdout: date) -> dict[str, float]:
    """:func:`pipeline_ndcg` of registered ranker ``version`` with the retrieval champion
    (caught up with the catalog through ``holdout``); empty without a retrieval champion."""
    from features.store import feature_store
    from models.champion import catch_up, champion_retriever
    from models.ranker import load_ranker

    _, retriever = champion_retriever(settings)
    if retriever is None:
        return {}
    catch_up(retriever, settings, holdout)
    ranker = load_ranker(settings, version=version)
    assert ranker is not None  # a version, not an alias: it exists or load_ranker raised
    return pipeline_ndcg(settings, feature_store(settings), ranker, retriever, holdout)
