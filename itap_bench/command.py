"""``itap bench``: the fixed-workload benchmark (see :mod:`itap_bench.runner`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from itap_engine.errors import ItapError
from itap_engine.modes.cli_values import output_file

if TYPE_CHECKING:
    from rich.table import Table

    from itap_bench.runner import StageProvider
    from itap_engine.config import Settings

HELP = "benchmark every stage on fixed workloads (W1 = 54k rows, W2 = 864k rows; opt-in W3 = 8.64M rows, S100/S1k/S10k)"


def _console_stages(settings: Settings) -> list[dict[str, Any]]:
    from itap_bench.console import stages

    return stages(settings)


def _startup_stages(settings: Settings) -> list[dict[str, Any]]:
    from itap_bench.startup import stages

    return stages(settings)


def _postgres_stages(url: str, workloads: list[str]) -> StageProvider:
    def provider(settings: Settings) -> list[dict[str, Any]]:
        from itap_bench.postgres import stages

        return stages(settings, url, workloads)

    return provider


EXTRA_STAGES: dict[str, StageProvider] = {"console": _console_stages, "startup": _startup_stages}
"""Stage providers beyond the engine's, by the name ``--skip`` knows them by."""

_COLUMNS = (
    "cluster",
    "seconds",
    "cpu_seconds",
    "speedup_vs_none",
    "tree_peak_rss_mb",
    "time_v_max_rss_mb",
    "ms_per_device",
    "rows_per_s",
    "peak_rss_mb",
    "ratio_vs_sqlite3",
    "ratio_vs_executemany",
    "median_ms",
    "p50_ms",
    "p95_ms",
    "max_ms",
    "ratio_vs_python",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workloads",
        default="W1,W2",
        help="comma-separated workloads (default: W1,W2); E100, E1000, E10k choose the engine tick sizes "
        "(default E100,E1000)",
    )
    parser.add_argument(
        "--out", metavar="FILE.json", help="write the results as JSON (default: benchmarks/latest.json)"
    )
    parser.add_argument(
        "--clusters",
        default="none,local:2",
        help="scale workloads (W3, S100, S1k, S10k): cluster settings to run each under (default: none,local:2)",
    )
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: detection, engine, console, startup")
    parser.add_argument(
        "--pg",
        metavar="URL",
        help="also compare COPY with executemany ingestion on this PostgreSQL database (in a schema "
        "itap_bench, dropped and made again); default: the database URL when it is PostgreSQL",
    )
    parser.add_argument(
        "--soak",
        metavar="MINUTES",
        type=float,
        help="run only the soak (issue 11): engine, a loop of --once runs, an attached reader and inbox "
        "files on one SQLite database for MINUTES; exit 1 on any lock error, traceback or lost row",
    )


def render(payload: dict[str, Any]) -> Table:
    """Stages as rows; only the measure columns that some stage has."""
    from rich.table import Table

    columns = [key for key in _COLUMNS if any(r.get(key) is not None for r in payload["results"])]
    table = Table("workload", "stage", "rows", *columns, title="itap bench", title_justify="left")
    for r in payload["results"]:
        cells = [r.get("workload", ""), r["stage"], f"{r['rows']:,}" if r.get("rows") else ""]
        for key in columns:
            value = r.get(key)
            cells.append(
                ""
                if value is None
                else value
                if isinstance(value, str)
                else f"{value:,}"
                if isinstance(value, int)
                else f"{value:,.3f}".rstrip("0").rstrip(".")
            )
        table.add_row(*cells)
    return table


def run_soak(args: argparse.Namespace, settings: Settings) -> int:
    """``--soak MINUTES``: only the soak; its table; exit 1 when a must-be-zero figure is not."""
    from itap_bench.runner import machine_facts
    from itap_bench.soak import failed, render, soak
    from itap_engine.modes.render.output import console

    if args.soak <= 0:
        raise ItapError("--soak needs a positive number of minutes")
    if args.out:
        output_file(args.out, option="--out", force=True)
    out = console()
    result = soak(settings, args.soak, report=lambda message: out.print(f"[dim]… {message}[/]"))
    out.print(render(result))
    if args.out:
        path = Path(args.out)
        path.write_text(json.dumps({"machine": machine_facts(), "results": [result]}, indent=2) + "\n")
        out.print(f"results written to {path}")
    bad = failed(result)
    if bad:
        out.print(f"[bold red]soak failed: {', '.join(bad)} not zero[/]")
        return 1
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    if getattr(args, "soak", None) is not None:
        return run_soak(args, settings)
    from itap_bench.engine import ENGINE_SIZES, render_steps
    from itap_bench.engine import stages as engine_stages
    from itap_bench.runner import WORKLOADS, machine_facts, run_bench
    from itap_bench.scale import SCALE_WORKLOADS, scale_stages
    from itap_engine.modes.render.output import console

    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    known = [*WORKLOADS, *SCALE_WORKLOADS, *ENGINE_SIZES]
    unknown = [w for w in workloads if w not in known]
    if unknown:
        raise ItapError(f"unknown workload {unknown[0]!r}; known: {', '.join(known)}")
    sizes = tuple(w for w in workloads if w in ENGINE_SIZES)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.out:  # before an hour of benchmark, not after
        output_file(args.out, option="--out", force=True)
    out = console()
    report = lambda message: out.print(f"[dim]… {message}[/]")  # noqa: E731
    fixed = [w for w in workloads if w in WORKLOADS]
    scale = [w for w in workloads if w in SCALE_WORKLOADS]
    extra = [provider for name, provider in EXTRA_STAGES.items() if name not in skip]
    pg_url = args.pg or (settings.database_url if settings.database_url.startswith("postgresql") else None)
    if pg_url:
        extra.insert(0, _postgres_stages(pg_url, fixed))
    if fixed:
        payload = run_bench(
            settings,
            fixed,
            detection="detection" not in skip,
            engine="engine" not in skip,
            extra=extra,
            progress=report,
            engine_sizes=sizes or ("E100", "E1000"),
        )
    else:  # only scale or engine workloads: none of the fixed stages
        payload = {"machine": machine_facts(), "results": []}
        if sizes and "engine" not in skip:
            report(f"engine: ticks ({', '.join(sizes)})")
            payload["results"].extend(engine_stages(settings, sizes, once=False))
    clusters = [c.strip() for c in args.clusters.split(",") if c.strip()]
    for name in scale:
        payload["results"].extend(scale_stages(settings, name, clusters, report))
    out.print(render(payload))
    steps = render_steps(payload)
    if steps is not None:
        out.print(steps)
    path = Path(args.out or settings.resolve("benchmarks/latest.json"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    out.print(f"results written to {path}")
    return 0
