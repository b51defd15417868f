"""The sources of the lake's data, one module each, found by name (``settings.dataset``).

A new source is one module here that registers itself (see :mod:`ingest.sources.base`), one
import below, and its options model in :mod:`reelrank.settings`.
"""

from ingest.sources import interactions, kuairand, simulator
from ingest.sources.base import SOURCES, LogSource, Source, get_log_source, get_source, register

__all__ = [
    "SOURCES",
    "LogSource",
    "Source",
    "get_log_source",
    "get_source",
    "interactions",
    "kuairand",
    "register",
    "simulator",
]
