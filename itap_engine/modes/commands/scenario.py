"""``itap scenario run FILE``: a fault drill from a TOML file, through the engine, headless.

``itap scenario check FILE`` only reads and checks the file. ``run`` takes the run
lock (like ``--once``), bootstraps an empty database, plays the scenario from the
simulated clock (:func:`itap_engine.engine.drill.run_scenario`), prints the faults it
injected and the incidents they produced, and exits like ``--once``: 0 no incident,
1 a warning incident, 2 a critical one, 3 the run could not happen (bad file, lock
held, error). The first line of the output is that status.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from itap_engine.modes.cli_values import OneLineParser

if TYPE_CHECKING:
    from itap_engine.config import Settings
    from itap_engine.engine.drill import DrillResult

HELP = "fault drills from a TOML file: 'run FILE' through the engine, 'check FILE' only checks it"

EXIT_CODES = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="scenario_action", metavar="ACTION", parser_class=OneLineParser)
    actions.required = True
    run = actions.add_parser("run", help="run the scenario through the engine (takes the run lock)")
    run.add_argument("file", metavar="FILE", help="scenario file (TOML; see scenarios/)")
    run.add_argument(
        "--step",
        default="60s",
        metavar="DURATION",
        help="simulated time per engine tick, at most (default 60s; faults start at their offsets whatever it is)",
    )
    run.add_argument("--json", action="store_true", help="print the result as one JSON object")
    check = actions.add_parser("check", help="read and check the file, run nothing")
    check.add_argument("file", metavar="FILE")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from itap_engine.scenario import ScenarioError, load_scenario, parse_seconds

    json_output = getattr(args, "json", False)
    try:
        scenario = load_scenario(args.file, settings)
    except ScenarioError as error:
        return _unknown(str(error), json_output)
    if args.scenario_action == "check":
        print(f"{scenario.path}: {len(scenario.faults)} fault(s) over {_span(scenario.run_for_s)}")
        for fault in scenario.faults:
            print(f"  {fault.describe()}")
        return 0
    step = parse_seconds(args.step)
    if step is None or not 0 < step <= 86400:
        return _unknown(f"--step {args.step!r}: not a duration from 1s to 24h (60s, 5m)", json_output)
    from itap_engine.engine.core import EngineCore
    from itap_engine.engine.drill import run_scenario
    from itap_engine.engine.logs import configure_logging
    from itap_engine.modes.once import describe_error
    from itap_engine.store.run_lock import RunLock

    try:
        configure_logging(settings)
        lock = RunLock(settings, "itap scenario run")
        lock.acquire()
    except Exception as error:
        return _unknown(describe_error(error), json_output)
    try:
        core = EngineCore(settings)
        try:
            if core.needs_bootstrap():
                print("bootstrapping an empty database (history and models)…", file=sys.stderr)
                core.bootstrap()
            core.resume()
            result = run_scenario(core, scenario, step_s=step)
        finally:
            core.close()
    except Exception as error:
        if getattr(args, "debug", False):
            raise
        return _unknown(describe_error(error), json_output)
    finally:
        lock.release()
    if json_output:
        sys.stdout.write(json.dumps(as_json(result)) + "\n")
    else:
        print(format_plain(result))
    return EXIT_CODES[result.status]


def _unknown(message: str, json_output: bool) -> int:
    from itap_engine.safe_text import visible

    print(f"itap: error: {visible(message)}", file=sys.stderr)
    if json_output:
        sys.stdout.write(json.dumps({"status": "UNKNOWN", "exit_code": 3, "error": visible(message)}) + "\n")
    else:
        print(f"SCENARIO UNKNOWN - {visible(message)}")
    return 3


def _span(seconds: float) -> str:
    from itap_engine.scenario import format_seconds

    return format_seconds(seconds)


def _time(value: Any) -> str:
    return "—" if value is None else f"{value:%m-%d %H:%M:%S}"


def summary_line(result: DrillResult) -> str:
    caught = len(result.injected) - len(result.missed)
    worst = {"CRITICAL": "critical", "WARNING": "warning"}.get(result.status)
    incidents = f"{len(result.incidents)} incident(s)" + (f", worst {worst}" if worst else "")
    return f"SCENARIO {result.status} - {caught} of {len(result.injected)} fault(s) caught, {incidents}"


def format_plain(result: DrillResult) -> str:
    from itap_engine.safe_text import visible

    scenario = result.scenario
    lines = [
        summary_line(result),
        f"scenario {visible(scenario.name)} ({visible(str(scenario.path))}): "
        f"{_time(result.started)} .. {_time(result.finished)} (sim), {result.ticks} ticks",
        "injected:",
    ]
    for fault in result.injected:
        caught = ", ".join(f"#{i}" for i in fault.caught_by) or "NOT CAUGHT"
        lines.append(f"  {fault.planned.describe()}: active {_time(fault.start)}; incident {caught}")
    lines.append("incidents:" if result.incidents else "incidents: none")
    for incident in result.incidents:
        lines.append(
            f"  #{incident.id} {visible(incident.device_id)} {incident.family} {incident.severity} "
            f"opened {_time(incident.opened)} {'closed ' + _time(incident.closed) if incident.closed else 'open'} "
            f"peak {incident.peak_score:.2f}"
        )
    return "\n".join(lines)


def as_json(result: DrillResult) -> dict[str, Any]:
    from itap_engine.safe_text import visible_tree

    return visible_tree(
        {
            "schema": "itap.scenario/1",
            "status": result.status,
            "exit_code": EXIT_CODES[result.status],
            "message": summary_line(result),
            "scenario": {"name": result.scenario.name, "file": str(result.scenario.path)},
            "started": result.started.isoformat(),
            "finished": result.finished.isoformat(),
            "ticks": result.ticks,
            "injected": [
                {
                    "device_id": f.planned.device,
                    "fault": f.planned.fault,
                    "offset_s": f.planned.start_s,
                    "duration_s": f.planned.duration_s,
                    "severity": f.planned.severity,
                    "command_id": f.command.id,
                    "active_from": f.start.isoformat(),
                    "caught_by": list(f.caught_by),
                }
                for f in result.injected
            ],
            "incidents": [
                {
                    "id": i.id,
                    "device_id": i.device_id,
                    "profile": i.profile,
                    "family": i.family,
                    "severity": i.severity,
                    "status": i.status,
                    "opened": i.opened.isoformat(),
                    "closed": i.closed.isoformat() if i.closed else None,
                    "peak_score": round(i.peak_score, 4),
                }
                for i in result.incidents
            ],
        }
    )
