"""Deployment of a promoted champion: load it the way the service will, smoke-test, record.

The BentoML service loads whatever ``champion`` points at when it starts; this step proves
the new champion loads with the current feature store and answers a request before anyone
restarts or reloads a server, and writes a deployment record people and tools can read.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ingest.lake import atomic_write
from reelrank.errors import StageFailed
from reelrank.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deployment:
    """What the deploy step proved and recorded (``serving/deployment.json``)."""

    model_name: str
    model_version: str
    deployed_at: str
    catalog_videos: int
    load_seconds: float
    smoke_p50_ms: float
    smoke_p99_ms: float
    record: str = ""  # where the record was written

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def deploy_champion(settings: Settings, n_requests: int = 50) -> Deployment:
    """Load the champion as the service will, answer ``n_requests`` smoke requests, and
    write the deployment record; a failed smoke request fails the step."""
    from serving.loader import build_recommender

    t0 = time.perf_counter()
    rec = build_recommender(settings)
    load_s = time.perf_counter() - t0
    users = [f"smoke-{i}" for i in range(n_requests)]
    latencies = []
    for u in users:
        t = time.perf_counter()
        out = rec.recommend(u, 10)
        latencies.append((time.perf_counter() - t) * 1e3)
        if len(out.video_ids) != 10 or not np.all(np.isfinite(out.scores)):
            raise SmokeTestFailed(f"smoke test failed for v{rec.model.version}: {out}")
    record = Deployment(
        model_name=rec.model.name,
        model_version=rec.model.version,
        deployed_at=datetime.now(UTC).isoformat(),
        catalog_videos=len(rec.items.video_ids),
        load_seconds=round(load_s, 2),
        smoke_p50_ms=round(float(np.percentile(latencies, 50)), 3),
        smoke_p99_ms=round(float(np.percentile(latencies, 99)), 3),
    )
    fields = record.to_dict()
    fields.pop("record")
    text = json.dumps(fields, indent=2)
    path = atomic_write(settings.serving_dir / "deployment.json", lambda t: t.write_text(text))
    log.info("deployed %s v%s: %s", record.model_name, record.model_version, text)
    return Deployment(**{**fields, "record": str(path)})


class SmokeTestFailed(StageFailed, RuntimeError):
    """The new champion loaded but did not answer a smoke request properly."""
