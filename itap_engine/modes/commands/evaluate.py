"""``itap evaluate``: detection metrics on labelled data, or the SKAB benchmark protocol."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from itap_engine.errors import ItapError
from itap_engine.modes.cli_values import bounded_float, bounded_int, output_file
from itap_engine.modes.commands.options import add_cluster_argument

if TYPE_CHECKING:
    from itap_engine.config import Settings

HELP = "measure detection: point and event metrics on simulated data, or SKAB F1/FAR/MAR"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="industrial", help="profile declared in config (default: industrial)")
    parser.add_argument(
        "--skab",
        metavar="DIR",
        help="SKAB protocol through the engine path: each labelled CSV under DIR is one skab_pump "
        "device in a scratch store, trained on its first 400 readings, the rest streamed "
        "(pooled F1, FAR, MAR; alert intervals; T2 and IsolationForest baselines)",
    )
    parser.add_argument(
        "--predictions",
        metavar="FILE",
        help="with --skab: write file,datetime,prediction (file relative to DIR) to FILE",
    )
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="evaluate on a fresh simulated scenario in a scratch database (without it, the "
        "database's labelled readings after the model's training window are evaluated; "
        "none there: exit 2)",
    )
    parser.add_argument(
        "--devices", type=bounded_int(1, 100_000), default=100, help="--simulate: devices (default: 100)"
    )
    parser.add_argument(
        "--hours",
        type=bounded_float(0, 366 * 24.0, low_open=True),
        default=24.0,
        help="--simulate: evaluated hours (default: 24)",
    )
    parser.add_argument(
        "--train-hours",
        type=bounded_float(0, 366 * 24.0, low_open=True),
        default=24.0,
        help="--simulate: hours simulated before, to train on (default: 24)",
    )
    parser.add_argument("--fault-rate", type=bounded_float(0, 1000), help="--simulate: random faults per device-day")
    parser.add_argument("--seed", type=bounded_int(0, 2**32 - 1), help="--simulate: random seed")
    parser.add_argument(
        "--fault-scale",
        type=bounded_float(0, 100),
        default=1.0,
        help="--simulate: multiply every fault's magnitude (0.5 = half-magnitude faults)",
    )
    parser.add_argument(
        "--jitter",
        type=bounded_float(0, 0.49),
        default=0.0,
        help="--simulate: move each timestamp by up to this fraction of the step (e.g. 0.3)",
    )
    parser.add_argument(
        "--skip", type=bounded_float(0, 0.5), default=0.0, help="--simulate: drop this share of readings (e.g. 0.01)"
    )
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    add_cluster_argument(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from itap_engine.modes.render.output import console, print_json

    if args.skab:
        return _run_skab(args, settings)
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
            # say so; never silently measure something else than was asked for
            console(stderr=True).print(
                f"{error}. Use `itap evaluate --simulate` for a simulated scenario or `--skab DIR` for SKAB"
            )
            return 2
        finally:
            store.close()
    if metrics is None:
        from itap_engine.compute.cluster import group_map, open_executor
        from itap_engine.compute.train import EVALUATE_PASSES
        from itap_engine.modes.render.progress import task_progress

        with (
            open_executor(settings, args.cluster) as executor,
            task_progress(f"evaluate {args.profile}") as progress,
            executor.sklearn_backend(),
        ):
            groups = group_map(executor, progress, passes=EVALUATE_PASSES)
            metrics = evaluate_simulated(
                settings,
                args.profile,
                devices=args.devices,
                hours=args.hours,
                train_hours=args.train_hours,
                fault_rate=args.fault_rate,
                seed=args.seed,
                fault_scale=args.fault_scale,
                jitter=args.jitter,
                skip=args.skip,
                map_groups=groups,
            )
            if groups is not None:
                groups.finish()
    path = write_metrics(settings, metrics)
    if args.json:
        print_json(metrics)
    else:
        print_tables(metrics)
        console().print(f"metrics written to {path}")
    return 0


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
    summary = Table(
        title=f"ITAP detection: {metrics['profile']} ({metrics.get('source')}, "
        f"{metrics['model']['detector']} v{metrics['model']['version_id']})"
    )
    for col in ("ROC-AUC", "precision", "recall", "F1", "false alerts / device-day", "top family right"):
        summary.add_column(col, justify="right")
    summary.add_row(
        _fmt(p["roc_auc"]),
        _fmt(p["precision"]),
        _fmt(p["recall"]),
        _fmt(p["f1"]),
        _fmt(fa["per_device_day"]),
        _fmt(top["share"]),
    )
    out.print(summary)
    faults = Table(title="Per fault")
    for col in (
        "fault",
        "events",
        "caught",
        "event recall",
        "point recall",
        "TTD median (readings)",
        "TTD p90 (readings)",
        "TTD median (s)",
        "TTD p90 (s)",
    ):
        faults.add_column(col, justify="right" if col != "fault" else "left")
    for name, ev in metrics["events"].items():
        pf = metrics["per_fault"].get(name, {})
        faults.add_row(
            name,
            _fmt(ev["events"]),
            _fmt(ev["caught"]),
            _fmt(ev["recall"]),
            _fmt(pf.get("point_recall")),
            _fmt(ev.get("ttd_readings_median"), 1),
            _fmt(ev.get("ttd_readings_p90"), 1),
            _fmt(ev.get("ttd_seconds_median"), 0),
            _fmt(ev.get("ttd_seconds_p90"), 0),
        )
    out.print(faults)
    out.print(f"{fa['alerts']} alerts, {fa['false_alerts']} false, over {fa['device_days']:.1f} device-days")
    support = metrics.get("support", {})
    if support:
        out.print(
            f"support: {support['events']} events judged, {support['device_days']:.1f} device-days, "
            f"{support['rows']:,} readings"
        )
    for warning in support.get("warnings", []):
        console(stderr=True).print(f"warning: {warning}")


def _run_skab(args: argparse.Namespace, settings: Settings) -> int:
    from rich.table import Table

    from itap_engine.compute.cluster import group_map, open_executor
    from itap_engine.evaluation.labelled import write_metrics
    from itap_engine.evaluation.skab import evaluate_skab
    from itap_engine.evaluation.skab_engine import evaluate_skab_engine
    from itap_engine.modes.render.output import console, print_json
    from itap_engine.modes.render.progress import task_progress

    directory = Path(args.skab).expanduser()
    if not directory.exists():
        raise ItapError(f"{directory}: SKAB folder not found")
    try:
        if args.predictions:
            output_file(args.predictions, option="--predictions", force=True)  # its folder must exist
        with (
            open_executor(settings, args.cluster) as executor,
            task_progress("evaluate SKAB files") as progress,
            executor.sklearn_backend(),
        ):
            metrics = evaluate_skab_engine(
                settings, directory, predictions_path=args.predictions, map_files=group_map(executor, progress)
            )
            baselines = {name: evaluate_skab(directory, detector=name) for name in ("t2", "isolation_forest")}
    except (ValueError, FileNotFoundError) as error:
        raise ItapError(f"{directory}: {error}") from None
    metrics["baselines"] = {
        name: {"tp": r.tp, "tn": r.tn, "fp": r.fp, "fn": r.fn, "f1": r.f1, "far": r.far, "mar": r.mar}
        for name, r in baselines.items()
    }
    p, a = metrics["points"], metrics["alerts"]
    metrics.update({"f1": p["f1"], "far": p["far"], "mar": p["mar"], "rows": p["rows"]})
    path = write_metrics(settings, metrics, "skab-metrics.json")
    if args.json:
        print_json(metrics)
        return 0
    out = console()
    table = Table(title=f"SKAB outlier detection through the engine path ({directory})")
    for col in ("detector", "files", "rows", "F1", "FAR %", "MAR %", "ROC-AUC"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{metrics['detector']} ({metrics['threshold_method']})",
        str(metrics["files"]),
        f"{p['rows']:,}",
        f"{p['f1']:.3f}",
        f"{p['far']:.2f}",
        f"{p['mar']:.2f}",
        _fmt(p["roc_auc"]),
    )
    for name, r in baselines.items():
        table.add_row(
            f"baseline {name}", str(r.n_files), f"{r.n_rows:,}", f"{r.f1:.3f}", f"{r.far:.2f}", f"{r.mar:.2f}", "-"
        )
    out.print(table)
    alerts = Table(title="Alert intervals")
    for col in (
        "episodes",
        "caught",
        "recall",
        "alerts",
        "false",
        "precision",
        "F1",
        "false / device-day",
        "TTD median (s)",
    ):
        alerts.add_column(col, justify="right")
    alerts.add_row(
        str(a["episodes"]),
        str(a["caught"]),
        _fmt(a["recall"]),
        str(a["alerts"]),
        str(a["false_alerts"]),
        _fmt(a["precision"]),
        _fmt(a["f1"]),
        _fmt(a["false_alerts_per_device_day"], 2),
        _fmt(a["ttd_seconds_median"], 0),
    )
    out.print(alerts)
    support = metrics["support"]
    out.print(
        f"support: {support['events']} episodes, {support['device_days']:.3f} device-days, "
        f"{support['test_rows']:,} test rows"
    )
    for warning in support["warnings"]:
        console(stderr=True).print(f"warning: {warning}")
    if args.predictions:
        out.print(f"predictions written to {args.predictions}")
    out.print(f"metrics written to {path}")
    return 0
