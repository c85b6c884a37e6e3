"""A deterministic in-memory :class:`~itap_engine.snapshot.EngineFacade`.

Used by the console's pilot and snapshot tests and by :mod:`itap_bench.console`: it makes
snapshots from a seeded generator and a tick counter (never the wall clock), so two
runs render the same screen. ``advance()`` plays one engine tick; with ``interval``
set, ``start()`` also runs ticks on a timer like a live engine. It mimics the real
engine's contract: an injected fault is pending until the next tick, then active,
and an active fault raises the device's score until an alert opens.
"""

from __future__ import annotations

import asyncio
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from itap_engine.snapshot import (
    AnomalyRow,
    ContributorView,
    DeviceDetail,
    DeviceRow,
    EngineStats,
    EventRow,
    FaultCommandView,
    ProfileInfo,
    Progress,
    QuarantineView,
    Snapshot,
    ValidationAlertRow,
    ValidationProblemRow,
)
from itap_engine.snapshot.diff import mark_changes

START = datetime(2026, 1, 1, 6, 0, 0, tzinfo=UTC)
STEP_S = 10

PROFILES: dict[str, ProfileInfo] = {
    "industrial": ProfileInfo(
        name="industrial",
        signals=("rpm", "temp_c", "vibration_g", "current_a", "voltage_v"),
        key_signals=("temp_c", "vibration_g", "current_a"),
        units={"rpm": "rpm", "temp_c": "°C", "vibration_g": "g", "current_a": "A", "voltage_v": "V"},
        families={
            "rpm": "mechanical",
            "temp_c": "thermal",
            "vibration_g": "mechanical",
            "current_a": "electrical",
            "voltage_v": "electrical",
        },
        faults=("overheat_drift", "bearing_wear", "power_spike", "sensor_dropout"),
    ),
    "aircraft": ProfileInfo(
        name="aircraft",
        signals=("lat", "lon", "altitude_ft", "speed_kt", "heading_deg", "status"),
        key_signals=("altitude_ft", "speed_kt", "heading_deg"),
        units={"lat": "°", "lon": "°", "altitude_ft": "ft", "speed_kt": "kt", "heading_deg": "°", "status": "code"},
        families={
            "lat": "navigation",
            "lon": "navigation",
            "altitude_ft": "navigation",
            "speed_kt": "air_data",
            "heading_deg": "navigation",
            "status": "systems",
        },
        faults=("speed_spike", "altitude_drop", "sensor_dropout"),
    ),
}

BASELINES = {
    "rpm": (1480.0, 12.0),
    "temp_c": (68.0, 0.6),
    "vibration_g": (0.35, 0.02),
    "current_a": (42.0, 0.8),
    "voltage_v": (400.0, 2.0),
    "lat": (48.0, 0.002),
    "lon": (11.0, 0.002),
    "altitude_ft": (35000.0, 60.0),
    "speed_kt": (460.0, 4.0),
    "heading_deg": (180.0, 0.8),
    "status": (0.0, 0.0),
}
FAULT_SIGNALS = {
    "overheat_drift": ("temp_c",),
    "bearing_wear": ("vibration_g",),
    "power_spike": ("current_a", "voltage_v"),
    "sensor_dropout": ("temp_c", "vibration_g"),
    "speed_spike": ("speed_kt",),
    "altitude_drop": ("altitude_ft",),
}
THRESHOLD = 0.55


@dataclass
class _Fault:
    command: FaultCommandView
    start_tick: int
    end_tick: int


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class FakeFacade:
    """Deterministic engine stand-in.

    Args:
        devices: fleet size; every fifth device is an aircraft.
        seed: seeds every generated value.
        interval: seconds between automatic ticks after ``start`` (None: only ``advance``).
        bootstrap_steps: progress reports ``start`` makes before the first snapshot.
        extra_devices: more device ids (industrial), e.g. one with markup in its name.
    """

    def __init__(
        self,
        devices: int = 25,
        seed: int = 7,
        interval: float | None = None,
        bootstrap_steps: int = 0,
        bootstrap_delay: float = 0.0,
        extra_devices: tuple[str, ...] = (),
        mode: str = "live",
    ) -> None:
        self.seed = seed
        self.interval = interval
        self.bootstrap_steps = bootstrap_steps
        self.bootstrap_delay = bootstrap_delay
        self.mode = mode
        self.device_ids: list[str] = []
        self.profile_of: dict[str, str] = {}
        self.site_of: dict[str, str] = {}
        pumps = aircraft = 0
        for index in range(devices):
            if index % 5 == 4:
                aircraft += 1
                device = f"ac-{aircraft:03d}"
                self.profile_of[device] = "aircraft"
                self.site_of[device] = "fleet-a"
            else:
                pumps += 1
                device = f"pump-{pumps:03d}"
                self.profile_of[device] = "industrial"
                self.site_of[device] = "north" if pumps % 2 else "south"
            self.device_ids.append(device)
        for device in extra_devices:
            self.device_ids.append(device)
            self.profile_of[device] = "industrial"
            self.site_of[device] = "north"
        self.tick = 0
        self.paused = False
        self.started = False
        self.stopped = False
        self.model_versions = {"industrial": 3, "aircraft": 2}
        self.faults: dict[int, _Fault] = {}
        self.alerts: dict[int, AnomalyRow] = {}
        self._next_fault_id = 1
        self._next_alert_id = 1
        self._subscribers: list[Callable[[Snapshot], None]] = []
        self._latest: Snapshot | None = None
        self._task: asyncio.Task[None] | None = None
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self._standing: set[int] = set()
        self.muted: dict[str, tuple[int, str]] = {}
        self._prefixes: dict[tuple[str, str], int] = {}
        self._phases: dict[str, int] = {}
        self._parts: dict[tuple[str, tuple[str, ...]], tuple[int, tuple[tuple[str, float, float, int], ...]]] = {}
        # A standing critical alert so the anomalies screen is never empty.
        if len(self.device_ids) > 7:
            self._open_alert(self.device_ids[7], "critical", 0.93, "overheat_drift", -30)
        if len(self.device_ids) > 3:
            self._open_alert(self.device_ids[3], "warning", 0.61, "bearing_wear", -12)

    # ------------------------------------------------------------------ protocol
    async def start(self, progress: Callable[[Progress], None] | None = None) -> None:
        self.calls.append(("start", ()))
        stages = ("simulate history", "ingest", "features", "train", "score")
        for step in range(self.bootstrap_steps):
            if progress is not None:
                progress(Progress(stages[step % len(stages)], (step + 1) / self.bootstrap_steps, f"step {step + 1}"))
            await asyncio.sleep(self.bootstrap_delay)
        self.started = True
        self.advance()
        if self.interval:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        assert self.interval
        while not self.stopped:
            await asyncio.sleep(self.interval)
            if not self.paused:
                self.advance()

    async def stop(self) -> None:
        self.calls.append(("stop", ()))
        self.stopped = True
        if self._task is not None:
            self._task.cancel()

    def subscribe(self, callback: Callable[[Snapshot], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def latest(self) -> Snapshot | None:
        return self._latest

    async def inject_fault(
        self, device_ids: list[str], fault: str, severity: float, duration_s: float
    ) -> list[FaultCommandView]:
        self.calls.append(("inject_fault", (tuple(device_ids), fault, severity, duration_s)))
        out = []
        for device in device_ids:
            profile = self.profile_of.get(device)
            known = profile is not None and fault in PROFILES[profile].faults
            command = FaultCommandView(
                id=self._next_fault_id,
                device_id=device,
                fault=fault,
                severity=severity,
                duration_s=duration_s,
                status="pending" if known else "rejected",
                start_ts=_ms(self.sim_time(self.tick + 1)) if known else None,
                message="" if known else f"{fault} is not a fault of device {device}",
            )
            self._next_fault_id += 1
            if known:
                steps = max(1, int(duration_s // STEP_S))
                self.faults[command.id] = _Fault(command, self.tick + 1, self.tick + 1 + steps)
            out.append(command)
        return out

    async def acknowledge(self, alert_id: int, acknowledged: bool = True) -> None:
        self.calls.append(("acknowledge", (alert_id,)) if acknowledged else ("unacknowledge", (alert_id,)))
        row = self.alerts[alert_id]
        self.alerts[alert_id] = _replace(row, acknowledged=acknowledged)
        self._publish(self._build())

    async def snapshot_at(self, at: datetime) -> Snapshot:
        """The fleet as it was at tick ``at`` (values regenerate; incidents as they are)."""
        self.calls.append(("snapshot_at", (at,)))
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        tick = max(0, min(self.tick, int((at - START).total_seconds() // STEP_S)))
        now, self.tick = self.tick, tick
        try:
            past = self._build()
        finally:
            self.tick = now
        return _replace(past, seq=-1, stats=_replace(past.stats, mode="past"))

    async def incident_history(self, since: datetime | None = None, until: datetime | None = None) -> list[AnomalyRow]:
        """The fake fleet's incidents, open or closed, overlapping ``[since, until]``, newest opened first."""
        self.calls.append(("incident_history", (since, until)))
        lo = None if since is None else _ms(since if since.tzinfo else since.replace(tzinfo=UTC))
        hi = None if until is None else _ms(until if until.tzinfo else until.replace(tzinfo=UTC))
        rows = [
            a
            for a in self.alerts.values()
            if (hi is None or (a.opened_ts or a.ts) <= hi) and (lo is None or a.status == "open" or a.ts >= lo)
        ]
        return sorted(rows, key=lambda a: (a.opened_ts or a.ts, a.alert_id or 0), reverse=True)

    async def events(self, limit: int = 300) -> list[EventRow]:
        """Faults, incidents and validation problems of the fake fleet, newest first."""
        self.calls.append(("events", (limit,)))
        snapshot = self._latest or self._build()
        out = [EventRow(_ms(self.sim_time(tick=0)), "log", "warning", None, "engine: tick took 1.2 s (over 1.0 s)")]
        for fault in self.faults.values():
            out.append(
                EventRow(
                    _ms(self.sim_time(fault.start_tick)),
                    "fault",
                    "info",
                    fault.command.device_id,
                    f"fault {fault.command.fault} severity {fault.command.severity:g}",
                )
            )
        for alert in self.alerts.values():
            out.append(
                EventRow(
                    alert.opened_ts,
                    "incident",
                    alert.severity,
                    alert.device_id,
                    f"incident #{alert.alert_id} opened ({alert.family})",
                )
            )
        for problem in snapshot.validation_problems:
            out.append(
                EventRow(
                    problem.first_ts,
                    "validation",
                    problem.level,
                    problem.device_id,
                    f"{problem.signal or ''} {problem.check}: {problem.message}".strip(),
                )
            )
        out.sort(key=lambda e: -(e.ts or 0))
        return out[:limit]

    async def note(self, alert_id: int, text: str) -> None:
        self.calls.append(("note", (alert_id, text)))
        self.alerts[alert_id] = _replace(self.alerts[alert_id], note=" ".join(text.split())[:200])
        self._publish(self._build())

    async def mute(self, device_id: str, seconds: float | None, reason: str = "") -> int | None:
        self.calls.append(("mute", (device_id, seconds)) if not reason else ("mute", (device_id, seconds, reason)))
        if seconds is None:
            self.muted.pop(device_id, None)
            until = None
        else:
            until = _ms(self.sim_time()) + int(seconds * 1000)
            label = reason if reason.startswith("maintenance") else f"muted{': ' + reason if reason else ''}"
            self.muted[device_id] = (until, label)
        self._publish(self._build())
        return until

    async def retrain(self, profile: str | None = None) -> dict[str, int | None]:
        self.calls.append(("retrain", (profile,)))
        for name in self.model_versions:
            if profile in (None, name):
                self.model_versions[name] += 1
        return {name: v for name, v in self.model_versions.items() if profile in (None, name)}

    def set_paused(self, paused: bool) -> None:
        self.calls.append(("set_paused", (paused,)))
        self.paused = paused

    async def device_detail(self, device_id: str, window_s: float = 3600, at: datetime | None = None) -> DeviceDetail:
        self.calls.append(("device_detail", (device_id, window_s, at)))
        profile = PROFILES[self.profile_of[device_id]]
        points = max(2, min(360, int(window_s // STEP_S)))
        last = self.tick
        if at is not None:  # time travel: the window that ended then
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            last = max(0, min(self.tick, int((at - START).total_seconds() // STEP_S)))
        first = last - points + 1
        ticks = list(range(first, last + 1))
        series = {s: tuple(self._value(device_id, s, t) for t in ticks) for s in profile.signals}
        scores = tuple(self._score(device_id, t) for t in ticks)
        labels = tuple(self._active_fault_name(device_id, t) for t in ticks)
        alerts = tuple(a for a in self._sorted_alerts() if a.device_id == device_id)
        faults = tuple(f.command for f in self.faults.values() if f.command.device_id == device_id)
        faults = tuple(_replace(c, status=self._fault_status(c.id)) for c in faults)
        index = self.device_ids.index(device_id)
        quarantined = (
            QuarantineView(
                created_at=self.sim_time(self.tick - 3).replace(tzinfo=None),
                line=40 + index,
                ts=_ms(self.sim_time(self.tick - 3)),
                reason="temp_c out of range [-40, 200]: 912.0",
                raw=f"{device_id},2026-01-01T06:00:00,RUN,1480,912.0,[bold red]x[/],42",
            ),
        )
        contributors = alerts[0].contributors if alerts else ()
        return DeviceDetail(
            device_id=device_id,
            profile=profile.name,
            ts=tuple(_ms(self.sim_time(t)) for t in ticks),
            series=series,
            scores=scores,
            threshold=THRESHOLD,
            fault_labels=labels,
            alerts=alerts,
            faults=faults,
            quarantined=quarantined,
            contributors=contributors,
        )

    # ------------------------------------------------------------------ engine
    def sim_time(self, tick: int | None = None) -> datetime:
        return START + timedelta(seconds=STEP_S * (self.tick if tick is None else tick))

    def advance(self, ticks: int = 1) -> Snapshot:
        """Play ``ticks`` engine ticks and publish the resulting snapshot."""
        for _ in range(ticks):
            self.tick += 1
            for device in self.device_ids if self.faults else ():  # no fault: no alert to open
                fault = self._active_fault(device, self.tick)
                if (
                    fault is not None
                    and self._score(device, self.tick) > THRESHOLD
                    and not any(
                        a.device_id == device and a.status == "open"  # one incident per device
                        for a in self.alerts.values()
                    )
                ):
                    score = self._score(device, self.tick)
                    self._open_alert(
                        device, "critical" if score > 1.5 * THRESHOLD else "warning", score, fault.command.fault, 0
                    )
        snapshot = self._build()
        self._publish(snapshot)
        return snapshot

    def _problems(self, validation: list[ValidationAlertRow]) -> tuple[ValidationProblemRow, ...]:
        """The validation alerts as problems: each first seen when it was created, seen
        again every tick since; the schema error of a 50th tick resolved at the next."""
        now = _ms(self.sim_time())
        out = []
        for index, alert in enumerate(validation, start=1):
            first = _ms(alert.created_at.replace(tzinfo=UTC))
            out.append(
                ValidationProblemRow(
                    id=index,
                    device_id=alert.device_id,
                    signal=alert.signal,
                    check=alert.check,
                    level=alert.level,
                    first_ts=first,
                    last_ts=now,
                    count=1 + max(0, (now - first) // int(STEP_S * 1000)),
                    message=alert.message,
                )
            )
        return tuple(out)

    def _publish(self, snapshot: Snapshot) -> None:
        # as the engine's publisher: say what changed since the last snapshot
        previous = self._latest if self._latest is not None and self._latest.seq < snapshot.seq else None
        snapshot = mark_changes(previous, snapshot)
        self._latest = snapshot
        for callback in list(self._subscribers):
            callback(snapshot)

    def _hash(self, *parts: object) -> int:
        """Stable across processes (unlike ``hash`` of a str)."""
        return zlib.crc32(repr((self.seed, *parts)).encode())

    def _tick_hash(self, device: str, name: str, tick: int) -> int:
        """``_hash(device, name, tick)``, from the CRC of its constant prefix (kept per
        device and name) continued over the tick: the same number, without building
        and encoding the tuple's text 50,000 times a tick at 10,000 devices."""
        prefix = self._prefixes.get((device, name))
        if prefix is None:
            text = repr((self.seed, device, name))
            prefix = self._prefixes[(device, name)] = zlib.crc32(f"{text[:-1]}, ".encode())
        return zlib.crc32(f"{tick!r})".encode(), prefix)

    def _phase(self, device: str) -> int:
        """``_hash(device) % 97``, kept per device."""
        phase = self._phases.get(device)
        if phase is None:
            phase = self._phases[device] = self._hash(device) % 97
        return phase

    def _value(self, device: str, signal: str, tick: int) -> float | None:
        base, noise = BASELINES[signal]
        index = self._phase(device)
        wobble = math.sin((tick + index * 7) / 40.0) * noise * 3
        jitter = ((self._tick_hash(device, signal, tick) % 2001) / 1000.0 - 1.0) * noise
        value = base + wobble + jitter
        fault = self._active_fault(device, tick)
        if fault is not None and signal in FAULT_SIGNALS.get(fault.command.fault, ()):
            progress = (tick - fault.start_tick + 1) / max(1, fault.end_tick - fault.start_tick)
            if fault.command.fault == "sensor_dropout":
                return None
            value += base * 0.3 * fault.command.severity * min(1.0, 0.3 + progress)
        return value

    def _values(self, device: str, signals: tuple[str, ...], tick: int) -> dict[str, float | None]:
        """``{s: _value(device, s, tick) for s in signals}``, the same numbers, with what
        the signals of a device share (its phase, the tick's text, each signal's
        baseline and hash prefix) worked out once."""
        if self.faults and self._active_fault(device, tick) is not None:
            return {s: self._value(device, s, tick) for s in signals}
        parts = self._parts.get((device, signals))
        if parts is None:
            for signal in signals:
                self._tick_hash(device, signal, tick)  # keeps the prefix
            parts = self._parts[(device, signals)] = (  # tuples of numbers: nothing for the GC to walk
                self._phase(device) * 7,
                tuple((signal, *BASELINES[signal], self._prefixes[(device, signal)]) for signal in signals),
            )
        phase, by_signal = parts
        wave = math.sin((tick + phase) / 40.0)
        suffix = f"{tick!r})".encode()
        crc32 = zlib.crc32
        return {
            signal: base + wave * noise * 3 + ((crc32(suffix, prefix) % 2001) / 1000.0 - 1.0) * noise
            for signal, base, noise, prefix in by_signal
        }

    def _score(self, device: str, tick: int) -> float:
        jitter = (self._tick_hash(device, "score", tick) % 1000) / 1000.0
        score = 0.30 + 0.12 * jitter
        fault = self._active_fault(device, tick) if self.faults else None
        if fault is not None:
            score += 0.35 * fault.command.severity + 0.1 * min(3, tick - fault.start_tick)
        for alert_id in self._standing:
            alert = self.alerts[alert_id]
            if alert.device_id == device and alert.status == "open":
                score = alert.score + 0.02 * jitter
        return round(score, 4)

    def _active_fault(self, device: str, tick: int) -> _Fault | None:
        for fault in self.faults.values():
            if fault.command.device_id == device and fault.start_tick <= tick < fault.end_tick:
                return fault
        return None

    def _active_fault_name(self, device: str, tick: int) -> str | None:
        fault = self._active_fault(device, tick)
        return fault.command.fault if fault else None

    def _fault_status(self, fault_id: int) -> str:
        fault = self.faults[fault_id]
        if self.tick < fault.start_tick:
            return "pending"
        return "active" if self.tick < fault.end_tick else "done"

    def _family(self, fault: _Fault) -> str:
        profile = PROFILES[self.profile_of[fault.command.device_id]]
        return profile.families[FAULT_SIGNALS[fault.command.fault][0]]

    def _open_alert(self, device: str, severity: str, score: float, fault: str, minutes_ago: int) -> None:
        profile = PROFILES[self.profile_of[device]]
        signals = FAULT_SIGNALS[fault] if fault in FAULT_SIGNALS else profile.key_signals[:1]
        others = [s for s in profile.signals if s not in signals][:2]
        shares = [0.62, 0.21, 0.1, 0.07]
        contributors = tuple(
            ContributorView(signal, profile.families[signal], shares[i])
            for i, signal in enumerate([*signals, *others][:4])
        )
        alert_id = self._next_alert_id
        self._next_alert_id += 1
        ts = _ms(self.sim_time(self.tick) + timedelta(minutes=minutes_ago))
        self.alerts[alert_id] = AnomalyRow(
            device_id=device,
            profile=profile.name,
            ts=ts,
            score=round(score, 4),
            severity=severity,
            family=contributors[0].family,
            contributors=contributors,
            alert_id=alert_id,
            opened_ts=ts,
        )
        if minutes_ago:
            self._standing.add(alert_id)

    def _sorted_alerts(self) -> list[AnomalyRow]:
        return sorted(self.alerts.values(), key=lambda a: (-a.score, a.device_id))

    def _build(self) -> Snapshot:
        rows = []
        pending = {}
        for fault in self.faults.values():
            status = self._fault_status(fault.command.id)
            if status in ("pending", "active"):
                pending[fault.command.device_id] = fault.command.fault
        open_alerts = {a.device_id: a for a in self.alerts.values() if a.status == "open"}
        now_ts, stale_ts = _ms(self.sim_time(self.tick)), _ms(self.sim_time(self.tick - 90))
        for index, device in enumerate(self.device_ids):
            profile = PROFILES[self.profile_of[device]]
            score = self._score(device, self.tick)
            stale = index == 11
            status = "stale" if stale else "ok"
            alert = open_alerts.get(device)
            if not stale and alert is not None:
                status = alert.severity
            elif not stale and score > THRESHOLD:
                status = "warning"
            state = ("RUN", "RUN", "RUN", "IDLE", "RUN", "MAINT")[(index + self.tick // 30) % 6]
            rows.append(
                DeviceRow(
                    device_id=device,
                    profile=profile.name,
                    site=self.site_of[device],
                    state=state,
                    values=self._values(device, profile.signals, self.tick),
                    score=score,
                    threshold=THRESHOLD,
                    status=status,
                    last_ts=stale_ts if stale else now_ts,
                    injected_fault=pending.get(device),
                )
            )
        readings = [
            AnomalyRow(
                device_id=r.device_id,
                profile=r.profile,
                ts=r.last_ts or 0,
                score=r.score or 0.0,
                severity="reading",
                family="",
                contributors=(),
            )
            for r in sorted(rows, key=lambda r: -(r.score or 0))[:5]
            if r.device_id not in open_alerts
        ]
        validation = [
            ValidationAlertRow(
                created_at=(START + timedelta(minutes=-5)).replace(tzinfo=None),
                level="warning",
                check="missing_rate",
                device_id=self.device_ids[11 % len(self.device_ids)],
                signal="vibration_g",
                message="missing rate 35% over the last 12 readings (limit 20%)",
            ),
            ValidationAlertRow(
                created_at=(START + timedelta(minutes=-2)).replace(tzinfo=None),
                level="error",
                check="range",
                device_id=self.device_ids[-1],
                signal="temp_c",
                message="temp_c out of range [-40, 200]: 912.0 (row quarantined)",
            ),
        ]
        if self.tick % 50 == 0:
            validation.append(
                ValidationAlertRow(
                    created_at=self.sim_time().replace(tzinfo=None),
                    level="error",
                    check="schema",
                    device_id=None,
                    signal=None,
                    message=f"inbox/batch-{self.tick}.csv: unknown column 'tmp_c' (did you mean temp_c?)",
                )
            )
        return Snapshot(
            seq=self.tick,
            created_at=self.sim_time().replace(tzinfo=None),
            devices=tuple(rows),
            anomalies=tuple(self._sorted_alerts()) + tuple(readings),
            validation_alerts=tuple(validation),
            stats=EngineStats(
                sim_time=self.sim_time().replace(tzinfo=None),
                tick_ms=42.0,
                rows_per_s=float(len(rows)) * 10,
                ticks=self.tick,
                model_versions=dict(self.model_versions),
                paused=self.paused,
                mode=self.mode,
            ),
            profiles=PROFILES,
            silenced={d: v for d, v in self.muted.items() if v[0] > _ms(self.sim_time())},
            validation_problems=self._problems(validation),
        )


def _replace(obj, **changes):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    return replace(obj, **changes)
