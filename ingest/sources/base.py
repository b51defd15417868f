"""What a source of the lake's data is, and the registry that finds one by name.

``settings.dataset`` names the source. Each source is one module of this package that defines
a :class:`Source` and registers an instance of it (``register(MySource())``); the package
imports every such module, so :func:`get_source` knows them all. A source's options are one
pydantic model defined in :mod:`reelrank.settings` (the settings must not import the code that
reads the data), which is why a new source also adds its options model there.

Two kinds exist: the simulator writes a generated world day by day, and a :class:`LogSource`
adapts a recorded log once into the three contract frames (:meth:`LogSource.load`), which
:mod:`ingest.datasets` stages and writes day by day for every log source alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import date
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar, cast

from pydantic import BaseModel

from ingest.sources.common import AdaptedDataset
from reelrank.settings import Settings, SourceOptions

if TYPE_CHECKING:
    from ingest.pipeline import IngestResult

OptionsT = TypeVar("OptionsT", bound=SourceOptions)
SourceT = TypeVar("SourceT", bound="Source")


class Source(ABC):
    """One place the lake's data comes from, known by ``name`` (a ``settings.dataset``)."""

    name: ClassVar[str]
    options_type: ClassVar[type[BaseModel]]  # where settings keep this source's options

    @abstractmethod
    def options(self, settings: Settings) -> BaseModel:
        """This source's options, taken from ``settings``."""

    def ingest(self, settings: Settings, through: date, force: bool = False) -> IngestResult:
        """Write every missing lake partition up to and including ``through``. A source that
        generates its data (the simulator) does it itself; a :class:`LogSource` is staged and
        written by :mod:`ingest.datasets`, the same for every log."""
        raise NotImplementedError(f"source {self.name!r} is written by ingest.datasets")


class LogSource(Source, Generic[OptionsT]):
    """A recorded interaction log: adapted once to the contracts, then staged and written by
    :mod:`ingest.datasets` (the same for every log source, so a source only reads)."""

    options_type: ClassVar[type[SourceOptions]]

    def options(self, settings: Settings) -> OptionsT:
        """The fields of ``settings.data`` this source's options model declares (the others
        belong to other sources, and must not change what identifies this one's staging)."""
        fields = set(self.options_type.model_fields)
        return cast(
            OptionsT, self.options_type.model_validate(settings.data.model_dump(include=fields))
        )

    @abstractmethod
    def load(self, options: OptionsT) -> AdaptedDataset:
        """The whole log as the three contract frames and the adapter's report."""


SOURCES: dict[str, Source] = {}


def register(source: SourceT) -> SourceT:
    """Make ``source`` known under its name; a second source of that name is a mistake."""
    if source.name in SOURCES:
        raise ValueError(f"a source named {source.name!r} is already registered")
    SOURCES[source.name] = source
    return source


def get_source(name: str) -> Source:
    """The registered source called ``name``; an unknown name lists the known ones."""
    try:
        return SOURCES[name]
    except KeyError:
        known = ", ".join(sorted(SOURCES)) or "none"
        raise LookupError(f"no data source named {name!r}; known sources: {known}") from None


def get_log_source(name: str) -> LogSource[SourceOptions]:
    """The registered log source called ``name`` (the simulator is not one)."""
    source = get_source(name)
    if not isinstance(source, LogSource):
        raise ValueError(f"dataset {name!r} is not a real dataset")
    return source
