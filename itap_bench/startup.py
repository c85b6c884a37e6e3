"""Start-up cost of the command line: ``itap --help`` and ``itap status`` on an empty
database, each run as a user runs it (a new process through the installed entry
point), median of several runs. Parsing arguments must not import pandas,
scikit-learn, SQLAlchemy or Textual; ``status`` pays for what it uses only.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from itap_bench.runner import stage_result
from itap_engine.config import Settings

RUNS = 7


def _itap() -> list[str]:
    found = shutil.which("itap", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "itap_tui.cli"]


def _median_s(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def stages(settings: Settings) -> list[dict[str, Any]]:
    """``startup.help``, ``startup.status_empty`` and the bare interpreter as reference."""
    results = []
    with tempfile.TemporaryDirectory(prefix="itap-bench-startup-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "ITAP_DB_URL": f"sqlite:///{work / 'empty.db'}"}
        env.pop("ITAP_CONFIG", None)
        if settings.source is not None:
            env["ITAP_CONFIG"] = str(settings.source)
        python = _median_s([sys.executable, "-c", "pass"], env, work)
        results.append(stage_result("startup.python", "-", python, 0, None, median_ms=round(python * 1000, 1)))
        for stage, argv in (("startup.help", ["--help"]), ("startup.status_empty", ["status"])):
            seconds = _median_s([*_itap(), *argv], env, work)
            results.append(
                stage_result(
                    stage,
                    "-",
                    seconds,
                    0,
                    None,
                    median_ms=round(seconds * 1000, 1),
                    ratio_vs_python=round(seconds / python, 2) if python > 0 else None,
                )
            )
    return results
