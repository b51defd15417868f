"""The recommender's retrieval path on integer rows, checked against the id-based methods.

A small trained two-tower model (no server): the candidates, retrieval features and feed
that :meth:`Recommender.recommend` computes over catalog and item-table rows must be what
the retriever's id-based methods give for the same videos, with an item table whose order
differs from the catalog's and that lacks some catalog videos."""

from __future__ import annotations

import numpy as np
import pytest

from features.cross import MODEL_FEATURES
from models.ranker import XGBoostRanker
from serving.pipeline import ItemTable, Recommender, RerankConfig
from tests.unit.test_serving_path import _booster, make_items, user
from tests.unit.test_two_tower import _trained_retriever, frames

pytestmark = pytest.mark.unit
COL = {c: i for i, c in enumerate(MODEL_FEATURES)}


@pytest.fixture(scope="module")
def retriever():
    return _trained_retriever()


def _items_for(ids: list[str]) -> ItemTable:
    """Features for ``ids`` (reversed catalog order), from the serving tests' table."""
    base = make_items()
    n = len(ids)
    table = ItemTable(
        np.asarray(ids, dtype=object),
        base.features[np.arange(n) % len(base.features)].copy(),
        np.zeros(n, dtype=bool),
        np.array([f"c{i % 5}" for i in range(n)], dtype=object),
    )
    return table


def _recommender(retriever, items: ItemTable) -> Recommender:
    users = {"fan": user(2)}
    users["fan"].history = [str(v) for v in retriever.catalog.video_ids[:3]]
    cfg = RerankConfig(diversity=0.0, exploration_position=None)
    model = XGBoostRanker(_booster(0, "x_retrieval_score"), "ranker", "1")
    return Recommender(model, items, users.get, n_candidates=25, retriever=retriever, rerank=cfg)


def test_rows_path_matches_the_id_based_retriever(retriever):
    catalog_ids = [str(v) for v in retriever.catalog.video_ids]
    in_items = catalog_ids[::-1][:-7]  # reversed, and 7 catalog videos have no item row
    items = _items_for(in_items)
    rec = _recommender(retriever, items)
    state = rec.users("fan")
    user_vec = rec.user_vector(state)

    got = rec.recommend("fan", 8)

    # the reference, by ids: the best n_candidates the user has not seen (the history), of
    # which those with an item row are ranked
    n = rec.n_candidates + len(set(state.history))
    ids, scores = retriever.retrieve(user_vec, n)
    keep = [i for i, v in enumerate(ids) if v not in state.history][: rec.n_candidates]
    keep = [i for i in keep if ids[i] in items.index]
    assert got.ranked == len(keep) and got.filtered["seen"] == len(set(state.history))
    ids = [str(ids[i]) for i in keep]
    assert not set(ids) & set(catalog_ids[::-1][-7:])
    rows = np.array([items.index[v] for v in ids])
    sim = retriever.caption_similarity(retriever.history_caption(state.history), ids)
    np.testing.assert_allclose(np.asarray(scores)[keep], retriever.scores(user_vec, ids), 1e-5)
    x = rec.feature_matrix(
        state.features,
        rows,
        np.asarray(scores, np.float32)[keep],
        sim,
        surface="spotlight",
    )
    # no creator history in this state: the default affinity, as the recommender uses
    expected = rec.model.predict(x)
    order = np.argsort(-expected, kind="stable")[:8]
    assert got.video_ids == [ids[i] for i in order]
    np.testing.assert_allclose(got.scores, expected[order], rtol=1e-6)
    np.testing.assert_allclose(
        got.features[:, COL["x_retrieval_score"]],
        retriever.scores(user_vec, got.video_ids),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        got.features[:, COL["x_content_similarity"]],
        retriever.caption_similarity(retriever.history_caption(state.history), got.video_ids),
        rtol=1e-5,
    )
    # the public candidates() gives the same ids
    assert rec.candidates(state, user_vec)[0] == [
        str(v) for v in retriever.retrieve(user_vec, rec.n_candidates)[0] if v in items.index
    ]


def test_an_unknown_user_gets_retrieval_features_for_the_popular_pool(retriever):
    items = _items_for([str(v) for v in retriever.catalog.video_ids])
    rec = _recommender(retriever, items)
    got = rec.recommend("someone-new", 5)
    assert got.cold_start and len(got.video_ids) == 5
    cold = rec.user_vector(None)
    np.testing.assert_allclose(
        got.features[:, COL["x_retrieval_score"]], retriever.scores(cold, got.video_ids), 1e-5
    )
    assert (got.features[:, COL["x_content_similarity"]] == 0).all()  # no history


def test_a_video_uploaded_while_serving_is_mapped_to_its_new_row(retriever):
    ret = _trained_retriever()  # add_videos changes the retriever: not the shared one
    items = _items_for([str(v) for v in ret.catalog.video_ids])
    rec = _recommender(ret, items)
    rec.recommend("fan", 5)  # the row map exists before the upload
    videos, content = frames(3, start=500)  # v0500 is "pets" (topic 3)
    assert rec.add_videos(videos, content) == 3
    pets = [str(v) for v, t in zip(ret.catalog.video_ids, ret.catalog.topic, strict=True) if t == 3]
    state = rec.users("fan")
    state.history = pets[:5]
    ids, _ = rec.candidates(state, rec.user_vector(state))
    assert "v0500" in ids
    row = items.index["v0500"]
    assert items.missing[row]  # a default row until the next materialization


def test_the_row_map_follows_uploads_in_either_order(retriever):
    ret = _trained_retriever()
    items = _items_for([str(v) for v in ret.catalog.video_ids][5:])
    rec = _recommender(ret, items)

    def full() -> list[int]:
        return [items.index.get(v, -1) for v in ret.catalog.video_ids]

    assert rec._catalog_to_items(ret, items).tolist() == full()
    items.append_defaults(["v0600"], ["c-new"])  # an item row before the catalog knows it
    assert rec._catalog_to_items(ret, items).tolist() == full()
    ret.add_videos(*frames(2, start=600))  # now the catalog has it, and one more
    assert rec._catalog_to_items(ret, items).tolist() == full()
    rec.add_videos(*frames(1, start=700))  # both at once
    mapped = rec._catalog_to_items(ret, items)
    assert mapped.tolist() == full() and mapped[ret.catalog.index["v0700"]] >= 0


def test_a_user_who_has_seen_nearly_everything_still_gets_a_full_feed(retriever):
    catalog_ids = [str(v) for v in retriever.catalog.video_ids]
    items = _items_for(catalog_ids)
    rec = _recommender(retriever, items)
    rec.seen.add("fan", catalog_ids[:-3])  # three videos left unseen
    got = rec.recommend("fan", 8)
    assert len(got.video_ids) == 8 and len(set(got.video_ids)) == 8
    assert set(catalog_ids[-3:]) <= set(got.video_ids)  # the unseen ones first
    assert got.filtered["repeated"] == 5
