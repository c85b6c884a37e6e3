"""The ``/`` filter language shared by the fleet and anomalies screens.

Whitespace-separated terms, all of which must match:

* ``key:value`` matches one field exactly (``profile:aircraft``, ``sev:critical``,
  ``status:warning``, ``state:RUN``, ``site:north``, ``device:pump-00``; device is a
  substring match);
* a bare word matches if it is part of the device id, or equals the profile, status,
  severity, state, site or family. The words the tables show stand for their status
  (``crit`` for critical, ``warn`` for warning).

Case-insensitive. Pure functions, tested without an app.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from itap_engine.snapshot import AnomalyRow, DeviceRow

ALIASES = {"sev": "severity", "p": "profile", "d": "device", "dev": "device", "fam": "family"}
SHOWN_WORDS = {"crit": "critical", "warn": "warning"}
"""The words the tables show for a status or severity, as the values they stand for."""


@dataclass(frozen=True)
class Filter:
    terms: tuple[tuple[str | None, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Filter:
        terms: list[tuple[str | None, str]] = []
        for word in text.lower().split():
            key, sep, value = word.partition(":")
            if sep and value:
                terms.append((ALIASES.get(key, key), value))
            elif word:
                terms.append((None, word))
        return cls(tuple(terms))

    def __bool__(self) -> bool:
        return bool(self.terms)

    def describe(self) -> str:
        return " ".join(f"{k}:{v}" if k else v for k, v in self.terms)

    def _match(self, fields: dict[str, str]) -> bool:
        for key, value in self.terms:
            meant = SHOWN_WORDS.get(value, value)
            if key is None:
                if value in fields.get("device", "") or any(
                    fields.get(name, "") in (value, meant) for name in fields if name != "device"
                ):
                    continue
                return False
            if key == "device":
                if value not in fields.get("device", ""):
                    return False
            elif fields.get(key, "") not in (value, meant):
                return False
        return True

    def matches_device(self, row: DeviceRow) -> bool:
        if not self.terms:
            return True
        return self._match(
            {
                "device": row.device_id.lower(),
                "profile": row.profile.lower(),
                "status": row.status.lower(),
                "severity": row.status.lower(),
                "state": (row.state or "").lower(),
                "site": (row.site or "").lower(),
                "fault": (row.injected_fault or "").lower(),
            }
        )

    def matches_anomaly(self, row: AnomalyRow) -> bool:
        if not self.terms:
            return True
        return self._match(
            {
                "device": row.device_id.lower(),
                "profile": row.profile.lower(),
                "severity": row.severity.lower(),
                "status": row.status.lower(),
                "family": row.family.lower(),
            }
        )


Predicate = Callable[[object], bool]
