"""Trailing-window features per device: one implementation for batch and streaming.

Why it is built this way:

* **Trailing only.** Every feature of the reading at position ``i`` of a device is a
  function of that device's readings ``i - history_ + 1 .. i`` and nothing else: no
  centred window, no statistic over the future, no global normalisation computed at
  transform time. That single property gives both guarantees the product needs: no
  look-ahead (a later reading never changes an earlier feature) and batch ==
  streaming (a scorer that keeps the last :attr:`FeatureBuilder.history_` readings
  of each device in memory, or :attr:`FeatureBuilder.levels_history` readings with
  their :meth:`FeatureBuilder.levels`, computes the same numbers as a pass over the
  whole history). Unbounded counters ("time since the last dropout") are capped at the
  long window so they too depend only on the last ``history_`` readings.
* **Operating states are normal.** RUN / IDLE / MAINT change every signal's level.
  :meth:`FeatureBuilder.fit` learns, from normal readings, each state's level and
  spread per signal *and* how fast the machine moves between levels (a dead time of
  0 or 1 reading plus a first-order lag, chosen by least squares from a small grid).
  Every value is then expressed against that state-expected level (``u``), so a
  pump going idle is as ordinary as one that keeps running, while a pump whose
  temperature climbs in a steady state is not.
* **Vectorised.** Rolling sums come from cumulative sums with per-device resets,
  rolling min/max and the FFT from ``np.lib.stride_tricks.sliding_window_view`` with
  a mask for windows that would cross into the previous device. No Python loop over
  rows and no ``rolling.apply``.
* **Daily profile.** The long trailing mean of ``u`` (``long_window`` readings, 20
  minutes by default) follows the device's own daily cycle and offset, so ``resid``
  (``u`` minus that trend) is the reading against the device's recent profile. A
  learned hour-of-day table would need a day of history per device before it could
  score anything; the trailing trend needs 20 minutes.

Feature names are ``{signal}__{kind}`` for per-signal features and bare names for the
device-level event counters (see :data:`SIGNAL_KINDS`, :data:`EVENT_FEATURES`).
"""

from __future__ import annotations

import copy
import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from itap_engine.config import ProfileSpec, Settings

__all__ = [
    "EVENT_FAMILY",
    "EVENT_FEATURES",
    "SIGNAL_KINDS",
    "FeatureBuilder",
    "device_blocks",
    "feature_builder_for",
    "feature_signal",
    "map_blocks",
    "sort_readings",
]

SIGNAL_KINDS = (
    "level",  # u: the value against its state-expected level, in state spreads
    "mean",  # rolling mean of u over `window`
    "recent",  # rolling mean of u over the newest half of `window` (a fault's end shows sooner)
    "std",  # rolling std of u over `window`
    "min",
    "max",
    "diff",  # first difference of u
    "z",  # u against the mean/std of the previous `long_window` readings
    "fft_energy",  # spectral energy (DC removed) over `fft_window`
    "fft_freq",  # dominant frequency, cycles per reading
    "trend",  # long rolling mean of u
    "resid",  # u - trend
    "missing",  # fraction of missing readings in `window`
    "cusum",  # two-sided CUSUM of u over `long_window` readings (slow drift)
)
EVENT_FEATURES = ("dropout_streak", "since_dropout", "state_changes")
"""Device-level counters: consecutive readings with a missing value, readings since
the last missing value (capped at ``long_window``), state transitions in the long
window."""
EVENT_FAMILY = "events"
"""Family reported for the device-level counters."""

_OTHER_STATE = "__other__"
_LAG_TAUS = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
_LAG_DELAYS = (0, 1)
_MIN_SPREAD = 1e-6
_LAG_SEARCH_ROWS = 200_000
_SPREAD_ROWS = 200_000
"""fit estimates state spreads from a regular sample of at most about this many rows."""
T = TypeVar("T")
_BLOCK_ROWS = 20_000
"""A batch transform works on groups of whole devices of about this many rows."""
_MAX_THREADS = 4
_GATHER_MAX_SHARE = 8
"""transform_new gathers per-row windows only when under 1/8 of the rows are new."""
_DAY_MS = 86_400_000
_PROFILE_MIN_MS = 4 * 3_600_000
"""A device needs this much training history before its daily cycle is fitted."""
_Z_STD_FLOOR = 0.05
"""Floor (in state spreads) on the rolling std that z-scores divide by."""
_CUSUM_K = 0.5
"""CUSUM allowance (in state spreads): shifts of the mean smaller than this do not accumulate."""
_CUSUM_CLIP = 4.0
"""Each reading adds at most this (in state spreads) to the CUSUM, so one outlier or a
state transition cannot pass for a drift."""


def feature_names(signals: Sequence[str]) -> list[str]:
    """The features this version builds for ``signals``, in column order (a model whose
    builder lists others was made by an older ITAP, see :func:`outdated_features`)."""
    return [f"{s}__{k}" for s in signals for k in SIGNAL_KINDS] + list(EVENT_FEATURES)


def outdated_features(builder: object) -> list[str]:
    """The features this version builds that a fitted ``builder`` (read from a model
    file) does not list, or lists and this version no longer builds; empty when it
    builds what this version builds (or is not a fitted feature builder)."""
    listed = getattr(builder, "feature_names_out_", None)
    signals = getattr(builder, "signals", None)
    if listed is None or signals is None:
        return []
    wanted = feature_names(list(signals))
    if list(listed) == wanted:
        return []
    have, built = set(listed), set(wanted)
    return [name for name in wanted if name not in have] + [name for name in listed if name not in built]


def feature_signal(name: str) -> str | None:
    """The signal a feature belongs to, or None for a device-level counter."""
    return name.split("__", 1)[0] if "__" in name else None


# ---------------------------------------------------------------------- helpers
def _positions(device_codes: np.ndarray) -> np.ndarray:
    """Position of each row within its device's run (rows sorted by device, ts)."""
    n = len(device_codes)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    boundary = np.empty(n, dtype=bool)
    boundary[0] = True
    boundary[1:] = device_codes[1:] != device_codes[:-1]
    starts = np.maximum.accumulate(np.where(boundary, np.arange(n), 0))
    return np.arange(n) - starts


def _order(values: np.ndarray) -> str:
    """Memory order to give a result computed column by column from ``values``."""
    return "F" if values.ndim == 2 and values.flags.f_contiguous and not values.flags.c_contiguous else "C"


def _trailing_difference(cs: np.ndarray, pos: np.ndarray, window: int) -> np.ndarray:
    """``cs[i + 1] - cs[i + 1 - min(pos[i] + 1, window)]`` for every row ``i``.

    ``cs`` is a cumulative sum with a leading zero row. Rows with a full window take
    two shifted slices; only the first ``window - 1`` rows of each device need a
    gather, so the work is a few passes over contiguous memory.
    """
    n = cs.shape[0] - 1
    out = np.empty_like(cs[1:])
    if n >= window:
        np.subtract(cs[window:], cs[: n + 1 - window], out=out[window - 1 :])
    short = np.flatnonzero(pos < window - 1)
    out[short] = cs[short + 1] - cs[short - pos[short]]
    return out


def _rolling_sum(values: np.ndarray, pos: np.ndarray, window: int) -> np.ndarray:
    """Trailing sum over ``window`` rows within each device (2-D: per column).

    Cumulative sums restart at every device, so a device's sums never carry
    rounding from another device's readings (batch and streaming agree to ~1e-12).
    """
    n = values.shape[0]
    out = np.empty(values.shape, order=_order(values))  # type: ignore[call-overload]
    starts = np.flatnonzero(pos == 0)
    ends = np.r_[starts[1:], n]
    for lo, hi in zip(starts, ends):
        block = np.zeros((hi - lo + 1, *values.shape[1:]))
        np.cumsum(values[lo:hi], axis=0, out=block[1:])
        out[lo:hi] = _trailing_difference(block, pos[lo:hi], window)
    return out


def _rolling_count(flags: np.ndarray, pos: np.ndarray, window: int) -> np.ndarray:
    """Trailing sum of 0/1 flags over ``window`` rows within each device (exact).

    Integer-valued cumulative sums carry no rounding, so one pass over all devices
    (no per-device loop) gives the same numbers as :func:`_rolling_sum`.
    """
    cs = np.zeros((flags.shape[0] + 1, *flags.shape[1:]), order=_order(flags))  # type: ignore[call-overload]
    np.cumsum(flags, axis=0, out=cs[1:])
    return _trailing_difference(cs, pos, window)


def _gather(
    values: np.ndarray, pos: np.ndarray, rows: np.ndarray, window: int, fill: float
) -> tuple[np.ndarray, np.ndarray]:
    """Trailing windows ending at ``rows`` only: ``(windows, inside)``.

    ``windows`` is (m, window, *values.shape[1:]) with the current row last; slots
    before the device's first row hold ``fill`` and are False in ``inside`` (m, window).
    The streaming path uses it so the per-row work is done for the new rows only.
    """
    offsets = np.arange(1 - window, 1)
    inside = offsets[None, :] >= -pos[rows][:, None]
    idx = np.where(inside, rows[:, None] + offsets[None, :], 0)
    windows = values[idx]
    windows[~inside] = fill
    return windows, inside


def _windows(
    values: np.ndarray, pos: np.ndarray, window: int, fill: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trailing windows of a 1-D array: ``(view, partial, outside)``.

    ``view`` is a (n, window) read-only view whose column ``window - 1`` is the
    current row. Rows listed in ``partial`` (the first ``window - 1`` rows of a
    device) see slots from the previous device; ``outside`` marks those slots
    (one row of ``outside`` per entry of ``partial``) so callers fix just them.
    """
    padded = np.concatenate([np.full(window - 1, fill), values])
    view = sliding_window_view(padded, window)
    partial = np.flatnonzero(pos < window - 1)
    outside = np.arange(window)[None, :] < (window - 1 - pos[partial])[:, None]
    return view, partial, outside


def _rolling_extreme(values: np.ndarray, pos: np.ndarray, window: int, largest: bool) -> np.ndarray:
    """Trailing NaN-ignoring min or max within each device (NaN if all missing).

    By doubling: ``span[s]`` is the extreme of the last ``s`` rows of the device,
    built from ``span[s / 2]`` and its copy shifted by ``s / 2`` rows (shifts that
    would reach into the previous device take the neutral ``fill``). The window is
    then a sum of powers of two. About 2 log2(window) passes over the data instead
    of ``window`` reads per row; min and max are exact, so the result equals the
    per-window reduction bit for bit.
    """
    fill = -np.inf if largest else np.inf
    combine = np.maximum if largest else np.minimum
    clean = np.where(np.isnan(values), fill, values)

    def shifted(a: np.ndarray, k: int) -> np.ndarray:
        out = np.full_like(a, fill)
        out[k:] = a[:-k]
        out[pos < k] = fill
        return out

    spans = {1: clean}
    size = 1
    while size * 2 <= window:
        spans[size * 2] = combine(spans[size], shifted(spans[size], size))
        size *= 2
    result, covered = spans[size].copy(), size
    for part in sorted(spans, reverse=True):
        if covered + part <= window:
            combine(result, shifted(spans[part], covered), out=result)
            covered += part
    result[np.isinf(result)] = np.nan
    return result


_FFT_CHUNK = 32_768
"""Rows per block of the batch DFT (the (window, rows) block stays in cache)."""


def _fft_features(values: np.ndarray, pos: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Spectral energy (DC removed) and dominant frequency over trailing windows.

    Missing slots and slots before the device's first row are set to the window's
    mean before the transform, so they add no energy. Fewer than two values: NaN.

    Windows are laid out transposed, (window, rows) in blocks, so building them is
    ``window`` contiguous copies and the transform one matrix product per block.
    Windows that are partial or hold a missing value (few) are redone by
    :func:`_fft_features_at`, which centres them.
    """
    n = len(values)
    valid = np.isfinite(values)
    padded = np.concatenate([np.zeros(window - 1), np.where(valid, values, 0.0)])
    energy, dominant = np.empty(n), np.empty(n)
    block = np.empty((window, min(n, _FFT_CHUNK)))
    for lo in range(0, n, _FFT_CHUNK):
        hi = min(lo + _FFT_CHUNK, n)
        for j in range(window):
            block[j, : hi - lo] = padded[lo + j : hi + j]
        energy[lo:hi], dominant[lo:hi] = _spectrum_stats(block[:, : hi - lo], window)
    cnt = _rolling_count(valid.astype(float), pos, window)
    fix = np.flatnonzero(cnt < window)
    if len(fix):
        energy[fix], dominant[fix] = _fft_features_at(values, pos, fix, window)
    return energy, dominant


def _fft_features_at(
    values: np.ndarray, pos: np.ndarray, rows: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_fft_features` for the windows ending at ``rows`` only (same numbers)."""
    valid = np.isfinite(values)
    sub, inside = _gather(np.where(valid, values, 0.0), pos, rows, window, 0.0)
    mask = valid[np.where(inside, rows[:, None] + np.arange(1 - window, 1)[None, :], 0)] & inside
    cnt = mask.sum(axis=1)
    fix = np.flatnonzero(cnt < window)
    if len(fix):
        m = mask[fix]
        part = sub[fix]
        mean = np.where(m, part, 0.0).sum(axis=1) / np.maximum(m.sum(axis=1), 1)
        sub[fix] = np.where(m, part - mean[:, None], 0.0)
    energy, dominant = _spectrum_stats(np.ascontiguousarray(sub.T), window)
    enough = cnt >= 2
    return np.where(enough, energy, np.nan), np.where(enough, dominant, np.nan)


def _spectrum_stats(block: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Energy and dominant frequency of the windows in the columns of ``block``."""
    basis = _dft_basis(window)
    bins = basis.shape[0] // 2
    spectrum = basis @ block  # (2 * bins, m): cosine rows then sine rows
    power = spectrum[:bins]
    power *= power
    sine = spectrum[bins:]
    sine *= sine
    power += sine
    energy = power.sum(axis=0) / (window * window)
    best = power[0].copy()
    arg = np.zeros(power.shape[1])
    for b in range(1, bins):  # argmax over the bins (first of equals), row by row
        higher = power[b] > best
        np.maximum(best, power[b], out=best)
        arg[higher] = b
    return energy, (arg + 1) / window


_BASES: dict[int, np.ndarray] = {}


def _dft_basis(window: int) -> np.ndarray:
    """Real DFT basis (2 * bins, window) for frequencies 1 .. window // 2 (DC excluded).

    A matrix product with it is the DFT of every window at once; bins above 0 do not
    change when a constant is added, so clean windows need no centring.
    """
    basis = _BASES.get(window)
    if basis is None:
        k = np.arange(1, window // 2 + 1)
        angle = 2 * np.pi * np.outer(k, np.arange(window)) / window
        basis = np.concatenate([np.cos(angle), -np.sin(angle)], axis=0)
        _BASES[window] = basis
    return basis


def _segment_cumsum(values: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``values`` restarting at every run (``pos == 0``)."""
    out = np.empty_like(values)
    starts = np.flatnonzero(pos == 0)
    ends = np.r_[starts[1:], len(values)]
    for lo, hi in zip(starts, ends):
        np.cumsum(values[lo:hi], axis=0, out=out[lo:hi])  # 2-D: every column in one call per run
    return out


def _trailing_min(values: np.ndarray, pos: np.ndarray, window: int) -> np.ndarray:
    """Trailing min over ``window`` rows within each run, for finite ``values``.

    scipy's ``minimum_filter1d`` (van Herk / Gil-Werman: a few passes whatever the
    window) over the whole array, then the first ``window - 1`` rows of each run,
    whose window would reach into the previous run, get the run's running min.
    Exact, so it equals :func:`_rolling_extreme` (and the streaming gather) bit for bit.
    """
    from scipy.ndimage import minimum_filter1d

    if len(values) == 0:
        return values.copy()
    out = minimum_filter1d(values, window, origin=(window - 1) // 2, mode="nearest")
    starts = np.flatnonzero(pos == 0)
    ends = np.minimum(np.r_[starts[1:], len(values)], starts + window - 1)
    for lo, hi in zip(starts, ends):
        out[lo:hi] = np.minimum.accumulate(values[lo:hi])
    return out


def _cusum(u0: np.ndarray, pos: np.ndarray, window: int) -> np.ndarray:
    """Two-sided Page CUSUM of each column of ``u`` over the trailing ``window`` readings.

    ``S+ = max(0, max over suffixes of the window of sum(clip(u) - k))`` (and ``S-``
    with ``-u``); over a trailing window that is ``C_t - min(C_{t-window} .. C_{t-1})``
    of the run's cumulative sum ``C``, so batch and streaming (:func:`_best_suffix`)
    agree (a constant offset of ``C`` cancels) and no state is carried between calls.
    Missing values add ``-k``.
    """
    clipped = np.clip(u0, -_CUSUM_CLIP, _CUSUM_CLIP)
    # both sides of every signal in one array: the run-wise cumulative sums are one
    # call per run, not one per run, signal and side (bit for bit the same sums)
    v = np.asfortranarray(np.concatenate([clipped - _CUSUM_K, -clipped - _CUSUM_K], axis=1))
    c = _segment_cumsum(v, pos)
    prev = c - v
    sides = [np.maximum(c[:, k] - _trailing_min(prev[:, k], pos, window), 0.0) for k in range(v.shape[1])]
    n_signals = u0.shape[1]
    return np.maximum(np.column_stack(sides[:n_signals]), np.column_stack(sides[n_signals:]))


def _best_suffix(v: np.ndarray, inside: np.ndarray | None) -> np.ndarray:
    """``max(0, largest sum of a suffix)`` of each window (window, ..., m) along its first axis.

    A suffix holds the current (last) slot and may not reach into the slots that are
    not ``inside`` (window, m) its run (None: all are): the streaming form of
    :func:`_cusum`, and the same ``C_t - min(C_j)`` of the window's cumulative sum
    ``C``. The slots outside the run are a prefix, so zeroing them only adds the
    empty prefix's 0 to the min. The running sum adds one whole row a step, in the
    order ``np.cumsum`` would (same bits), at a quarter of its cost on this layout.
    """
    if inside is not None:
        v = np.where(inside.reshape(inside.shape[0], *(1,) * (v.ndim - 2), inside.shape[1]), v, 0.0)
    total = np.zeros(v.shape[1:])
    lowest = np.zeros(v.shape[1:])
    for row in v[:-1]:
        total += row
        np.minimum(lowest, total, out=lowest)
    total += v[-1]
    return np.maximum(total - lowest, 0.0)


def _window_spectrum(win0: np.ndarray, valid: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_fft_features_at` for gathered windows (window, S, m): missing values are
    0 in ``win0`` and False in ``valid``; a window short of values is centred on its mean."""
    shape = win0.shape[1:]
    sub = win0.reshape(window, -1)  # one window per column
    mask = valid.reshape(window, -1)
    cnt = mask.sum(axis=0)
    fix = np.flatnonzero(cnt < window)
    if len(fix):
        sub = sub.copy()
        part, ok = sub[:, fix], mask[:, fix]
        mean = np.where(ok, part, 0.0).sum(axis=0) / np.maximum(cnt[fix], 1)
        sub[:, fix] = np.where(ok, part - mean, 0.0)
    energy, dominant = _spectrum_stats(sub, window)
    enough = cnt >= 2
    return np.where(enough, energy, np.nan).reshape(shape), np.where(enough, dominant, np.nan).reshape(shape)


def _lagged_level(
    codes: np.ndarray,
    levels: np.ndarray,
    pos: np.ndarray,
    ts: np.ndarray,
    steps: np.ndarray,
    tau: float,
    delay: int,
    taps: int,
    at: np.ndarray | None = None,
) -> np.ndarray:
    """State-expected level: the machine's first-order lag (plus dead time) in time.

    The state reported by reading ``j`` holds for one interval before it (half of a
    longer step, when samples were skipped or the series has a gap); the level
    expected at reading ``i`` is the states' levels seen through a dead time of
    ``delay`` sampling intervals and a first-order lag of ``tau`` intervals, in the
    device's own median interval ``steps`` (ms): with ``b(j)`` the time from ``ts[j]``
    to ``ts[i]`` in whole intervals (rounded, so timestamp jitter below half an
    interval does not move it) minus ``delay``, reading ``j`` weighs
    ``exp(-max(b, 0) / tau)`` between the two ends of the time its state held. The oldest of the last
    ``taps`` readings (or the run's first) holds the rest of the past. On regular
    samples this is the FIR ``(1 - a) a^k`` over readings (``a = exp(-1 / tau)``); a
    skipped sample or jitter moves each weight by its true time, not by a reading.

    Only rows whose last ``taps`` readings hold a state change differ from their own
    state's level, so only they are computed. With ``at``, the levels of those rows
    only (their windows still read the rows before them).
    """
    own = levels[codes if at is None else codes[at]]  # (m, S)
    if (tau <= 0 and delay == 0) or len(own) == 0 or not (pos > 0).any():
        return own  # no lag, or no reading has one before it in its run
    changed = np.zeros(len(codes))
    changed[1:] = (codes[1:] != codes[:-1]) & (pos[1:] > 0)
    in_window = _rolling_count(changed, pos, taps) > 0
    picked = np.flatnonzero(in_window if at is None else in_window[at])  # positions in `own`
    if len(picked) == 0:
        return own
    rows = picked if at is None else at[picked]
    offsets = np.arange(1 - taps, 1)
    first = offsets[None, :] <= -pos[rows][:, None]  # the run's first reading or before it
    idx = np.maximum(rows[:, None] + offsets[None, :], rows[:, None] - pos[rows][:, None])
    # time back from the row to each slot, in whole sampling intervals: jitter of less
    # than half an interval rounds away, a skipped sample counts as the interval it is
    step = steps[rows].astype(float)[:, None]
    back = np.rint((ts[rows].astype(float)[:, None] - ts[idx]) / step) - delay  # (m, taps), oldest first
    # slot k's state holds back to the boundary with slot k - 1: one interval before it,
    # or the middle of a longer step (a change inside a skipped sample is placed halfway)
    edge = np.full(back.shape, np.inf)
    edge[:, 1:] = np.minimum(back[:, :-1], (back[:, :-1] + back[:, 1:]) / 2 + 0.5)
    edge[first] = np.inf  # the run's first reading holds everything before it
    newer = np.empty(back.shape)
    newer[:, :-1] = edge[:, 1:]
    newer[:, -1] = back[:, -1]
    before = offsets[None, :] < -pos[rows][:, None]  # slots before the run: no weight
    span = max(tau, 1e-9)

    def survive(lag: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            return np.where(lag <= 0, 1.0, np.exp(-np.maximum(lag, 0.0) / span))

    w = np.where(before, 0.0, survive(newer) - survive(edge))
    total = w.sum(axis=1)
    ok = total > 0
    out = own.copy()
    code_win = codes[idx]
    for s in range(levels.shape[1]):
        acc = (levels[:, s][code_win] * w).sum(axis=1)
        out[picked[ok], s] = acc[ok] / total[ok]
    return out


def _lag_taps(tau: float, delay: int) -> int:
    """Readings a time-based lag of ``tau`` intervals plus ``delay`` reads back: six
    time constants, doubled so that skipped samples never shorten it."""
    return 2 * (int(np.ceil(6 * tau)) + 1 + delay)


def sort_readings(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` ordered by device then time (Python's string order), the order every
    feature and alert computation here assumes; returned as is when already so."""
    keys = frame["device_id"].to_numpy()
    ts = frame["ts"].to_numpy()
    if len(frame) > 1:
        same = keys[1:] == keys[:-1]
        if np.all((keys[1:] > keys[:-1]) | (same & (ts[1:] > ts[:-1]))):
            return frame
    return frame.sort_values(["device_id", "ts"], kind="stable")


def device_blocks(
    device_codes: np.ndarray, rows: float = _BLOCK_ROWS, weight: np.ndarray | None = None
) -> list[tuple[int, int]]:
    """Row ranges ``(lo, hi)`` of whole devices, about ``rows`` rows each.

    ``device_codes`` must be grouped (rows sorted by device); ``weight`` (per row,
    default 1) counts some rows as less work than others. Features never cross
    devices, so the ranges can be processed independently: ranges this small keep
    every temporary in cache and in memory the allocator reuses (a temporary the
    size of a whole workload costs tens of MB of freshly zeroed pages per step),
    and they run side by side in :func:`map_blocks`.
    """
    n = len(device_codes)
    done = np.cumsum(weight) if weight is not None else np.arange(1, n + 1, dtype=float)
    cuts = [0]
    for start in np.flatnonzero(device_codes[1:] != device_codes[:-1]) + 1:
        if done[start - 1] - (done[cuts[-1] - 1] if cuts[-1] else 0.0) >= rows:
            cuts.append(int(start))
    cuts.append(n)
    return list(itertools.pairwise(cuts))


def map_blocks(fn: Callable[[int, int], T], blocks: Sequence[tuple[int, int]]) -> list[T]:
    """``fn(lo, hi)`` for every block, on a thread pool when there are several; results in order.

    numpy releases the GIL in the array kernels, so blocks use every core.
    """
    workers = min(len(blocks), os.cpu_count() or 1, _MAX_THREADS)
    if workers <= 1 or getattr(_IN_BLOCK, "active", False):  # already in a block: no pool in a pool
        return [fn(lo, hi) for lo, hi in blocks]

    def run(block: tuple[int, int]) -> T:
        _IN_BLOCK.active = True
        try:
            return fn(*block)
        finally:
            _IN_BLOCK.active = False

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, blocks))


_IN_BLOCK = threading.local()


@dataclass(frozen=True)
class FleetPart:
    """Some devices' fit rows as the fleet-wide statistics need them
    (:meth:`FeatureBuilder.fleet_part`)."""

    values: np.ndarray
    """(rows, signals) float."""
    raw: np.ndarray
    """Each row's state as an index into ``labels`` (-1: missing)."""
    labels: list[str]
    steps: np.ndarray
    """Time steps (ms) between consecutive readings of a device."""


@dataclass(frozen=True)
class SpreadResiduals:
    """Residuals at every ``stride``-th fit row (:meth:`FeatureBuilder.fit_devices`)."""

    fallback: np.ndarray
    """Around the state level alone (devices training never saw)."""
    profiled: np.ndarray
    """Around the state level times the device's daily profile."""
    codes: np.ndarray


def spread_stride(rows: int) -> int:
    """Spreads are measured on every this-many-th of ``rows`` fit rows (at most ``_SPREAD_ROWS``)."""
    return max(1, -(-rows // _SPREAD_ROWS))


class FeatureBuilder(TransformerMixin, BaseEstimator):
    """Per-device trailing-window features of one profile's readings.

    Parameters
    ----------
    signals : sequence of str
        The profile's signal columns, in order.
    window : int, default=12
        Short window (readings) for rolling statistics and the missing fraction.
    long_window : int, default=120
        Long window for the trend, the z-score baseline and the event counters.
    fft_window : int, default=16
        Window for FFT energy and dominant frequency.
    gap_factor : float, default=5.0
        A step between two readings of a device is a gap (the windows restart after
        it) only when it is longer than this many times that device's own median
        sampling interval; jitter, a skipped sample or a burst is not a gap.

    Attributes
    ----------
    states_ : list of str
        States seen in training (plus a catch-all for unknown states).
    levels_ : ndarray of shape (n_states, n_signals)
        Median level of each signal in each state.
    spreads_ : ndarray of shape (n_states, n_signals)
        Robust spread of each signal around its state-expected level.
    lag_tau_, lag_delay_ : float, int
        Learned transition dynamics between state levels.
    feature_names_out_ : list of str
    history_ : int
        Readings per device a streaming caller must keep so that its features equal
        the batch ones.
    step_ms_ : int
        Median sampling interval seen in training (all devices).
    device_steps_ : dict of str to int
        Each training device's own median sampling interval.

    Examples
    --------
    >>> fb = FeatureBuilder(signals=["temp"]).fit(frame)        # doctest: +SKIP
    >>> X = fb.transform(frame)[fb.feature_names_out_]           # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        signals: Sequence[str] = (),
        window: int = 12,
        long_window: int = 120,
        fft_window: int = 16,
        gap_factor: float = 5.0,
    ) -> None:
        self.signals = signals
        self.window = window
        self.long_window = long_window
        self.fft_window = fft_window
        self.gap_factor = gap_factor

    # ------------------------------------------------------------------ fit
    def fit(self, X: pd.DataFrame, y: Any = None) -> FeatureBuilder:
        """Learn per-state levels, spreads and transition dynamics from normal readings.

        The steps, which device groups can also run apart (``itap train`` on a cluster,
        with the same result): :meth:`fleet_part` -> :meth:`fit_fleet` (states, levels,
        sampling step), :meth:`fit_device_steps`, :meth:`fit_lag` on the first devices'
        rows (:meth:`lag_rows`), :meth:`fit_devices` (each device's daily profile and the
        residuals the spreads are measured on) -> :meth:`fit_spreads`.
        """
        frame = sort_readings(X)
        self.fit_fleet([self.fleet_part(frame)])
        self.device_steps_ = self.fit_device_steps(frame)
        self.fit_lag(frame.iloc[: self.lag_rows(pd.factorize(frame["device_id"])[0])])
        self.device_profiles_, residuals = self.fit_devices(frame, 0, spread_stride(len(frame)))
        self.fit_spreads([residuals])
        return self

    def fleet_part(self, frame: pd.DataFrame) -> FleetPart:
        """What some devices' fit rows (sorted by device, time) tell the fleet-wide
        statistics: their values, states and sampling steps (:meth:`fit_fleet`)."""
        signals = list(self.signals)
        if not signals:
            raise ValueError("FeatureBuilder needs at least one signal")
        values = frame[signals].to_numpy(dtype=float)
        if "state" in frame.columns:
            raw, uniques = pd.factorize(frame["state"])
            labels = [str(u) for u in uniques]
        else:
            raw, labels = np.full(len(frame), -1, dtype=np.int64), []
        device_codes = pd.factorize(frame["device_id"])[0]
        ts = frame["ts"].to_numpy(dtype=np.int64)
        same = np.r_[False, device_codes[1:] == device_codes[:-1]]
        return FleetPart(values, np.asarray(raw), labels, np.diff(ts)[same[1:]])

    def fit_fleet(self, parts: Sequence[FleetPart]) -> None:
        """States, per-state levels and the sampling step from the parts of every
        device's fit rows, in device order (medians of the very same values as one frame)."""
        signals = list(self.signals)
        known = sorted({label for part in parts for label in part.labels})
        self.states_ = [*[k for k in known if k != _OTHER_STATE], _OTHER_STATE]
        lookup = {name: k for k, name in enumerate(self.states_)}
        other = len(self.states_) - 1

        def codes_of(part: FleetPart) -> np.ndarray:
            table = np.array([lookup.get(u, other) for u in part.labels] + [other], dtype=np.int64)
            return table[part.raw]  # raw == -1 (missing) picks the trailing `other`

        values = parts[0].values if len(parts) == 1 else np.concatenate([p.values for p in parts])
        codes = np.concatenate([codes_of(p) for p in parts]) if parts else np.zeros(0, dtype=np.int64)
        n_states = len(self.states_)
        levels = np.zeros((n_states, len(signals)))
        overall = np.nanmedian(values, axis=0) if len(values) else np.zeros(len(signals))
        overall = np.where(np.isfinite(overall), overall, 0.0)
        for k in range(n_states):
            rows = values[codes == k]
            med = np.nanmedian(rows, axis=0) if len(rows) else overall
            levels[k] = np.where(np.isfinite(med), med, overall)
        levels[-1] = overall
        self.levels_ = levels
        steps = np.concatenate([p.steps for p in parts]) if parts else np.zeros(0, dtype=np.int64)
        self.step_ms_ = int(np.median(steps)) if len(steps) else 1000

    def fit_device_steps(self, frame: pd.DataFrame) -> dict[str, int]:
        """Each device's own median sampling interval (after :meth:`fit_fleet`)."""
        device_codes = pd.factorize(frame["device_id"])[0]
        ts = frame["ts"].to_numpy(dtype=np.int64)
        return _device_steps(frame["device_id"].to_numpy(), device_codes, ts, self.step_ms_)

    @staticmethod
    def lag_rows(device_codes: np.ndarray) -> int:
        """The lag grid search needs transitions, not volume: the rows of the first
        devices, up to the one holding row ``_LAG_SEARCH_ROWS``."""
        if not len(device_codes):
            return 0
        return int(np.searchsorted(device_codes, device_codes[min(len(device_codes), _LAG_SEARCH_ROWS) - 1], "right"))

    def _runs(
        self, frame: pd.DataFrame
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """What the lag needs of ``frame`` (sorted by device, time): values, state codes,
        device codes, timestamps, positions in the run and each row's device step."""
        device_codes = pd.factorize(frame["device_id"])[0]
        return (
            frame[list(self.signals)].to_numpy(dtype=float),
            self._state_codes(frame),
            device_codes,
            frame["ts"].to_numpy(dtype=np.int64),
            self._segment_positions(frame, device_codes),
            self._row_steps(frame, device_codes),
        )

    def fit_lag(self, frame: pd.DataFrame) -> None:
        """The transition dynamics (lag and dead time) on the first devices' fit rows
        (:meth:`lag_rows`), after :meth:`fit_fleet` and with their device steps known."""
        # a gap in time (e.g. rows left out of training) restarts the lag like a new device
        values, codes, _, ts, pos, steps_at = self._runs(frame)
        levels = self.levels_
        best: tuple[float, float, int] | None = None
        for delay in _LAG_DELAYS:
            for tau in _LAG_TAUS:
                expected = _lagged_level(codes, levels, pos, ts, steps_at, tau, delay, _lag_taps(tau, delay))
                rel = (values - expected) / np.maximum(np.abs(levels[-1]), 1.0)
                loss = float(np.nansum(rel**2))
                if best is None or loss < best[0] - 1e-12:
                    best = (loss, tau, delay)
        assert best is not None
        self.lag_tau_, self.lag_delay_ = best[1], best[2]
        self.lag_taps_ = _lag_taps(self.lag_tau_, self.lag_delay_)

    def fit_devices(
        self, frame: pd.DataFrame, offset: int, stride: int
    ) -> tuple[dict[str, np.ndarray], SpreadResiduals]:
        """Each device's daily profile (:meth:`_fit_profiles`), and the residuals the
        spreads are measured on at every ``stride``-th fit row of the fleet (this
        frame's first row is the fleet's row ``offset``), after :meth:`fit_lag`; the
        device steps of ``frame``'s devices must be known."""
        values, codes, device_codes, ts, pos, steps_at = self._runs(frame)
        expected = _lagged_level(codes, self.levels_, pos, ts, steps_at, self.lag_tau_, self.lag_delay_, self.lag_taps_)
        profiles = self._fit_profiles(frame, values, expected, device_codes) if len(frame) else {}
        # spreads (robust, so a regular sample of the rows estimates them as well as all
        # of them do); those around the state level alone serve devices training never saw
        every = slice((-offset) % stride, None, stride)
        values, expected, codes = values[every], expected[every], codes[every]
        own = copy.copy(self)
        own.device_profiles_ = profiles
        profiled = expected * own._profile_factor(frame.iloc[every])
        return profiles, SpreadResiduals(values - expected, values - profiled, codes)

    def fit_spreads(self, parts: Sequence[SpreadResiduals]) -> None:
        """The per-state spreads from every device group's residuals (in device order)."""
        n_states = len(self.states_)
        floor = np.maximum(np.abs(self.levels_[-1]) * 1e-6, _MIN_SPREAD)

        def joined(name: str) -> np.ndarray:
            arrays = [getattr(p, name) for p in parts]
            return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)

        codes = joined("codes")
        self.fallback_spreads_ = np.maximum(self._spreads(joined("fallback"), codes, n_states), floor)
        self.spreads_ = np.maximum(self._spreads(joined("profiled"), codes, n_states), floor)
        self.feature_names_out_ = feature_names(self.signals)
        # u at a row needs len(weights) readings; the long window needs L + 1 values of u
        self.history_ = self.levels_history + self.lag_taps_

    @property
    def recent_window(self) -> int:
        """Readings in the ``{signal}__recent`` mean: the newest half of ``window``."""
        return max(1, self.window // 2)

    @property
    def levels_history(self) -> int:
        """Readings per device a streaming caller must keep when it hands back
        :meth:`levels` (``transform_new(levels=...)``): the windows only, since the
        state history behind each level is already in it (fewer than :attr:`history_`)."""
        return max(self.long_window + 1, self.window, self.fft_window) + 1

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self)
        return np.asarray(self.feature_names_out_, dtype=object)

    # ------------------------------------------------------------------ transform
    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Features of every reading, ordered by device then time.

        Returns a frame with ``device_id``, ``ts`` and one float column per name in
        :attr:`feature_names_out_`; its index is the input's index (sorted).
        """
        check_is_fitted(self)
        return self._transform(sort_readings(X), None)

    def levels(self, X: pd.DataFrame, rows: np.ndarray | None = None) -> np.ndarray:
        """The standardised values ``u`` of ``X`` (the ``{signal}__level`` features).

        ``u`` is each value against its state-expected level, in state spreads. It
        depends on the reading and on the states of the few readings before it, so a
        streaming caller computes it once per reading and hands it back to
        :meth:`transform_new` (``levels=``) on later ticks. ``X`` is ordered by device
        then time; with ``rows`` (positions), only those rows' values are computed,
        the rows before them serving as their history.

        Returns an array of shape (len(rows) or len(X), n_signals).
        """
        check_is_fitted(self)
        device_codes = pd.factorize(X["device_id"])[0]
        at = None if rows is None else np.asarray(rows, dtype=np.int64)
        return self._standardise(X, self._state_codes(X), self._segment_positions(X, device_codes), at)

    def transform_new(self, X: pd.DataFrame, new: np.ndarray, levels: np.ndarray | None = None) -> pd.DataFrame:
        """Features of the rows of ``X`` flagged in ``new``, the other rows being their history.

        The streaming path: ``X`` holds the last :attr:`history_` readings of each
        device plus the new ones, already ordered by device then time; ``new`` is a
        boolean array aligned with ``X``. The windowed work (rolling sums, extremes,
        FFT) is done for the flagged rows only, and the numbers equal those of
        :meth:`transform` (up to float rounding far below 1e-7).

        ``levels``, when given, is :meth:`levels` of every row of ``X`` (the caller
        keeps them with its buffer), so the per-row standardisation is not redone.

        Returns the :meth:`transform` columns for the flagged rows (index from ``X``).
        """
        check_is_fitted(self)
        rows = np.flatnonzero(np.asarray(new, dtype=bool))
        if len(rows) * _GATHER_MAX_SHARE > len(X):
            # most rows are new (a first score, a catch-up): gathering a long window
            # per row would cost rows x long_window memory; one batch pass is cheaper
            return self._transform(X, None, levels).iloc[rows]
        return self._transform(X, rows, levels)

    def _transform(
        self, frame: pd.DataFrame, rows: np.ndarray | None, levels: np.ndarray | None = None
    ) -> pd.DataFrame:
        """Features of ``frame`` (sorted) at ``rows`` (all rows when None)."""
        device_codes = pd.factorize(frame["device_id"])[0]
        if rows is None:
            out = self._blocks(frame, device_codes, levels)
        else:
            out = self._features_at(frame, device_codes, rows, levels)
        picked = frame if rows is None else frame.iloc[rows]
        result = pd.DataFrame(out, index=picked.index, columns=self.feature_names_out_, copy=False)
        result.insert(0, "ts", picked["ts"].to_numpy())
        result.insert(0, "device_id", picked["device_id"].to_numpy())
        return result

    def _blocks(self, frame: pd.DataFrame, device_codes: np.ndarray, levels: np.ndarray | None) -> np.ndarray:
        """Features of every row, computed for groups of whole devices (see :func:`device_blocks`)."""
        out = np.empty((len(frame), len(self.feature_names_out_)), order="F")

        def run(lo: int, hi: int) -> None:
            known = None if levels is None else levels[lo:hi]
            out[lo:hi] = self._features(frame.iloc[lo:hi], device_codes[lo:hi], known)

        map_blocks(run, device_blocks(device_codes))
        return out

    def _segment_positions(self, frame: pd.DataFrame, device_codes: np.ndarray) -> np.ndarray:
        """Position of each row in its run of readings: a new device, or a gap in time
        of more than ``gap_factor`` times the device's own median sampling interval
        (learned in training; the fleet's for a device training never saw), starts a
        new run. Jitter, a skipped sample or a burst stays inside the run."""
        ts = frame["ts"].to_numpy(dtype=np.int64)
        same = np.r_[False, device_codes[1:] == device_codes[:-1]]
        limit = self.gap_factor * self._row_steps(frame, device_codes)
        gap = np.r_[True, ~same[1:] | (np.diff(ts) > limit[1:])]
        return _positions(np.cumsum(gap))

    def _row_steps(self, frame: pd.DataFrame, device_codes: np.ndarray) -> np.ndarray:
        """The median sampling interval (ms) of each row's device."""
        if len(frame) == 0:
            return np.zeros(0)
        first = np.r_[0, np.flatnonzero(device_codes[1:] != device_codes[:-1]) + 1]
        per = self.device_steps(frame["device_id"].to_numpy()[first])
        return np.repeat(per, np.diff(np.r_[first, len(frame)]))

    def _standardise(
        self, frame: pd.DataFrame, codes: np.ndarray, pos: np.ndarray, at: np.ndarray | None = None
    ) -> np.ndarray:
        """``u`` at rows ``at`` (all when None); see :meth:`levels`."""
        sub = frame if at is None else frame.iloc[at]
        steps = self._row_steps(frame, pd.factorize(frame["device_id"])[0])
        raw, uniques = pd.factorize(sub["device_id"])
        coef, known = self.device_profiles(uniques)
        values = sub[list(self.signals)].to_numpy(dtype=float)
        ts = frame["ts"].to_numpy(dtype=np.int64)
        return self.standardise_at(values, codes, pos, ts, steps, at, (coef[raw], known[raw]))

    @property
    def lag_taps(self) -> int:
        """Readings the state-expected level of a reading looks back over."""
        # models saved before the lag was measured in time have no lag_taps_
        return int(getattr(self, "lag_taps_", None) or _lag_taps(self.lag_tau_, self.lag_delay_))

    def standardise_at(
        self,
        values: np.ndarray,
        codes: np.ndarray,
        pos: np.ndarray,
        ts: np.ndarray,
        steps: np.ndarray,
        at: np.ndarray | None,
        profiles: tuple[np.ndarray, np.ndarray],
    ) -> np.ndarray:
        """``u`` of readings ``values`` (m, signals) at positions ``at`` (all when None)
        of flat per-reading arrays of their runs: state codes (:attr:`states_`
        indices), positions in the run, timestamps (ms) and device sampling intervals
        (ms), which hold the :attr:`lag_taps` readings before each of ``at``.
        ``profiles`` is :meth:`device_profiles` of each of the m readings' device. See
        :meth:`levels`."""
        coef, known = profiles

        def lagged(table: np.ndarray) -> np.ndarray:
            return _lagged_level(codes, table, pos, ts, steps, self.lag_tau_, self.lag_delay_, self.lag_taps, at)

        expected = lagged(self.levels_) * _daily_factor(coef, ts if at is None else ts[at])
        spread = lagged(self.spreads_)
        if not known.all():
            spread[~known] = lagged(self.fallback_spreads_)[~known]
        return (values - expected) / spread

    def device_profiles(self, devices: Sequence[object]) -> tuple[np.ndarray, np.ndarray]:
        """Each device's daily-profile coefficients (n, signals, 3) and whether training
        saw it (n,); a device it did not see has zeros (a factor of 1)."""
        fitted = getattr(self, "device_profiles_", {})
        coef = np.zeros((len(devices), len(self.signals), 3))
        known = np.zeros(len(devices), dtype=bool)
        for k, name in enumerate(devices):
            found = fitted.get(str(name))
            if found is not None:
                coef[k], known[k] = found, True
        return coef, known

    def device_steps(self, devices: Sequence[str]) -> np.ndarray:
        """Each device's median sampling interval (ms): its own from training, else the fleet's."""
        steps = getattr(self, "device_steps_", None) or {}
        default = float(getattr(self, "step_ms_", 1000))
        return np.array([float(steps.get(str(d), default)) for d in devices])

    def _features(self, frame: pd.DataFrame, device_codes: np.ndarray, levels: np.ndarray | None = None) -> np.ndarray:
        """Feature matrix (rows x :attr:`feature_names_out_`) of every reading of ``frame``: the batch path."""
        n = len(frame)
        signals = list(self.signals)
        w, L, F = self.window, self.long_window, self.fft_window
        h = self.recent_window
        pos = self._segment_positions(frame, device_codes)
        codes = self._state_codes(frame)
        # column-major: every per-signal step below reads one signal's column whole
        u = np.asfortranarray(self._standardise(frame, codes, pos) if levels is None else levels, dtype=float)
        missing = np.isnan(u)
        valid = (~missing).astype(float)
        u0 = np.where(missing, 0.0, u)

        names = self.feature_names_out_
        column = {name: k for k, name in enumerate(names)}
        out = np.empty((n, len(names)), order="F")  # column-major: each feature is written whole
        rows_w = np.minimum(pos + 1, w).astype(float)[:, None]
        cnt = _rolling_count(valid, pos, w)
        cnt_h = _rolling_count(valid, pos, h)
        with np.errstate(invalid="ignore", divide="ignore"):
            cnt_l = _rolling_count(valid, pos, L + 1) - valid
            s1_l = _rolling_sum(u0, pos, L + 1) - u0
            s2_l = _rolling_sum(u0 * u0, pos, L + 1) - u0 * u0
            cnt_t = _rolling_count(valid, pos, L)
            s1_t = _rolling_sum(u0, pos, L)
            # the baseline for z: the previous L readings (excluding the current one)
            base = np.where(cnt_l > 0, s1_l / cnt_l, np.nan)
            base_sd = np.sqrt(np.maximum(s2_l / cnt_l - base * base, 0.0))
            z = (u - base) / np.maximum(base_sd, _Z_STD_FLOOR)
            trend = np.where(cnt_t > 0, s1_t / cnt_t, np.nan)
        prev = np.full_like(u, np.nan)
        prev[1:][pos[1:] > 0] = u[:-1][pos[1:] > 0]
        miss_frac = (rows_w - cnt) / rows_w
        cusum = _cusum(u0, pos, L)

        def per_signal(j: int) -> None:
            s = signals[j]
            col = u[:, j]
            with np.errstate(invalid="ignore", divide="ignore"):
                # short windows straight from the window view (no cumulative sums, so no
                # rounding carried between rows): missing values are 0 and not counted
                view, partial, outside = _windows(u0[:, j], pos, w, 0.0)
                s1 = view.sum(axis=1)
                s1_h = view[:, w - h :].sum(axis=1)
                s2 = np.einsum("ij,ij->i", view, view)
                if len(partial):
                    sub = np.where(outside, 0.0, view[partial])
                    s1[partial] = sub.sum(axis=1)
                    s1_h[partial] = sub[:, w - h :].sum(axis=1)
                    s2[partial] = np.einsum("ij,ij->i", sub, sub)
                mean = s1 / cnt[:, j]
                recent = s1_h / cnt_h[:, j]
                std = np.sqrt(np.maximum(s2 / cnt[:, j] - mean * mean, 0.0))
            energy, dominant = _fft_features(col, pos, F)
            out[:, column[f"{s}__level"]] = col
            out[:, column[f"{s}__mean"]] = mean
            out[:, column[f"{s}__recent"]] = recent
            out[:, column[f"{s}__std"]] = std
            out[:, column[f"{s}__min"]] = _rolling_extreme(col, pos, w, largest=False)
            out[:, column[f"{s}__max"]] = _rolling_extreme(col, pos, w, largest=True)
            out[:, column[f"{s}__diff"]] = col - prev[:, j]
            out[:, column[f"{s}__z"]] = z[:, j]
            out[:, column[f"{s}__fft_energy"]] = energy
            out[:, column[f"{s}__fft_freq"]] = dominant
            out[:, column[f"{s}__trend"]] = trend[:, j]
            out[:, column[f"{s}__resid"]] = col - trend[:, j]
            out[:, column[f"{s}__missing"]] = miss_frac[:, j]
            out[:, column[f"{s}__cusum"]] = cusum[:, j]

        for j in range(len(signals)):
            per_signal(j)

        idx = np.arange(n)
        starts = idx - pos
        any_missing = missing.any(axis=1) if n else np.zeros(0, dtype=bool)
        last_ok = np.maximum.accumulate(np.where(~any_missing, idx, -1)) if n else idx
        streak = idx - np.maximum(last_ok, starts - 1)
        last_bad = np.maximum.accumulate(np.where(any_missing, idx, -1)) if n else idx
        since = np.where(last_bad >= starts, idx - last_bad, L)
        changed = np.zeros(n)
        if n > 1:
            changed[1:] = (codes[1:] != codes[:-1]) & (pos[1:] > 0)
        out[:, column["dropout_streak"]] = np.minimum(streak, L)
        out[:, column["since_dropout"]] = np.minimum(since, L)
        out[:, column["state_changes"]] = _rolling_count(changed, pos, L)
        return out

    def _features_at(
        self, frame: pd.DataFrame, device_codes: np.ndarray, rows: np.ndarray, levels: np.ndarray | None = None
    ) -> np.ndarray:
        """:meth:`_features` at ``rows`` only: the streaming path.

        Gathers the trailing :attr:`window_span` readings of every requested row
        (slots before the row's run, a new device or a gap, are not ``inside``) and
        hands them to :meth:`window_features`. The work is rows x span, whatever
        else the frame holds.
        """
        pos = self._segment_positions(frame, device_codes)
        codes = self._state_codes(frame)
        u = np.asarray(self._standardise(frame, codes, pos) if levels is None else levels, dtype=float)
        span = self.window_span
        offsets = np.arange(1 - span, 1)[:, None]
        inside = offsets >= -pos[rows][None, :]  # (span, m)
        idx = np.where(inside, rows[None, :] + offsets, 0)
        win = np.ascontiguousarray(u[idx].transpose(0, 2, 1))  # (span, S, m)
        return self.window_features(win, inside, codes[idx], pos[rows])

    @property
    def window_span(self) -> int:
        """Readings every feature of a reading looks back over, itself included."""
        return max(self.long_window + 1, self.window, self.fft_window)

    def window_features(
        self, win: np.ndarray, inside: np.ndarray, states: np.ndarray, pos_at: np.ndarray
    ) -> np.ndarray:
        """Feature matrix (m x :attr:`feature_names_out_`) of m readings from their windows.

        ``win`` (:attr:`window_span`, signals, m) holds the standardised values
        (:meth:`levels`) of each reading's trailing readings, oldest first and the
        reading itself last, NaN where a value is missing; ``inside`` (span, m) marks
        the slots in the reading's run (the slots before a new device or a gap are
        not), ``states`` (span, m) the state codes (:attr:`states_` indices) and
        ``pos_at`` the reading's position in its run. Every window (short, recent,
        long, FFT), the extremes, the CUSUM's suffix sums and the event counters are
        slices and reductions along the first axis: each step adds whole contiguous
        rows. Equals :meth:`transform` at those readings (float rounding far below 1e-7).
        """
        w, L, F = self.window, self.long_window, self.fft_window
        h = self.recent_window
        span = self.window_span
        whole = bool(inside.all())  # every window inside its run: the usual live tick
        if not whole:
            win = np.where(inside[:, None, :], win, np.nan)
        valid = ~np.isnan(win)
        win0 = np.where(valid, win, 0.0)
        fvalid = valid.astype(float)
        base = slice(span - L - 1, -1)  # the baseline for z: the previous L readings

        with np.errstate(invalid="ignore", divide="ignore"):
            cnt = fvalid[-w:].sum(axis=0)
            mean = win0[-w:].sum(axis=0) / cnt
            recent = win0[-h:].sum(axis=0) / fvalid[-h:].sum(axis=0)
            std = np.sqrt(np.maximum(np.einsum("ksm,ksm->sm", win0[-w:], win0[-w:]) / cnt - mean * mean, 0.0))
            cnt_l = fvalid[base].sum(axis=0)
            level = np.where(cnt_l > 0, win0[base].sum(axis=0) / cnt_l, np.nan)
            spread = np.sqrt(np.maximum(np.einsum("ksm,ksm->sm", win0[base], win0[base]) / cnt_l - level * level, 0.0))
            u_at = win[-1]
            z = (u_at - level) / np.maximum(spread, _Z_STD_FLOOR)
            cnt_t = fvalid[-L:].sum(axis=0)
            trend = np.where(cnt_t > 0, win0[-L:].sum(axis=0) / cnt_t, np.nan)
        rows_w = np.minimum(pos_at + 1, w).astype(float)[None, :]
        low = np.where(valid[-w:], win[-w:], np.inf).min(axis=0)
        high = np.where(valid[-w:], win[-w:], -np.inf).max(axis=0)
        low[np.isinf(low)] = np.nan
        high[np.isinf(high)] = np.nan
        energy, dominant = _window_spectrum(win0[-F:], valid[-F:], F)
        clipped = np.clip(win0[-L:], -_CUSUM_CLIP, _CUSUM_CLIP)
        # both sides in one pass: (L, 2, S, m)
        sides = _best_suffix(
            np.stack([clipped - _CUSUM_K, -clipped - _CUSUM_K], axis=1), None if whole else inside[-L:]
        )
        cusum = sides.max(axis=0)

        per_signal = {
            "level": u_at,
            "mean": mean,
            "recent": recent,
            "std": std,
            "min": low,
            "max": high,
            "diff": u_at - win[-2],
            "z": z,
            "fft_energy": energy,
            "fft_freq": dominant,
            "trend": trend,
            "resid": u_at - trend,
            "missing": (rows_w - cnt) / rows_w,
            "cusum": cusum,
        }
        out = np.empty((len(pos_at), len(self.feature_names_out_)), order="F")
        column = {name: k for k, name in enumerate(self.feature_names_out_)}
        for kind, table in per_signal.items():
            for j, s in enumerate(self.signals):
                out[:, column[f"{s}__{kind}"]] = table[j]

        # device-level counters over the last L readings of the run
        bad = (~valid[-L:]).any(axis=1) & inside[-L:]  # (L, m): some value missing
        ok = ~bad
        newest_ok = np.where(ok.any(axis=0), L - 1 - np.argmax(ok[::-1], axis=0), -1)
        newest_bad = np.where(bad.any(axis=0), L - 1 - np.argmax(bad[::-1], axis=0), -1)
        out[:, column["dropout_streak"]] = L - 1 - newest_ok
        out[:, column["since_dropout"]] = np.where(newest_bad >= 0, L - 1 - newest_bad, L)
        changes = (states[-L:] != states[base]) & inside[base]
        out[:, column["state_changes"]] = changes.sum(axis=0)
        return out

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _spreads(resid: np.ndarray, codes: np.ndarray, n_states: int) -> np.ndarray:
        spreads = np.zeros((n_states, resid.shape[1]))
        global_mad = _mad(resid)
        for k in range(n_states):
            mad = _mad(resid[codes == k]) if (codes == k).any() else global_mad
            spreads[k] = np.where(np.isfinite(mad) & (mad > 0), mad, global_mad)
        spreads[-1] = global_mad
        return np.nan_to_num(spreads, nan=1.0)

    def _fit_profiles(
        self, frame: pd.DataFrame, values: np.ndarray, expected: np.ndarray, device_codes: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Per device and signal: offset and daily cycle, as fractions of the expected level.

        ``x ~ e * (1 + c0 + c1 sin(day angle) + c2 cos(day angle))``: the daily cycle and
        the device's own offset scale with the operating state's level, as they do on a
        real machine (an idle pump's temperature swings less in absolute terms). The
        cycle terms need four hours of a device's history; with less only c0 is fitted
        (and, the daily cycle being unknown, false alerts rise: train on a day or more).
        """
        profiles: dict[str, np.ndarray] = {}
        ts = frame["ts"].to_numpy(dtype=np.int64)
        angle = 2 * np.pi * ((ts % _DAY_MS) / _DAY_MS)
        sin, cos = np.sin(angle), np.cos(angle)
        names = frame["device_id"].to_numpy()
        bounds = np.flatnonzero(np.r_[True, device_codes[1:] != device_codes[:-1], True])
        for b in range(len(bounds) - 1):
            lo, hi = bounds[b], bounds[b + 1]
            span = ts[hi - 1] - ts[lo]
            coef = np.zeros((values.shape[1], 3))
            for j in range(values.shape[1]):
                e, x = expected[lo:hi, j], values[lo:hi, j]
                ok = np.isfinite(x) & (np.abs(e) > 1e-9)
                if ok.sum() < 10:
                    continue
                rel = x[ok] / e[ok] - 1.0
                weight = np.abs(e[ok]) / max(np.abs(e[ok]).max(), 1e-12)  # trust high levels more
                cols = [np.ones(ok.sum())] + ([sin[lo:hi][ok], cos[lo:hi][ok]] if span >= _PROFILE_MIN_MS else [])
                A = np.column_stack(cols) * weight[:, None]
                solution = np.linalg.lstsq(A, rel * weight, rcond=None)[0]
                coef[j, : len(solution)] = solution
            profiles[str(names[lo])] = coef
        return profiles

    def _profile_factor(self, frame: pd.DataFrame) -> np.ndarray:
        """``1 + c0 + c1 sin + c2 cos`` per row and signal (1 for devices not seen in training)."""
        raw, uniques = pd.factorize(frame["device_id"])
        coef = self.device_profiles(uniques)[0][raw]
        return _daily_factor(coef, frame["ts"].to_numpy(dtype=np.int64))

    def _state_codes(self, frame: pd.DataFrame) -> np.ndarray:
        """Index into :attr:`states_` per row; unknown or missing states -> the catch-all."""
        other = len(self.states_) - 1
        if "state" not in frame.columns:
            return np.full(len(frame), other, dtype=np.int64)
        raw, uniques = pd.factorize(frame["state"])
        lookup = {name: k for k, name in enumerate(self.states_)}
        table = np.array([lookup.get(str(u), other) for u in uniques] + [other], dtype=np.int64)
        return table[raw]  # raw == -1 (missing) picks the trailing `other`


def _daily_factor(coef: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """``1 + c0 + c1 sin + c2 cos`` of the time of day, per reading and signal, from
    coefficients (n, signals, 3) and timestamps (ms)."""
    angle = 2 * np.pi * ((ts % _DAY_MS) / _DAY_MS)
    return 1.0 + coef[:, :, 0] + coef[:, :, 1] * np.sin(angle)[:, None] + coef[:, :, 2] * np.cos(angle)[:, None]


def _device_steps(names: np.ndarray, device_codes: np.ndarray, ts: np.ndarray, default: int) -> dict[str, int]:
    """Median sampling interval (ms) of each device of a frame sorted by device then time."""
    out: dict[str, int] = {}
    bounds = np.flatnonzero(np.r_[True, device_codes[1:] != device_codes[:-1], True]) if len(ts) else np.zeros(1, int)
    for b in range(len(bounds) - 1):
        lo, hi = bounds[b], bounds[b + 1]
        steps = np.diff(ts[lo:hi])
        out[str(names[lo])] = int(np.median(steps)) if len(steps) else int(default)
    return out


def _mad(values: np.ndarray) -> np.ndarray:
    """1.4826 x median absolute deviation per column (NaN-aware)."""
    if len(values) == 0:
        return np.full(values.shape[1], np.nan)
    med = np.nanmedian(values, axis=0)
    return 1.4826 * np.nanmedian(np.abs(values - med), axis=0)


def feature_builder_for(settings: Settings, profile: str | ProfileSpec) -> FeatureBuilder:
    """An unfitted :class:`FeatureBuilder` configured from ``[features]`` and a profile."""
    spec = settings.profile(profile) if isinstance(profile, str) else profile
    fs = settings.features
    return FeatureBuilder(
        signals=tuple(spec.signal_names),
        window=fs.window,
        long_window=fs.long_window,
        fft_window=fs.fft_window,
        gap_factor=fs.gap_factor,
    )
