"""The candidate index against brute force, with fresh items, persistence and threads."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from models.index import CandidateIndex

pytestmark = pytest.mark.unit
DIM = 16


def clustered(
    n: int, *, dim: int = DIM, clusters: int = 20, seed: int = 0, centre_seed: int = 0
) -> np.ndarray:
    """Normalized points around shared centres, like real embeddings (not uniform noise).

    The centres depend only on ``centre_seed``, so queries drawn with another ``seed`` come
    from the same clusters as the items without being items.
    """
    centres = np.random.default_rng(centre_seed).standard_normal((clusters, dim))
    rng = np.random.default_rng(seed)
    points = centres[rng.integers(0, clusters, n)] + 0.3 * rng.standard_normal((n, dim))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32)


def ids_for(n: int, prefix: str = "v") -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(n)]


def brute_force(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ items.T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


@pytest.fixture(scope="module")
def hnsw_world() -> tuple[CandidateIndex, np.ndarray, list[str]]:
    items = clustered(5000, dim=32, clusters=50, seed=1)
    ids = ids_for(len(items))
    return CandidateIndex.build(ids, items, exact_below=0), items, ids


def test_kind_follows_exact_below() -> None:
    items = clustered(100)
    assert CandidateIndex.build(ids_for(100), items, exact_below=101).kind == "exact"
    assert CandidateIndex.build(ids_for(100), items, exact_below=100).kind == "hnsw"
    index = CandidateIndex.build(ids_for(100), items)
    assert (index.kind, index.dim, index.size) == ("exact", DIM, 100)
    assert index.video_ids.tolist() == ids_for(100)
    assert index.contains("v00042") and not index.contains("nope")


def test_exact_matches_brute_force() -> None:
    items, queries = clustered(2000, seed=2), clustered(20, seed=3)
    index = CandidateIndex.build(ids_for(2000), items)
    truth = brute_force(items, queries, 10)
    ids = np.asarray(ids_for(2000))
    for q, want in zip(queries, truth, strict=True):
        got, scores = index.search(q, 10)
        assert got.tolist() == ids[want].tolist()
        np.testing.assert_allclose(scores, items[want] @ q, rtol=1e-5, atol=1e-6)
        assert np.all(np.diff(scores) <= 0)


def test_hnsw_recall_at_10(hnsw_world: tuple[CandidateIndex, np.ndarray, list[str]]) -> None:
    index, items, ids = hnsw_world
    assert index.kind == "hnsw"
    queries = clustered(200, dim=32, clusters=50, seed=4)
    truth = brute_force(items, queries, 10)
    got, _ = index.search(queries, 10)
    id_arr = np.asarray(ids)
    hits = sum(len(set(g) & set(id_arr[t])) for g, t in zip(got, truth, strict=True))
    assert hits / (10 * len(queries)) >= 0.95


def test_hnsw_ef_search_override(hnsw_world: tuple[CandidateIndex, np.ndarray, list[str]]) -> None:
    index, _, _ = hnsw_world
    query = clustered(1, dim=32, clusters=50, seed=5)[0]
    # Below n it is raised to n, so the full list still comes back.
    ids, _ = index.search(query, 300, ef_search=16)
    assert len(ids) == len(set(ids.tolist())) == 300
    assert index.params["ef_search"] == 128
    with pytest.raises(ValueError, match="ef_search"):
        index.search(query, 10, ef_search=0)


def test_batch_shape_and_padding() -> None:
    index = CandidateIndex.build(ids_for(5), clustered(5))
    ids, scores = index.search(clustered(3, seed=9), 8)
    assert ids.shape == scores.shape == (3, 8)
    assert (ids[:, 5:] == "").all() and np.isneginf(scores[:, 5:]).all()
    assert (ids[:, :5] != "").all() and np.isfinite(scores[:, :5]).all()


def test_fresh_items_are_merged_in_score_order() -> None:
    items = clustered(500, seed=5)
    index = CandidateIndex.build(ids_for(500), items)
    query = items[0]
    # Nudged copies of the query beat every main item but the query's own row.
    fresh = query + 0.01 * np.random.default_rng(6).standard_normal((3, DIM))
    fresh = (fresh / np.linalg.norm(fresh, axis=1, keepdims=True)).astype(np.float32)
    assert index.add(["f0", "f1", "f2"], fresh) == 3
    assert index.size == 503 and index.contains("f1")

    ids, scores = index.search(query, 10)
    assert {"f0", "f1", "f2"} <= set(ids[:4].tolist())
    assert ids[0] == "v00000"
    assert np.all(np.diff(scores) <= 0)
    everything = np.vstack([items, fresh])
    want = np.asarray([*ids_for(500), "f0", "f1", "f2"])[brute_force(everything, query[None], 10)]
    assert ids.tolist() == want[0].tolist()

    # the integer labels name the same videos, main rows first, then fresh in added order
    labels, label_scores = index.search_labels(query, 10)
    assert index.label_ids()[labels].tolist() == ids.tolist()
    np.testing.assert_array_equal(label_scores, scores)
    assert index.label_ids()[500:].tolist() == ["f0", "f1", "f2"]

    # excluded labels are skipped inside the search: the best 10 of the rest
    everything_labels = index.search_labels(query, 40)[0]
    excluded = np.array([everything_labels[0], everything_labels[2], 501, 7_777])  # 501 = f1
    got, _ = index.search_labels(query, 10, exclude=excluded)
    want = [x for x in everything_labels if x not in set(excluded.tolist())][:10]
    assert got.tolist() == want and 501 not in got


def test_adding_existing_ids_is_a_no_op() -> None:
    items = clustered(50, seed=7)
    index = CandidateIndex.build(ids_for(50), items)
    assert index.add(["v00003"], items[:1]) == 0
    assert index.add(["new"], items[:1]) == 1
    assert index.add(["new", "v00004", "newer"], items[:3]) == 1
    assert index.size == 52
    ids, _ = index.search(items[0], 60)
    assert len(ids) == len(set(ids.tolist())) == 52


@pytest.mark.parametrize("exact_below", [10_000, 0])
def test_n_beyond_size_returns_only_real_items(exact_below: int) -> None:
    items = clustered(40, seed=8)
    index = CandidateIndex.build(ids_for(40), items, exact_below=exact_below)
    index.add(["f0", "f1"], clustered(2, seed=80))
    ids, scores = index.search(items[1], 100)
    assert len(ids) == len(scores) == 42
    assert "" not in ids.tolist() and "-1" not in ids.tolist()
    assert np.isfinite(scores).all()
    assert sorted(ids.tolist()) == sorted([*ids_for(40), "f0", "f1"])


def test_n_zero_and_empty_index() -> None:
    index = CandidateIndex.build([], np.empty((0, DIM), dtype=np.float32))
    ids, scores = index.search(clustered(1)[0], 5)
    assert len(ids) == len(scores) == 0
    ids, scores = CandidateIndex.build(ids_for(5), clustered(5)).search(clustered(1)[0], 0)
    assert len(ids) == 0


@pytest.mark.parametrize("exact_below", [10_000, 0])
def test_save_load_round_trip(tmp_path: Path, exact_below: int) -> None:
    items, queries = clustered(800, seed=10), clustered(10, seed=11)
    index = CandidateIndex.build(ids_for(800), items, exact_below=exact_below, ef_search=64)
    index.add(["f0", "f1"], clustered(2, seed=12))
    index.save(tmp_path)
    loaded = CandidateIndex.load(tmp_path)

    assert (loaded.kind, loaded.dim, loaded.size) == (index.kind, index.dim, index.size)
    assert loaded.params == index.params and loaded.contains("f1")
    want_ids, want_scores = index.search(queries, 25)
    got_ids, got_scores = loaded.search(queries, 25)
    assert got_ids.tolist() == want_ids.tolist()
    np.testing.assert_array_equal(got_scores, want_scores)
    manifest = json.loads((tmp_path / "index.json").read_text())
    assert manifest["kind"] == index.kind and manifest["size"] == 802
    assert not list(tmp_path.glob("*.tmp"))


def test_load_refuses_mismatched_ids(tmp_path: Path) -> None:
    CandidateIndex.build(ids_for(30), clustered(30)).save(tmp_path)
    (tmp_path / "video_ids.json").write_text(json.dumps(ids_for(29)))
    with pytest.raises(ValueError, match="29 ids"):
        CandidateIndex.load(tmp_path)


@pytest.mark.parametrize(
    ("ids", "vectors", "message"),
    [
        (ids_for(3), np.zeros(DIM, dtype=np.float32), "2-D"),
        (ids_for(3), np.zeros((3, 2, 2), dtype=np.float32), "2-D"),
        (ids_for(2), np.zeros((3, DIM), dtype=np.float32), "2 video ids for 3"),
        (["a", "b", "a"], np.zeros((3, DIM), dtype=np.float32), "duplicate"),
        (ids_for(3), np.full((3, DIM), np.nan, dtype=np.float32), "NaN"),
        (ids_for(3), [["x"] * DIM] * 3, "float32"),
    ],
)
def test_bad_input_raises(ids: list[str], vectors: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CandidateIndex.build(ids, vectors)


def test_bad_query_and_add_raise() -> None:
    index = CandidateIndex.build(ids_for(10), clustered(10))
    with pytest.raises(ValueError, match="dim"):
        index.search(np.zeros(DIM + 1, dtype=np.float32), 3)
    with pytest.raises(ValueError, match="NaN"):
        index.search(np.full(DIM, np.nan, dtype=np.float32), 3)
    with pytest.raises(ValueError, match="dim"):
        index.add(["x"], np.zeros((1, DIM + 1), dtype=np.float32))
    with pytest.raises(ValueError, match="duplicate"):
        index.add(["x", "x"], np.zeros((2, DIM), dtype=np.float32))


@pytest.mark.parametrize("exact_below", [10_000, 0])
def test_concurrent_add_and_search(exact_below: int) -> None:
    items = clustered(1000, seed=13)
    index = CandidateIndex.build(ids_for(1000), items, exact_below=exact_below)
    errors: list[BaseException] = []
    added: dict[str, np.ndarray] = {}
    added_lock = threading.Lock()
    deadline = time.monotonic() + 0.5

    def worker(w: int) -> None:
        rng = np.random.default_rng(100 + w)
        batch = 0
        try:
            while time.monotonic() < deadline:
                vecs = rng.standard_normal((4, DIM))
                vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
                new_ids = [f"w{w}-{batch}-{j}" for j in range(4)]
                assert index.add(new_ids, vecs) == 4
                with added_lock:
                    added.update(zip(new_ids, vecs, strict=True))
                ids, scores = index.search(items[rng.integers(0, 1000, 3)], 20)
                assert (ids != "").all() and np.isfinite(scores).all()
                batch += 1
        except BaseException as exc:  # handed to the main thread, which fails the test
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not errors, errors
    assert added and index.size == 1000 + len(added)
    assert all(index.contains(video_id) for video_id in added)
    # Each added vector finds itself (score 1) first; one batch search keeps this quick.
    ids, _ = index.search(np.stack(list(added.values())), 1)
    assert ids[:, 0].tolist() == list(added)
