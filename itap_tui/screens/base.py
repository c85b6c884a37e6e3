"""What every live screen shares: the engine status line and snapshot rendering."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.screen import Screen

from itap_engine.snapshot import Snapshot
from itap_tui.format import Palette
from itap_tui.widgets import EngineStatus

if TYPE_CHECKING:
    from itap_tui.app import ItapApp


class LiveScreen(Screen):
    """A screen that renders engine snapshots.

    The app calls :meth:`show_snapshot` for visible screens; a screen coming back into
    view renders the newest snapshot it missed.
    """

    _shown_seq: int | None = None
    """The sequence number of the snapshot on screen; None before the first (a past
    snapshot's is -1, so -1 cannot mean "none yet")."""

    @property
    def itap(self) -> ItapApp:
        return cast("ItapApp", self.app)

    @property
    def palette(self) -> Palette:
        return self.itap.palette

    def show_snapshot(self, snapshot: Snapshot) -> None:
        self._shown_seq = snapshot.seq
        self.query_one(EngineStatus).show(
            snapshot.stats, self.palette, self.itap.shows_paused(snapshot), self.itap.status_note
        )
        self.render_snapshot(snapshot)

    def render_snapshot(self, snapshot: Snapshot) -> None:
        """Subclasses update their widgets here."""

    def refresh_status(self) -> None:
        snapshot = self.itap.snapshot
        self.query_one(EngineStatus).show(
            snapshot.stats if snapshot else None, self.palette, self.itap.shows_paused(snapshot), self.itap.status_note
        )

    def on_screen_resume(self) -> None:
        snapshot = self.itap.snapshot
        if snapshot is not None and snapshot.seq != self._shown_seq:
            self.show_snapshot(snapshot)
