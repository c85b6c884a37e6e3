"""Several engines, one fleet: which devices a shard owns.

``itap engine --shard i/N`` (or ``[engine] shard = "i/N"``) runs shard ``i`` of ``N``
(0 <= i < N): it simulates, scores and commands only the devices whose stable hash
(``crc32(device_id) % N``; not Python's ``hash()``, which changes per process) is
``i``. The shard owns its own simulated clock and scored watermarks
(:mod:`itap_engine.store.watermarks` keys suffixed with the shard), holds a database
lock named after it while it runs (:mod:`itap_engine.store.run_lock`), so a second
engine for the same shard waits and takes over when the first one dies, and only
shard 0 imports inbox files.

A shard's first start simulates the history of its own devices only, and it warms
up and scores only its own devices. The model stays one per profile: the shard that
first finds none trains it on the history stored by then, and a retrain (any shard's)
trains on every device's history (``model_version`` has no shard). ``itap --once``
with ``[engine] shard`` runs one cycle of that shard under the shard's lock
(:func:`writer_lock`; exit 3 while an engine runs it).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from itap_engine.errors import ItapError

if TYPE_CHECKING:
    from itap_engine.config import Settings
    from itap_engine.store.run_lock import RunLock


def shard_of(device_id: str, count: int) -> int:
    """The shard (0 .. count-1) that owns a device: crc32 of its id, modulo count."""
    return zlib.crc32(str(device_id).encode()) % count


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/N"`` as a shard; raises :class:`ItapError` with a one-line reason."""
        try:
            index_text, count_text = str(text).split("/")
            shard = cls(int(index_text), int(count_text))
        except ValueError:
            raise ItapError(f"shard {text!r} is not i/N (e.g. 0/2 for the first of two shards)") from None
        if shard.count < 1 or not 0 <= shard.index < shard.count:
            raise ItapError(f"shard {text!r}: need N >= 1 and 0 <= i < N")
        return shard

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def lock_name(self) -> str:
        """The name of the database lock the shard's engine holds."""
        return f"itap.shard.{self.label}"

    def owns(self, device_id: str) -> bool:
        return shard_of(device_id, self.count) == self.index


class ShardLock:
    """A shard's database locks for a run that must not wait (``itap --once`` of a
    shard): taken at once or :class:`~itap_engine.store.run_lock.LockHeld` (exit 3).
    As an engine's (:class:`~itap_engine.store.run_lock.ShardLocks`): no whole-fleet run
    and no engine of another layout meanwhile."""

    def __init__(self, settings: Settings, shard: Shard) -> None:
        from itap_engine.store.run_lock import ShardLocks

        self.shard = shard
        self.url = settings.database_url
        self._locks = ShardLocks(self.url, shard.lock_name, shard.index, shard.count)

    def acquire(self) -> ShardLock:
        from itap_engine.store.db_url import safe_url
        from itap_engine.store.run_lock import LockHeld

        try:
            self._locks.acquire(wait=False)
        except LockHeld as error:
            if not str(error).startswith(f"another process holds {self.shard.lock_name}"):
                raise
            raise LockHeld(
                f"another ITAP run holds shard {self.shard.label} of database {safe_url(self.url)} "
                "(an engine running that shard); try again when it has finished"
            ) from None
        return self

    def release(self) -> None:
        self._locks.close()


def writer_lock(settings: Settings, purpose: str) -> ShardLock | RunLock:
    """The lock a run that writes the timeline takes: its shard's lock when
    ``[engine] shard`` is set (engines of the other shards keep running), else the
    database's run lock."""
    if settings.engine.shard:
        return ShardLock(settings, Shard.parse(settings.engine.shard))
    from itap_engine.store.run_lock import RunLock

    return RunLock(settings, purpose)
