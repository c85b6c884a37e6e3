"""Per-device threshold calibration for a target false-alarm rate, from a short window.

Why it is built this way:

* **The target is an operator's number.** ``[detection].false_alarms_per_device_day``
  (alerts per device-day) becomes a per-reading exceedance probability
  ``q = rate x interval / day`` for each device's own sampling interval. At 1 Hz and
  0.5 alerts per device-day that is q ~ 6e-6: far beyond the largest of a few
  hundred known-good scores, so an empirical quantile cannot reach it.
* **Peaks over threshold (SPOT-style).** Above a high empirical quantile ``t`` the
  excesses of any reasonable score follow a generalized Pareto distribution
  (Pickands-Balkema-de Haan); fitting it (scipy, location 0) gives the quantile at
  ``q`` by extrapolation: ``t + sigma / xi ((q n / N_t) ** -xi - 1)`` (``t + sigma
  ln(N_t / (q n))`` when ``xi`` ~ 0). This is the initial step of Siffer et al.'s
  SPOT (KDD 2017). The shape is bounded to [-0.5, 0.5] so a handful of excesses
  cannot produce an absurd tail.
* **Conformal quantile** (split conformal) is the alternative: the
  ``ceil((n + 1)(1 - q))``-th smallest calibration score. It is distribution-free
  but cannot go beyond the largest score, so for ``q < 1 / (n + 1)`` it returns the
  maximum times ``conformal_margin``; measured against POT in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["DAY_MS", "Calibration", "calibrate", "conformal_threshold", "exceedance_probability", "pot_threshold"]

DAY_MS = 86_400_000
_TAIL_SHARE = 0.1
"""POT: the excesses are the scores above this upper share of the calibration scores."""
_MIN_EXCESSES = 8
_XI_BOUND = 0.5


@dataclass(frozen=True)
class Calibration:
    """A threshold and how it was found."""

    threshold: float
    method: str
    q: float
    n: int
    detail: dict


def exceedance_probability(rate_per_day: float, step_ms: float) -> float:
    """Per-reading probability that gives ``rate_per_day`` exceedances per device-day."""
    readings_per_day = DAY_MS / max(float(step_ms), 1.0)
    return float(min(max(rate_per_day, 1e-12) / readings_per_day, 0.5))


def conformal_threshold(scores: np.ndarray, q: float, margin: float = 1.0) -> Calibration:
    """Split-conformal (1 - q) quantile; beyond the sample it is the max x ``margin``."""
    s = np.sort(np.asarray(scores, dtype=float)[np.isfinite(scores)])
    n = len(s)
    if n == 0:
        return Calibration(math.inf, "conformal", q, 0, {})
    rank = math.ceil((n + 1) * (1 - q))
    if rank > n:
        top = s[-1]
        thr = top * margin if top > 0 else top + abs(top) * (margin - 1) + 1e-9
        return Calibration(float(thr), "conformal", q, n, {"beyond_sample": True})
    return Calibration(float(s[rank - 1]), "conformal", q, n, {"beyond_sample": False})


def pot_threshold(scores: np.ndarray, q: float, tail_share: float = _TAIL_SHARE) -> Calibration:
    """Peaks-over-threshold (GPD fit) quantile of ``scores`` at exceedance probability ``q``."""
    from scipy import stats

    s = np.sort(np.asarray(scores, dtype=float)[np.isfinite(scores)])
    n = len(s)
    if n == 0:
        return Calibration(math.inf, "pot", q, 0, {})
    n_tail = max(_MIN_EXCESSES, int(round(tail_share * n)))
    if n < 2 * _MIN_EXCESSES:
        return conformal_threshold(s, q, margin=1.5)
    t = float(s[n - n_tail - 1])
    excess = s[n - n_tail :] - t
    excess = excess[excess > 0]
    if len(excess) < _MIN_EXCESSES or q * n >= len(excess):
        # not enough of a tail, or the target lies inside the sample: empirical quantile
        return conformal_threshold(s, q)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xi, _, sigma = stats.genpareto.fit(excess, floc=0.0)
    if not np.isfinite(xi) or not np.isfinite(sigma) or sigma <= 0:
        xi, sigma = 0.0, float(np.mean(excess))
    xi = float(np.clip(xi, 0.0, _XI_BOUND))
    ratio = q * n / len(excess)
    if abs(xi) < 1e-6:
        thr = t + sigma * math.log(1.0 / ratio)
    else:
        thr = t + sigma / xi * (ratio ** (-xi) - 1.0)
    return Calibration(float(thr), "pot", q, n, {"t": t, "xi": xi, "sigma": float(sigma), "excesses": int(len(excess))})


def calibrate(scores: np.ndarray, q: float, method: str) -> Calibration:
    """Threshold of one device's (or a pool's) known-good scores by ``method``."""
    if method == "pot":
        return pot_threshold(scores, q)
    if method == "conformal":
        return conformal_threshold(scores, q, margin=1.5)
    raise ValueError(f"unknown threshold method {method!r}; choose pot or conformal")
