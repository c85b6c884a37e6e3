"""``itap evaluate``: detection metrics on labelled data, or the SKAB benchmark protocol."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from itap_engine.errors import ItapError
from itap_engine.modes.commands.options import add_cluster_argument

if TYPE_CHECKING:
    from itap_engine.config import Settings

HELP = "measure detection: point and event metrics on simulated data, or SKAB F1/FAR/MAR"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="industrial", help="profile declared in config (default: industrial)")
    parser.add_argument("--skab", metavar="DIR", help="evaluate on SKAB CSV files under DIR (F1, FAR, MAR)")
    parser.add_argument("--predictions", metavar="FILE", help="with --skab: write per-row predictions to FILE (CSV)")
    parser.add_argument("--simulate", action="store_true",
                        help="evaluate on a fresh simulated scenario in a scratch database (default when the "
                             "database holds no labelled readings after the model's training window)")
    parser.add_argument("--devices", type=int, default=100, help="--simulate: devices (default: 100)")
    parser.add_argument("--hours", type=float, default=24.0, help="--simulate: evaluated hours (default: 24)")
    parser.add_argument("--train-hours", type=float, default=24.0,
                        help="--simulate: hours simulated before, to train on (default: 24)")
    parser.add_argument("--fault-rate", type=float, help="--simulate: random faults per device-day")
    parser.add_argument("--seed", type=int, help="--simulate: random seed")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    add_cluster_argument(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from itap_engine.modes.render.output import console, print_json
    if args.skab:
        return _run_skab(args)
    from itap_engine.evaluation.labelled import (
        EvaluationError,
        evaluate_simulated,
        evaluate_store,
        write_metrics,
    )

    settings.profile(args.profile)
    metrics: dict[str, Any] | None = None
    if not args.simulate:
        from itap_engine.store.sql import Store

        store = Store(settings)
        try:
            metrics = evaluate_store(store, settings, args.profile)
        except EvaluationError as error:
            console(stderr=True).print(f"{error}; evaluating a simulated scenario instead")
        finally:
            store.close()
    if metrics is None and _cluster(args, settings) != "none":
        from itap_engine.compute.cluster import open_executor
        from itap_engine.compute.evaluate import evaluate_simulated_partitioned
        from itap_engine.modes.render.progress import task_progress

        with open_executor(settings, args.cluster) as executor, task_progress("evaluate (steps)") as progress:
            metrics = evaluate_simulated_partitioned(
                executor, settings, args.profile, devices=args.devices, hours=args.hours,
                train_hours=args.train_hours, fault_rate=args.fault_rate, seed=args.seed, progress=progress,
            )
    if metrics is None:
        metrics = evaluate_simulated(
            settings, args.profile, devices=args.devices, hours=args.hours, train_hours=args.train_hours,
            fault_rate=args.fault_rate, seed=args.seed,
        )
    path = write_metrics(settings, metrics)
    if args.json:
        print_json(metrics)
    else:
        print_tables(metrics)
        console().print(f"metrics written to {path}")
    return 0


def _cluster(args: argparse.Namespace, settings: Settings) -> str:
    """The cluster for a simulated evaluation: ``none`` keeps the one-process path."""
    from itap_engine.compute.cluster import cluster_spec

    return cluster_spec(settings, args.cluster)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_tables(metrics: dict[str, Any]) -> None:
    from rich.table import Table

    from itap_engine.modes.render.output import console
    out = console()
    p, fa, top = metrics["points"], metrics["false_alerts"], metrics["top_family"]
    summary = Table(title=f"ITAP detection: {metrics['profile']} ({metrics.get('source')}, "
                          f"{metrics['model']['detector']} v{metrics['model']['version_id']})")
    for col in ("ROC-AUC", "precision", "recall", "F1", "false alerts / device-day", "top family right"):
        summary.add_column(col, justify="right")
    summary.add_row(_fmt(p["roc_auc"]), _fmt(p["precision"]), _fmt(p["recall"]), _fmt(p["f1"]),
                    _fmt(fa["per_device_day"]), _fmt(top["share"]))
    out.print(summary)
    faults = Table(title="Per fault")
    for col in ("fault", "events", "caught", "event recall", "point recall", "TTD median (readings)",
                "TTD p90 (readings)", "TTD median (s)", "TTD p90 (s)"):
        faults.add_column(col, justify="right" if col != "fault" else "left")
    for name, ev in metrics["events"].items():
        pf = metrics["per_fault"].get(name, {})
        faults.add_row(name, _fmt(ev["events"]), _fmt(ev["caught"]), _fmt(ev["recall"]), _fmt(pf.get("point_recall")),
                       _fmt(ev.get("ttd_readings_median"), 1), _fmt(ev.get("ttd_readings_p90"), 1),
                       _fmt(ev.get("ttd_seconds_median"), 0), _fmt(ev.get("ttd_seconds_p90"), 0))
    out.print(faults)
    out.print(f"{fa['alerts']} alerts, {fa['false_alerts']} false, over {fa['device_days']:.1f} device-days")


def _run_skab(args: argparse.Namespace) -> int:
    from rich.table import Table

    from itap_engine.evaluation.skab import evaluate_skab
    from itap_engine.modes.render.output import console, print_json

    directory = Path(args.skab).expanduser()
    if not directory.exists():
        raise ItapError(f"{directory}: SKAB folder not found")
    try:
        result = evaluate_skab(directory, predictions_path=args.predictions)
    except (ValueError, FileNotFoundError) as error:
        raise ItapError(f"{directory}: {error}") from None
    payload = {"detector": result.detector, "f1": result.f1, "far": result.far, "mar": result.mar,
               "files": len(result.per_file), "rows": result.n_rows}
    if args.json:
        print_json(payload)
        return 0
    table = Table(title=f"SKAB outlier detection ({directory})")
    for col in ("detector", "files", "rows", "F1", "FAR %", "MAR %"):
        table.add_column(col, justify="right")
    table.add_row(result.detector, str(len(result.per_file)), f"{result.n_rows:,}", f"{result.f1:.3f}",
                  f"{result.far:.2f}", f"{result.mar:.2f}")
    console().print(table)
    if args.predictions:
        console().print(f"predictions written to {args.predictions}")
    return 0
