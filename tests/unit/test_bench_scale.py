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
    assert all(r["load_before"] >= 0 and r["load_after"] >= 0 for r in results)


def test_cluster_settings_run_stage_by_stage_in_turn(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each stage runs under every cluster setting before the next stage starts, each
    setting on its own database, so a speed-up compares runs of the same minutes."""
    monkeypatch.setitem(scale.SCALE_WORKLOADS, "tiny", scale.ScaleWorkload("tiny", devices=3, hours=2))
    seen: list[str] = []
    results = scale.scale_stages(settings, "tiny", ["none", "none"], seen.append)
    assert [(r["stage"]) for r in results] == ["generate", "generate", "train", "train", "score", "score"]
    assert [r["output"][0] for r in results[4:]] == [results[4]["output"][0]] * 2  # two databases, same backlog
    assert "scored 2,160 readings" in results[5]["output"][0]


def test_w3_is_opt_in() -> None:
    from itap_bench.runner import WORKLOADS

    assert "W3" not in WORKLOADS and scale.SCALE_WORKLOADS["W3"].rows == 8_640_000


def test_one_rss_sampler_sees_this_process_a_child_tree_and_the_driver() -> None:
    import subprocess
    import sys
    import time

    from itap_bench.rss import PeakRss

    with PeakRss() as own:
        block = bytearray(64 * 2**20)  # touched: resident
        block[::4096] = b"x" * len(block[::4096])
        time.sleep(0.1)
    assert own.peak_mb >= 64 and own.tree == own.peak  # no descendants asked for
    del block
    code = "import time; b = bytearray(96 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.5)"
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {code!r}])"]
    )
    try:
        with PeakRss(parent.pid, 0.02, driver=lambda p: "bytearray" in " ".join(p.cmdline())) as rss:
            parent.wait(timeout=60)
    finally:
        parent.kill()
    assert rss.driver >= 96 * 2**20  # the grandchild that allocated, found by its command line
    assert rss.tree > rss.driver  # the tree adds the parent (and its python) to it
    assert rss.peak < rss.driver  # the parent itself stayed small
