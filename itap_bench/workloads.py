"""The fixed workloads every bench stage names: a fleet size and a span of readings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Workload:
    name: str
    devices: int
    hours: float
    freq_s: int = 10

    @property
    def rows(self) -> int:
        return int(self.devices * self.hours * 3600 / self.freq_s)
