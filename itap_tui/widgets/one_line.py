"""A one-line table cell drawn without Rich's generic layout.

DataTable draws each cell through ``console.render_lines(Styled(Padding(cell)))``:
measuring, wrapping, justifying and splitting lines, about 0.15 ms a cell. A cell of
a one-line row is a single line of :class:`~rich.text.Text`, so it can be rendered,
cut or padded to its column and styled directly, segment for segment the same (the
tests compare both). A cell only Rich's layout can draw (a new line, a tab, a
centred, full or ellipsis text) is left to it.
"""

from __future__ import annotations

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

_BLANK = Style.null()


def one_line(cell: Text, width: int, pad: int, console: Console) -> list[Segment] | None:
    """The segments of ``cell`` in a column ``width`` cells wide (``pad`` blanks each
    side included), before the row, cursor and place styles; None when only Rich's
    layout can say."""
    plain = cell.plain
    justify = cell.justify
    if (
        "\n" in plain
        or "\t" in plain
        or cell.overflow == "ellipsis"
        or justify not in (None, "default", "left", "right")
        or (justify == "right" and plain != plain.rstrip())
    ):
        return None
    inner = max(0, width - 2 * pad)
    own = console.get_style(cell.style, default=_BLANK)
    if not plain:  # Rich draws nothing of an empty text, not even its own padding
        text = []
    elif cell.spans:
        text = list(cell.render(console, end=""))
    else:  # Text.render leaves the text's own style to its caller then
        text = [Segment(plain, own)]
    short = inner - cell.cell_len if plain else 0
    if short > 0 and justify == "right":  # Rich pads the text itself: the blank takes its style
        text.insert(0, Segment(" " * short, own))
    elif short > 0 and justify == "left":
        text.append(Segment(" " * short, own))
    blank = Segment(" " * pad, _BLANK)
    return [blank, *(piece for piece in Segment.adjust_line_length(text, inner, style=_BLANK) if piece.text), blank]
