"""The two-tower model on its own: shapes, the cold-start id switch, the log-Q loss, and
the bundle that keeps model, index and ids together."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import torch

from feature_repo.columns import USER_COLUMNS
from features.batch import FEATURE_DEFAULTS
from features.content import HashingEncoder, content_text
from models.index import CandidateIndex
from models.retriever import BundleError, Retriever
from models.two_tower import (
    Catalog,
    TowerConfig,
    TrainData,
    TwoTower,
    fit,
    history_rows,
    sampled_softmax_loss,
    user_matrix,
)

pytestmark = pytest.mark.unit
TOPICS = ["cooking", "gaming", "pets"]
WORDS = {
    "cooking": "pasta recipe chef",
    "gaming": "boss speedrun loot",
    "pets": "puppy kitten paws",
}


def frames(n: int, start: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(start)
    topics = [TOPICS[i % 3] for i in range(start, start + n)]
    videos = pd.DataFrame(
        {
            "video_id": [f"v{i:04d}" for i in range(start, start + n)],
            "creator_id": [f"c{i % 3}" for i in range(start, start + n)],
            "topic": topics,
            "duration_s": rng.uniform(5, 60, n),
            "upload_ts": pd.Timestamp("2025-06-01", tz="UTC"),
            "caption": [WORDS[t] for t in topics],
            "hashtags": [[f"#{t}"] for t in topics],
        }
    )
    emb = HashingEncoder().encode(
        [content_text(c, h) for c, h in zip(videos["caption"], videos["hashtags"], strict=True)]
    )
    content = pd.DataFrame(
        {
            "video_id": videos["video_id"],
            "caption_embedding": list(emb),
            "visual_embedding": [np.full(4, TOPICS.index(t), np.float32) for t in topics],
            "has_visual": 1.0,
        }
    )
    return videos, content


def config() -> TowerConfig:
    return TowerConfig(caption_dim=384, visual_dim=4, topics=TOPICS, dim=16, id_buckets=256)


def test_towers_give_unit_vectors_of_the_configured_size():
    videos, content = frames(30)
    cat = Catalog.from_frames(videos, content, config())
    model = TwoTower(config()).eval()
    items = cat.tensors()
    v = model.item_vectors(items, torch.arange(len(cat)))
    hist = torch.from_numpy(history_rows(cat, [["v0001", "v0004"], [], ["nope"]], 5))
    users = pd.DataFrame(np.ones((3, len(USER_COLUMNS))), columns=list(USER_COLUMNS))
    u = model.user_vectors(items, torch.from_numpy(user_matrix(users)), hist)
    assert v.shape == (30, 16) and u.shape == (3, 16)
    torch.testing.assert_close(v.norm(dim=1), torch.ones(30))
    assert hist[2].tolist() == [-1] * 5  # unknown history ids are padding, not errors


def test_an_unknown_id_contributes_nothing_so_new_videos_are_embedded_from_content():
    videos, content = frames(6)
    cat = Catalog.from_frames(videos, content, config())
    model = TwoTower(config()).eval()
    rows = torch.arange(6)
    before = model.item_vectors(cat.tensors(), rows)
    with torch.no_grad():
        model.id_emb.weight.mul_(100.0)  # ids are unknown (id_known = 0): no effect
    torch.testing.assert_close(model.item_vectors(cat.tensors(), rows), before)
    cat.id_known[:] = 1.0
    assert not torch.allclose(model.item_vectors(cat.tensors(), rows), before)


def test_log_q_correction_is_subtracted_from_the_logits():
    g = torch.Generator().manual_seed(0)
    u = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=1)
    v = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=1)
    rows = torch.arange(5)
    log_q = torch.log(torch.tensor([0.5, 0.2, 0.1, 0.1, 0.1]))
    got = sampled_softmax_loss(u, v, rows, log_q, temperature=0.1)
    want = torch.nn.functional.cross_entropy(u @ v.T / 0.1 - log_q[None, :], rows)
    torch.testing.assert_close(got, want)
    # a uniform sampling distribution changes nothing: plain in-batch softmax
    uniform = sampled_softmax_loss(u, v, rows, torch.full((5,), -1.6), temperature=0.1)
    torch.testing.assert_close(uniform, torch.nn.functional.cross_entropy(u @ v.T / 0.1, rows))
    # the correction lowers the loss of a batch whose negatives are popular items
    assert float(got) != pytest.approx(float(uniform))


def test_a_positive_repeated_in_the_batch_is_not_its_own_negative():
    u = torch.nn.functional.normalize(torch.randn(3, 4), dim=1)
    v = torch.nn.functional.normalize(torch.randn(3, 4), dim=1)
    v[2] = v[0]
    rows = torch.tensor([7, 8, 7])
    loss = sampled_softmax_loss(u, v, rows, torch.zeros(3), temperature=1.0)
    logits = u @ v.T
    manual = [
        -torch.log_softmax(logits[0, [0, 1]], 0)[0],
        -torch.log_softmax(logits[1], 0)[1],
        -torch.log_softmax(logits[2, [1, 2]], 0)[1],
    ]
    torch.testing.assert_close(loss, torch.stack(manual).mean())


def _trained_retriever() -> Retriever:
    videos, content = frames(60)
    cfg = config()
    cat = Catalog.from_frames(videos, content, cfg)
    # users who like one topic each: history and positives from that topic
    rng = np.random.default_rng(1)
    by_topic = {t: np.flatnonzero(cat.topic == i + 1) for i, t in enumerate(TOPICS)}
    hist, items = [], []
    for _ in range(600):
        t = TOPICS[rng.integers(3)]
        hist.append(list(cat.video_ids[rng.choice(by_topic[t], 5)]))
        items.append(rng.choice(by_topic[t]))
    defaults = [FEATURE_DEFAULTS[c] for c in USER_COLUMNS]
    users = pd.DataFrame([defaults] * 600, columns=list(USER_COLUMNS))
    data = TrainData(user_matrix(users), history_rows(cat, hist, 5), np.array(items))
    epochs = itertools.count()  # "validation" improves every epoch: train all of them
    result = fit(
        cat, data, cfg, validate=lambda m: float(next(epochs)), max_epochs=6, batch_size=64
    )
    return Retriever.build(result.model, cat, np.arange(len(cat)), exact_below=1000)


def test_bundle_round_trip_and_refuses_mismatched_parts(tmp_path):
    ret = _trained_retriever()
    path = ret.save(tmp_path / "bundle")
    loaded = Retriever.load(path)
    uvec = loaded.user_vector(None, ["v0000", "v0003"])
    np.testing.assert_allclose(uvec, ret.user_vector(None, ["v0000", "v0003"]), rtol=1e-5)
    assert list(loaded.retrieve(uvec, 10)[0]) == list(ret.retrieve(uvec, 10)[0])

    # an index built from other vectors cannot be paired with this model
    rng = np.random.default_rng(9)
    vectors = rng.standard_normal((len(ret.catalog), 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    CandidateIndex.build(ret.catalog.video_ids, vectors, exact_below=1000).save(path / "index")
    with pytest.raises(BundleError, match="index"):
        Retriever.load(path)
    (path / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest"):
        Retriever.load(path)


def test_bundle_refuses_a_changed_model(tmp_path):
    path = _trained_retriever().save(tmp_path / "bundle")
    cfg = json.loads((path / "config.json").read_text())
    cfg["temperature"] = 1.0
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BundleError, match=r"config\.json"):
        Retriever.load(path)


def test_a_video_added_after_training_is_retrieved_for_a_fan_of_its_topic():
    ret = _trained_retriever()
    videos, content = frames(3, start=500)  # topics cycle: v0500 is "pets" (topic 3)
    assert ret.add_videos(videos, content) == 3
    assert ret.add_videos(videos, content) == 0  # idempotent
    pets = [v for v, t in zip(ret.catalog.video_ids, ret.catalog.topic, strict=True) if t == 3]
    ids, _ = ret.retrieve(ret.user_vector(None, pets[:5]), 25)
    assert "v0500" in set(ids)
    topics = ret.catalog.topic[ret.catalog.rows(list(ids))]
    assert (topics == 3).mean() >= 0.8


def test_the_numpy_user_tower_matches_torch():
    """Serving's numpy forward pass gives the trained torch tower's vectors."""
    from models.two_tower import user_vectors

    ret = _trained_retriever()
    cat = ret.catalog
    rng = np.random.default_rng(4)
    raw = np.abs(rng.normal(3.0, 2.0, (4, len(USER_COLUMNS)))).astype(np.float32)
    histories = [[], ["v0001"], list(cat.video_ids[:5]), ["v0002", "unknown-id"]]
    for x, hist in zip(raw, histories, strict=True):
        served = ret.user_vector(x, hist)
        rows = history_rows(cat, [hist], ret.model.cfg.history_len)
        compressed = user_matrix(pd.DataFrame([x], columns=list(USER_COLUMNS)))
        expected = user_vectors(ret.model, cat, compressed, rows)[0]
        np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-5)
        assert abs(float(np.linalg.norm(served)) - 1.0) < 1e-5
