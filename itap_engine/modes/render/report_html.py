"""The HTML page ``itap --once --report FILE.html`` writes.

One self-contained file (inline CSS, no script, no external resource) that a cron job
can publish or mail: the run's status and figures, open alerts highlighted with their
contributing signals, validation alerts, and one row per device (state, key signals,
score against the threshold, status). Everything that came from data (device ids,
messages, signal names, file names) goes through :func:`html.escape`, after
:func:`itap_engine.safe_text.visible` has shown its control characters as escapes.
"""

from __future__ import annotations

from typing import Any

from itap_engine.safe_text import html_text
from itap_engine.snapshot import Snapshot, worth_showing

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
"""


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


def render_report(summary: dict[str, Any], snapshot: Snapshot | None = None) -> str:
    """The page for one ``--once`` summary (see :mod:`itap_engine.modes.once`) and its snapshot."""
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
            "<th>last</th><th>peak score</th><th>threshold</th><th>contributors</th><th>ack</th></tr>"
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
                f"<td>{contributors}</td><td>{'yes' if a.get('acknowledged') else ''}</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append('<p class="muted">No open alert.</p>')

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
