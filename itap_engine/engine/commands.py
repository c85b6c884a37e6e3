"""Operator fault commands: ``fault_command`` rows carried out by the simulators.

A command is written ``pending`` (by the console, an attached console in another
process, or :meth:`FaultCommands.inject`); the next tick makes it ``active`` from the
simulated clock (or ``rejected`` with a reason) and schedules the fault in its
device's simulator, and marks it ``done`` once its simulated end has passed. With
shards, each engine carries out only the commands of the devices it owns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from sqlmodel import select

from itap_engine.config import Settings
from itap_engine.engine.results import from_ms, to_ms
from itap_engine.ingest.simulator import FaultEvent, Simulator
from itap_engine.snapshot import FaultCommandView
from itap_engine.store import schema as models
from itap_engine.store.queries import command_view, write_fault_commands
from itap_engine.store.sql import Store

__all__ = ["FaultCommands"]

log = logging.getLogger("itap_engine.engine.core")  # the events view names the engine


class FaultCommands:
    """The fault commands of the devices one engine simulates.

    Args:
        store: the engine's store.
        settings: the loaded settings (profiles and their fault catalogues).
        simulators: profile -> the engine's simulator of it.
        owns: whether this engine carries out a device's commands (its shard's devices).
    """

    def __init__(
        self, store: Store, settings: Settings, simulators: Mapping[str, Simulator], owns: Callable[[str], bool]
    ) -> None:
        self.store = store
        self.settings = settings
        self.simulators = simulators
        self.owns = owns
        self.device_profile: dict[str, str] = {
            d: profile for profile, sim in simulators.items() for d in sim.device_ids
        }

    def inject(
        self, device_ids: Sequence[str], fault: str, severity: float, duration_s: float
    ) -> list[FaultCommandView]:
        """Write one pending ``fault_command`` row per device; the next tick applies them."""
        return write_fault_commands(self.store, device_ids, fault, severity, duration_s)

    def _reject(self, command: models.FaultCommand) -> str | None:
        profile = self.device_profile.get(command.device_id)
        if profile is None:
            known = ", ".join(list(self.device_profile)[:3])
            return f"unknown device {command.device_id!r}: faults go to simulated devices ({known}, ...)"
        faults = self.settings.profile(profile).faults
        if command.fault not in faults:
            return f"profile {profile} has no fault {command.fault!r}; known: {', '.join(faults)}"
        if not command.severity > 0 or not command.duration_s > 0:
            return "severity and duration must be positive"
        return None

    def _schedule(self, command: models.FaultCommand, start: datetime) -> None:
        profile = self.device_profile[command.device_id]
        self.simulators[profile].schedule(
            FaultEvent(
                device_id=command.device_id,
                fault=command.fault,
                start=start,
                duration_s=float(command.duration_s),
                severity=float(command.severity),
                source="operator",
            )
        )

    def apply(self, start: datetime) -> list[FaultCommandView]:
        """Pending commands become active (from ``start``, the clock) or rejected; ended ones done."""
        start_ms = to_ms(start)
        changed = []
        FC = models.FaultCommand
        with self.store.session() as session:
            pending = list(session.exec(select(FC).where(FC.status == "pending").order_by(FC.id)))  # type: ignore[arg-type]
            for command in (c for c in pending if self.owns(c.device_id)):
                reason = self._reject(command)
                if reason:
                    command.status, command.message = "rejected", reason
                    log.info("fault command %s rejected: %s", command.id, reason)
                else:
                    self._schedule(command, start)
                    command.status = "active"
                    command.start_ts = start_ms
                    command.end_ts = start_ms + int(command.duration_s * 1000)
                    command.message = f"active from {start.isoformat(sep=' ')} (simulated)"
                    log.info("fault command %s active: %s on %s", command.id, command.fault, command.device_id)
                session.add(command)
                changed.append(command)
            ended = session.exec(select(FC).where(FC.status == "active", FC.end_ts <= start_ms))  # type: ignore[arg-type,operator]
            for command in (c for c in ended if self.owns(c.device_id)):
                command.status = "done"
                command.message = "finished"
                session.add(command)
                changed.append(command)
            if changed:
                session.commit()
            views = [command_view(c) for c in changed]
        for sim in self.simulators.values():
            sim.scheduled = [e for e in sim.scheduled if e.end > start - timedelta(hours=1)]
        return views

    def reschedule_active(self) -> None:
        """Schedule the active commands again (after a restart: simulators start empty)."""
        FC = models.FaultCommand
        with self.store.session() as session:
            for command in session.exec(select(FC).where(FC.status == "active")):  # type: ignore[arg-type]
                if command.device_id in self.device_profile and command.start_ts is not None:
                    self._schedule(command, from_ms(command.start_ts))
