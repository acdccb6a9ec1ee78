"""Terminal layout: result tables that stay readable in a narrow terminal, and unwrapped --help.

Rich shrinks a table that is wider than the terminal by cutting every cell ("0.000±…"), which at
80 columns left nothing readable of a metrics table. :func:`fit_table` keeps every value whole: the
table as it is when it fits, else turned on its side (one line per column), else one small
``key  value`` block per row. Typer's rich help keeps the line breaks of a docstring, so text
wrapped at 100 columns in the source broke mid-sentence at 80; :func:`unwrap_help` joins them.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

# Rich's default box: one character per border plus one space of padding each side of a cell.
_CELL_OVERHEAD = 3


def _natural_width(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> int:
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    return sum(widths) + _CELL_OVERHEAD * len(widths) + 1


def _table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    t = Table(title=title)
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i == 0 else "right", no_wrap=True, overflow="fold")
    for r in rows:
        t.add_row(*r)
    return t


def fit_table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int,
    key: int | None = None,
) -> RenderableType:
    """A table of strings that never cuts a value when printed ``width`` characters wide.

    Args:
        title: the table's title.
        columns: column headers.
        rows: cells, one sequence of ``len(columns)`` strings per row.
        width: the terminal width (``Console.width``).
        key: index of the column that names a row (e.g. ``method``); used as the header of a row when
            the table is turned on its side. ``None``: rows are numbered (a single row has no header).

    Returns:
        The table as given if it fits; else its transpose (one line per column) if that fits; else a
        vertical listing with one ``column  value`` block per row.
    """
    rows = [[str(c) for c in r] for r in rows]
    if any(len(r) != len(columns) for r in rows):
        raise ValueError(f"every row needs {len(columns)} cells")
    if _natural_width(columns, rows) <= width:
        return _table(title, columns, rows)
    names = [r[key] if key is not None else f"#{i + 1}" for i, r in enumerate(rows)]
    fields = [i for i in range(len(columns)) if i != key]
    if len(rows) == 1:
        t_cols = ["", "value"]
    else:
        t_cols = [columns[key] if key is not None else "", *names]
    t_rows = [[columns[i], *(r[i] for r in rows)] for i in fields]
    if _natural_width(t_cols, t_rows) <= width:
        return _table(title, t_cols, t_rows)
    blocks: list[RenderableType] = [Text(title, style="italic")] if title else []
    for name, r in zip(names, rows, strict=True):
        blocks.append(_table(name, ["", "value"], [[columns[i], r[i]] for i in fields]))
    return Group(*blocks)


def _unwrap(text: str) -> str:
    """Join the single line breaks inside each paragraph; lists, indented and ``\\b`` blocks stay."""
    out = []
    for para in inspect.cleandoc(text).split("\n\n"):
        lines = para.split("\n")
        keep = para.startswith("\b") or any(
            ln[:1].isspace() or ln.lstrip()[:2] in ("- ", "* ", "| ") for ln in lines
        )
        out.append(para if keep else " ".join(ln.strip() for ln in lines))
    return "\n\n".join(out)


def unwrap_help(app: object) -> None:
    """Unwrap the help of every command of a Typer ``app`` and of its sub-groups, in place."""
    for info in getattr(app, "registered_commands", []):
        doc = info.help or inspect.getdoc(info.callback)
        if doc:
            info.help = _unwrap(doc)
    for group in getattr(app, "registered_groups", []):
        if group.help:
            group.help = _unwrap(group.help)
        sub = group.typer_instance
        if sub is not None:
            info = sub.info
            if isinstance(info.help, str):
                info.help = _unwrap(info.help)
            unwrap_help(sub)
