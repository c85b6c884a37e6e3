"""What the console sees: frozen DTOs and the :class:`EngineFacade` protocol
(:mod:`.dto`), and the one snapshot assembler (:mod:`.assemble`)."""

from itap_engine.snapshot.dto import (
    MIN_SHOWN_SHARE,
    AnomalyRow,
    ContributorView,
    DeviceDetail,
    DeviceRow,
    EngineFacade,
    EngineStats,
    FaultCommandView,
    ProfileInfo,
    Progress,
    QuarantineView,
    Snapshot,
    SnapshotPublisher,
    Subscriber,
    ValidationAlertRow,
    contributors_json,
    contributors_of,
    worth_showing,
)

__all__ = [
    "MIN_SHOWN_SHARE",
    "AnomalyRow",
    "ContributorView",
    "DeviceDetail",
    "DeviceRow",
    "EngineFacade",
    "EngineStats",
    "FaultCommandView",
    "ProfileInfo",
    "Progress",
    "QuarantineView",
    "Snapshot",
    "SnapshotPublisher",
    "Subscriber",
    "ValidationAlertRow",
    "contributors_json",
    "contributors_of",
    "worth_showing",
]
