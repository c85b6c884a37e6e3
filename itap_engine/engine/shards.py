"""Several engines, one fleet: which devices a shard owns.

``itap engine --shard i/N`` (or ``[engine] shard = "i/N"``) runs shard ``i`` of ``N``
(0 <= i < N): it simulates, scores and commands only the devices whose stable hash
(``crc32(device_id) % N``; not Python's ``hash()``, which changes per process) is
``i``. The shard owns its own simulated clock and scored watermarks
(:mod:`itap_engine.store.watermarks` keys suffixed with the shard), holds a database
lock named after it while it runs (:mod:`itap_engine.store.run_lock`), so a second
engine for the same shard waits and takes over when the first one dies, and only
shard 0 imports inbox files.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from itap_engine.errors import ItapError


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
