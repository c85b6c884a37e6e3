"""Shards of a fleet: a stable split of device ids, and what ``i/N`` may be."""

from __future__ import annotations

import subprocess
import sys
import zlib

import pytest

from itap_engine.engine.shards import Shard, shard_of
from itap_engine.errors import ItapError
from itap_engine.ingest.simulator import device_ids_for
from itap_engine.store.watermarks import SIM_CLOCK_KEY, for_shard


@pytest.mark.parametrize(
    ("text", "expected"), [("0/2", Shard(0, 2)), ("1/2", Shard(1, 2)), ("0/1", Shard(0, 1)), (" 3/4", Shard(3, 4))]
)
def test_parse(text: str, expected: Shard) -> None:
    assert Shard.parse(text) == expected


@pytest.mark.parametrize("text", ["2/2", "-1/2", "0/0", "1", "a/b", "1/2/3", ""])
def test_parse_rejects_with_one_line(text: str) -> None:
    with pytest.raises(ItapError) as caught:
        Shard.parse(text)
    assert "\n" not in str(caught.value)


def test_every_device_has_exactly_one_shard() -> None:
    devices = device_ids_for("pump", 1000)
    for count in (1, 2, 3, 7):
        owners = [[i for i in range(count) if Shard(i, count).owns(d)] for d in devices]
        assert all(len(o) == 1 for o in owners)
        sizes = [sum(1 for o in owners if o == [i]) for i in range(count)]
        assert min(sizes) > 1000 / count * 0.8  # crc32 spreads the fleet evenly


def test_the_split_is_crc32_and_the_same_in_every_process() -> None:
    # Python's hash() of a str changes per process (PYTHONHASHSEED); crc32 does not
    assert shard_of("pump-001", 2) == zlib.crc32(b"pump-001") % 2
    code = "from itap_engine.engine.shards import shard_of; print([shard_of(f'd{i}', 5) for i in range(50)])"
    runs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": seed}
        ).stdout
        for seed in ("1", "2")
    }
    assert len(runs) == 1


def test_each_shard_has_its_own_clock_key() -> None:
    keys = {for_shard(SIM_CLOCK_KEY, s) for s in (None, "0/2", "1/2")}
    assert len(keys) == 3 and for_shard(SIM_CLOCK_KEY, None) == SIM_CLOCK_KEY
