"""The fake engine's fast value path gives the numbers of its definition.

``FakeFacade`` makes 10,000 rows a tick for the console benchmark; its fast path
(a CRC continued from a kept prefix, the values of a device worked out together)
must not change a single value, or the screens the snapshot tests record would.
"""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from itap_bench.fake_facade import PROFILES, FakeFacade

names = st.text(min_size=0, max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    names, st.sampled_from(["temp_c", "score", "altitude_ft", "", "'\"\\"]), st.integers(-10, 10**9), st.integers(0, 99)
)
def test_the_tick_hash_equals_the_tuple_hash(device: str, name: str, tick: int, seed: int) -> None:
    facade = FakeFacade(devices=1, seed=seed)
    assert facade._tick_hash(device, name, tick) == facade._hash(device, name, tick)
    assert facade._tick_hash(device, name, tick) == facade._hash(device, name, tick)  # from the kept prefix


def test_a_ticks_values_equal_the_value_of_each_signal_with_and_without_faults() -> None:
    facade = FakeFacade(devices=40, extra_devices=("[bold red]x[/]", "pompé-🚀"))
    asyncio.run(facade.inject_fault(["pump-001", "ac-002"], "overheat_drift", 0.9, 60))
    asyncio.run(facade.inject_fault(["ac-001"], "speed_spike", 0.8, 120))
    asyncio.run(facade.inject_fault(["pump-003"], "sensor_dropout", 1.0, 60))
    for _ in range(12):
        snapshot = facade.advance()
        for row in snapshot.devices:
            signals = PROFILES[row.profile].signals
            assert row.values == {s: facade._value(row.device_id, s, facade.tick) for s in signals}
            assert facade._values(row.device_id, signals, facade.tick) == row.values
