"""Tables for the terminal: Rich's for a screenful, plain aligned text for long ones.

Rich lays a table out by measuring every cell against every other (about 0.7 ms a row:
0.7 s for the 930 rows of a 31-host plan); :func:`plain_lines` pads each cell to widths
known up front, one string join a row, so its cost is linear and small and it can stream
rows it is never given all at once. :func:`print_table` picks: Rich up to
:data:`RICH_ROWS` rows, plain text above. Columns marked optional are dropped, last
first, while a plain line would not fit the console's width; the others are never cut.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Rich loads when a table is printed (`--json` never needs it)
    from rich.console import Console
    from rich.text import Text

    #: A cell: plain text, or a Rich ``Text`` (its style shows in Rich's tables only).
    Cell = str | Text

#: Above this many rows a table is printed as plain aligned text.
RICH_ROWS = 100
#: Below this many columns tables are drawn without vertical rules.
NARROW = 100


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    right: bool = False
    #: May be left out when the console is too narrow for every column.
    optional: bool = False
    #: Rich's style for the cells of this column (plain text has none).
    style: str | None = None
    #: Never wrapped or cut by Rich: the column takes the width of its longest cell.
    no_wrap: bool = False


def widths_of(columns: Sequence[Column], rows: Iterable[Sequence[Cell]]) -> list[int]:
    widths = [len(c.header) for c in columns]
    for row in rows:
        for i, cell in enumerate(row):
            if len(cell) > widths[i]:
                widths[i] = len(cell)
    return widths


def fitting(columns: Sequence[Column], widths: Sequence[int], width: int) -> list[int]:
    """Indexes of the columns to show: all, or without optional ones (last first) while a
    line (two spaces between columns) is wider than ``width``."""
    keep = list(range(len(columns)))
    optional = [i for i in reversed(keep) if columns[i].optional]
    while optional and sum(widths[i] for i in keep) + 2 * (len(keep) - 1) > width:
        keep.remove(optional.pop(0))
    return keep


def plain_lines(columns: Sequence[Column], widths: Sequence[int],
                rows: Iterable[Sequence[Cell]], width: int | None = None,
                first_only: int | None = None) -> Iterator[str]:
    """The header, a rule, then one line per row, columns padded to ``widths``; with
    ``first_only`` set, a cell of that column equal to the one above is left blank (the
    host named once for its block of routes)."""
    keep = fitting(columns, widths, width) if width else list(range(len(columns)))

    def line(row: Sequence[Cell]) -> str:
        cells = [c if isinstance(c, str) else c.plain for c in row]
        return "  ".join(cells[i].rjust(widths[i]) if columns[i].right
                         else cells[i].ljust(widths[i]) for i in keep).rstrip() + "\n"

    yield line([c.header for c in columns])
    yield "  ".join("-" * widths[i] for i in keep) + "\n"
    previous: Cell | None = None
    for row in rows:
        if first_only is not None:
            value = row[first_only]
            if value == previous:
                row = [*row]
                row[first_only] = ""
            previous = value
        yield line(row)


def print_table(out: Console, title: str, columns: Sequence[Column],
                rows: Sequence[Sequence[Cell]], *, sections: bool = False,
                first_only: int | None = None) -> None:
    """A table with a title: Rich's up to :data:`RICH_ROWS` rows, plain text above.

    ``str`` cells are plain text (never markup). With ``sections``, Rich draws a rule between
    blocks of rows whose ``first_only`` column differs."""
    if len(rows) > RICH_ROWS:
        out.file.write(title + "\n")
        out.file.writelines(plain_lines(columns, widths_of(columns, rows), rows, out.width,
                                        first_only))
        out.file.flush()
        return
    from rich import box
    from rich.table import Table
    from rich.text import Text

    widths = widths_of(columns, rows)
    # under 100 columns: no vertical rules, so the cells keep the room
    narrow = out.width < NARROW
    keep = fitting(columns, widths, out.width - (2 if narrow else 3) * len(columns))
    table = (Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                   show_edge=False)
             if narrow else Table(title=title))
    for i in keep:
        c = columns[i]
        table.add_column(c.header, justify="right" if c.right else "left", style=c.style,
                         no_wrap=c.no_wrap, min_width=min(widths[i], 24) if c.no_wrap else None)
    previous: Cell | None = None
    for row in rows:
        key = row[first_only] if first_only is not None else None
        if sections and previous is not None and key != previous:
            table.add_section()
        cells: list[Cell] = [Text(c) if isinstance(c, str) else c
                             for c in (row[i] for i in keep)]
        if first_only is not None and key == previous and first_only in keep:
            cells[keep.index(first_only)] = ""
        table.add_row(*cells)
        previous = key
    out.print(table)
