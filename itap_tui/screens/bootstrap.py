"""Shown while the engine starts; on an empty database, while it bootstraps.

It says "first start" only when the engine reports that it is simulating history (an
empty database), with the length the engine uses (``[detection] bootstrap_hours``); a
restart or ``--attach`` says it is starting. The bar runs once over the whole start:
the history is its first :data:`STAGE_SPAN` part, training the rest.
"""

from __future__ import annotations

import re

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Label, ProgressBar, RichLog, Static

from itap_engine.safe_text import visible
from itap_engine.snapshot import Progress

STAGE_SPAN = {"history": (0.0, 0.7), "training": (0.7, 1.0)}
"""Where each stage the engine reports sits on the one bar (others fill it alone)."""

_SIMULATING = re.compile(r"^simulating (\S+ h) ")


def overall(progress: Progress) -> float:
    low, high = STAGE_SPAN.get(progress.stage, (0.0, 1.0))
    return low + (high - low) * max(0.0, min(1.0, progress.fraction))


class BootstrapScreen(Screen):
    """A progress bar, the current stage and a log of stages; never a frozen terminal."""

    BINDINGS = [Binding("q", "app.quit", "Quit")]

    failed: reactive[bool] = reactive(False)
    """Starting failed; toggles ``-failed``."""

    def __init__(self) -> None:
        super().__init__(id="bootstrap")
        self._last_stage = ""
        self.done = False
        """The engine has started; the screen leaves as soon as it is on top again."""

    def finish(self) -> None:
        """The engine is up: leave now, or when a screen opened over this one (help) closes."""
        self.done = True
        self._leave()

    def _leave(self) -> None:
        if self.done and self.app.screen is self and self in self.app.screen_stack:
            self.app.pop_screen()

    def on_screen_resume(self) -> None:
        if self.done:
            self.call_later(self._leave)

    def compose(self) -> ComposeResult:
        with Vertical(id="bootstrap-box") as box:
            box.border_title = "ITAP · starting the engine"
            yield Label("Starting the engine…", id="bootstrap-intro")
            yield ProgressBar(total=1.0, show_eta=False, id="bootstrap-bar")
            yield Static("starting…", id="bootstrap-stage")
            yield RichLog(id="bootstrap-log", markup=False, wrap=True, max_lines=200)
            yield Static(Text("q quits (the engine is stopped cleanly)", style="dim"), id="bootstrap-hint")

    def watch_failed(self, failed: bool) -> None:
        self.set_class(failed, "-failed")

    def progress(self, progress: Progress) -> None:
        bar = self.query_one(ProgressBar)
        bar.update(progress=max(bar.progress, overall(progress)))  # never backwards
        first = _SIMULATING.match(progress.message or "")
        if progress.stage == "history" and first:
            self.query_one("#bootstrap-intro", Label).update(
                f"First start on an empty database: simulating {first.group(1)} of history, then training a model."
            )
        # "training the industrial model" already says its stage: not "training  training ..."
        message = progress.message or ""
        said = message.split(" ", 1)[0] == progress.stage
        line = Text("" if said else progress.stage, style="bold")
        if message:
            line.append(f"{'' if said else '  '}{visible(message)}", style="")
        line.append(f"  {progress.fraction:.0%}", style="dim")
        self.query_one("#bootstrap-stage", Static).update(line)
        if progress.stage != self._last_stage:
            self._last_stage = progress.stage
            text = message if said else f"{progress.stage} {message}"
            self.query_one(RichLog).write(Text(visible(f"· {text}".rstrip())))

    def fail(self, message: str) -> None:
        self.failed = True
        self.query_one("#bootstrap-stage", Static).update(
            Text.assemble(("✖ the engine could not start: ", "bold red"), (visible(message), ""))
        )
        self.query_one(RichLog).write(Text(visible(message)))
