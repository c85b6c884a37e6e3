"""``itap validate FILE``: check a CSV file as ``ingest`` would, without storing it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from itap_engine.errors import ItapError
from itap_engine.modes.cli_values import output_file
from itap_engine.modes.commands.ingest import add_csv_arguments, csv_options

if TYPE_CHECKING:
    from itap_engine.config import Settings

HELP = "validate a CSV file without storing it (exit 1 if rows would be rejected or alerts raised)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="CSV file to validate")
    add_csv_arguments(parser)
    parser.add_argument("--report", metavar="OUT.json", help="write the validation report as JSON")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from itap_engine.ingest.csv_source import validate_csv
    from itap_engine.ingest.validate import render_report
    from itap_engine.modes.render.output import console

    if args.report:
        output_file(args.report, option="--report", force=True)  # its folder exists; a report is rewritten
    plan, report = validate_csv(settings, args.file, csv_options(args))
    console().print(render_report(report))
    if args.report:
        payload = {"file": str(plan.path), "profile": plan.profile, **report.to_dict()}
        target = Path(args.report)
        try:
            target.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
        except OSError as error:
            raise ItapError(f"{target}: cannot write the report: {error.strerror or error}") from None
    return 0 if report.clean else 1
