"""What a validation tells: its alerts, its mergeable report and its per-chunk result,
and a rich rendering of the report for the command line."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from itap_engine.errors import ItapError
from itap_engine.ingest.validate.values import CHECKS
from itap_engine.safe_text import visible as one_line

if TYPE_CHECKING:
    from rich.console import Group


class ValidationError(ItapError):
    """An input cannot be validated at all (e.g. a required column is absent); one line."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


@dataclass(frozen=True)
class ValidationAlert:
    """A check that failed beyond its tolerance over an input (not a single row)."""

    level: str
    """info, warning or critical."""
    check: str
    device_id: str | None
    signal: str | None
    value: float | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def empty_missing(signals: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame(columns=signals or [], dtype="int64")


@dataclass
class ValidationReport:
    """Counts, examples and alerts of one validation; mergeable across chunks.

    ``checks`` counts rejected rows per check (a row failing two checks counts in
    both, so the sum may exceed ``rejected``). Missing-value counts are kept per
    device and signal so that merged reports give exact rates.
    """

    source: str = ""
    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    checks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHECKS, 0))
    examples: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[ValidationAlert] = field(default_factory=list)
    missing: pd.DataFrame = field(default_factory=empty_missing)
    """Missing readings among accepted rows: index device_id, one column per signal."""
    device_rows: pd.Series = field(default_factory=lambda: pd.Series(dtype="int64"))
    """Accepted rows per device."""
    max_examples: int = 20

    def merge(self, other: ValidationReport) -> ValidationReport:
        """Add ``other`` (a later chunk of the same input) into this report; returns self."""
        self.rows += other.rows
        self.accepted += other.accepted
        self.rejected += other.rejected
        for name, count in other.checks.items():
            self.checks[name] = self.checks.get(name, 0) + count
        room = self.max_examples - len(self.examples)
        if room > 0:
            self.examples.extend(other.examples[:room])
        self.alerts.extend(other.alerts)
        if len(other.missing.columns) or len(other.missing):
            self.missing = self.missing.add(other.missing, fill_value=0).fillna(0).astype("int64")
        if len(other.device_rows):
            self.device_rows = self.device_rows.add(other.device_rows, fill_value=0).astype("int64")
        if not self.source:
            self.source = other.source
        return self

    def copy(self) -> ValidationReport:
        return copy.deepcopy(self)

    @property
    def missing_rate(self) -> dict[str, dict[str, float]]:
        """signal -> device -> share of that device's accepted rows missing the signal."""
        if self.missing.empty:
            return {}
        rows = self.device_rows.reindex(self.missing.index).replace(0, np.nan)
        rates = self.missing.div(rows, axis=0).fillna(0.0)
        return {
            signal: {str(device): round(float(rate), 6) for device, rate in rates[signal].items()}
            for signal in rates.columns
        }

    @property
    def warnings(self) -> list[ValidationAlert]:
        return [a for a in self.alerts if a.level != "info"]

    @property
    def clean(self) -> bool:
        """No row rejected and no warning or critical alert."""
        return self.rejected == 0 and not self.warnings

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows": self.rows,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "checks": dict(self.checks),
            "missing_rate": self.missing_rate,
            "examples": list(self.examples),
            "alerts": [a.to_dict() for a in self.alerts],
        }


@dataclass(frozen=True)
class ValidationResult:
    """The outcome of validating one frame (or one chunk of an input)."""

    accepted: pd.DataFrame
    """device_id, ts (datetime64[ns], naive UTC), state if given, one float column
    per profile signal (NaN = missing), fault and changepoint if given."""
    rejected: pd.DataFrame
    """reason, check (the first failing check), line, device_id, ts (epoch ms), raw (JSON)."""
    report: ValidationReport
    accepted_lines: np.ndarray | None = None
    """Source line of each accepted row, when the input had ``_line``."""


def render_report(report: ValidationReport) -> Group:
    """A rich renderable summarising a report. Data is shown as text, never as markup."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    status = "clean" if report.clean else ("rejections" if report.rejected else "alerts")
    style = "green" if report.clean else "yellow"
    title = Text.assemble(
        ("Validation ", "bold"),
        (report.source or "input", "bold cyan"),
        ": ",
        (f"{report.rows} rows, {report.accepted} accepted, {report.rejected} rejected", ""),
        "  ",
        (status, style),
    )
    parts.append(title)
    counts = {k: v for k, v in report.checks.items() if v}
    if counts:
        table = Table(title="Rejected rows by check", title_justify="left", show_edge=False)
        table.add_column("check")
        table.add_column("rows", justify="right")
        for name, count in sorted(counts.items(), key=lambda kv: -kv[1]):
            table.add_row(Text(name), str(count))
        parts.append(table)
    if report.examples:
        table = Table(title="Examples", title_justify="left", show_edge=False)
        table.add_column("line", justify="right")
        table.add_column("device")
        table.add_column("reason", overflow="fold")
        for example in report.examples:
            line = example.get("line")
            table.add_row(
                "" if line is None else str(line),
                Text(str(example.get("device_id") or "")),
                Text(str(example.get("reason") or "")),
            )
        parts.append(table)
    if report.alerts:
        table = Table(title="Alerts", title_justify="left", show_edge=False)
        table.add_column("level")
        table.add_column("check")
        table.add_column("message", overflow="fold")
        colours = {"info": "dim", "warning": "yellow", "critical": "bold red"}
        for alert in report.alerts:
            table.add_row(Text(alert.level, colours.get(alert.level, "")), Text(alert.check), Text(alert.message))
        parts.append(table)
    return Group(*parts)
