"""SKAB outlier-detection protocol: reading, metrics and the reference baselines.

SKAB (the Skoltech Anomaly Benchmark, github.com/waico/SKAB) is real
multivariate telemetry from a water-circulation testbed: 8 sensor channels
sampled at about 1 Hz, one labelled anomalous episode per file. This module
implements the protocol behind SKAB's published "Outlier detection problem"
leaderboard (F1 / FAR / MAR), as described in ``shared/data/skab/README.md``:

1. Every labelled CSV file (one with an ``anomaly`` column) is scored;
   unlabelled files such as ``anomaly-free.csv`` are skipped.
2. Each file is split on its stored row order: the first 400 data rows are
   the training part, every later row is the test part. Nothing is shuffled.
3. A fresh detector is fitted per file on that file's training part, from
   the 8 sensor columns only (never the labels, never other files).
4. The detector labels **every** test row 1 (anomaly) or 0 (normal); a row
   whose smoothing window lacks history gets 0 in the reference baselines.
5. Each detector sets its own threshold without looking at test labels.
6. TP, TN, FP and FN are counted per file and **added over all files**
   (pooled point-wise classification, not an average of per-file scores):
   F1 = 2 TP / (2 TP + FP + FN), FAR = 100 FP / (FP + TN) and
   MAR = 100 FN / (FN + TP).

Why this protocol: it is the one SKAB's published numbers use (Conv-AE and
MSET at F1 0.78, Isolation Forest 0.29 on the full set), so results computed
here are comparable with the leaderboard. Because each file is fitted only on
its own first 400 rows, the detector must cope with a short, possibly
drifting, reference period; and because the test parts are more than half
anomalous, "flag everything" already reaches F1 0.70, which is why F1 must
always be read together with FAR and MAR.

Only SKAB's reference baselines live here (``evaluate_skab(..., detector=...)``):

``"isolation_forest"``
    SKAB's reference Isolation Forest (``contamination=0.0005``,
    ``random_state=0``) with a trailing median of 3 raw flags.
``"t2"``
    SKAB's reference Hotelling T² chart with an F-distribution UCL and a
    trailing median of 5 over T², compared with 2 x UCL.

ITAP's own detection is not here: ``itap evaluate --skab`` runs the engine's
path (:mod:`itap_engine.evaluation.skab_engine`) with the configured feature builder,
detector registry (:mod:`itap_engine.detection.detectors`), threshold calibration and alert
rules. The level-shift chart that used to live here as ``TrailingShiftDetector``
is now the registry's ``shift`` detector (:mod:`itap_engine.detection.detectors.shift`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest

__all__ = [
    "DETECTORS",
    "FEATURE_COLUMNS",
    "LABEL_COLUMNS",
    "TRAIN_ROWS",
    "FileCounts",
    "SkabResult",
    "binary_counts",
    "evaluate_skab",
    "find_skab_files",
    "hotelling_t2_labels",
    "hotelling_t2_ucl",
    "isolation_forest_labels",
    "rates_from_counts",
    "read_skab_file",
]

#: The 8 SKAB sensor channels, in file order; the detectors' input features.
FEATURE_COLUMNS: tuple[str, ...] = (
    "Accelerometer1RMS",
    "Accelerometer2RMS",
    "Current",
    "Pressure",
    "Temperature",
    "Thermocouple",
    "Voltage",
    "Volume Flow RateRMS",
)

#: Label columns of the labelled SKAB files; never given to a detector.
LABEL_COLUMNS: tuple[str, ...] = ("anomaly", "changepoint")

#: Number of leading rows of every file that form its training part.
TRAIN_ROWS: int = 400


# --------------------------------------------------------------------------
# Reading the data
# --------------------------------------------------------------------------


def read_skab_file(path: str | Path) -> pd.DataFrame:
    """Read one SKAB CSV file.

    Parameters
    ----------
    path : str or pathlib.Path
        A SKAB CSV file: ``;``-separated, header line first, ``datetime``
        as the first column, CRLF or LF line endings.

    Returns
    -------
    pandas.DataFrame
        Indexed by a ``DatetimeIndex`` named ``datetime``, in stored row
        order, with the 8 sensor columns of :data:`FEATURE_COLUMNS` (as
        float) followed by ``anomaly`` and ``changepoint`` (as int) when the
        file has them.

    Raises
    ------
    ValueError
        If a sensor column or the ``datetime`` column is missing.
    """
    frame = pd.read_csv(path, sep=";")
    frame.columns = [str(c).strip() for c in frame.columns]
    if "datetime" not in frame.columns:
        raise ValueError(f"{path}: no 'datetime' column")
    missing = [c for c in FEATURE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing sensor columns {missing}")
    index = pd.DatetimeIndex(pd.to_datetime(frame["datetime"]), name="datetime")
    out = frame.loc[:, list(FEATURE_COLUMNS)].astype(float)
    for label in LABEL_COLUMNS:
        if label in frame.columns:
            out[label] = frame[label].astype(float).round().astype(int)
    out.index = index
    return out


def _natural_key(path: Path) -> tuple:
    parts = re.split(r"(\d+)", path.as_posix())
    return tuple(int(p) if p.isdigit() else p for p in parts)


def _has_labels(path: Path) -> bool:
    with open(path, encoding="utf-8", newline="") as handle:
        header = handle.readline()
    names = [h.strip() for h in header.split(";")]
    return "anomaly" in names


def find_skab_files(directory: str | Path) -> list[Path]:
    """List the labelled SKAB CSV files under a directory.

    Parameters
    ----------
    directory : str or pathlib.Path
        A SKAB folder (e.g. ``shared/data/skab``) or one of its subfolders
        (e.g. ``skab/valve1``), or a single CSV file. Searched recursively.

    Returns
    -------
    list of pathlib.Path
        The CSV files whose header has an ``anomaly`` column, in natural
        order (``valve1/2.csv`` before ``valve1/10.csv``). Unlabelled files
        such as ``anomaly-free.csv`` are left out: the protocol scores
        labelled files only.

    Raises
    ------
    FileNotFoundError
        If ``directory`` does not exist.
    """
    root = Path(directory)
    if not root.exists():
        raise FileNotFoundError(f"SKAB directory not found: {root}")
    candidates = [root] if root.is_file() else list(root.rglob("*.csv"))
    return sorted((p for p in candidates if _has_labels(p)), key=_natural_key)


# --------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------


def binary_counts(y_true: Sequence[int], y_pred: Sequence[int]) -> tuple[int, int, int, int]:
    """Count TP, TN, FP and FN of binary labels (1 = anomaly).

    Parameters
    ----------
    y_true, y_pred : array-like of 0/1, same length
        True and predicted labels.

    Returns
    -------
    tuple of int
        ``(tp, tn, fp, fn)``.
    """
    t = np.asarray(y_true).astype(bool)
    p = np.asarray(y_pred).astype(bool)
    if t.shape != p.shape:
        raise ValueError(f"shape mismatch: {t.shape} vs {p.shape}")
    return (
        int(np.sum(t & p)),
        int(np.sum(~t & ~p)),
        int(np.sum(~t & p)),
        int(np.sum(t & ~p)),
    )


def rates_from_counts(tp: int, tn: int, fp: int, fn: int) -> tuple[float, float, float]:
    """F1, FAR and MAR from pooled counts, as in SKAB's leaderboard.

    Parameters
    ----------
    tp, tn, fp, fn : int
        Pooled confusion counts.

    Returns
    -------
    tuple of float
        ``(f1, far, mar)`` with F1 = 2 TP / (2 TP + FP + FN) (0.0 when the
        denominator is 0), FAR = 100 FP / (FP + TN) in percent and
        MAR = 100 FN / (FN + TP) in percent (NaN when their denominator is 0).
    """
    denom = 2 * tp + fp + fn
    f1 = 2 * tp / denom if denom else 0.0
    far = 100.0 * fp / (fp + tn) if fp + tn else math.nan
    mar = 100.0 * fn / (fn + tp) if fn + tp else math.nan
    return f1, far, mar


@dataclass(frozen=True)
class FileCounts:
    """Confusion counts over the test part of one file.

    Attributes
    ----------
    file : str
        File name relative to the evaluated directory (POSIX separators).
    tp, tn, fp, fn : int
        Counts over the file's test rows.
    """

    file: str
    tp: int
    tn: int
    fp: int
    fn: int


@dataclass(frozen=True)
class SkabResult:
    """Pooled result of one detector on a SKAB directory.

    Attributes
    ----------
    detector : str
        Detector name (``"isolation_forest"``, ``"t2"`` or a callable's name).
    tp, tn, fp, fn : int
        Counts added over all scored files.
    f1 : float
        2 TP / (2 TP + FP + FN).
    far : float
        False alarm rate in percent, 100 FP / (FP + TN).
    mar : float
        Missing alarm rate in percent, 100 FN / (FN + TP).
    n_files : int
        Number of labelled files scored.
    per_file : tuple of FileCounts
        Counts per file, in evaluation order.
    """

    detector: str
    tp: int
    tn: int
    fp: int
    fn: int
    f1: float
    far: float
    mar: float
    n_files: int
    per_file: tuple[FileCounts, ...]

    @classmethod
    def from_counts(cls, detector: str, per_file: Sequence[FileCounts]) -> SkabResult:
        """Pool per-file counts into a result.

        Parameters
        ----------
        detector : str
            Detector name.
        per_file : sequence of FileCounts
            One entry per scored file.

        Returns
        -------
        SkabResult
        """
        tp = sum(c.tp for c in per_file)
        tn = sum(c.tn for c in per_file)
        fp = sum(c.fp for c in per_file)
        fn = sum(c.fn for c in per_file)
        f1, far, mar = rates_from_counts(tp, tn, fp, fn)
        return cls(detector, tp, tn, fp, fn, f1, far, mar, len(per_file), tuple(per_file))

    @property
    def n_rows(self) -> int:
        """Number of test rows scored over all files."""
        return self.tp + self.tn + self.fp + self.fn

    def summary(self) -> str:
        """One line with the counts and the rounded leaderboard figures."""
        return (
            f"{self.detector}: files={self.n_files} TP={self.tp} TN={self.tn} "
            f"FP={self.fp} FN={self.fn} F1={self.f1:.2f} FAR={self.far:.2f}% "
            f"MAR={self.mar:.2f}%"
        )


# --------------------------------------------------------------------------
# Reference baselines (SKAB notebooks)
# --------------------------------------------------------------------------


def _trailing_median(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing median over ``window`` rows; NaN until the window is full."""
    return pd.Series(values, dtype=float).rolling(window, min_periods=window).median().to_numpy()


def isolation_forest_labels(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """SKAB's reference Isolation Forest labels for one file.

    Parameters
    ----------
    train : ndarray of shape (n_train, 8)
        Sensor values of the training part.
    test : ndarray of shape (n_test, 8)
        Sensor values of the test part.

    Returns
    -------
    ndarray of int, shape (n_test,)
        1 where at least 2 of the raw flags at rows t-2, t-1, t are set
        (trailing median of 3), else 0; the first 2 test rows get 0. A raw
        flag is a score below ``offset_`` of an ``IsolationForest(
        random_state=0, contamination=0.0005)`` fitted on ``train``.
    """
    model = IsolationForest(random_state=0, contamination=0.0005).fit(train)
    raw = (model.decision_function(test) < 0).astype(float)
    med = _trailing_median(raw, 3)
    return np.nan_to_num(med, nan=0.0).astype(int)


def hotelling_t2_ucl(m: int, n: int, alpha: float = 0.001, grid_points: int = 10_000) -> float:
    """Upper control limit of SKAB's Hotelling T² chart.

    Parameters
    ----------
    m : int
        Number of (non-constant) features.
    n : int
        Number of training rows.
    alpha : float, default=0.001
        The chart uses the largest grid value whose F(m, n-m) CDF is still
        below ``1 - alpha``.
    grid_points : int, default=10000
        Points of the evenly spaced grid on [0, 15], ends included.

    Returns
    -------
    float
        ``m (n-1) (n+1) / (n (n-m)) * c`` (27.3454... for m=8, n=400).
    """
    from scipy import stats

    grid = np.linspace(0.0, 15.0, grid_points)
    below = grid[stats.f.cdf(grid, m, n - m) < 1.0 - alpha]
    c = float(below.max())
    return m * (n - 1) * (n + 1) / (n * (n - m)) * c


def hotelling_t2_labels(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """SKAB's reference Hotelling T² labels for one file.

    Parameters
    ----------
    train : ndarray of shape (n_train, n_features)
        Sensor values of the training part.
    test : ndarray of shape (n_test, n_features)
        Sensor values of the test part.

    Returns
    -------
    ndarray of int, shape (n_test,)
        1 where the trailing median of T² over 5 test rows exceeds 2 x UCL
        (:func:`hotelling_t2_ucl`), else 0; the first 4 test rows get 0.

    Notes
    -----
    Columns constant over the training part are dropped. Both parts are
    standardized with the training means and population standard deviations
    (ddof=0); S is the sample covariance (ddof=1) of the standardized
    training part and T² = zᵀ S⁻¹ z.
    """
    train = np.asarray(train, dtype=float)
    test = np.asarray(test, dtype=float)
    std = train.std(axis=0, ddof=0)
    keep = std > 0
    train, test, std = train[:, keep], test[:, keep], std[keep]
    mean = train.mean(axis=0)
    z_train = (train - mean) / std
    z_test = (test - mean) / std
    s_inv = np.linalg.inv(np.cov(z_train, rowvar=False, ddof=1))
    t2 = np.einsum("ij,jk,ik->i", z_test, s_inv, z_test)
    ucl = hotelling_t2_ucl(z_train.shape[1], z_train.shape[0])
    med = _trailing_median(t2, 5)
    return (np.nan_to_num(med, nan=-np.inf) > 2.0 * ucl).astype(int)


#: Detectors available to :func:`evaluate_skab`: name -> labels(train, test).
DETECTORS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "isolation_forest": isolation_forest_labels,
    "t2": hotelling_t2_labels,
}


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


def evaluate_skab(
    directory: str | Path,
    detector: str | Callable[[np.ndarray, np.ndarray], np.ndarray] = "t2",
    predictions_path: str | Path | None = None,
) -> SkabResult:
    """Evaluate a detector on SKAB with the leaderboard protocol.

    Parameters
    ----------
    directory : str or pathlib.Path
        Folder holding SKAB CSV files (searched recursively; only files
        with an ``anomaly`` column are scored).
    detector : {"isolation_forest", "t2"} or callable, default="t2"
        Which detector to run (see :data:`DETECTORS`), or a function
        ``labels(train, test)`` taking the two ``(n, 8)`` sensor arrays of a
        file and returning one 0/1 label per test row.
    predictions_path : str or pathlib.Path, optional
        If given, a CSV with columns ``file``, ``datetime`` and
        ``predicted`` (0/1) is written there, one row per test row of every
        scored file, so the figures can be re-checked independently.

    Returns
    -------
    SkabResult
        Pooled TP/TN/FP/FN, F1, FAR, MAR and per-file counts.

    Raises
    ------
    FileNotFoundError
        If ``directory`` does not exist.
    ValueError
        If ``detector`` is unknown or no labelled file is found.
    """
    if callable(detector):
        label_fn = detector
        detector = getattr(detector, "__name__", type(detector).__name__)
    elif detector in DETECTORS:
        label_fn = DETECTORS[detector]
    else:
        raise ValueError(f"unknown detector {detector!r}; choose from {sorted(DETECTORS)}")
    root = Path(directory)
    paths = find_skab_files(root)
    if not paths:
        raise ValueError(f"no labelled SKAB CSV file under {root}")
    per_file: list[FileCounts] = []
    frames: list[pd.DataFrame] = []
    for path in paths:
        name = path.name if root.is_file() else path.relative_to(root).as_posix()
        data = read_skab_file(path)
        sensors = data.loc[:, list(FEATURE_COLUMNS)].to_numpy()
        train, test = sensors[:TRAIN_ROWS], sensors[TRAIN_ROWS:]
        truth = data["anomaly"].to_numpy()[TRAIN_ROWS:]
        predicted = np.asarray(label_fn(train, test)).astype(int).reshape(-1)
        if predicted.shape != truth.shape:
            raise ValueError(f"{name}: detector returned {predicted.size} labels for {truth.size} test rows")
        per_file.append(FileCounts(name, *binary_counts(truth, predicted)))  # type: ignore[arg-type]
        if predictions_path is not None:
            frames.append(
                pd.DataFrame(
                    {
                        "file": name,
                        "datetime": data.index[TRAIN_ROWS:].strftime("%Y-%m-%d %H:%M:%S"),
                        "predicted": predicted,
                    }
                )
            )
    if predictions_path is not None:
        out = Path(predictions_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        pd.concat(frames, ignore_index=True).to_csv(out, index=False)
    return SkabResult.from_counts(detector, per_file)
