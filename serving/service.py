"""The BentoML service: loads the champion and delegates to :class:`serving.pipeline.Recommender`.

Run it with ``bentoml serve serving.service:RecommenderService`` (or ``reelrank serve``).
Endpoints: ``POST /recommend``, ``POST /rank``, and BentoML's own ``/livez``, ``/readyz``,
``/metrics`` and the OpenAPI page at ``/``. A malformed body is answered 400 by BentoML's
validation with the field and the reason; unknown users get the cold-start path.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import bentoml

from reelrank.settings import get_settings
from serving.pipeline import Scored
from serving.schemas import (
    RankRequest,
    RankResponse,
    RecommendRequest,
    RecommendResponse,
    ScoredVideo,
)


def _items(scored: Scored) -> list[ScoredVideo]:
    return [
        ScoredVideo(video_id=v, score=s, rank=i + 1)
        for i, (v, s) in enumerate(zip(scored.video_ids, scored.scores, strict=True))
    ]


@bentoml.service(
    name="reelrank",
    workers=get_settings().serving.workers,
    traffic={"timeout": 10},
)
class RecommenderService:
    def __init__(self) -> None:
        from serving.loader import build_recommender

        self.settings = get_settings()
        self.rec = build_recommender(self.settings)
        self._watch = threading.Thread(target=self._watch_catalog, daemon=True, name="catalog")
        self._watch.start()

    def _watch_catalog(self) -> None:
        """New uploads become retrievable while the service runs, without a restart."""
        from serving.loader import CatalogWatcher

        watcher = CatalogWatcher(self.settings, self.rec)
        while True:
            time.sleep(self.settings.serving.catalog_refresh_s)
            try:
                watcher.poll()
            except Exception:  # a bad refresh must never take the service down
                logging.getLogger(__name__).exception("catalog refresh failed")

    @bentoml.api(input_spec=RecommendRequest)
    def recommend(self, **params: Any) -> RecommendResponse:
        """The user's feed: candidates retrieved by the two-tower model, ranked by the champion."""
        req = RecommendRequest(**params)
        scored = self.rec.recommend(req.user_id, req.k, req.surface)
        m = self.rec.model
        return RecommendResponse(
            request_id=uuid.uuid4().hex,
            user_id=req.user_id,
            surface=req.surface,
            model_name=m.name,
            model_version=m.version,
            retrieval_version=getattr(self.rec.retriever, "version", None),
            cold_start=scored.cold_start,
            items=_items(scored),
        )

    @bentoml.api(input_spec=RankRequest)
    def rank(self, **params: Any) -> RankResponse:
        """Scores for the given candidate videos, best first."""
        req = RankRequest(**params)
        scored = self.rec.rank(req.user_id, req.video_ids)
        m = self.rec.model
        return RankResponse(
            request_id=uuid.uuid4().hex,
            user_id=req.user_id,
            model_name=m.name,
            model_version=m.version,
            cold_start=scored.cold_start,
            items=_items(scored),
            unknown_video_ids=scored.unknown_video_ids,
        )
