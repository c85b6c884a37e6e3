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
from textual.widgets import DataTable

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


class OneLineCells(DataTable):
    """A DataTable whose tables draw their one-line cells with :func:`one_line`."""

    def _cell_component_styles(self, fixed: bool, hover: bool, cursor: bool) -> tuple[Style, Style | None]:
        """DataTable's component and post styles for a body cell (not a header)."""
        return self._get_styles_to_render_cell(
            False,
            False,
            fixed,
            hover,
            cursor,
            self.show_cursor,
            self._show_hover_cursor,
            self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css",
        )

    def _one_line_source(self, row_index: int, column_index: int) -> tuple[Text, object] | None:
        """The body cell at (``row_index``, ``column_index``) if it is one line of
        ``Text``, and what its drawing depends on besides its place and styles (a
        version of the row's content); None for DataTable's own way."""
        raise NotImplementedError

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> list[list[Segment]]:
        """DataTable's cell: a one-line body cell drawn by :func:`one_line` and styled as
        DataTable's ``Styled(Padding(cell))`` over the row's style, with the cell's place
        as meta (the tests compare both); the header, and what only Rich can lay out,
        DataTable's way."""
        found = self._one_line_source(row_index, column_index) if row_index >= 0 and column_index >= 0 else None
        if found is None:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        cell, content = found
        cache_key = (
            "one-line",
            row_index,
            column_index,
            content,
            width,
            base_style,
            cursor,
            hover,
            self._show_hover_cursor,
            self.show_cursor,
            self._pseudo_class_state,
        )
        lines: list[list[Segment]] | None = self._cell_render_cache.get(cache_key)  # type: ignore[arg-type]
        if lines is not None:
            return lines
        line = one_line(cell, width, self.cell_padding, self.app.console)
        if line is None:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        fixed = row_index < self.fixed_rows or column_index < self.fixed_columns
        component_style, post_style = self._cell_component_styles(fixed, hover, cursor)
        pre_style = base_style + Style.from_meta({"row": row_index, "column": column_index}) + component_style
        lines = [list(Segment.apply_style(line, style=pre_style, post_style=post_style))]
        self._cell_render_cache[cache_key] = lines  # type: ignore[index]
        return lines
