"""ITAP console: the Textual face of the engine.

It reaches the engine only through :class:`itap_engine.snapshot.EngineFacade`.
"""

import os

MAX_FPS = 120
"""Frames a second the console may paint at most, unless ``TEXTUAL_FPS`` says otherwise.

Textual paints a changed screen at the next beat of a fixed clock of this rate, not
when the change is made: at its default of 60 a key waits 0-16.7 ms (8.3 on average)
for its frame before any drawing starts. At 120 the wait is half. A frame is painted
only when something changed, so a quiet screen costs nothing more; only a continuous
change (holding a key down, a scroll) can paint more often. Over a slow link,
``TEXTUAL_FPS=30 itap`` paints less. Textual reads the variable once, when it is first
imported, which is after this package is (nothing here imports it)."""

os.environ.setdefault("TEXTUAL_FPS", str(MAX_FPS))
