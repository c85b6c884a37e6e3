"""A progress bar for long batch work (tasks done / total), on stderr.

Commands that run tasks (``generate``, ``train``, ``score``, ``evaluate``)
wrap them in :func:`task_progress`; the callback it yields has the
:data:`~itap_engine.compute.cluster.TaskProgress` shape. On a terminal it draws a rich
progress bar; otherwise (stdout or stderr is not a terminal: a pipe, a file,
cron) it stays silent, so scripted output and ``--json`` are unchanged.

The console's bootstrap screen gets the same partition counts through the engine's
bootstrap progress events (``EngineCore.bootstrap``), not through this bar.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from itap_engine.modes.render.output import console


def shows_progress() -> bool:
    """Draw a bar only when both stdout and stderr are terminals."""
    return sys.stdout.isatty() and sys.stderr.isatty()


@contextlib.contextmanager
def task_progress(description: str, *, enabled: bool | None = None) -> Iterator[Callable[[int, int], None]]:
    """Yield ``update(done, total)``; draws a bar while the block runs (terminal only)."""
    show = shows_progress() if enabled is None else enabled
    if not show:
        yield lambda _done, _total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("tasks"),
        TimeElapsedColumn(),
        console=console(stderr=True),
        transient=True,
    )
    task = bar.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield update
