"""Load a scenario file from the console's command palette and play it live.

The file is read and checked in a worker thread (:func:`itap_engine.scenario.check_scenario`,
against the devices and faults the console shows). Its clock starts at the live
simulated clock when it loads; each fault is injected through the console's own
fault path (:meth:`ItapApp.inject`) once the live clock has moved its offset past
that start, so it shows in the fleet, the toasts and the Faults tab like a fault from
the dialog. The engine starts an injected fault on its next tick: the offsets hold to
one tick. Pausing the engine pauses the scenario with it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from itap_engine.scenario import Scenario, ScenarioError, check_scenario, format_seconds, read_scenario_file
from itap_tui.screens import FaultRequest, PromptModal

if TYPE_CHECKING:
    from itap_engine.snapshot import Snapshot
    from itap_tui.app import ItapApp

POLL_S = 0.25


def live_snapshot(app: ItapApp) -> Snapshot | None:
    """The newest live snapshot, also while the console shows a past time."""
    if app.past is not None:
        return getattr(app, "_live", None) or app.snapshot
    return app.snapshot


def ask_scenario(app: ItapApp) -> None:
    """Ask for a scenario file, then load and play it."""

    def chosen(answer: str | None) -> None:
        if answer and answer.strip():
            app.run_worker(
                play_scenario(app, Path(answer.strip()).expanduser()),
                group="scenario",
                exit_on_error=False,
                description="load a scenario",
            )

    app.push_screen(PromptModal("Scenario file (TOML) to play from the current simulated clock", "scenarios/"), chosen)


def check_against(snapshot: Snapshot, path: Path) -> Scenario:
    """Read and check ``path`` against the devices and faults of ``snapshot``."""
    fleet = {row.device_id: row.profile for row in snapshot.devices}
    catalogues = {name: info.faults for name, info in snapshot.profiles.items()}
    return check_scenario(read_scenario_file(path), path, fleet, catalogues)


async def play_scenario(app: ItapApp, path: Path) -> int:
    """Load ``path`` and inject its faults at their offsets; returns how many were injected."""
    snapshot = live_snapshot(app)
    if snapshot is None or snapshot.stats.sim_time is None:
        app.notify("No simulated clock yet: load the scenario once the fleet shows.", severity="warning", markup=False)
        return 0
    try:
        scenario = await asyncio.to_thread(check_against, snapshot, path)
    except ScenarioError as error:
        app.notify(str(error), title="Scenario refused", severity="error", markup=False, timeout=10)
        return 0
    start: datetime = snapshot.stats.sim_time
    span = format_seconds(max(f.end_s for f in scenario.faults))
    app.notify(
        f"Scenario {scenario.name}: {len(scenario.faults)} fault(s) over {span} (sim), from {start:%H:%M:%S}",
        title="Scenario loaded",
        markup=False,
        timeout=8,
    )
    injected = 0
    for fault in scenario.faults:
        while True:
            current = live_snapshot(app)
            now = current.stats.sim_time if current is not None else None
            if now is not None and (now - start).total_seconds() >= fault.start_s:
                break
            await asyncio.sleep(POLL_S)
        app.inject(FaultRequest((fault.device,), fault.fault, fault.severity, fault.duration_s))
        injected += 1
    app.notify(f"Scenario {scenario.name}: all {injected} fault(s) injected.", markup=False, timeout=6)
    return injected
