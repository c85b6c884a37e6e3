"""``itap evaluate --skab DIR``: the SKAB protocol run through the engine's own path.

Why it is built this way:

* **One detection path.** Each labelled SKAB file is imported with the CSV importer
  as one device of profile ``skab_pump`` into a scratch SQLite store of its own (a
  fresh model per file, as the protocol asks); the model is trained with
  :func:`~itap_engine.detection.scoring.train_model` on that device's first 400 readings (its
  known-good window, named by time like an operator would); the rest is scored with
  the :class:`~itap_engine.detection.scoring.StreamingScorer` in chunks, as live ticks would
  arrive, and the alert rules run over the scores. The feature builder, detector,
  threshold calibration and alert rules are the configured ones: nothing here
  detects anything.
* **Never the operator's database.** Everything is written under a temporary folder
  (store and model files); ``ITAP_DB_URL`` and the active model are left alone.
* **Points and alerts.** The point decision (score > threshold) gives SKAB's pooled
  F1 / FAR / MAR; the alert intervals give what an operator sees: an episode is
  caught when an alert interval overlaps it, an alert interval that overlaps no
  episode is false.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from itap_engine.config import Settings
from itap_engine.errors import ItapError
from itap_engine.evaluation.labelled import support_warnings
from itap_engine.evaluation.skab import TRAIN_ROWS, binary_counts, find_skab_files, rates_from_counts

__all__ = ["PROFILE", "evaluate_skab_engine"]

PROFILE = "skab_pump"
CHUNK_READINGS = 10
"""Readings per scoring call: the engine's ticks deliver a few readings per device."""


def _score_file(settings: Settings, path: Path, device: str, workdir: Path) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    from itap_engine.detection.alerts import AlertTracker, alerts_frame
    from itap_engine.detection.scoring import StreamingScorer, train_model
    from itap_engine.ingest.csv_source import CsvOptions, import_csv
    from itap_engine.store.sql import Store

    url = f"sqlite:///{workdir / 'skab.db'}"
    local = settings.with_overrides(database={"url": url}, paths={"artifacts_dir": str(workdir / "artifacts")})
    store = Store(local, url=url)  # explicit: $ITAP_DB_URL must not redirect a scratch store
    try:
        import_csv(store, local, path, CsvOptions(profile=PROFILE, device=device))
        frame = store.read_readings(PROFILE)
        frame = frame.sort_values("ts", kind="stable").reset_index(drop=True)
        if len(frame) <= TRAIN_ROWS:
            raise ItapError(f"{path}: {len(frame)} readings, the protocol needs more than {TRAIN_ROWS}")
        until = int(frame["ts"].iloc[TRAIN_ROWS - 1])
        model = train_model(
            store,
            local,
            PROFILE,
            device_windows={device: (int(frame["ts"].iloc[0]), until)},
            exclude_labelled=False,
        )
        scorer = StreamingScorer(local, PROFILE, model)
        history, test = frame.iloc[:TRAIN_ROWS], frame.iloc[TRAIN_ROWS:]
        scorer.warm_up(history)
        tracker = AlertTracker(store, local)
        parts = []
        for lo in range(0, len(test), CHUNK_READINGS):
            scored = scorer.score(test.iloc[lo : lo + CHUNK_READINGS])
            tracker.update(PROFILE, scored)
            parts.append(scored)
        scored = pd.concat(parts, ignore_index=True)
        alerts = alerts_frame(store, PROFILE)
    finally:
        store.close()
    return test.reset_index(drop=True), scored.reset_index(drop=True), (alerts, model)


def _episodes(ts: np.ndarray, y: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.r_[0, y.astype(int), 0]))
    return [(int(ts[a]), int(ts[b - 1])) for a, b in zip(edges[::2], edges[1::2])]


def evaluate_skab_engine(
    settings: Settings, directory: str | Path, *, predictions_path: str | Path | None = None
) -> dict[str, Any]:
    """Run the SKAB outlier protocol through the engine path; a JSON-ready dict."""
    root = Path(directory)
    paths = find_skab_files(root)
    if not paths:
        raise ItapError(f"{root}: no labelled SKAB CSV file (with an 'anomaly' column) under it")
    settings.profile(PROFILE)
    per_file, preds, all_y, all_s = [], [], [], []
    totals = {"tp": 0, "tn": 0, "fp": 0, "fn": 0}
    ev = {"episodes": 0, "caught": 0, "alerts": 0, "true_alerts": 0, "false_alerts": 0, "ttd_s": []}
    device_days = 0.0
    detector = threshold_method = None
    with tempfile.TemporaryDirectory(prefix="itap-skab-") as tmp:
        for k, path in enumerate(paths):
            name = path.name if root.is_file() else path.relative_to(root).as_posix()
            device = "skab-" + name.removesuffix(".csv").replace("/", "-")
            work = Path(tmp) / f"f{k}"
            work.mkdir()
            test, scored, (alerts, model) = _score_file(settings, path, device, work)
            detector = model.detector_name
            threshold_method = settings.detection.threshold_method
            merged = test[["ts", "fault"]].merge(
                scored[["ts", "score", "is_anomalous", "threshold"]], on="ts", how="left"
            )
            y = merged["fault"].notna().to_numpy()
            pred = merged["is_anomalous"].fillna(False).to_numpy(dtype=bool)
            score = merged["score"].to_numpy(dtype=float)
            tp, tn, fp, fn = binary_counts(y, pred)
            for key, v in zip(("tp", "tn", "fp", "fn"), (tp, tn, fp, fn)):
                totals[key] += v
            all_y.append(y)
            all_s.append(score / merged["threshold"].to_numpy(dtype=float))
            ts = merged["ts"].to_numpy(dtype=np.int64)
            step = float(np.median(np.diff(ts))) if len(ts) > 1 else 1000.0
            device_days += len(ts) * step / 86_400_000
            episodes = _episodes(ts, y)
            intervals = []
            for a in alerts.itertuples(index=False) if len(alerts) else []:
                end = a.closed_ts if a.closed_ts is not None and a.closed_ts == a.closed_ts else a.last_ts
                intervals.append((int(a.opened_ts), int(end)))
            hit = [any(o <= e1 and c >= e0 for e0, e1 in episodes) for o, c in intervals]
            caught = 0
            for e0, e1 in episodes:
                opened = [o for o, c in intervals if o <= e1 and c >= e0]
                if opened:
                    caught += 1
                    ev["ttd_s"].append(max(0, min(opened) - e0) / 1000)  # type: ignore[attr-defined]
            ev["episodes"] += len(episodes)  # type: ignore[operator]
            ev["caught"] += caught  # type: ignore[operator]
            ev["alerts"] += len(intervals)  # type: ignore[operator]
            ev["true_alerts"] += int(sum(hit))  # type: ignore[operator]
            ev["false_alerts"] += int(len(hit) - sum(hit))  # type: ignore[operator]
            f1, far, mar = rates_from_counts(tp, tn, fp, fn)
            per_file.append(
                {
                    "file": name,
                    "tp": tp,
                    "tn": tn,
                    "fp": fp,
                    "fn": fn,
                    "f1": f1,
                    "far": far,
                    "mar": mar,
                    "alerts": len(intervals),
                    "false_alerts": int(len(hit) - sum(hit)),
                    "episodes": len(episodes),
                    "caught": caught,
                }
            )
            if predictions_path is not None:
                stamps = pd.to_datetime(ts, unit="ms").strftime("%Y-%m-%d %H:%M:%S")
                preds.append(pd.DataFrame({"file": name, "datetime": stamps, "prediction": pred.astype(int)}))
    if predictions_path is not None:
        out = Path(predictions_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        pd.concat(preds, ignore_index=True).to_csv(out, index=False)
    f1, far, mar = rates_from_counts(totals["tp"], totals["tn"], totals["fp"], totals["fn"])
    y_all, s_all = np.concatenate(all_y), np.concatenate(all_s)
    ok = np.isfinite(s_all)
    auc = float(roc_auc_score(y_all[ok], s_all[ok])) if 0 < y_all[ok].sum() < ok.sum() else None
    precision = ev["true_alerts"] / ev["alerts"] if ev["alerts"] else 0.0  # type: ignore[operator]
    recall = ev["caught"] / ev["episodes"] if ev["episodes"] else 0.0  # type: ignore[operator]
    alert_f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "source": "skab",
        "directory": str(root),
        "profile": PROFILE,
        "detector": detector,
        "threshold_method": threshold_method,
        "files": len(paths),
        "points": {
            **totals,
            "rows": int(sum(totals.values())),
            "positives": int(y_all.sum()),
            "f1": f1,
            "far": far,
            "mar": mar,
            "roc_auc": auc,
            "roc_auc_note": "scores divided by each file's threshold, pooled",
        },
        "alerts": {
            "episodes": ev["episodes"],
            "caught": ev["caught"],
            "recall": recall,
            "alerts": ev["alerts"],
            "true_alerts": ev["true_alerts"],
            "false_alerts": ev["false_alerts"],
            "precision": precision,
            "f1": alert_f1,
            "false_alerts_per_device_day": ev["false_alerts"] / device_days if device_days else None,  # type: ignore[operator]
            "device_days": device_days,
            "ttd_seconds_median": float(np.median(ev["ttd_s"])) if ev["ttd_s"] else None,  # type: ignore[call-overload]
        },
        "support": {
            "events": ev["episodes"],
            "device_days": device_days,
            "test_rows": int(len(y_all)),
            "warnings": support_warnings(ev["episodes"], device_days),  # type: ignore[arg-type]
        },
        "per_file": per_file,
    }
