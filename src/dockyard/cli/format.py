"""Docker's ways of printing sizes, ages and tables."""

from __future__ import annotations

import time

from dockyard.clock import parse_time
from dockyard.units import human_duration

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["human_duration", "human_size", "parse_time", "since", "table", "templated"]

_UNITS = ["B", "kB", "MB", "GB", "TB", "PB"]


def human_size(size: float) -> str:
    """Decimal units with 3 significant digits, as docker's units.HumanSizeWithPrecision."""
    i = 0
    while size >= 1000 and i < len(_UNITS) - 1:
        size /= 1000
        i += 1
    return f"{size:.3g}{_UNITS[i]}"


def since(rfc3339: str) -> str:
    created = parse_time(rfc3339)
    if not created:
        return "N/A"
    return human_duration(time.time() - created) + " ago"


def table(rows: list[list[str]]) -> str:
    """Columns as Docker's tabwriter lays them out (minimum width 10, padding 3): every cell
    but a line's last is padded to its column's width."""
    if not rows:
        return ""
    widths: dict[int, int] = {}
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths.get(i, 10), len(cell) + 3)
    lines = [
        "".join(c.ljust(widths[i]) for i, c in enumerate(r[:-1])) + (r[-1] if r else "")
        for r in rows
    ]
    return "".join(line.rstrip() + "\n" for line in lines)


def templated(rows: list[dict[str, Any]], fmt: str, headers: dict[str, Any]) -> str:
    """A listing through Docker's ``--format``: a Go template per row, or with ``table`` the
    same template over ``headers`` as the first line and the cells aligned at its tabs."""
    from dockyard.cli.gotemplate import Template, TemplateError, prepare
    from dockyard.errors import InvalidArgument

    is_table, source = prepare(fmt)
    try:
        template = Template(source)
        lines = [template.execute(row) for row in rows]
        if is_table:
            lines.insert(0, template.execute(headers))
    except TemplateError as err:
        raise InvalidArgument(f"template parsing error: {err}") from None
    if is_table:
        return table([line.split("\t") for line in lines])
    return "".join(line + "\n" for line in lines)
