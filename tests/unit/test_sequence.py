"""The sequential user model: masks and causality, padding, learning an order the pooled
tower cannot see, the numpy forward of serving, and the bundle that records its kind."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from feature_repo.columns import USER_COLUMNS
from features.batch import FEATURE_DEFAULTS
from features.sequence import COMPLETED, SKIPPED
from models.retriever import Retriever
from models.sequence import (
    NumpySequenceTower,
    SequenceTower,
    fit_sequence,
    gap_buckets,
    sequence_inputs,
    sequence_user_vectors,
    training_sequences,
)
from models.two_tower import Catalog, TowerConfig, TrainData, fit, history_rows, user_matrix
from tests.unit.test_two_tower import TOPICS, frames

pytestmark = pytest.mark.unit


def seq_config(n_len: int = 8) -> TowerConfig:
    return TowerConfig(
        caption_dim=384,
        visual_dim=4,
        topics=TOPICS,
        dim=16,
        id_buckets=4096,
        creator_buckets=16,
        kind="sequence",
        seq_len=n_len,
        seq_dim=16,
        seq_layers=2,
        seq_heads=2,
    )


def _catalog(n: int = 40) -> Catalog:
    videos, content = frames(n)
    cat = Catalog.from_frames(videos, content, seq_config())
    cat.id_known[:] = 1.0
    return cat


def _events(cat: Catalog, rng: np.random.Generator, k: int) -> tuple[list, list, list]:
    rows = rng.integers(0, len(cat), k)
    acts = rng.choice([COMPLETED, SKIPPED, COMPLETED | (4 << 4)], k).tolist()
    ts = np.cumsum(rng.uniform(1, 5000, k)).tolist()
    return list(cat.video_ids[rows]), acts, ts


def _outputs(model: SequenceTower, cat: Catalog, seqs: list) -> torch.Tensor:
    inp = sequence_inputs(cat, seqs, model.cfg.seq_len)
    with torch.no_grad():
        return model.sequence_outputs(cat.tensors(), *inp.tensors())


def test_changing_a_later_event_never_changes_an_earlier_output():
    torch.manual_seed(0)
    cat = _catalog()
    model = SequenceTower(seq_config()).eval()
    ids, acts, ts = _events(cat, np.random.default_rng(1), 8)
    base = _outputs(model, cat, [(ids, acts, ts)])[0]
    later = ([*ids[:5], "v0039", "v0038", "v0037"], [*acts[:5], SKIPPED, SKIPPED, SKIPPED], ts)
    changed = _outputs(model, cat, [later])[0]
    torch.testing.assert_close(changed[:5], base[:5])  # positions 0..4 see only events 0..4
    assert not torch.allclose(changed[5:], base[5:])  # the changed events do matter


def test_padding_never_reaches_a_real_event():
    torch.manual_seed(0)
    cat = _catalog()
    model = SequenceTower(seq_config()).eval()
    ids, acts, ts = _events(cat, np.random.default_rng(2), 3)
    short = _outputs(model, cat, [(ids, acts, ts)])[0]
    # the same three events, left-padded, with garbage in the padded slots' inputs
    inp = sequence_inputs(cat, [(ids, acts, ts)], 8)
    inp.actions[0, :5] = 31
    inp.gaps[0, :5] = 7
    with torch.no_grad():
        noisy = model.sequence_outputs(cat.tensors(), *inp.tensors())[0]
    torch.testing.assert_close(noisy[5:], short[5:])
    assert (inp.rows[0, :5] == -1).all() and (inp.rows[0, 5:] >= 0).all()
    # an unknown video is dropped, not embedded as row 0
    with_unknown = sequence_inputs(cat, [(["nope", *ids], [COMPLETED, *acts], [0.0, *ts])], 8)
    np.testing.assert_array_equal(with_unknown.rows, inp.rows)


def test_gap_buckets_are_log_scaled_and_zero_for_padding_and_first_events():
    ts = np.array([[0.0, 0.0, 100.0, 101.0, 100_101.0]])
    valid = np.array([[False, True, True, True, True]])
    b = gap_buckets(ts, valid)[0]
    assert b[0] == 0 and b[1] == 0  # padding, first real event
    assert b[3] == 2  # one second: 1 + floor(log2(2))
    assert b[2] < b[4]  # longer gaps, higher buckets


def test_the_numpy_forward_matches_torch():
    torch.manual_seed(3)
    cat = _catalog()
    model = SequenceTower(seq_config()).eval()
    np_tower = NumpySequenceTower(model)
    rng = np.random.default_rng(3)
    seqs = [([], [], []), _events(cat, rng, 1), _events(cat, rng, 5), _events(cat, rng, 20)]
    inp = sequence_inputs(cat, seqs, 8)
    expected = sequence_user_vectors(model, cat, inp)
    for i in range(len(seqs)):
        got = np_tower(cat, inp.rows[i], inp.actions[i], inp.gaps[i])
        np.testing.assert_allclose(got, expected[i], rtol=1e-4, atol=1e-5)
    # videos added to the catalog later (serving's fresh uploads) are projected too
    videos, content = frames(5, start=500)
    cat.extend(Catalog.from_frames(videos, content, seq_config()))
    fresh = (["v0500", "v0003", "v0504"], [COMPLETED, SKIPPED, COMPLETED], [0.0, 9.0, 99.0])
    inp = sequence_inputs(cat, [fresh], 8)
    got = np_tower(cat, inp.rows[0], inp.actions[0], inp.gaps[0])
    expected = sequence_user_vectors(model, cat, inp)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def successor_log(cat: Catalog, n_users: int, seed: int, k: int = 5) -> list[tuple]:
    """Each user watches ``k`` random videos, then the successor of the last one: only the
    order tells which one comes next."""
    rng = np.random.default_rng(seed)
    out = []
    n = len(cat)
    for _ in range(n_users):
        rows = rng.integers(0, n, k).tolist()
        rows.append((rows[-1] + 1) % n)
        ids = list(cat.video_ids[rows])
        out.append((ids, [COMPLETED] * len(ids), [60.0 * i for i in range(len(ids))]))
    return out


def _fit_sequence(cat: Catalog, users: list, epochs: int = 25):
    ticks = itertools.count()
    return fit_sequence(
        cat,
        training_sequences(cat, users, 8),
        seq_config(),
        validate=lambda m: float(next(ticks)),  # improves every epoch: train all of them
        max_epochs=epochs,
        batch_size=64,
        id_dropout=0.0,
        learning_rate=5e-3,
    )


def test_the_sequence_model_learns_an_order_the_pooled_tower_cannot_see():
    cat = _catalog(40)
    users = successor_log(cat, 600, seed=5)
    result = _fit_sequence(cat, users)
    loss = result.curves["retrieval_train_loss"]
    assert loss[-1] < loss[0] - 0.3

    # the pooled tower on the same examples: each next positive from the positives before
    hist, items = [], []
    for ids, _, _ in users:
        for j in range(1, len(ids)):
            hist.append(ids[:j][::-1])  # user_history is newest first
            items.append(cat.index[ids[j]])
    defaults = [FEATURE_DEFAULTS[c] for c in USER_COLUMNS]
    ux = user_matrix(pd.DataFrame([defaults] * len(items), columns=list(USER_COLUMNS)))
    cfg = seq_config()
    cfg.kind = "pooled"
    ticks = itertools.count()
    pooled = fit(
        cat,
        TrainData(ux, history_rows(cat, hist, cfg.history_len), np.array(items)),
        cfg,
        validate=lambda m: float(next(ticks)),
        max_epochs=12,
        batch_size=128,
        id_dropout=0.0,
        learning_rate=5e-3,
    ).model
    seq_ret = Retriever.build(result.model, cat, np.arange(len(cat)), exact_below=1000)
    pool_ret = Retriever.build(pooled, cat, np.arange(len(cat)), exact_below=1000)
    test = successor_log(cat, 200, seed=99)
    hits = {"sequence": 0, "pooled": 0}
    for ids, acts, ts in test:
        target = ids[-1]
        for name, ret in (("sequence", seq_ret), ("pooled", pool_ret)):
            vec = ret.user_vector(None, ids[:-1][::-1], (ids[:-1], acts[:-1], ts[:-1]))
            hits[name] += target in set(ret.retrieve(vec, 3)[0])
    assert hits["sequence"] >= 0.6 * len(test), hits
    assert hits["sequence"] > hits["pooled"] + 0.3 * len(test), hits


def test_the_bundle_round_trip_keeps_the_kind_and_the_vectors(tmp_path):
    cat = _catalog(40)
    result = _fit_sequence(cat, successor_log(cat, 100, seed=6), epochs=2)
    ret = Retriever.build(result.model, cat, np.arange(len(cat)), exact_below=1000)
    loaded = Retriever.load(ret.save(tmp_path / "bundle"))
    assert loaded.kind == "sequence" and isinstance(loaded.model, SequenceTower)
    rng = np.random.default_rng(7)
    for events in (([], [], []), _events(cat, rng, 3), _events(cat, rng, 30)):
        a = ret.user_vector(None, [], events)
        b = loaded.user_vector(None, [], events)
        np.testing.assert_array_equal(a, b)
        assert list(loaded.retrieve(b, 10)[0]) == list(ret.retrieve(a, 10)[0])


def test_the_kind_with_the_better_holdout_recall_goes_before_the_gate():
    from training.retrieval import RetrievalMetrics, pick_kind

    def m(r100: float) -> RetrievalMetrics:
        return RetrievalMetrics(r100 / 2, r100, min(1.0, r100 * 2), n_users=10)

    assert pick_kind({"pooled": m(0.2), "sequence": m(0.3)}) == "sequence"
    assert pick_kind({"pooled": m(0.3), "sequence": m(0.2)}) == "pooled"
    assert pick_kind({"pooled": m(0.25), "sequence": m(0.25)}) == "pooled"  # ties: listed first
    assert pick_kind({"pooled": m(float("nan")), "sequence": m(0.01)}) == "sequence"
    assert pick_kind({"sequence": m(0.1)}) == "sequence"


def test_the_recommender_serves_a_sequence_champion_from_the_users_events():
    """Serving's user vector for a sequence-kind retriever comes from the state's events
    (the user_sequence feature), and a different last event moves it."""
    from models.ranker import XGBoostRanker
    from serving.pipeline import Recommender, RerankConfig
    from tests.unit.test_serving_path import _booster, user
    from tests.unit.test_serving_retrieval import _items_for

    cat = _catalog(40)
    result = _fit_sequence(cat, successor_log(cat, 100, seed=8), epochs=2)
    ret = Retriever.build(result.model, cat, np.arange(len(cat)), exact_below=1000)
    events = _events(cat, np.random.default_rng(9), 6)
    state = user(2)
    state.events = events
    model = XGBoostRanker(_booster(0, "x_retrieval_score"), "ranker", "1")
    rec = Recommender(
        model,
        _items_for([str(v) for v in cat.video_ids]),
        {"u": state}.get,
        n_candidates=10,
        retriever=ret,
        rerank=RerankConfig(diversity=0.0, exploration_position=None),
    )
    served = rec.user_vector(state)
    np.testing.assert_array_equal(served, ret.user_vector(None, [], events))
    moved = ([*events[0][:-1], "v0001"], events[1], events[2])
    assert not np.allclose(ret.user_vector(None, [], moved), served)
    assert len(rec.recommend("u", 5).video_ids) == 5


def test_the_rankers_retrieval_score_reads_a_sequence_champion_like_serving():
    """``x_retrieval_score`` of a sequence champion: the batch vectors of training equal the
    per-request vectors of serving for the same feature rows."""
    from models.retrieval_features import state_user_vectors

    cat = _catalog(40)
    result = _fit_sequence(cat, successor_log(cat, 100, seed=10), epochs=2)
    ret = Retriever.build(result.model, cat, np.arange(len(cat)), exact_below=1000)
    rng = np.random.default_rng(11)
    events = [([], [], []), _events(cat, rng, 4), _events(cat, rng, 12)]
    states = pd.DataFrame(
        {
            **{c: [FEATURE_DEFAULTS[c]] * 3 for c in USER_COLUMNS},
            "hist_video_ids": [[], ["v0001"], ["v0002"]],
            "seq_video_ids": [e[0] for e in events],
            "seq_actions": [e[1] for e in events],
            "seq_ts": [e[2] for e in events],
        }
    )
    batch = state_user_vectors(ret, states)
    for i, e in enumerate(events):
        np.testing.assert_allclose(batch[i], ret.user_vector(None, [], e), rtol=1e-4, atol=1e-5)
