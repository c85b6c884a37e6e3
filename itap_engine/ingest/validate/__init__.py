"""Validation of telemetry before anything is stored.

Every input row gets exactly one outcome: *accepted* (it goes to the readings table)
or *rejected* (it goes to quarantine with a reason that names the check and the
field, e.g. ``temp_c=999.0 outside valid range [-40, 200]``). A missing reading
(NaN, empty) is data, not an error: a sensor dropout is a fault the product must see,
so it is stored as NULL and counted, and a high missing-value rate per device and
signal raises a validation *alert* instead.

Why it is built this way:

* **Vectorised.** Checks run over whole columns with pandas/numpy. Device ids and
  states are checked once per distinct value (``pd.factorize``), not once per row.
  Python only touches rejected rows (to write their reason and their raw JSON).
* **Streaming.** A :class:`Validator` validates one input chunk by chunk and keeps
  what the checks need across chunks (last accepted timestamp and accepted keys per
  device, missing-value counts), so validating a file in chunks gives exactly the
  same outcome as validating it whole.
* **Per-row checks before key checks.** Row-local checks (device id, timestamp,
  numbers, ranges, labels) run first; only rows that pass them take part in the key
  checks (duplicate ``(device_id, ts)``, order per device). A rejected row never
  "claims" a key, so a later good row with the same key is stored.

Conventions: naive timestamps are taken as UTC (SKAB's naive local wall-clock times
are stored as given); string timestamps must be ISO 8601 (``2026-01-01 10:00:00``,
``2026-01-01T10:00:00Z``, with an optional offset), or epoch seconds/milliseconds
written as digits. Timestamps are keyed at millisecond precision, like the store.

The package: ``checks`` (one function per row-local check), ``validator`` (the
streaming :class:`Validator` with the key checks), ``report`` (alerts, report,
result, rendering) and ``values`` (how values are read and shown).
"""

from itap_engine.ingest.validate.checks import Findings
from itap_engine.ingest.validate.report import (
    ValidationAlert,
    ValidationError,
    ValidationReport,
    ValidationResult,
    render_report,
)
from itap_engine.ingest.validate.validator import Validator, validate_frame
from itap_engine.ingest.validate.values import CHECKS, LABELS

__all__ = [
    "CHECKS",
    "LABELS",
    "Findings",
    "ValidationAlert",
    "ValidationError",
    "ValidationReport",
    "ValidationResult",
    "Validator",
    "render_report",
    "validate_frame",
]
