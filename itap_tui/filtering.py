"""The ``/`` filter language shared by the fleet and anomalies screens.

Whitespace-separated terms, all of which must match (AND):

* ``key:value`` matches one field exactly (``profile:aircraft``, ``sev:critical``,
  ``status:warning``, ``state:RUN``, ``site:north``, ``device:pump-00``; device is a
  substring match);
* a bare word matches if it is part of the device id, or equals the profile, status,
  severity, state, site or family. The words the tables show stand for their status
  (``crit`` for critical, ``warn`` for warning);
* ``name>number`` or ``name<number`` compares the score (``score>0.8``) or, on the
  fleet, a signal's latest value (``temp_c>80``);
* ``!term`` negates a term (``!ok``, ``!profile:aircraft``);
* ``a|b`` (or ``a or b``) matches either alternative (``crit|warn``);
* on the anomalies screen ``ack`` and ``unack`` match acknowledged and
  unacknowledged alerts (``!ack``).

A key the screen does not know, or a signal no profile has, is a
:class:`FilterError` (the bar shows it) rather than a silently empty table.

Case-insensitive. Pure functions, tested without an app.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from itap_engine.snapshot import AnomalyRow, DeviceRow, EventRow

ALIASES = {"sev": "severity", "p": "profile", "d": "device", "dev": "device", "fam": "family"}
SHOWN_WORDS = {"crit": "critical", "warn": "warning"}
"""The words the tables show for a status or severity, as the values they stand for."""

DEVICE_KEYS = ("device", "profile", "status", "severity", "state", "site", "fault")
ANOMALY_KEYS = ("device", "profile", "severity", "status", "family", "ack")
EVENT_KEYS = ("device", "kind", "level")

_COMPARE = re.compile(r"^([a-z0-9_.\-]+)(>=|<=|>|<)(-?[0-9.]+(?:e-?[0-9]+)?)$")
_OPERATOR = re.compile(r"[<>]")


class FilterError(ValueError):
    """A filter that cannot mean anything; ``str()`` says why, in one line."""


@dataclass(frozen=True)
class Term:
    """One condition: ``key`` None for a bare word; ``op`` ``:`` or a comparison."""

    key: str | None
    value: str
    op: str = ":"
    negated: bool = False

    def describe(self) -> str:
        text = self.value if self.key is None else f"{self.key}{self.op}{self.value}"
        return f"!{text}" if self.negated else text


Clause = tuple[Term, ...]
"""Alternatives: a clause matches when any of its terms does."""


@dataclass(frozen=True)
class Filter:
    clauses: tuple[Clause, ...] = ()

    @classmethod
    def parse(cls, text: str, keys: Collection[str] | None = None, numbers: Collection[str] | None = None) -> Filter:
        """Parse ``text``; with ``keys`` (and ``numbers``, the names that compare as
        numbers), raise :class:`FilterError` for anything the screen cannot match."""
        text = re.sub(r"\s+or\s+", "|", f" {text.lower()} ").strip()
        text = re.sub(r"\s*\|\s*", "|", text)
        clauses: list[Clause] = []
        for word in text.split():
            terms = tuple(cls._term(part, keys, numbers) for part in word.split("|") if part and part != "!")
            if terms:
                clauses.append(terms)
        return cls(tuple(clauses))

    @staticmethod
    def _term(word: str, keys: Collection[str] | None, numbers: Collection[str] | None) -> Term:
        negated = word.startswith("!")
        word = word.lstrip("!")
        compare = _COMPARE.match(word)
        if compare:
            name, op, number = compare.groups()
            try:
                limit = float(number)
            except ValueError:
                raise FilterError(f"{word!r}: {number!r} is not a number") from None
            if not math.isfinite(limit):
                raise FilterError(f"{word!r}: {number!r} is not a finite number")
            if numbers is not None and name not in numbers:
                raise FilterError(f"unknown signal {name!r} in {word!r}; compare one of: {', '.join(sorted(numbers))}")
            return Term(name, number, op, negated)
        if keys is not None and _OPERATOR.search(word):  # temp_c>, score>nan, >5: a comparison gone wrong
            raise FilterError(f"{word!r}: compare a name with a number, e.g. temp_c>70 or score<=0.5")
        key, sep, value = word.partition(":")
        if sep and value:
            key = ALIASES.get(key, key)
            if keys is not None and key not in keys:
                raise FilterError(f"unknown key {key!r}; keys here: {', '.join(keys)}")
            return Term(key, value, ":", negated)
        if sep and not value:
            raise FilterError(f"{word!r} needs a value after ':'")
        return Term(None, word, ":", negated)

    def __bool__(self) -> bool:
        return bool(self.clauses)

    def describe(self) -> str:
        return " ".join("|".join(term.describe() for term in clause) for clause in self.clauses)

    # ------------------------------------------------------------------ matching
    @staticmethod
    def _term_matches(term: Term, fields: Mapping[str, str], numbers: Mapping[str, float | None]) -> bool:
        if term.op != ":":
            number = numbers.get(term.key or "")
            if number is None:
                found = False
            else:
                limit = float(term.value)
                found = {">": number > limit, "<": number < limit, ">=": number >= limit, "<=": number <= limit}[
                    term.op
                ]
        else:
            value = term.value
            meant = SHOWN_WORDS.get(value, value)
            if term.key is None:
                found = value in fields.get("device", "") or any(
                    fields.get(name, "") in (value, meant) for name in fields if name != "device"
                )
            elif term.key == "device":
                found = value in fields.get("device", "")
            else:
                found = fields.get(term.key, "") in (value, meant)
        return found != term.negated

    def _match(self, fields: Mapping[str, str], numbers: Mapping[str, float | None]) -> bool:
        return all(any(self._term_matches(t, fields, numbers) for t in clause) for clause in self.clauses)

    def matches_device(self, row: DeviceRow) -> bool:
        if not self.clauses:
            return True
        fields = {
            "device": row.device_id.lower(),
            "profile": row.profile.lower(),
            "status": row.status.lower(),
            "severity": row.status.lower(),
            "state": (row.state or "").lower(),
            "site": (row.site or "").lower(),
            "fault": (row.injected_fault or "").lower(),
        }
        numbers: dict[str, float | None] = {name.lower(): value for name, value in row.values.items()}
        numbers["score"] = row.score
        return self._match(fields, numbers)

    def matches_anomaly(self, row: AnomalyRow) -> bool:
        if not self.clauses:
            return True
        fields = {
            "device": row.device_id.lower(),
            "profile": row.profile.lower(),
            "severity": row.severity.lower(),
            "status": row.status.lower(),
            "family": row.family.lower(),
            "ack": "ack" if row.acknowledged else "unack",
        }
        return self._match(fields, {"score": row.score})


def matches_event(flt: Filter, row: EventRow) -> bool:
    """Events: ``kind:``, ``level:``, ``device:``; a bare word is also found in the text."""
    if not flt.clauses:
        return True
    fields = {
        "device": f"{row.device_id or ''} {row.text}".lower(),
        "kind": row.kind.lower(),
        "level": row.level.lower(),
    }
    return flt._match(fields, {})


def why_empty(flt: Filter, total: int, counts: Mapping[str, int], noun: str = "device") -> str:
    """One line saying why a filter shows nothing: what it asked and what there is."""
    there = ", ".join(f"{n} {word}" for word, n in counts.items() if n) or "none"
    return f"No {noun} matches “{flt.describe()}”: {total} {noun}s ({there}). esc clears the filter."


Predicate = Callable[[object], bool]
