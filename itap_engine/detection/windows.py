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

from itap_engine.detection.features import FeatureBuilder, _positions, map_blocks

__all__ = ["DeviceWindows"]

_SLACK = 32
"""Spare rows of the windows: a tick of every device moves no rows, one in 32 moves them all."""
_BLOCK_DEVICES = 500
"""Devices a tick's features are computed for at a time (windows of a few MB: they stay in cache)."""


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
        # time-major, oldest first, with _SLACK spare rows: the window is the rows from
        # _base, a tick of every device writes the row after it and moves _base on, and
        # only every _SLACK ticks are the rows moved back to the front
        rows = history + _SLACK
        self._base = 0
        self._ts = np.zeros((rows, n), dtype=np.int64)
        self._state = np.full((rows, n), -1, dtype=np.int32)  # codes into ``states``; -1 missing
        self._raw = np.full((rows, s, n), np.nan)
        self._levels = np.full((rows, s, n), np.nan)
        self.fill = np.zeros(n, dtype=np.int64)
        self.run_pos = np.zeros(n, dtype=np.int64)
        self.steps = features.device_steps(devices)
        self.profiles = features.device_profiles(devices)
        # the builder's state index of each state category; -1 (missing) picks the catch-all
        known = features._state_codes(pd.DataFrame({"state": list(states)}))
        self._model_state = np.r_[known, len(features.states_) - 1].astype(np.int64)

    @property
    def ts(self) -> np.ndarray:
        """(history, devices) timestamps, ms."""
        return self._ts[self._base : self._base + self.history]

    @property
    def state(self) -> np.ndarray:
        """(history, devices) state codes into :attr:`states`; -1 missing."""
        return self._state[self._base : self._base + self.history]

    @property
    def raw(self) -> np.ndarray:
        """(history, signals, devices) values as read."""
        return self._raw[self._base : self._base + self.history]

    @property
    def levels(self) -> np.ndarray:
        """(history, signals, devices) standardised values."""
        return self._levels[self._base : self._base + self.history]

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
        out.ts[slot, codes] = buffer["ts"].to_numpy(dtype=np.int64)
        out.state[slot, codes] = buffer["state"].cat.codes.to_numpy()
        out.raw[slot, :, codes] = buffer[signals].to_numpy(dtype=float)
        out.levels[slot, :, codes] = buffer[level_columns].to_numpy(dtype=float)
        out.fill = sizes
        last = np.r_[codes[1:] != codes[:-1], True]
        out.run_pos[codes[last]] = features._segment_positions(buffer, codes)[last]
        return out

    def to_buffer(self, columns: list[str], level_columns: list[str]) -> pd.DataFrame:
        """The scorer's flat buffer (``columns`` then ``level_columns``) of these windows."""
        held = (np.arange(self.history)[:, None] >= (self.history - self.fill)[None, :]).T  # (devices, slots)
        rows = np.nonzero(held)[0]
        data: dict[str, object] = {
            "device_id": pd.Categorical.from_codes(rows, categories=self.devices),
            "ts": self.ts.T[held],
            "state": pd.Categorical.from_codes(self.state.T[held], categories=self.states),
        }
        for j, name in enumerate(self.signals):
            data[name] = self.raw[:, j, :].T[held]
        for j, name in enumerate(level_columns):
            data[name] = self.levels[:, j, :].T[held]
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
            or (ts <= self.ts[-1, dev]).any()
        ):
            return None
        tick = tick.iloc[order]
        f = self.features
        gap = (ts - self.ts[-1, dev]) > f.gap_factor * self.steps[dev]
        pos = np.where(gap, 0, np.minimum(self.run_pos[dev] + 1, self.fill[dev]))
        state = tick["state"].cat.codes.to_numpy().astype(np.int32)
        # groups of devices: temporaries stay in cache, and the groups run side by side
        blocks = [(lo, min(lo + _BLOCK_DEVICES, len(dev))) for lo in range(0, len(dev), _BLOCK_DEVICES)]
        values = tick[self.signals].to_numpy(dtype=float)
        levels = np.concatenate(
            map_blocks(
                lambda lo, hi: self._levels_of(values[lo:hi], dev[lo:hi], ts[lo:hi], state[lo:hi], pos[lo:hi]),
                blocks,
            )
        )

        whole = len(dev) == len(self.devices)  # every device, in order: slices, not gathers
        at = slice(None) if whole else dev
        self._append(at, ts, state, values.T, levels.T)
        self.fill[dev] = np.minimum(self.fill[dev] + 1, self.history)
        self.run_pos[dev] = pos

        span = f.window_span
        inside = np.arange(1 - span, 1)[:, None] >= -pos[None, :]
        win = self.levels[self.history - span :][..., at]
        states = self._model_state[self.state[self.history - span :][:, at]]
        features = np.concatenate(
            map_blocks(
                lambda lo, hi: f.window_features(
                    np.ascontiguousarray(win[..., lo:hi]), inside[:, lo:hi], states[:, lo:hi], pos[lo:hi]
                ),
                blocks,
            )
        )
        out = pd.DataFrame(features, columns=f.feature_names_out_, copy=False)
        out.insert(0, "ts", ts)
        out.insert(0, "device_id", tick["device_id"].to_numpy())
        return out

    def _levels_of(
        self, values: np.ndarray, dev: np.ndarray, ts: np.ndarray, state: np.ndarray, pos: np.ndarray
    ) -> np.ndarray:
        """The new readings' standardised values (:meth:`FeatureBuilder.levels`).

        A reading's expected level looks back over its device's last ``lag_taps``
        readings only when their state changed in that time; for the others (most of
        them) it is their own state's level, so only the busy devices' readings are
        laid out with their history."""
        f = self.features
        taps = f.lag_taps
        back = slice(self.history - taps, None)
        codes = self._model_state[np.concatenate([self.state[back][:, dev].T, state[:, None]], axis=1)]  # (m, taps + 1)
        slots = np.arange(taps + 1)[None, :]
        start = np.maximum(taps - pos, 0)[:, None]  # the slot of the run's first reading
        busy = np.flatnonzero(((codes[:, 1:] != codes[:, :-1]) & (slots[:, :-1] >= start)).any(axis=1))
        coef, known = self.profiles
        steps = self.steps[dev]
        levels = f.standardise_at(
            values, codes[:, -1], np.zeros(len(dev), dtype=np.int64), ts, steps, None, (coef[dev], known[dev])
        )
        if len(busy):
            times = np.concatenate([self.ts[back][:, dev[busy]].T, ts[busy, None]], axis=1)
            run = np.where(slots >= start[busy], slots - start[busy], slots)  # before the run: no weight
            at = np.arange(len(busy)) * (taps + 1) + taps
            on = dev[busy]
            levels[busy] = f.standardise_at(
                values[busy],
                codes[busy].ravel(),
                run.ravel(),
                times.ravel(),
                np.repeat(steps[busy], taps + 1),
                at,
                (coef[on], known[on]),
            )
        return levels

    def _append(self, at: slice | np.ndarray, *new: np.ndarray) -> None:
        """Shift the devices ``at`` one slot older and put ``new`` (ts, state, raw,
        levels) in their newest slot."""
        arrays: tuple[np.ndarray, ...] = (self._ts, self._state, self._raw, self._levels)
        h = self.history
        if not isinstance(at, slice):  # some devices: move their columns
            for array, value in zip(arrays, new, strict=True):
                window = array[self._base : self._base + h]
                shifted = window[..., at]
                shifted[:-1] = shifted[1:]
                shifted[-1] = value
                window[..., at] = shifted
            return
        if self._base + h == len(self._ts):  # out of spare rows: back to the front
            for array in arrays:
                array[: h - 1] = array[self._base + 1 : self._base + h]
            self._base = -1
        for array, value in zip(arrays, new, strict=True):
            array[self._base + h] = value
        self._base += 1
