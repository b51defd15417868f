"""The BentoML service: loads its models and stores, and delegates to the plain classes.

Run it with ``reelrank serve`` (or ``python -m serving.launch serve
serving.service:RecommenderService``: a bare ``bentoml serve`` opens circus's control endpoint
on a TCP port, see :mod:`serving.launch`).
Endpoints: ``POST /recommend``, ``POST /rank``, ``POST /feedback``, and BentoML's own
``/livez``, ``/readyz`` (503 with the cause while the online store fails), ``/metrics``
(with reelrank's series added), reelrank's ``GET /status`` (JSON: versions served against
their aliases, the store's health) and the OpenAPI page at ``/``. A malformed body is
answered 400 by BentoML's validation with the field and the reason; unknown users get the
cold-start path; a feedback batch that names an unknown request (or an event that is both
``completed`` and ``skipped``) is answered 422 with every problem, and nothing of it is
written; a re-posted event is counted as a duplicate, not written again.

Background threads keep the service current without a restart: the registry aliases are
polled (a promotion or rollback swaps the model within ``model_poll_s``), Feast is polled
for a new materialization (the item table is reloaded and swapped), and newly embedded
uploads are added to the retrieval index. Every served list is logged (``request_log``).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException

from reelrank.settings import get_settings
from serving.pipeline import Scored
from serving.schemas import (
    FeedbackRequest,
    FeedbackResponse,
    RankRequest,
    RankResponse,
    RecommendRequest,
    RecommendResponse,
    ScoredVideo,
    Why,
    events_out_of_time,
)

log = logging.getLogger(__name__)
PROTECTED_PATHS = ("/recommend", "/rank", "/feedback")


def _items(scored: Scored) -> list[ScoredVideo]:
    items = [
        ScoredVideo(video_id=v, score=s, rank=i + 1, propensity=p)
        for i, (v, s, p) in enumerate(
            zip(scored.video_ids, scored.scores, scored.propensities, strict=True)
        )
    ]
    for item, why in zip(items, scored.why or (), strict=False):  # explain: true only
        item.why = Why(**dataclasses.asdict(why))
    return items


_settings = get_settings()


@bentoml.service(
    name="reelrank",
    workers=_settings.serving.workers,
    threads=_settings.serving.threads,
    traffic={"timeout": 10},
    logging={"access": {"enabled": _settings.serving.access_log}},
    tracing={"excluded_urls": [] if _settings.serving.trace_requests else list(PROTECTED_PATHS)},
)
class RecommenderService:
    def __init__(self) -> None:
        from features.cross import MODEL_FEATURES
        from serving.experiments import ExperimentConfig
        from serving.loader import build_recommender
        from serving.observability import ServiceMetrics
        from serving.request_log import RequestLog
        from serving.served_state import open_served_state

        self.settings = get_settings()
        sv = self.settings.serving
        self.experiment = ExperimentConfig(sv.challenger_share, sv.shadow, sv.experiment_salt)
        self.state = open_served_state(self.settings)
        try:
            self.rec = build_recommender(
                self.settings,
                challenger=sv.challenger_share > 0 or sv.shadow,
                seen=self.state.recent,
                events=self.state.events,
            )
        except Exception as err:  # one line with the cause, for start_server and the log
            from serving.server import report_startup_failure

            report_startup_failure(err)
            raise
        log.info("served state: %s", self.state.backend)
        self.feature_names = list(MODEL_FEATURES)
        self.metrics = ServiceMetrics()
        if hasattr(self.rec.users, "on_failure"):  # a failed online read: cold start, counted
            self.rec.users.on_failure = self.metrics.feature_failures.inc
        self.model_watcher: Any = None
        self._publish_versions()
        OpenApiDocs.versions = self._served_versions  # named on /docs.json
        self.served = self.state.lists
        self.request_log = RequestLog(
            self.settings.home, max_rows=sv.log_max_rows, max_age_s=sv.log_flush_s
        ).start()
        self._stop = threading.Event()
        for name, period, poll in (
            ("catalog", sv.catalog_refresh_s, self._catalog_poller()),
            ("models", sv.model_poll_s, self._model_poller()),
            ("features", sv.features_poll_s, self._feature_poller()),
        ):
            threading.Thread(
                target=self._every, args=(period, poll, name), daemon=True, name=name
            ).start()
        # Everything loaded so far lives as long as the worker: move it out of the cyclic
        # garbage collector's generations, so that no collection pauses a request to walk
        # the models, the index and Feast's registry (hundreds of thousands of objects).
        gc.collect()
        gc.freeze()

    @bentoml.on_shutdown
    def close(self) -> None:
        """Flush every buffered served row before the worker exits."""
        self._stop.set()
        self.request_log.close()
        self.state.close()

    # -- background refreshes --------------------------------------------------------------
    def _every(self, period: float, poll: Callable[[], object], name: str) -> None:
        while not self._stop.wait(period):
            try:
                poll()
            except Exception:  # a bad refresh must never take the service down
                log.exception("%s refresh failed; serving what is loaded", name)

    def _catalog_poller(self) -> Callable[[], object]:
        from serving.loader import CatalogWatcher

        return CatalogWatcher(self.settings, self.rec).poll

    def _model_poller(self) -> Callable[[], object]:
        from serving.loader import ModelWatcher

        watcher = self.model_watcher = ModelWatcher(self.settings, self.rec)

        def poll() -> None:
            for arm in watcher.poll():
                self.metrics.reloads.labels(f"model_{arm}").inc()
            self._publish_versions()

        return poll

    def _feature_poller(self) -> Callable[[], object]:
        from serving.loader import FeatureWatcher

        watcher = FeatureWatcher(self.settings, self.rec)

        def poll() -> None:
            if watcher.poll():
                self.metrics.reloads.labels("item_features").inc()

        return poll

    def _publish_versions(self) -> None:
        aliases = self.model_watcher.aliases if self.model_watcher is not None else {}
        for arm, m in (("champion", self.rec.model), ("challenger", self.rec.challenger)):
            if m is not None and m.version.isdigit():
                self.metrics.model_version.labels(m.name, arm).set(int(m.version))
                alias = aliases.get(arm) or m.version
                self.metrics.alias_version.labels(m.name, arm).set(int(alias))

    def __is_ready__(self) -> bool:
        """``/readyz`` (BentoML calls this): 503 naming the cause while online feature reads
        fail. A champion that cannot be loaded does not make a worker unready: it serves
        the previous version, and ``/status`` says so (every worker would fail alike, and
        taking them all out of rotation would turn a bad promotion into an outage)."""
        problem = self.rec.users.problem() if hasattr(self.rec.users, "problem") else None
        if problem is not None:
            from starlette.exceptions import HTTPException

            raise HTTPException(HTTPStatus.SERVICE_UNAVAILABLE, detail=problem)
        return True

    def status(self) -> dict[str, Any]:
        """``GET /status``: readiness with its reason, the versions served against the ones
        their aliases name (and why they differ), the online store's health."""
        users = self.rec.users
        problem = users.problem() if hasattr(users, "problem") else None
        models = self.model_watcher.state() if self.model_watcher is not None else {}
        return {
            "ready": problem is None,
            "models": models,
            "features": {
                "failing": problem is not None,
                "error": problem,
                "failed_reads": getattr(users, "failures", 0),
            },
        }

    def _served_versions(self) -> dict[str, str | None]:
        rec = self.rec
        return {
            "ranker": f"{rec.model.name} v{rec.model.version}",
            "challenger": None if rec.challenger is None else f"v{rec.challenger.version}",
            "retrieval": getattr(rec.retriever, "version", None),
            "bentoml": bentoml.__version__,
        }

    # -- the request path --------------------------------------------------------------------
    def _served(
        self, endpoint: str, user_id: str, surface: str, scored: Scored, request_id: str
    ) -> None:
        """Log (with each item's propensity), register and count an answered request."""
        from serving.feedback import ServedList

        now = datetime.now(UTC)
        retrieval = getattr(self.rec.retriever, "version", None)
        if scored.video_ids and scored.features is not None:
            self.request_log.log(
                request_id,
                now,
                user_id,
                scored.arm,
                scored.model_version,
                retrieval,
                surface,
                scored.video_ids,
                scored.scores,
                scored.features,
                self.feature_names,
                scored.propensities,
            )
            if scored.shadow_scores is not None and self.rec.challenger is not None:
                self.request_log.log(
                    request_id,
                    now,
                    user_id,
                    "shadow",
                    self.rec.challenger.version,
                    retrieval,
                    surface,
                    scored.video_ids,
                    scored.shadow_scores,
                    scored.features,
                    self.feature_names,
                    scored.propensities,  # the same videos, shown with the same probabilities
                )
            self.served.add(
                ServedList(
                    request_id,
                    now,
                    user_id,
                    surface,
                    scored.arm,
                    scored.model_version,
                    {v: i for i, v in enumerate(scored.video_ids)},
                    dict(zip(scored.video_ids, scored.durations, strict=True)),
                )
            )
        self.metrics.observe(
            endpoint,
            scored.arm,
            scored.cold_start,
            scored.timings_ms,
            scored.filtered,
            scored.default_rows,
            len(scored.video_ids),
        )

    # /recommend and /rank are coroutines although they compute: a few milliseconds of
    # numpy and XGBoost, run on the worker's event loop, cost less than handing each request
    # to a thread and back (a worker computes one request at a time either way, under the
    # GIL), and measured lower latency at every percentile. /feedback writes to the lake and
    # stays a thread-pool endpoint.
    @bentoml.api(input_spec=RecommendRequest)
    async def recommend(self, **params: Any) -> RecommendResponse:
        """The user's feed: retrieved by the two-tower model, ranked, diversified, and drawn
        by the exploration policy seeded from the request id (each item's propensity)."""
        req = RecommendRequest(**params)
        request_id = uuid.uuid4().hex
        route = self.experiment.served_arm(req.user_id, self.rec.challenger is not None)
        scored = self.rec.recommend(
            req.user_id,
            req.k,
            req.surface,
            exclude=req.exclude_video_ids,
            blocked_creators=req.blocked_creator_ids,
            arm=route.arm,
            shadow=route.shadow,
            explain=req.explain,
            request_id=request_id,
        )
        self._served("recommend", req.user_id, req.surface, scored, request_id)
        return RecommendResponse(
            request_id=request_id,
            user_id=req.user_id,
            surface=req.surface,
            arm=scored.arm,
            model_name=self.rec.model.name,
            model_version=scored.model_version,
            retrieval_version=getattr(self.rec.retriever, "version", None),
            cold_start=scored.cold_start,
            items=_items(scored),
        )

    @bentoml.api(input_spec=RankRequest)
    async def rank(self, **params: Any) -> RankResponse:
        """Scores for the given candidate videos, best first."""
        req = RankRequest(**params)
        route = self.experiment.served_arm(req.user_id, self.rec.challenger is not None)
        scored = self.rec.rank(req.user_id, req.video_ids, req.surface, route.arm, route.shadow)
        request_id = uuid.uuid4().hex
        self._served("rank", req.user_id, req.surface, scored, request_id)
        return RankResponse(
            request_id=request_id,
            user_id=req.user_id,
            arm=scored.arm,
            model_name=self.rec.model.name,
            model_version=scored.model_version,
            cold_start=scored.cold_start,
            items=_items(scored),
            unknown_video_ids=scored.unknown_video_ids,
        )

    @bentoml.api(input_spec=FeedbackRequest)
    def feedback(self, **params: Any) -> FeedbackResponse:
        """Engagement events for served items, appended to the lake (all or nothing)."""
        from serving.feedback import FeedbackRejected, accept_feedback

        req = FeedbackRequest(**params)
        if bad_ts := events_out_of_time(req.events, self.settings.serving.served_ttl_hours):
            self.metrics.feedback.labels("rejected").inc(len(req.events))
            raise BentoMLException("; ".join(bad_ts), error_code=HTTPStatus.UNPROCESSABLE_ENTITY)
        # idempotent: an event accepted before, by any worker, is not written again; the new
        # ones reach the user's next /recommend, on any worker, through the served state
        try:
            accepted, duplicates = accept_feedback(
                req.events,
                self.served,
                self.state.claims,
                self.settings.lake_dir,
                self.state.events,
            )
        except FeedbackRejected as err:
            self.metrics.feedback.labels("rejected").inc(len(req.events))
            raise BentoMLException(str(err), error_code=HTTPStatus.UNPROCESSABLE_ENTITY) from None
        self.metrics.feedback.labels("accepted").inc(accepted)
        self.metrics.feedback.labels("duplicate").inc(duplicates)
        return FeedbackResponse(accepted=accepted, duplicates=duplicates)


# Outermost of reelrank's middlewares, so that it counts the API key's 401s too.
from serving.guards import RequestGuard  # noqa: E402
from serving.observability import quiet_client_errors  # noqa: E402
from serving.openapi import OpenApiDocs  # noqa: E402

quiet_client_errors()
RecommenderService.add_asgi_middleware(  # type: ignore[attr-defined]
    OpenApiDocs, service=RecommenderService
)
RecommenderService.add_asgi_middleware(  # type: ignore[attr-defined]
    RequestGuard,
    protected=PROTECTED_PATHS,
    max_body_bytes=_settings.serving.max_body_bytes,
    max_concurrency=_settings.serving.max_concurrency,
    retry_after_s=_settings.serving.retry_after_s,
    drain_grace_s=_settings.serving.drain_grace_s,
)


def _worker_status() -> dict[str, Any]:
    return dict(bentoml.get_current_service().status())


from serving.observability import StatusMiddleware  # noqa: E402 (beside its use)

RecommenderService.add_asgi_middleware(StatusMiddleware, status=_worker_status)  # type: ignore[attr-defined]

if _settings.serving.api_key is not None:
    from serving.observability import ApiKeyMiddleware

    # @bentoml.service adds this class method at run time; mypy sees the plain class
    RecommenderService.add_asgi_middleware(  # type: ignore[attr-defined]
        ApiKeyMiddleware,
        key=_settings.serving.api_key.get_secret_value(),
        protected=PROTECTED_PATHS,
    )
