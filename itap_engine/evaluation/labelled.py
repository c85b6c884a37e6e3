"""How well detection works, measured on labelled data: ``itap evaluate``.

Why it is built this way:

* **Evaluate only on later data.** A model is trained on a window of normal
  operation; evaluation scores the readings *after* that window (warming the
  feature windows up from the readings just before it) and compares with the
  simulator's ground truth, which the model never saw.
* **Points and events.** Point metrics (precision, recall, F1, ROC-AUC, per-fault
  recall) say how scores separate; event metrics say what an operator gets: a fault
  event (a run of one fault label on one device) is *caught* if an alert opens
  during it, time-to-detect is from the event's first reading to that alert, and an
  alert that opens outside every fault event of its device is a false alert.
* **Explanations are measured too.** For faults whose signals all belong to one
  sensor family (overheat -> thermal, ...) the share of caught events whose first
  alert names that family is reported.
* **Pure core, thin I/O.** :func:`evaluate_labelled` is a function of frames; the
  store and simulator plumbing (:func:`evaluate_store`, :func:`evaluate_simulated`)
  only prepares them. Alerts are replayed into a scratch database so an evaluation
  never touches the operator's alert table.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from itap_engine.config import ProfileSpec, Settings
from itap_engine.detection.alerts import AlertTracker, alerts_frame
from itap_engine.detection.scoring import StreamingScorer, TrainedModel, load_active_model, train_model, warm_up_span_ms
from itap_engine.errors import ItapError

__all__ = [
    "EvaluationError",
    "evaluate_labelled",
    "evaluate_simulated",
    "evaluate_store",
    "expected_families",
    "fault_events",
    "write_metrics",
]


class EvaluationError(ItapError):
    """Evaluation is not possible (no model, no labelled data after the training window)."""


def expected_families(spec: ProfileSpec) -> dict[str, str]:
    """fault -> family, for faults whose non-dropout effects all hit one sensor family."""
    out: dict[str, str] = {}
    for name, fault in spec.faults.items():
        if any(e.kind == "dropout" for e in fault.effects):
            continue
        fams = {spec.signals[e.signal].family for e in fault.effects}
        if len(fams) == 1:
            out[name] = fams.pop()
    return out


def fault_events(labels: pd.DataFrame) -> pd.DataFrame:
    """Runs of one fault label on one device: device_id, fault, start_ts, end_ts, readings.

    ``labels`` has device_id, ts and fault, sorted by device then time.
    """
    device = labels["device_id"].to_numpy()
    fault = labels["fault"].astype(object).where(labels["fault"].notna(), None).to_numpy()
    ts = labels["ts"].to_numpy(dtype=np.int64)
    n = len(labels)
    if n == 0:
        return pd.DataFrame(columns=["device_id", "fault", "start_ts", "end_ts", "readings"])
    new_run = np.r_[True, (device[1:] != device[:-1]) | (fault[1:] != fault[:-1])]
    run_id = np.cumsum(new_run) - 1
    runs = pd.DataFrame({"run": run_id, "device_id": device, "fault": fault, "ts": ts})
    runs = runs[runs["fault"].notna()]
    grouped = runs.groupby("run", sort=True).agg(
        device_id=("device_id", "first"),
        fault=("fault", "first"),
        start_ts=("ts", "min"),
        end_ts=("ts", "max"),
        readings=("ts", "size"),
    )
    return grouped.reset_index(drop=True)


def _quantile(values: list[float], q: float) -> float | None:
    return float(np.quantile(values, q)) if values else None


def evaluate_labelled(
    labels: pd.DataFrame,
    scored: pd.DataFrame,
    alerts: pd.DataFrame,
    *,
    threshold: float,
    step_ms: int,
    families: Mapping[str, str] | None = None,
    abrupt: set[str] | None = None,
) -> dict[str, Any]:
    """Metrics of scored, labelled readings and the alerts raised on them.

    Args:
        labels: device_id, ts, fault (None when normal), sorted by device then time.
        scored: device_id, ts, score aligned row for row with ``labels``.
        alerts: device_id, opened_ts, family (one row per alert opened).
        threshold: the model's threshold on ``score``.
        step_ms: sampling interval, to express time-to-detect in readings.
        families: fault -> expected family (see :func:`expected_families`).
        abrupt: faults with an abrupt onset (the time-to-detect target applies to them).

    Returns:
        A JSON-ready dict: ``points``, ``per_fault``, ``events``, ``false_alerts``,
        ``top_family``, ``support``.
    """
    pred = scored["score"].to_numpy(dtype=float) > threshold
    points = point_metrics(labels, scored, threshold)
    events, cut_off = judged_events(labels)
    alerts = alerts.sort_values("opened_ts") if len(alerts) else alerts
    events = match_alerts(events, alerts)
    event_table = event_metrics(events, cut_off, step_ms, abrupt)
    fault = labels["fault"].to_numpy(dtype=object)
    per_fault: dict[str, dict[str, Any]] = {}
    for name in sorted({f for f in fault if f is not None and f == f}):
        mask = fault == name
        per_fault[name] = {"points": int(mask.sum()), "point_recall": float(pred[mask].mean())}
    for name in event_table:
        per_fault.setdefault(name, {})["event_recall"] = event_table[name]["recall"]
    false_alerts = false_alert_metrics(labels, alerts, pd.concat([events, cut_off], ignore_index=True), step_ms)
    return {
        "points": points,
        "per_fault": per_fault,
        "events": event_table,
        "false_alerts": false_alerts,
        "top_family": top_family(events, families or {}),
        "support": _support(len(events), false_alerts["device_days"], len(labels), event_table),
    }


def point_metrics(labels: pd.DataFrame, scored: pd.DataFrame, threshold: float) -> dict[str, Any]:
    """Point-wise precision, recall, F1 and ROC-AUC of ``score > threshold`` against the labels."""
    y = labels["fault"].notna().to_numpy()
    score = scored["score"].to_numpy(dtype=float)
    pred = score > threshold
    tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    auc = float(roc_auc_score(y, score)) if 0 < y.sum() < len(y) else None
    return {
        "rows": int(len(y)),
        "positives": int(y.sum()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": auc,
        "threshold": float(threshold),
    }


def judged_events(labels: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The fault events to judge, and those cut off by the end of the data (which may be
    caught after it, so they are not judged)."""
    events = fault_events(labels)
    last_ts = labels.groupby("device_id")["ts"].max()
    truncated = (
        events["end_ts"].to_numpy() >= events["device_id"].map(last_ts).to_numpy() if len(events) else np.zeros(0, bool)
    )
    return events[~truncated].reset_index(drop=True), events[truncated]


def match_alerts(events: pd.DataFrame, alerts: pd.DataFrame) -> pd.DataFrame:
    """Each event with ``caught``, ``ttd_ms`` and ``family`` of the first alert opened inside it."""
    by_device = {d: g for d, g in alerts.groupby("device_id")} if len(alerts) else {}
    caught = np.zeros(len(events), dtype=bool)
    ttd_ms = np.full(len(events), np.nan)
    first_family: list[str | None] = [None] * len(events)
    for i, ev in enumerate(events.itertuples(index=False)):
        group = by_device.get(ev.device_id)
        if group is None:
            continue
        opened = group["opened_ts"].to_numpy(dtype=np.int64)
        inside = np.flatnonzero((opened >= ev.start_ts) & (opened <= ev.end_ts))
        if len(inside):
            caught[i] = True
            ttd_ms[i] = opened[inside[0]] - ev.start_ts
            first_family[i] = str(group["family"].iloc[inside[0]])
    return events.assign(caught=caught, ttd_ms=ttd_ms, family=first_family)


def event_metrics(
    events: pd.DataFrame, cut_off: pd.DataFrame, step_ms: int, abrupt: set[str] | None
) -> dict[str, dict[str, Any]]:
    """Per fault: events, caught, recall and time to detect (readings and seconds)."""
    table: dict[str, dict[str, Any]] = {}
    for name, group in events.groupby("fault"):
        ttd = group.loc[group["caught"], "ttd_ms"].to_list()
        readings = [t / step_ms for t in ttd]
        table[str(name)] = {
            "events": int(len(group)),
            "caught": int(group["caught"].sum()),
            "recall": float(group["caught"].mean()),
            "ttd_readings_median": _quantile(readings, 0.5),
            "ttd_readings_p90": _quantile(readings, 0.9),
            "ttd_seconds_median": _quantile([t / 1000 for t in ttd], 0.5),
            "ttd_seconds_p90": _quantile([t / 1000 for t in ttd], 0.9),
            "abrupt": bool(abrupt and name in abrupt),
        }
    for name, group in cut_off.groupby("fault"):
        table.setdefault(str(name), {"events": 0, "caught": 0, "recall": None})["cut_off"] = int(len(group))
    return table


def false_alert_metrics(
    labels: pd.DataFrame, alerts: pd.DataFrame, every_event: pd.DataFrame, step_ms: int
) -> dict[str, Any]:
    """Alerts opened outside every fault event of their device, per device-day."""
    false = 0
    if len(alerts):
        ev_by_device = {d: g for d, g in every_event.groupby("device_id")} if len(every_event) else {}
        for device, group in alerts.groupby("device_id"):
            opened = group["opened_ts"].to_numpy(dtype=np.int64)
            evs = ev_by_device.get(device)
            if evs is None:
                false += len(opened)
                continue
            starts = evs["start_ts"].to_numpy(dtype=np.int64)
            ends = evs["end_ts"].to_numpy(dtype=np.int64)
            inside = ((opened[:, None] >= starts[None, :]) & (opened[:, None] <= ends[None, :])).any(axis=1)
            false += int((~inside).sum())
    sizes = labels.groupby("device_id")["ts"].size()
    device_days = float((sizes * step_ms).sum() / 86_400_000)
    return {
        "alerts": len(alerts),
        "false_alerts": false,
        "device_days": device_days,
        "per_device_day": false / device_days if device_days else None,
    }


def top_family(events: pd.DataFrame, families: Mapping[str, str]) -> dict[str, Any]:
    """How often the first alert of a caught event named the fault's expected family."""
    top: dict[str, Any] = {"by_fault": {}}
    right = total = 0
    for name, fam in families.items():
        group = events[(events["fault"] == name) & events["caught"]]
        if len(group) == 0:
            continue
        ok = int((group["family"] == fam).sum())
        top["by_fault"][name] = {"expected": fam, "right": ok, "caught": int(len(group)), "share": ok / len(group)}
        right += ok
        total += len(group)
    top["share"] = right / total if total else None
    return top


def _support(judged: int, device_days: float, rows: int, event_table: dict[str, dict[str, Any]]) -> dict[str, Any]:
    warnings = support_warnings(judged, device_days)
    for name, ev in event_table.items():
        if ev.get("events") is not None and 0 < ev["events"] < MIN_EVENTS_PER_FAULT:
            warnings.append(f"{name}: only {ev['events']} events, its recall is rough")
    return {"events": judged, "device_days": device_days, "rows": rows, "warnings": warnings}


MIN_EVENTS = 30
MIN_EVENTS_PER_FAULT = 10
MIN_DEVICE_DAYS = 1.0


def support_warnings(events: int, device_days: float) -> list[str]:
    """Plain warnings when a metric rests on too little data."""
    out = []
    if events < MIN_EVENTS:
        out.append(f"only {events} anomalous episodes: event metrics are rough (fewer than {MIN_EVENTS})")
    if device_days < MIN_DEVICE_DAYS:
        out.append(
            f"only {device_days:.3f} device-days of test data: false alerts per device-day is rough "
            f"(less than {MIN_DEVICE_DAYS:g})"
        )
    return out


# ---------------------------------------------------------------------- plumbing
def _scratch_tracker(settings: Settings, workdir: Path) -> tuple[Any, AlertTracker]:
    from itap_engine.store.sql import Store

    scratch = Store(settings, url=f"sqlite:///{workdir / 'alerts.db'}")
    return scratch, AlertTracker(scratch, settings)


def _replay(
    settings: Settings,
    profile: str,
    model: TrainedModel,
    history: pd.DataFrame,
    frame: pd.DataFrame,
    workdir: Path,
    chunk_rows: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score ``frame`` after warming up on ``history``; alerts go to a scratch store."""
    scorer = StreamingScorer(settings, profile, model)
    scorer.warm_up(history)
    scored = (
        scorer.score(frame)
        if chunk_rows is None
        else pd.concat([scorer.score(part) for part in _time_chunks(frame, chunk_rows)], ignore_index=True)
    )
    scored = scored.sort_values(["device_id", "ts"], kind="stable").reset_index(drop=True)
    scratch, tracker = _scratch_tracker(settings, workdir)
    try:
        tracker.update(profile, scored)
        alerts = alerts_frame(scratch, profile)
    finally:
        scratch.close()
    return scored, alerts


def _time_chunks(frame: pd.DataFrame, rows: int) -> list[pd.DataFrame]:
    stamps = np.sort(frame["ts"].unique())
    per = max(1, rows // max(1, frame["device_id"].nunique()))
    return [
        frame[(frame["ts"] >= stamps[i]) & (frame["ts"] <= stamps[min(i + per, len(stamps)) - 1])]
        for i in range(0, len(stamps), per)
    ]


def _report(
    settings: Settings,
    profile: str,
    model: TrainedModel,
    labels: pd.DataFrame,
    scored: pd.DataFrame,
    alerts: pd.DataFrame,
    extra: dict[str, Any],
) -> dict[str, Any]:
    spec = settings.profile(profile)
    labels = labels.sort_values(["device_id", "ts"], kind="stable").reset_index(drop=True)
    assert model.features is not None
    metrics = evaluate_labelled(
        labels[["device_id", "ts", "fault"]],
        scored,
        alerts,
        threshold=model.threshold,
        step_ms=model.features.step_ms_,
        families=expected_families(spec),
        abrupt={n for n, f in spec.faults.items() if f.onset == "abrupt"},
    )
    metrics["model"] = {
        "version_id": model.version_id,
        "detector": model.detector_name,
        "threshold": model.threshold,
        "train_start": model.train_start,
        "train_end": model.train_end,
        "features": len(model.feature_names),
    }
    metrics["profile"] = profile
    metrics.update(extra)
    return metrics


def evaluate_store(store, settings: Settings, profile: str) -> dict[str, Any]:
    """Evaluate the active model on the store's labelled readings after its training window."""
    model = load_active_model(store, settings, profile)
    if model is None:
        labelled = store.read_readings(profile, columns=["device_id", "ts", "fault"])
        what = "no labelled readings and " if "fault" not in labelled or labelled["fault"].notna().sum() == 0 else ""
        raise EvaluationError(
            f"profile {profile}: {what}no trained model; evaluate needs ground-truth labels (simulated data, or "
            f"`itap ingest --label COL`) and a model (`itap train --profile {profile}`)"
        )
    assert model.features is not None
    after = model.train_end
    frame = store.read_readings(profile, since_ms=after)
    if frame.empty or "fault" not in frame.columns or frame["fault"].notna().sum() == 0:
        raise EvaluationError(
            f"profile {profile}: no labelled readings after the training window (ts > {after}); "
            "evaluate needs simulated data with ground truth (or use --simulate or --skab DIR)"
        )
    span = warm_up_span_ms(model.features)
    history = store.read_readings(profile, since_ms=(after or 0) - span, until_ms=after) if after else frame.iloc[:0]
    with tempfile.TemporaryDirectory(prefix="itap-eval-") as tmp:
        scored, alerts = _replay(settings, profile, model, history, frame, Path(tmp))
    return _report(settings, profile, model, frame, scored, alerts, {"source": "store"})


def evaluate_simulated(
    settings: Settings,
    profile: str = "industrial",
    *,
    devices: int = 100,
    hours: float = 24.0,
    train_hours: float = 24.0,
    fault_rate: float | None = None,
    seed: int | None = None,
    workdir: str | Path | None = None,
    fault_scale: float = 1.0,
    jitter: float = 0.0,
    skip: float = 0.0,
) -> dict[str, Any]:
    """Simulate ``train_hours`` of history, train on its normal readings, then score and
    evaluate the next ``hours`` (random faults on throughout) in a scratch database.

    ``fault_scale`` multiplies every fault's magnitude (0.5: half-magnitude faults);
    ``jitter`` moves each timestamp by up to that fraction of the sampling step and
    ``skip`` drops that share of readings (seeded), for a jittered copy of the scenario.
    """
    from itap_engine.ingest.simulator import Simulator, device_ids_for
    from itap_engine.store.sql import Store, to_epoch_ms

    if fault_scale != 1.0:
        settings = scaled_faults(settings, profile, fault_scale)

    with tempfile.TemporaryDirectory(prefix="itap-eval-") as tmp:
        work = Path(workdir) if workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{work / 'eval.db'}"
        local = settings.with_overrides(database={"url": url}, paths={"artifacts_dir": str(work / "artifacts")})
        store = Store(local, url=url)  # explicit: $ITAP_DB_URL must not redirect a scratch store
        try:
            sim = Simulator(
                local, profile, device_ids_for("dev", devices), seed=seed, fault_rate_per_device_day=fault_rate
            )
            start = sim.start
            split = start + timedelta(hours=train_hours)
            end = split + timedelta(hours=hours)
            history = sim.generate(start, split)
            history["ts"] = to_epoch_ms(history["ts"])
            shake = np.random.default_rng(sim.seed + 1)
            history = jittered(history, jitter, skip, sim.freq_s * 1000, shake)
            store.insert_readings(profile, history)
            model = train_model(store, local, profile)
            frame = sim.generate(split, end)
            frame["ts"] = to_epoch_ms(frame["ts"])
            frame = jittered(frame, jitter, skip, sim.freq_s * 1000, shake)
            assert model.features is not None
            tail = history.groupby("device_id").tail(model.features.history_)
            scored, alerts = _replay(local, profile, model, tail, frame, work)
        finally:
            store.close()
    return _report(
        settings,
        profile,
        model,
        frame,
        scored,
        alerts,
        {
            "source": "simulated",
            "scenario": {
                "devices": devices,
                "hours": hours,
                "train_hours": train_hours,
                "fault_scale": fault_scale,
                "jitter": jitter,
                "skip": skip,
                "fault_rate_per_device_day": fault_rate
                if fault_rate is not None
                else settings.simulation.fault_rate_per_device_day,
                "seed": seed if seed is not None else settings.simulation.seed,
            },
        },
    )


def scaled_faults(settings: Settings, profile: str, scale: float) -> Settings:
    """Settings whose ``profile`` faults have every magnitude multiplied by ``scale``."""
    from itap_engine.config import parse_settings

    data = settings.model_dump(by_alias=True)
    for fault in data["profiles"][profile]["faults"].values():
        for effect in fault["effects"]:
            if effect["kind"] != "dropout":
                effect["magnitude"] = effect["magnitude"] * scale
    return parse_settings(data, settings.source)


def jittered(frame: pd.DataFrame, jitter: float, skip: float, step_ms: int, rng: np.random.Generator) -> pd.DataFrame:
    """``frame`` with each timestamp moved by up to ``jitter`` x ``step_ms`` and a share
    ``skip`` of readings dropped (order kept: jitter must stay below 0.5)."""
    if jitter <= 0 and skip <= 0:
        return frame
    if not 0 <= jitter < 0.5:
        raise ValueError("jitter must be in [0, 0.5)")
    out = frame.copy()
    offsets = rng.uniform(-jitter, jitter, size=len(out)) * step_ms
    out["ts"] = out["ts"].to_numpy(dtype=np.int64) + offsets.astype(np.int64)
    return out[rng.random(len(out)) >= skip].reset_index(drop=True)


def write_metrics(settings: Settings, metrics: dict[str, Any], name: str = "metrics.json") -> Path:
    """Write metrics JSON under the artifacts folder; returns the path."""
    path = settings.resolve(settings.paths.artifacts_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, default=float) + "\n", encoding="utf-8")
    return path
