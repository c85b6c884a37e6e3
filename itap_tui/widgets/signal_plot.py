"""A signal (or the anomaly score) over a window, with anomaly and fault markers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from textual_plotext import PlotextPlot

from itap_engine.snapshot import DeviceDetail

TICKS = 5
"""Time labels on the x axis."""


def time_ticks(start_ms: int, end_ms: int, ticks: int = TICKS) -> tuple[list[float], list[str]]:
    """Positions (minutes before ``end_ms``) and clock labels (data time, UTC) for the
    x axis: ``06:10`` in a window under a day, ``01-02 06:10`` beyond."""
    span = max(end_ms - start_ms, 1)
    fmt = "%H:%M" if span < 86_400_000 else "%m-%d %H:%M"
    positions, labels = [], []
    for i in range(ticks):
        ms = start_ms + span * i / (ticks - 1)
        positions.append((ms - end_ms) / 60000.0)
        labels.append(datetime.fromtimestamp(ms / 1000, tz=UTC).strftime(fmt))
    return positions, labels


class SignalPlot(PlotextPlot):
    """Plots one series of a :class:`DeviceDetail` against data time (clock labels).

    ``x`` markers are readings scored above the threshold; ``▼`` markers are readings
    during an (injected or simulated) fault; the score plot draws the threshold; both
    draw the incident's interval (``interval``: first and last anomalous reading) as
    two vertical lines.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)

    def show(
        self,
        detail: DeviceDetail,
        signal: str | None,
        unit: str = "",
        interval: tuple[int, int] | None = None,
        *,
        overlay: str | None = None,
        overlay_unit: str = "",
    ) -> None:
        """Plot ``signal`` (None: the anomaly score) over the detail's window, with the
        threshold, anomaly and fault strips and the incident interval; ``overlay`` is a
        second signal on the right axis."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        if not detail.ts:
            plt.title("no readings in this window")
            self.refresh()
            return
        end = detail.ts[-1]
        x = [(t - end) / 60000.0 for t in detail.ts]
        if signal is None:
            values: Sequence[float | None] = detail.scores
            label = "anomaly score"
        else:
            values = detail.series.get(signal, ())
            label = f"{signal} ({unit})" if unit else signal
        points = [(xi, v) for xi, v in zip(x, values, strict=False) if v is not None]
        if points:
            plt.plot([p[0] for p in points], [p[1] for p in points], marker="braille", label=label)
        if overlay is not None:
            second = [(xi, v) for xi, v in zip(x, detail.series.get(overlay, ()), strict=False) if v is not None]
            if second:
                name = f"{overlay} ({overlay_unit}, right)" if overlay_unit else f"{overlay} (right)"
                plt.plot(
                    [p[0] for p in second],
                    [p[1] for p in second],
                    marker="braille",
                    color="cyan",
                    label=name,
                    yside="right",
                )
        threshold = detail.threshold
        if signal is None and threshold is not None:
            plt.hline(threshold, "red")
        present = [v for v in values if v is not None]
        low, high = (min(present), max(present)) if present else (0.0, 1.0)
        # Markers sit on strips at the top (anomaly) and bottom (fault) of the plot, so
        # they never hide the line itself.
        anomalous = [
            xi
            for xi, s in zip(x, detail.scores, strict=False)
            if s is not None and threshold is not None and s > threshold
        ]
        if anomalous:
            plt.scatter(anomalous, [high] * len(anomalous), marker="x", color="red", label="anomaly")
        faulty = [xi for xi, f in zip(x, detail.fault_labels, strict=False) if f]
        if faulty:
            plt.scatter(faulty, [low] * len(faulty), marker="▼", color="orange", label="fault")
        if interval is not None:
            start, stop = ((t - end) / 60000.0 for t in interval)
            if stop >= x[0] and start <= 0.0:
                for edge in (max(start, x[0]), min(stop, 0.0)):
                    plt.vline(edge, "magenta")
        plt.xlim(x[0], 0.0)  # the same window on every plot, even where scores are missing
        plt.xticks(*time_ticks(detail.ts[0], end))
        plt.xlabel("time (sim, UTC)" + ("  ┃ incident" if interval is not None else ""))
        self.refresh()
