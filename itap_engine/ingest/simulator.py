"""Simulated fleet telemetry with operating states and injected faults.

Why it is built this way:

* **Continuable.** The engine ticks: it asks for the next interval again and again.
  Generating [t0, t2) in one call must give exactly the rows of [t0, t1) then
  [t1, t2). So nothing depends on where a call starts. Time is an absolute grid
  (``start + k * freq``) cut into *segments* of ``state_dwell_s``; every random draw
  for a device comes from a generator seeded by ``(seed, crc32(device), segment)``.
  A segment's operating state, its random fault (if any) and its noise are therefore
  the same whichever call produces them.
* **Vectorised.** Python loops run over devices and segments, never over rows; the
  values are computed as arrays of shape (devices, steps, signals).
* **Ground truth.** Every row carries the name of the active fault (or None) in the
  ``fault`` column: stored for evaluation, never shown to a detector.

Faults come from the profile's catalogue in ``config.toml``: random ones arise at
``fault_rate_per_device_day``; operator ones are scheduled with
:meth:`Simulator.schedule` (the console's fault-injection modal calls it through the
engine).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from itap_engine.config import ProfileSpec, Settings

_SECONDS_PER_DAY = 86400.0
_STATE_RAMP_STEPS = 3.0
"""Time constant, in readings, of the ramp from one state's level to the next."""
_GROUP_READINGS = 20_000
"""generate computes about this many readings (devices x steps) at a time."""
_RANDOM_SEVERITY = (0.7, 1.0)
_DEVICE_OFFSET = 0.02
"""Per-device offset, as a fraction of each baseline (standard deviation)."""


@dataclass(frozen=True)
class FaultEvent:
    """One fault on one device: the ground truth of when and what."""

    device_id: str
    fault: str
    start: datetime
    duration_s: float
    severity: float = 1.0
    source: str = "operator"
    """"random" (drawn by the simulator) or "operator" (scheduled)."""

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.duration_s)


@dataclass
class _Segment:
    state: int
    fault: FaultEvent | None


def _to_datetime(value: datetime | str | pd.Timestamp) -> datetime:
    return pd.Timestamp(value).to_pydatetime().replace(tzinfo=None)


class Simulator:
    """Deterministic telemetry for the devices of one profile.

    Args:
        settings: the loaded settings (simulation section and the profile).
        profile: name of a profile declared in config.
        device_ids: the devices to simulate.
        seed: overrides ``[simulation].seed``.
        freq_s: overrides ``[simulation].freq_s``.
        fault_rate_per_device_day: overrides the configured random fault rate.
    """

    def __init__(
        self,
        settings: Settings,
        profile: str,
        device_ids: Sequence[str],
        *,
        seed: int | None = None,
        freq_s: int | None = None,
        fault_rate_per_device_day: float | None = None,
    ) -> None:
        sim = settings.simulation
        self.profile_name = profile
        self.profile: ProfileSpec = settings.profile(profile)
        self.device_ids = list(device_ids)
        self.seed = sim.seed if seed is None else seed
        self.freq_s = sim.freq_s if freq_s is None else freq_s
        self.start = _to_datetime(sim.start)
        rate = sim.fault_rate_per_device_day if fault_rate_per_device_day is None else fault_rate_per_device_day
        self.segment_steps = max(1, math.ceil(sim.state_dwell_s / self.freq_s))
        self._fault_probability = min(1.0, rate * self.segment_steps * self.freq_s / _SECONDS_PER_DAY)

        self.signals = self.profile.signal_names
        self.states = list(self.profile.states)
        weights = np.array([s.weight for s in self.profile.states.values()], dtype=float)
        self._state_cdf = np.cumsum(weights / weights.sum())
        self._faults = list(self.profile.faults)
        fault_weights = np.array([f.weight for f in self.profile.faults.values()], dtype=float)
        self._fault_cdf = np.cumsum(fault_weights / fault_weights.sum()) if fault_weights.sum() > 0 else np.array([])
        longest = max((f.duration_s[1] for f in self.profile.faults.values()), default=0)
        self._lookback_segments = math.ceil(longest / self.freq_s / self.segment_steps) + 1

        specs = [self.profile.signals[name] for name in self.signals]
        self._baseline = np.array([s.baseline for s in specs])
        self._noise = np.array([s.noise for s in specs])
        self._daily = np.array([s.daily_amplitude for s in specs])
        self._low = np.array([s.range[0] for s in specs])
        self._high = np.array([s.range[1] for s in specs])
        self._state_factors = np.array(
            [[state.effects.get(name, 1.0) for name in self.signals] for state in self.profile.states.values()]
        )
        self.scheduled: list[FaultEvent] = []
        self._segments: dict[tuple[str, int], _Segment] = {}
        self._noise_cache: dict[tuple[str, int], np.ndarray] = {}
        self._noise_oldest: int | None = None
        """The oldest segment in ``_noise_cache`` (None: empty)."""
        self._windows: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        """(first device, devices, segment) -> a tick's group arrays (:meth:`_window`)."""
        self._random_events: tuple[tuple[int, int], dict[int, tuple[FaultEvent, ...]]] | None = None
        self._device_traits = {d: self._traits(d) for d in self.device_ids}
        self._index = {device: d for d, device in enumerate(self.device_ids)}
        self._signal_index = {name: i for i, name in enumerate(self.signals)}

    # ------------------------------------------------------------------ randomness
    def _rng(self, device_id: str, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(device_id.encode()), *key])

    def _traits(self, device_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Per-device offset and daily phase (fixed for the device's life)."""
        rng = self._rng(device_id, 0, 0)
        offset = rng.normal(0.0, _DEVICE_OFFSET, len(self.signals)) * np.abs(self._baseline)
        phase = rng.uniform(0, 2 * np.pi, len(self.signals))
        return offset, phase

    def _segment(self, device_id: str, segment: int) -> _Segment:
        """The state and random fault of one segment (cached: drawn once)."""
        key = (device_id, segment)
        cached = self._segments.get(key)
        if cached is not None:
            return cached
        rng = self._rng(device_id, 1, segment)
        u_state, u_fault, u_kind, u_offset, u_duration, u_severity = rng.random(6)
        state = int(np.searchsorted(self._state_cdf, u_state, side="right"))
        state = min(state, len(self.states) - 1)
        fault = None
        if self._faults and u_fault < self._fault_probability:
            name = self._faults[min(int(np.searchsorted(self._fault_cdf, u_kind, side="right")), len(self._faults) - 1)]
            low, high = self.profile.faults[name].duration_s
            first_step = segment * self.segment_steps + int(u_offset * self.segment_steps)
            fault = FaultEvent(
                device_id=device_id,
                fault=name,
                start=self.start + timedelta(seconds=first_step * self.freq_s),
                duration_s=float(round(low + u_duration * (high - low))),
                severity=round(_RANDOM_SEVERITY[0] + u_severity * (_RANDOM_SEVERITY[1] - _RANDOM_SEVERITY[0]), 3),
                source="random",
            )
        result = _Segment(state, fault)
        if len(self._segments) > 200_000:
            self._segments.clear()
        self._segments[key] = result
        return result

    def _segment_noise(self, device_id: str, segment: int, keep: bool) -> np.ndarray:
        """Standard normals (steps, 2 * signals): measurement noise, then fault noise."""
        key = (device_id, segment)
        cached = self._noise_cache.get(key)
        if cached is not None:
            return cached
        noise = self._rng(device_id, 2, segment).standard_normal((self.segment_steps, 2 * len(self.signals)))
        if keep:
            self._keep_noise(device_id, segment, noise)
        return noise

    def _keep_noise(self, device_id: str, segment: int, noise: np.ndarray) -> None:
        self._noise_cache[(device_id, segment)] = noise
        if self._noise_oldest is None or segment < self._noise_oldest:
            self._noise_oldest = segment

    # ------------------------------------------------------------------ faults
    def schedule(self, event: FaultEvent) -> None:
        """Add an operator fault; it shapes every row generated inside its window."""
        if event.fault not in self.profile.faults:
            raise ValueError(
                f"profile {self.profile_name} has no fault {event.fault!r}; known: {', '.join(self.profile.faults)}"
            )
        if event.device_id not in self._device_traits:
            raise ValueError(f"device {event.device_id!r} is not simulated by this {self.profile_name} simulator")
        self.scheduled.append(event)

    def fault_events(self, t0: datetime, t1: datetime) -> list[FaultEvent]:
        """All faults (random and scheduled) active at some instant of [t0, t1)."""
        t0, t1 = _to_datetime(t0), _to_datetime(t1)
        k0, k1 = self._step_range(t0, t1)
        if k1 <= k0:
            return []
        events = [e for device_events in self._events_by_device(k0, k1).values() for e in device_events]
        return [e for e in events if e.start < t1 and e.end > t0]

    # ------------------------------------------------------------------ generation
    def _step_range(self, t0: datetime, t1: datetime) -> tuple[int, int]:
        freq = self.freq_s
        k0 = max(0, math.ceil((t0 - self.start).total_seconds() / freq))
        k1 = max(0, math.ceil((t1 - self.start).total_seconds() / freq))
        return k0, k1

    def generate(self, t0: datetime | str, t1: datetime | str) -> pd.DataFrame:
        """Readings of every device for the grid instants in [t0, t1).

        Returns:
            A frame with columns device_id, ts, state, one per signal, fault; ordered
            by device then time. Dropouts are NaN.
        """
        t0, t1 = _to_datetime(t0), _to_datetime(t1)
        k0, k1 = self._step_range(t0, t1)
        n_steps, n_dev, n_sig = max(0, k1 - k0), len(self.device_ids), len(self.signals)
        if n_steps == 0 or n_dev == 0:
            empty = {
                "device_id": pd.Series([], dtype="str"),
                "ts": pd.Series([], dtype="datetime64[ns]"),
                "state": pd.Series([], dtype="str"),
            }
            empty.update({name: pd.Series([], dtype=float) for name in self.signals})
            return pd.DataFrame({**empty, "fault": pd.Series([], dtype="str")})

        steps = np.arange(k0, k1)
        seg_of_step = steps // self.segment_steps
        first_seg, last_seg = int(seg_of_step[0]), int(seg_of_step[-1])
        pos = steps - seg_of_step * self.segment_steps
        seconds = steps * float(self.freq_s)
        ts = np.datetime64(self.start, "ns") + (seconds * 1e9).astype("timedelta64[ns]")
        day_angle = 2 * np.pi * (((seconds + self._start_second_of_day) % _SECONDS_PER_DAY) / _SECONDS_PER_DAY)

        values = np.empty((n_dev, n_steps, n_sig))
        state_codes = np.empty((n_dev, n_steps), dtype=np.int64)
        labels = np.full((n_dev, n_steps), None, dtype=object)
        events = self._events_by_device(k0, k1)
        # the window's first and last instants: a fault outside them touches no row
        first = self.start + timedelta(seconds=k0 * self.freq_s)
        last = self.start + timedelta(seconds=(k1 - 1) * self.freq_s)
        ramp = np.exp(-pos / _STATE_RAMP_STEPS)[None, :, None]
        seg_index = seg_of_step - first_seg
        # the arithmetic is done for a group of devices at once: all of them for a
        # tick, a few at a time for a long window (small temporaries stay in cache)
        group = max(1, _GROUP_READINGS // n_steps)
        # a tick (a few steps inside one segment): the group's per-device arrays of that
        # segment are gathered once and reused by every tick of the segment
        tick = first_seg == last_seg and n_steps < self.segment_steps
        for lo in range(0, n_dev, group):
            devices = self.device_ids[lo : lo + group]
            if tick:
                seg_states, segment_noise, offsets, phases = self._window(lo, devices, first_seg)
                noise = segment_noise[:, pos[0] : pos[0] + n_steps]
            else:
                seg_states = self._segment_states(devices, first_seg, last_seg)
                noise = np.stack(
                    [
                        np.concatenate(
                            [self._segment_noise(device, s, keep=s == last_seg) for s in range(first_seg, last_seg + 1)]
                        )[pos[0] : pos[0] + n_steps]
                        for device in devices
                    ]
                )  # (devices, steps, 2 * signals): measurement noise, then fault noise
                offsets, phases = self._device_arrays(devices)
            current = seg_states[:, 1:][:, seg_index]  # (devices, steps)
            previous = seg_states[:, :-1][:, seg_index]
            factor = (
                self._state_factors[current] + (self._state_factors[previous] - self._state_factors[current]) * ramp
            )
            level = self._baseline + offsets + self._daily * np.sin(day_angle[None, :, None] + phases)
            values[lo : lo + len(devices)] = level * factor + self._noise * noise[:, :, :n_sig]
            state_codes[lo : lo + len(devices)] = current
            for d in range(lo, min(lo + len(devices), n_dev)):
                touching = [e for e in events.get(d, ()) if e.start <= last and e.end > first]
                if touching:
                    self._apply_faults(d, touching, ts, noise[d - lo, :, n_sig:], values, labels)
        self._trim_noise_cache(last_seg)

        np.clip(values, self._low, self._high, out=values)  # sensors saturate at their range
        frame = pd.DataFrame(
            {
                "device_id": pd.Series(np.repeat(np.array(self.device_ids, dtype=object), n_steps), dtype="str"),
                "ts": np.tile(ts, n_dev),
                "state": pd.Series(np.array(self.states, dtype=object)[state_codes.ravel()], dtype="str"),
            }
        )
        flat = values.reshape(n_dev * n_steps, n_sig)
        for i, name in enumerate(self.signals):
            frame[name] = flat[:, i]
        frame["fault"] = pd.Series(labels.ravel(), dtype="str")
        return frame

    def _segment_states(self, devices: Sequence[str], first_seg: int, last_seg: int) -> np.ndarray:
        """(devices, segments + 1): the state of each device in the segment before
        ``first_seg`` and in every segment up to ``last_seg``."""
        return np.array(
            [[self._segment(device, max(s, 0)).state for s in range(first_seg - 1, last_seg + 1)] for device in devices]
        )

    def _device_arrays(self, devices: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(devices, 1, signals) offsets and daily phases."""
        offsets = np.array([self._device_traits[d][0] for d in devices])[:, None, :]
        phases = np.array([self._device_traits[d][1] for d in devices])[:, None, :]
        return offsets, phases

    def _window(
        self, lo: int, devices: Sequence[str], segment: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The arrays of a group of devices (starting at ``lo``) for one segment: states
        (of the segment before and this one), noise of the whole segment (devices,
        segment steps, 2 * signals), offsets and phases. Built once per segment; the
        per-device noise cache then holds views into the group's array (no second copy)."""
        key = (lo, len(devices), segment)
        cached = self._windows.get(key)
        if cached is not None:
            return cached
        for old in [k for k in self._windows if k[0] == lo]:
            del self._windows[old]
        noise = np.stack([self._segment_noise(device, segment, keep=True) for device in devices])
        for i, device in enumerate(devices):
            self._keep_noise(device, segment, noise[i])
        cached = (self._segment_states(devices, segment, segment), noise, *self._device_arrays(devices))
        self._windows[key] = cached
        return cached

    @property
    def _start_second_of_day(self) -> float:
        s = self.start
        return s.hour * 3600.0 + s.minute * 60.0 + s.second

    def _events_by_device(self, k0: int, k1: int) -> dict[int, list[FaultEvent]]:
        """Device index -> its random and scheduled faults that may touch steps [k0, k1)."""
        first_seg = max(0, k0 // self.segment_steps - self._lookback_segments)
        last_seg = (k1 - 1) // self.segment_steps
        if self._random_events is None or self._random_events[0] != (first_seg, last_seg):
            found: dict[int, list[FaultEvent]] = {}
            for d, device in enumerate(self.device_ids):
                for seg in range(first_seg, last_seg + 1):
                    fault = self._segment(device, seg).fault
                    if fault is not None:
                        found.setdefault(d, []).append(fault)
            # the random faults of these segments never change: found once per segment range
            self._random_events = ((first_seg, last_seg), {d: tuple(e) for d, e in found.items()})
        events = {d: list(e) for d, e in self._random_events[1].items()}
        if self.scheduled:
            index = self._index
            for event in self.scheduled:
                if event.device_id in index:
                    events.setdefault(index[event.device_id], []).append(event)
        return events

    def _apply_faults(
        self,
        d: int,
        events: list[FaultEvent],
        ts: np.ndarray,
        fault_noise: np.ndarray,
        values: np.ndarray,
        labels: np.ndarray,
    ) -> None:
        index = self._signal_index
        for event in events:
            start = np.datetime64(event.start, "ns")
            end = np.datetime64(event.end, "ns")
            active = (ts >= start) & (ts < end)
            if not active.any():
                continue
            spec = self.profile.faults[event.fault]
            frac = ((ts[active] - start) / np.timedelta64(1, "s")) / event.duration_s
            for effect in spec.effects:
                i = index[effect.signal]
                size = effect.magnitude * event.severity
                if effect.kind == "drift":
                    values[d, active, i] += size * frac
                    continue
                scale = np.minimum(1.0, frac * 4.0) if spec.onset == "gradual" else 1.0
                if effect.kind in ("step", "spike"):
                    values[d, active, i] += size * scale
                elif effect.kind == "noise":
                    values[d, active, i] += size * scale * fault_noise[active, i]
                elif effect.kind == "dropout":
                    values[d, active, i] = np.nan
            labels[d, active] = event.fault

    def _trim_noise_cache(self, last_seg: int) -> None:
        if self._noise_oldest is None or self._noise_oldest >= last_seg:
            return  # nothing older than last_seg is kept: no need to look at every key
        stale = [key for key in self._noise_cache if key[1] < last_seg]
        for key in stale:
            del self._noise_cache[key]
        self._noise_oldest = min((key[1] for key in self._noise_cache), default=None)
        for window in [k for k in self._windows if k[2] < last_seg]:
            del self._windows[window]


def fleet_simulators(settings: Settings, **overrides: object) -> list[Simulator]:
    """One simulator per fleet group of ``[simulation]``, in config order."""
    groups: dict[str, list[str]] = {}
    for group in settings.simulation.fleet:
        groups.setdefault(group.profile, []).extend(group.device_ids())
    return [Simulator(settings, profile, devices, **overrides) for profile, devices in groups.items()]  # type: ignore[arg-type]


def device_ids_for(prefix: str, count: int) -> list[str]:
    """Device ids as the fleet config names them: ``prefix-001`` ..."""
    return [f"{prefix}-{i:03d}" for i in range(1, count + 1)]


def concat_frames(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
