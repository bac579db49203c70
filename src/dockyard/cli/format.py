"""Docker's ways of printing sizes, ages and tables."""

from __future__ import annotations

import time

__all__ = ["human_duration", "human_size", "parse_time", "since", "table"]

_UNITS = ["B", "kB", "MB", "GB", "TB", "PB"]


def human_size(size: float) -> str:
    """Decimal units with 3 significant digits, as docker's units.HumanSizeWithPrecision."""
    i = 0
    while size >= 1000 and i < len(_UNITS) - 1:
        size /= 1000
        i += 1
    return f"{size:.3g}{_UNITS[i]}"


def human_duration(seconds: float) -> str:
    """docker's units.HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def parse_time(rfc3339: str) -> float:
    """Seconds since the epoch of an RFC 3339 time (nanoseconds allowed); 0 if unparsable."""
    if not rfc3339:
        return 0.0
    text = rfc3339.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        frac = "".join(ch for ch in rest if ch.isdigit())
        tz = rest[len(frac) :]
        text = f"{head}.{frac[:6]}{tz}"
    try:
        from datetime import datetime

        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


def since(rfc3339: str) -> str:
    created = parse_time(rfc3339)
    if not created:
        return "N/A"
    return human_duration(time.time() - created) + " ago"


def table(rows: list[list[str]]) -> str:
    """Columns padded as Go's tabwriter does for docker (3 spaces between columns)."""
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"
