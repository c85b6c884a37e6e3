"""Run a scenario (:mod:`itap_engine.scenario`) through the engine, headless.

The scenario's clock starts at the engine's simulated clock. The run ticks the
engine forward (one :meth:`EngineCore.tick` per step, the same cycle as ``itap
engine`` and ``--once``) and, before the tick that reaches a fault's offset, writes
that fault as a ``fault_command`` row, exactly as the console's fault dialog does;
the tick makes it active from its first instant. Ticks are cut at fault offsets, so a
fault starts at its offset rounded up to the next reading. What the run returns: the
faults as carried out, and every incident opened while it ran, with which fault each
one answers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import select

from itap_engine.engine.core import EngineCore
from itap_engine.scenario import PlannedFault, Scenario
from itap_engine.snapshot.dto import FaultCommandView
from itap_engine.store import schema as models

__all__ = ["DrillIncident", "DrillResult", "InjectedFault", "run_scenario"]

TICK_KIND = "scenario"


@dataclass(frozen=True)
class InjectedFault:
    planned: PlannedFault
    command: FaultCommandView
    """The ``fault_command`` row as written (pending until the next tick)."""
    start: datetime
    """Simulated time the fault became active."""
    caught_by: tuple[int, ...] = ()
    """Incidents of the run on the device that were open at some moment from the fault's
    start until its end plus the quiet period."""


@dataclass(frozen=True)
class DrillIncident:
    id: int
    device_id: str
    profile: str
    family: str
    severity: str
    status: str
    opened: datetime
    closed: datetime | None
    peak_score: float


@dataclass
class DrillResult:
    scenario: Scenario
    started: datetime
    finished: datetime
    ticks: int = 0
    injected: list[InjectedFault] = field(default_factory=list)
    incidents: list[DrillIncident] = field(default_factory=list)

    @property
    def missed(self) -> list[InjectedFault]:
        return [f for f in self.injected if not f.caught_by]

    @property
    def status(self) -> str:
        """CRITICAL if an incident of the run was critical, WARNING if any other, else OK."""
        severities = {i.severity for i in self.incidents}
        if "critical" in severities:
            return "CRITICAL"
        return "WARNING" if severities else "OK"


def _ms(value: datetime) -> int:
    return int((value - datetime(1970, 1, 1)).total_seconds() * 1000)


def _from_ms(value: int) -> datetime:
    return datetime(1970, 1, 1) + timedelta(milliseconds=value)


def run_scenario(
    core: EngineCore,
    scenario: Scenario,
    *,
    step_s: float = 60.0,
    on_tick: Callable[[float, float], None] | None = None,
) -> DrillResult:
    """Play ``scenario`` from the engine's clock; ``core`` is resumed and owned by the caller.

    Args:
        step_s: simulated seconds per tick at most (rounded to whole readings).
        on_tick: called after each tick with (elapsed, total) simulated seconds.
    """
    assert core.sim_time is not None, "resume() the core first"
    freq = float(core.settings.simulation.freq_s)
    step = max(freq, math.floor(step_s / freq) * freq)
    t0 = core.sim_time
    result = DrillResult(scenario=scenario, started=t0, finished=t0)
    pending = list(scenario.faults)
    written: list[tuple[PlannedFault, FaultCommandView]] = []
    elapsed = 0.0
    total = math.ceil(scenario.run_for_s / freq) * freq
    while elapsed < total:
        while pending and pending[0].start_s <= elapsed:
            planned = pending.pop(0)
            [view] = core.inject_fault([planned.device], planned.fault, planned.severity, planned.duration_s)
            written.append((planned, view))
        until = total if not pending else min(total, math.ceil(pending[0].start_s / freq) * freq)
        seconds = min(step, until - elapsed)
        core.tick(seconds, kind=TICK_KIND, inbox=False)
        elapsed += seconds
        result.ticks += 1
        if on_tick is not None:
            on_tick(elapsed, total)
    result.finished = core.sim_time
    quiet_ms = int((core.settings.alerts.quiet_seconds or core.settings.alerts.quiet_readings * freq) * 1000)
    A, FC = models.Alert, models.FaultCommand
    with core.store.session() as session:
        alerts = list(
            session.exec(
                select(A).where(A.opened_ts >= _ms(t0), A.opened_ts <= _ms(result.finished)).order_by(A.id)  # type: ignore[arg-type]
            )
        )
        commands = {
            c.id: c
            for c in session.exec(select(FC).where(FC.id.in_([v.id for _, v in written])))  # type: ignore[union-attr]
        }
    result.incidents = [
        DrillIncident(
            id=int(a.id or 0),
            device_id=a.device_id,
            profile=a.profile,
            family=a.family,
            severity=a.severity,
            status=a.status,
            opened=_from_ms(a.opened_ts),
            closed=_from_ms(a.closed_ts) if a.closed_ts is not None else None,
            peak_score=float(a.peak_score),
        )
        for a in alerts
    ]
    for planned, view in written:
        command = commands.get(view.id)
        start_ms = command.start_ts if command is not None and command.start_ts is not None else _ms(t0)
        end_ms = start_ms + int(planned.duration_s * 1000) + quiet_ms
        caught = tuple(  # open at some moment of the fault or its quiet period (one incident per device)
            a.id
            for a in alerts
            if a.id and a.device_id == planned.device and a.opened_ts <= end_ms and (a.closed_ts or end_ms) >= start_ms
        )
        result.injected.append(InjectedFault(planned, view, _from_ms(start_ms), caught))
    return result
