"""``itap bench --soak``: engine, --once loop, attached reader and inbox files on one SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest

from itap_bench.soak import soak
from itap_engine.config import load_settings

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_a_short_soak_loses_nothing_and_raises_nothing() -> None:
    result = soak(load_settings(REPO / "config.toml"), 0.3)
    assert (result["lock_errors"], result["tracebacks"], result["lost_rows"], result["errors"]) == (0, 0, 0, 0), (
        result["notes"],
        result["traceback_texts"],
    )
    assert result["ticks"] > 0 and result["snapshots"] > 0, result
    assert result["once_other"] == 0 and result["once_locked"] + result["once_ok"] > 0, result
