"""The simulated world as a source: :mod:`ingest.simulator` generates it, with its oracle,
and :func:`ingest.pipeline.ingest_simulated` writes it day by day. There is no log to adapt,
so this source only ingests; its options are ``settings.sim``."""

from __future__ import annotations

from datetime import date

from ingest.pipeline import IngestResult, ingest_simulated
from ingest.sources.base import Source, register
from reelrank.settings import Settings, SimulationSettings


class SimulatorSource(Source):
    """The simulator, the default ``settings.dataset``."""

    name = "simulator"
    options_type = SimulationSettings

    def options(self, settings: Settings) -> SimulationSettings:
        return settings.sim

    def ingest(self, settings: Settings, through: date, force: bool = False) -> IngestResult:
        return ingest_simulated(settings, through, force=force)


register(SimulatorSource())
