"""The scale workloads of ``itap bench`` (W3 and the S series) run the real commands
in fresh processes and record memory; checked here on a tiny workload, never on time."""

from __future__ import annotations

import pytest

from itap_bench import scale


def test_scale_stages_run_the_commands_and_record_memory(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(scale.SCALE_WORKLOADS, "tiny", scale.ScaleWorkload("tiny", devices=3, hours=2))
    seen: list[str] = []
    results = scale.scale_stages(settings, "tiny", ["none"], seen.append)
    assert [r["stage"] for r in results] == ["generate", "train", "score"]
    assert seen[0] == "tiny: itap generate --devices 3 --hours 2 --freq 10 --cluster none"
    for r in results:
        assert r["cluster"] == "none" and r["workload"] == "tiny" and r["devices"] == 3
        assert r["seconds"] > 0 and r["peak_rss_mb"] > 0 and r["tree_peak_rss_mb"] >= r["peak_rss_mb"]
        assert r["command"].startswith("itap ") and (r["cpu_seconds"] is None or r["cpu_seconds"] > 0)
    assert results[0]["rows"] == results[2]["rows"] == 3 * 2 * 360
    assert "scored 2,160 readings" in results[2]["output"][0]


def test_w3_is_opt_in() -> None:
    from itap_bench.runner import WORKLOADS

    assert "W3" not in WORKLOADS and scale.SCALE_WORKLOADS["W3"].rows == 8_640_000
