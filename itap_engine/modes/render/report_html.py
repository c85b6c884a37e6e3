"""The HTML page ``itap --once --report FILE.html`` writes.

One self-contained file (inline CSS, no script, no external resource) that a cron job
can publish or mail: the run's status and figures, open alerts highlighted with their
contributing signals, validation alerts, and one row per device (state, key signals,
score against the threshold, status), recently closed incidents, and for every open
or recently closed incident its device's anomaly score as a sparkline (inline SVG
drawn from numbers only, the threshold dashed). Everything that came from data (device ids,
messages, signal names, file names) goes through :func:`html.escape`, after
:func:`itap_engine.safe_text.visible` has shown its control characters as escapes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from itap_engine.safe_text import html_text
from itap_engine.snapshot import Snapshot, worth_showing
from itap_engine.store.history import ClosedIncident, ScoreHistory, recently_closed, score_histories
from itap_engine.store.sql import Store

__all__ = ["render_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5rem;color:#1d2330;background:#fafbfc}
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
.status{display:inline-block;padding:.15rem .6rem;border-radius:.3rem;color:#fff;font-weight:600}
.OK{background:#2e7d32}.WARNING{background:#b7791f}.CRITICAL{background:#c62828}.UNKNOWN{background:#6a1b9a}
.figures{display:flex;flex-wrap:wrap;gap:.8rem;margin:.8rem 0}
.figure{background:#fff;border:1px solid #dde1e7;border-radius:.4rem;padding:.5rem .8rem;min-width:8rem}
.figure b{display:block;font-size:1.3rem}.figure span{color:#5b6575;font-size:.8rem}
table{border-collapse:collapse;background:#fff;font-size:.85rem}
th,td{border:1px solid #dde1e7;padding:.25rem .5rem;text-align:left}th{background:#eef1f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.critical td{background:#fde7e7}tr.warning td{background:#fff5dc}tr.stale td{color:#8a93a3}
.muted{color:#5b6575}
svg.spark{vertical-align:middle}svg.spark polyline{fill:none;stroke:#1f5fbf;stroke-width:1.2}
svg.spark line{stroke:#c62828;stroke-width:1;stroke-dasharray:3 2}svg.spark circle{fill:#1f5fbf}
"""

SPARK_W, SPARK_H = 160, 34


def sparkline(history: ScoreHistory | None, threshold: float | None, title: str = "") -> str:
    """An inline SVG of a score history with its threshold dashed; numbers only (the
    title is escaped). Fewer than two finite points draw nothing but a dash."""
    if history is None:
        return '<span class="muted">&mdash;</span>'
    points = [(t, v) for t, v in zip(history.ts, history.scores) if math.isfinite(v)]
    if len(points) < 2:
        return '<span class="muted">&mdash;</span>'
    values = [v for _, v in points]
    limit = threshold if threshold is not None and math.isfinite(threshold) else None
    low = min([*values, *([limit] if limit is not None else [])])
    high = max([*values, *([limit] if limit is not None else [])])
    span = (high - low) or 1.0
    t0, t1 = points[0][0], points[-1][0]
    width = (t1 - t0) or 1

    def x(t: int) -> float:
        return 1 + (SPARK_W - 2) * (t - t0) / width

    def y(v: float) -> float:
        return 1 + (SPARK_H - 2) * (1 - (v - low) / span)

    line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
    parts = [
        f'<svg class="spark" width="{SPARK_W}" height="{SPARK_H}" viewBox="0 0 {SPARK_W} {SPARK_H}" role="img">',
        f"<title>{_e(title)}: score {low:.2f} to {high:.2f}</title>",
    ]
    if limit is not None:
        parts.append(f'<line x1="0" x2="{SPARK_W}" y1="{y(limit):.1f}" y2="{y(limit):.1f}"/>')
    parts.append(f'<polyline points="{line}"/>')
    parts.append(f'<circle cx="{x(points[-1][0]):.1f}" cy="{y(points[-1][1]):.1f}" r="2"/>')
    parts.append("</svg>")
    return "".join(parts)


HISTORY_S = 6 * 3600
"""The score history an open incident's sparkline covers (data time before the clock)."""
CLOSED_PAD_S = 15 * 60
"""A closed incident's sparkline: from this long before it opened to this long after it closed."""


def report_data(store: Store, summary: Mapping[str, Any], clock: datetime | None) -> dict[str, Any]:
    """The ``render_report`` keywords read from the store: score histories of the
    devices with an open incident, the recently closed incidents and theirs."""
    if clock is None:
        return {}
    clock_ms = (
        int(clock.replace(tzinfo=UTC).timestamp() * 1000) if clock.tzinfo is None else int(clock.timestamp() * 1000)
    )
    open_alerts = summary.get("alerts", {}).get("open", [])
    pairs = sorted({(str(a["profile"]), str(a["device_id"])) for a in open_alerts})
    histories = score_histories(store, pairs, clock_ms - HISTORY_S * 1000, clock_ms)
    closed = recently_closed(store, limit=10)
    pad = CLOSED_PAD_S * 1000
    closed_histories = {}
    for c in closed:
        found = score_histories(store, [(c.profile, c.device_id)], c.opened_ts - pad, c.closed_ts + pad)
        if c.device_id in found:
            closed_histories[c.id] = found[c.device_id]
    return {
        "histories": histories,
        "closed": closed,
        "closed_histories": closed_histories,
        "history_label": f"(last {HISTORY_S // 3600} h)",
    }


def _when(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _e(value: Any) -> str:
    return html_text(value)  # control characters made visible, then HTML-escaped


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return ""
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return _e(value)


def _figure(label: str, value: Any) -> str:
    return f'<div class="figure"><b>{_e(value)}</b><span>{_e(label)}</span></div>'


def render_report(
    summary: dict[str, Any],
    snapshot: Snapshot | None = None,
    *,
    histories: Mapping[str, ScoreHistory] | None = None,
    closed: Sequence[ClosedIncident] = (),
    closed_histories: Mapping[int, ScoreHistory] | None = None,
    history_label: str = "",
) -> str:
    """The page for one ``--once`` summary (see :mod:`itap_engine.modes.once`) and its snapshot.

    ``histories`` (device -> scores) draws a sparkline per open incident;
    ``closed`` lists recently closed incidents, each with its sparkline from
    ``closed_histories`` (incident id -> scores around it).
    """
    histories = histories or {}
    closed_histories = closed_histories or {}
    status = summary.get("status", "UNKNOWN")
    rows = summary.get("rows", {})
    alerts = summary.get("alerts", {})
    interval = summary.get("interval", {})
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>ITAP {_e(status)} - run {_e(summary.get('run_id'))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f'<h1>ITAP fleet report <span class="status {_e(status)}">{_e(status)}</span></h1>',
        f"<p>{_e(summary.get('message'))}</p>",
        f'<p class="muted">run {_e(summary.get("run_id"))}, finished {_e(summary.get("finished_at"))} (UTC); '
        f"simulated {_e(interval.get('from'))} &rarr; {_e(interval.get('to'))}</p>",
        '<div class="figures">',
        _figure("rows in", rows.get("in", 0)),
        _figure("inserted", rows.get("inserted", 0)),
        _figure("duplicates", rows.get("duplicates", 0)),
        _figure("conflicts", rows.get("conflicts", 0)),
        _figure("quarantined", rows.get("quarantined", 0)),
        _figure("scored", summary.get("scored", 0)),
        _figure("open alerts", len(alerts.get("open", []))),
        _figure("validation alerts", len(summary.get("validation_alerts", []))),
        _figure("seconds", _num(summary.get("timings_s", {}).get("total"), 2)),
        "</div>",
    ]
    if summary.get("error"):
        parts.append(f"<p><b>Error:</b> {_e(summary['error'])}</p>")

    parts.append("<h2>Open alerts</h2>")
    open_alerts = alerts.get("open", [])
    if open_alerts:
        parts.append(
            "<table><tr><th>severity</th><th>device</th><th>profile</th><th>family</th><th>since</th>"
            "<th>last</th><th>peak score</th><th>threshold</th><th>contributors</th><th>ack</th>"
            f"<th>score{(' ' + _e(history_label)) if history_label else ''}</th></tr>"
        )
        for a in open_alerts:
            contributors = ", ".join(
                f"{_e(c.get('signal'))} ({_e(c.get('family'))}) {float(c.get('share') or 0):.0%}"
                for c in worth_showing(a.get("contributors", []), 5)  # none under the shown cut-off
            )
            parts.append(
                f'<tr class="{_e(a.get("severity"))}"><td>{_e(a.get("severity"))}</td>'
                f"<td><b>{_e(a.get('device_id'))}</b></td><td>{_e(a.get('profile'))}</td>"
                f"<td>{_e(a.get('family'))}</td><td>{_e(a.get('opened_at'))}</td><td>{_e(a.get('last_at'))}</td>"
                f'<td class="num">{_num(a.get("peak_score"))}</td><td class="num">{_num(a.get("threshold"))}</td>'
                f"<td>{contributors}</td><td>{'yes' if a.get('acknowledged') else ''}</td>"
                f"<td>{sparkline(histories.get(str(a.get('device_id'))), a.get('threshold'), str(a.get('device_id')))}</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append('<p class="muted">No open alert.</p>')

    parts.append("<h2>Recently closed incidents</h2>")
    if closed:
        parts.append(
            "<table><tr><th>#</th><th>severity</th><th>device</th><th>profile</th><th>family</th><th>opened</th>"
            "<th>closed</th><th>minutes</th><th>peak score</th><th>threshold</th><th>contributors</th><th>score</th></tr>"
        )
        for c in closed:
            contributors = ", ".join(
                f"{_e(v.signal)} ({_e(v.family)}) {v.share:.0%}" for v in worth_showing(c.contributors, 5)
            )
            minutes = (c.closed_ts - c.opened_ts) / 60000
            parts.append(
                f'<tr class="{_e(c.severity)}"><td class="num">{c.id}</td><td>{_e(c.severity)}</td>'
                f"<td><b>{_e(c.device_id)}</b></td><td>{_e(c.profile)}</td><td>{_e(c.family)}</td>"
                f"<td>{_when(c.opened_ts)}</td><td>{_when(c.closed_ts)}</td>"
                f'<td class="num">{minutes:.1f}</td><td class="num">{_num(c.peak_score)}</td>'
                f'<td class="num">{_num(c.threshold)}</td><td>{contributors}</td>'
                f"<td>{sparkline(closed_histories.get(c.id), c.threshold, c.device_id)}</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append('<p class="muted">No incident closed recently.</p>')

    validation = summary.get("validation_alerts", [])
    if validation:
        parts.append(
            "<h2>Validation alerts</h2><table><tr><th>level</th><th>check</th><th>device</th>"
            "<th>signal</th><th>message</th></tr>"
        )
        for v in validation:
            parts.append(
                f'<tr class="{_e(v.get("level"))}"><td>{_e(v.get("level"))}</td><td>{_e(v.get("check"))}</td>'
                f"<td>{_e(v.get('device_id'))}</td><td>{_e(v.get('signal'))}</td><td>{_e(v.get('message'))}</td></tr>"
            )
        parts.append("</table>")
    failed = [s for s in summary.get("sources", []) if s.get("status") == "error"]
    if failed:
        parts.append("<h2>Rejected files</h2><ul>")
        parts.extend(f"<li>{_e(s.get('source'))}: {_e(s.get('error'))}</li>" for s in failed)
        parts.append("</ul>")

    if snapshot is not None and snapshot.devices:
        parts.append("<h2>Devices</h2>")
        for profile in sorted({d.profile for d in snapshot.devices}):
            info = snapshot.profiles.get(profile)
            keys = list(info.key_signals) if info else []
            units = dict(info.units) if info else {}
            parts.append(f"<h3>{_e(profile)}</h3><table><tr><th>device</th><th>site</th><th>state</th>")
            parts.extend(f"<th>{_e(k)}{(' (' + _e(units.get(k)) + ')') if units.get(k) else ''}</th>" for k in keys)
            parts.append("<th>score</th><th>threshold</th><th>status</th><th>injected fault</th></tr>")
            ranked = sorted(
                (d for d in snapshot.devices if d.profile == profile),
                key=lambda d: ({"critical": 0, "warning": 1}.get(d.status, 2), -(d.score or 0.0), d.device_id),
            )
            for d in ranked:
                cells = "".join(f'<td class="num">{_num(d.values.get(k), 2)}</td>' for k in keys)
                parts.append(
                    f'<tr class="{_e(d.status)}"><td>{_e(d.device_id)}</td><td>{_e(d.site)}</td><td>{_e(d.state)}</td>'
                    f'{cells}<td class="num">{_num(d.score)}</td><td class="num">{_num(d.threshold)}</td>'
                    f"<td>{_e(d.status)}</td><td>{_e(d.injected_fault)}</td></tr>"
                )
            parts.append("</table>")
    models = summary.get("models", {})
    parts.append(
        '<p class="muted">models: '
        + (", ".join(f"{_e(p)} v{_e(v)}" for p, v in models.items()) or "none")
        + "</p></body></html>"
    )
    return "\n".join(parts) + "\n"
