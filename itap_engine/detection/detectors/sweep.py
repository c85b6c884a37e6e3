"""The older percentile sweep of ``[detection].threshold_method = "sweep"``.

It walks up a ladder of percentiles of the validation window's scores and keeps the
lowest one whose k-of-n alert rule would raise at most ``budget`` alerts per
device-day on that (normal) window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["LADDER", "ThresholdChoice", "count_k_of_n_alerts", "sweep_threshold"]


@dataclass(frozen=True)
class ThresholdChoice:
    """The outcome of a percentile sweep."""

    threshold: float
    percentile: float
    alerts_per_device_day: float
    sweep: tuple[tuple[float, float, float], ...]
    """(percentile, threshold, alerts per device-day) for every rung tried."""


LADDER = (95.0, 97.0, 98.0, 99.0, 99.5, 99.7, 99.8, 99.9, 99.95, 99.98, 99.99)


def count_k_of_n_alerts(above: np.ndarray, device_codes: np.ndarray, k: int, n: int, quiet: int) -> int:
    """Alerts the k-of-n / quiet-period rule would open over per-device sorted flags."""
    total = 0
    for code in np.unique(device_codes):
        flags = above[device_codes == code]
        if not flags.any():
            continue
        csum = np.concatenate([[0], np.cumsum(flags)])
        idx = np.arange(len(flags))
        hits = csum[idx + 1] - csum[np.maximum(idx + 1 - n, 0)]
        last_above = -(10**9)
        open_ = False
        for i in np.flatnonzero(flags | (hits >= k)):
            if open_ and i - last_above > quiet:
                open_ = False
            if not open_ and hits[i] >= k:
                open_ = True
                total += 1
            if flags[i]:
                last_above = i  # type: ignore[assignment]
    return total


def sweep_threshold(
    scores: np.ndarray,
    device_codes: np.ndarray,
    device_days: float,
    *,
    k: int,
    n: int,
    quiet: int,
    min_percentile: float,
    budget: float = 0.25,
    ladder: Sequence[float] = LADDER,
) -> ThresholdChoice:
    """The lowest percentile (>= ``min_percentile``) of validation anomaly scores whose
    alert rule stays within ``budget`` alerts per device-day on that normal window.

    ``scores`` are anomaly scores (higher = more anomalous) of a normal validation
    window, ordered by device then time, with ``device_codes`` alongside.
    """
    rungs = sorted({min_percentile, *(p for p in ladder if p >= min_percentile)})
    tried: list[tuple[float, float, float]] = []
    chosen: tuple[float, float, float] | None = None
    for pct in rungs:
        thr = float(np.percentile(scores, pct))
        rate = count_k_of_n_alerts(scores > thr, device_codes, k, n, quiet) / max(device_days, 1e-9)
        tried.append((pct, thr, rate))
        if rate <= budget:
            chosen = (pct, thr, rate)
            break
    if chosen is None:
        pct, thr, rate = tried[-1]
        thr = float(np.max(scores)) if len(scores) else thr
        chosen = (100.0, thr, 0.0)
    return ThresholdChoice(
        threshold=chosen[1], percentile=chosen[0], alerts_per_device_day=chosen[2], sweep=tuple(tried)
    )
