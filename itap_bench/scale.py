"""Scale workloads: the commands an operator runs, as separate processes, with memory.

W3 = 1,000 industrial devices x 24 h at 10 s (8.64 M readings), opt-in with
``itap bench --workloads W3``. Scaling workloads S100, S1k, S10k (100, 1,000 and
10,000 devices x 2 h) give the per-device cost of each stage.

Each stage is the real command in a fresh process on a fresh SQLite database:

* ``itap generate --devices N --hours H`` (simulate, validate, store),
* ``itap train --train-until <start + H/2>`` (the first half is the training window),
* ``itap score`` (the whole backlog: every stored reading),

once per cluster setting (``--clusters``, default ``none,local:2``), stage by stage in
turn (generate under each setting, then train under each, then score), so the speed-up
of a cluster is measured against one process in the same minutes; each stage records
the load average before and after it. W3q is W3 with a quarter of the devices. Every stage records its
wall seconds, the driver's peak RSS and the peak RSS of the driver plus its
descendants (a LocalCluster's workers), both sampled with psutil every 50 ms, and,
when ``/usr/bin/time`` exists, the "Maximum resident set size" and the user + system
CPU seconds it reports (on a shared machine, CPU seconds say more than wall time).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil

from itap_bench.rss import PeakRss
from itap_bench.workloads import Workload
from itap_engine.config import PACKAGED_CONFIG, Settings

ScaleWorkload = Workload
"""The opt-in scale workloads are workloads like W1 and W2."""


SCALE_WORKLOADS = {
    "W3": ScaleWorkload("W3", devices=1000, hours=24),
    "W3q": ScaleWorkload("W3q", devices=250, hours=24),
    "S100": ScaleWorkload("S100", devices=100, hours=2),
    "S1k": ScaleWorkload("S1k", devices=1000, hours=2),
    "S10k": ScaleWorkload("S10k", devices=10_000, hours=2),
}

TIME_V = Path("/usr/bin/time")


def _is_driver(proc: psutil.Process) -> bool:
    """The itap command itself, not the ``/usr/bin/time`` around it."""
    return "itap_engine.modes.cli" in " ".join(proc.cmdline()) and proc.name() != "time"


def _command(argv: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run ``itap argv`` in ``cwd``; wall seconds, peak RSS figures and the output."""
    cli = [sys.executable, "-m", "itap_engine.modes.cli", *argv]
    wrapped = [str(TIME_V), "-v", *cli] if TIME_V.exists() else cli
    started = time.perf_counter()
    proc = subprocess.Popen(wrapped, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with PeakRss(proc.pid, 0.05, driver=_is_driver) as rss:
        out, err = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"itap {' '.join(argv)} failed ({proc.returncode}): {err.strip().splitlines()[-1:] or out}")
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    cpu = [float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", err)]
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(rss.driver / 2**20, 1) if rss.driver else None,
        "tree_peak_rss_mb": round(rss.tree / 2**20, 1),
        "time_v_max_rss_mb": round(int(found.group(1)) / 1024, 1) if found else None,
        # user + system CPU of the command and the children it waited for (a LocalCluster's workers)
        "cpu_seconds": round(sum(cpu), 2) if len(cpu) == 2 else None,
        "output": out.strip().splitlines()[-1:] if out.strip() else [],
    }


def scale_stages(
    settings: Settings, name: str, clusters: list[str], progress: Any = lambda _m: None
) -> list[dict[str, Any]]:
    """generate -> train -> score of one scale workload under each cluster setting."""
    workload = SCALE_WORKLOADS[name]
    source = settings.source if settings.source and settings.source.is_file() else PACKAGED_CONFIG
    start = settings.simulation.start
    until = (start + timedelta(hours=workload.hours / 2)).isoformat()
    stages = [
        (
            "generate",
            [
                "generate",
                "--devices",
                str(workload.devices),
                "--hours",
                f"{workload.hours:g}",
                "--freq",
                str(workload.freq_s),
            ],
            workload.rows,
        ),
        ("train", ["train", "--train-until", until], workload.rows // 2),
        ("score", ["score"], workload.rows),
    ]
    results: list[dict[str, Any]] = []
    env = {k: v for k, v in os.environ.items() if k not in ("ITAP_CONFIG", "ITAP_DB_URL")}
    with contextlib.ExitStack() as stack:
        folders = []
        for _cluster in clusters:  # a database per cluster setting, kept from stage to stage
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"itap-bench-{name}-")))
            shutil.copy(source, folder / "config.toml")
            folders.append(folder)
        # stage by stage, every cluster setting in turn: on a shared machine each
        # speed-up compares runs of the same minutes, not of another load
        for stage, argv, rows in stages:
            for cluster, folder in zip(clusters, folders, strict=True):
                full = [*argv, "--cluster", cluster]
                progress(f"{name}: itap {' '.join(full)}")
                load = os.getloadavg()[0]
                measured = _command(full, folder, env)
                results.append(
                    {
                        "stage": stage,
                        "workload": name,
                        "cluster": cluster,
                        "rows": rows,
                        "rows_per_s": round(rows / measured["seconds"]) if measured["seconds"] else None,
                        "devices": workload.devices,
                        "ms_per_device": round(1000 * measured["seconds"] / workload.devices, 2),
                        "command": f"itap {' '.join(full)}",
                        "load_before": round(load, 1),
                        "load_after": round(os.getloadavg()[0], 1),
                        **measured,
                    }
                )
    by_stage = {(r["stage"], r["cluster"]): r for r in results}
    for r in results:
        single = by_stage.get((r["stage"], "none"))
        if single is not None and r["cluster"] != "none" and r["seconds"]:
            r["speedup_vs_none"] = round(single["seconds"] / r["seconds"], 2)
    return results
