"""The streaming scorer's per-device windows as dense arrays: a live tick in O(devices).

Why it exists: a live tick brings one reading per device, newer than any the scorer
holds. Kept as one flat frame (buffer + tick, sorted, re-cut every tick), the work of
a tick grows with everything buffered: ``levels_history`` readings of every device,
120 times the tick itself. Kept as arrays of shape (devices, history), appending is a
shift along the last axis, and the trailing window of every new reading is a slice,
handed straight to :meth:`FeatureBuilder.window_features`. A tick costs a few passes
over the windows and no pandas work on the buffer.

Anything else (a device seen for the first time, two readings of one device, a late
or corrected reading, a new state name) is not an append: the scorer turns the
windows back into its flat buffer (:meth:`DeviceWindows.to_buffer`), takes its
general path, and builds the windows again from what it kept. Both paths compute the
same numbers; ``tests/unit/test_scoring.py`` checks them against one batch pass.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from itap_engine.detection.features import FeatureBuilder, _positions

__all__ = ["DeviceWindows"]


class DeviceWindows:
    """The last ``history`` readings of every device of a streaming scorer.

    Rows are the scorer's device categories, columns the readings oldest first; a
    device's ``fill`` newest columns hold its readings. ``run_pos`` is the newest
    reading's position in its run (counted within the buffer, as the flat path does).

    Build with :meth:`from_buffer`; :meth:`advance` scores a tick that only appends.
    """

    def __init__(
        self,
        features: FeatureBuilder,
        signals: list[str],
        devices: pd.Index,
        states: pd.Index,
        history: int,
    ) -> None:
        n, s = len(devices), len(signals)
        self.features = features
        self.signals = signals
        self.devices = devices
        self.states = states
        self.history = history
        self.ts = np.zeros((n, history), dtype=np.int64)
        self.state = np.full((n, history), -1, dtype=np.int32)  # codes into ``states``; -1 missing
        self.raw = np.full((s, n, history), np.nan)
        self.levels = np.full((s, n, history), np.nan)
        self.fill = np.zeros(n, dtype=np.int64)
        self.run_pos = np.zeros(n, dtype=np.int64)
        self.steps = features.device_steps(devices)
        # the builder's state index of each state category; -1 (missing) picks the catch-all
        known = features._state_codes(pd.DataFrame({"state": list(states)}))
        self._model_state = np.r_[known, len(features.states_) - 1].astype(np.int64)

    @staticmethod
    def usable(features: FeatureBuilder, history: int) -> bool:
        """Whether a window of ``history`` readings holds what a new reading looks back over."""
        return features.lag_taps < history and features.window_span < history

    @classmethod
    def from_buffer(
        cls,
        features: FeatureBuilder,
        signals: list[str],
        buffer: pd.DataFrame,
        level_columns: list[str],
        history: int,
    ) -> DeviceWindows:
        """Windows from the scorer's flat buffer: categorical ``device_id`` and ``state``,
        sorted by device then time, at most ``history`` readings a device."""
        device = buffer["device_id"].cat
        out = cls(features, signals, device.categories, buffer["state"].cat.categories, history)
        codes = device.codes.to_numpy().astype(np.int64)
        if len(codes) == 0:
            return out
        sizes = np.bincount(codes, minlength=len(out.devices))
        slot = history - sizes[codes] + _positions(codes)
        out.ts[codes, slot] = buffer["ts"].to_numpy(dtype=np.int64)
        out.state[codes, slot] = buffer["state"].cat.codes.to_numpy()
        out.raw[:, codes, slot] = buffer[signals].to_numpy(dtype=float).T
        out.levels[:, codes, slot] = buffer[level_columns].to_numpy(dtype=float).T
        out.fill = sizes
        last = np.r_[codes[1:] != codes[:-1], True]
        out.run_pos[codes[last]] = features._segment_positions(buffer, codes)[last]
        return out

    def to_buffer(self, columns: list[str], level_columns: list[str]) -> pd.DataFrame:
        """The scorer's flat buffer (``columns`` then ``level_columns``) of these windows."""
        held = np.arange(self.history)[None, :] >= (self.history - self.fill)[:, None]
        rows = np.nonzero(held)[0]
        data: dict[str, object] = {
            "device_id": pd.Categorical.from_codes(rows, categories=self.devices),
            "ts": self.ts[held],
            "state": pd.Categorical.from_codes(self.state[held], categories=self.states),
        }
        for j, name in enumerate(self.signals):
            data[name] = self.raw[j][held]
        for j, name in enumerate(level_columns):
            data[name] = self.levels[j][held]
        return pd.DataFrame(data)[[*columns, *level_columns]]

    def advance(self, tick: pd.DataFrame) -> pd.DataFrame | None:
        """Append a tick and return its readings' features, or None when it is not an append.

        ``tick`` is the scorer's frame of new readings (categorical ``device_id`` and
        ``state`` over this object's categories, ``ts`` epoch ms, the signals). An
        append has at most one reading per known device, each newer than the device's
        newest; then the windows take the readings and the result is
        :meth:`FeatureBuilder.transform` columns for them, ordered by device.
        """
        if not tick["device_id"].cat.categories.equals(self.devices) or not tick["state"].cat.categories.equals(
            self.states
        ):
            return None
        codes = tick["device_id"].cat.codes.to_numpy().astype(np.int64)
        order = np.argsort(codes, kind="stable")
        dev = codes[order]
        ts = tick["ts"].to_numpy(dtype=np.int64)[order]
        if (
            len(dev) == 0
            or dev[0] < 0
            or (dev[1:] == dev[:-1]).any()
            or (self.fill[dev] == 0).any()
            or (ts <= self.ts[dev, -1]).any()
        ):
            return None
        tick = tick.iloc[order]
        f = self.features
        gap = (ts - self.ts[dev, -1]) > f.gap_factor * self.steps[dev]
        pos = np.where(gap, 0, np.minimum(self.run_pos[dev] + 1, self.fill[dev]))
        state = tick["state"].cat.codes.to_numpy().astype(np.int32)
        levels = self._levels_of(tick, dev, ts, state, pos)

        whole = len(dev) == len(self.devices)  # every device, in order: slices, not gathers
        at = slice(None) if whole else dev
        self._append(self.ts, at, ts, axis=0)
        self._append(self.state, at, state, axis=0)
        self._append(self.raw, at, tick[self.signals].to_numpy(dtype=float).T, axis=1)
        self._append(self.levels, at, levels.T, axis=1)
        self.fill[dev] = np.minimum(self.fill[dev] + 1, self.history)
        self.run_pos[dev] = pos

        span = f.window_span
        inside = np.arange(1 - span, 1)[None, :] >= -pos[:, None]
        win = self.levels[:, at, self.history - span :]
        states = self._model_state[self.state[at, self.history - span :]]
        out = pd.DataFrame(f.window_features(win, inside, states, pos), columns=f.feature_names_out_, copy=False)
        out.insert(0, "ts", ts)
        out.insert(0, "device_id", tick["device_id"].to_numpy())
        return out

    def _levels_of(
        self, tick: pd.DataFrame, dev: np.ndarray, ts: np.ndarray, state: np.ndarray, pos: np.ndarray
    ) -> np.ndarray:
        """The new readings' standardised values, from their devices' last ``lag_taps`` readings."""
        f = self.features
        taps = f.lag_taps
        k = taps + 1
        back = slice(self.history - taps, None)
        codes = self._model_state[np.concatenate([self.state[dev, back], state[:, None]], axis=1)]
        times = np.concatenate([self.ts[dev, back], ts[:, None]], axis=1)
        slots = np.arange(k)[None, :]
        start = np.maximum(taps - pos, 0)[:, None]  # the slot of the run's first reading
        run = np.where(slots >= start, slots - start, slots)  # before the run: any position, no weight
        steps = np.repeat(self.steps[dev], k)
        at = np.arange(len(dev)) * k + taps
        return f.standardise_at(tick, codes.ravel(), run.ravel(), times.ravel(), steps, at)

    @staticmethod
    def _append(array: np.ndarray, at: slice | np.ndarray, new: np.ndarray, axis: int) -> None:
        """Shift the rows ``at`` of ``array`` (device axis ``axis``) one slot older and
        put ``new`` in the newest slot."""
        if isinstance(at, slice):
            array[..., :-1] = array[..., 1:]
            array[..., -1] = new
            return
        index = (slice(None),) * axis + (at,)
        shifted = array[index]
        shifted[..., :-1] = shifted[..., 1:]
        shifted[..., -1] = new
        array[index] = shifted
