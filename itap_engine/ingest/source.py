"""Where readings come from, as a protocol.

A source yields chunks of readings (pandas frames: ``device_id``, ``ts``, the
profile's signals, optional ``state`` and label columns) for one profile. The
pipeline (:func:`itap_engine.ingest.pipeline.ingest_source`) validates every chunk,
stores what passes and quarantines the rest, as one run named after the source.

The sources ITAP has: a CSV file or stream (:class:`~itap_engine.ingest.csv_source.CsvFileSource`)
and a frame already in memory, such as one simulated interval (:class:`FrameSource`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FrameSource", "TelemetrySource"]


@runtime_checkable
class TelemetrySource(Protocol):
    """Chunks of readings of one profile, with a name for the run and its quarantine."""

    @property
    def name(self) -> str: ...

    @property
    def profile(self) -> str: ...

    @property
    def raw_names(self) -> dict[str, str]:
        """Column -> its name in the source (a CSV header), for rejected rows' raw JSON."""
        ...

    def frames(self) -> Iterator[pd.DataFrame]: ...


@dataclass(frozen=True)
class FrameSource:
    """One frame in memory (a simulated interval, a test's rows) as a source."""

    name: str
    profile: str
    frame: pd.DataFrame

    @property
    def raw_names(self) -> dict[str, str]:
        return {}

    def frames(self) -> Iterator[pd.DataFrame]:
        yield self.frame
