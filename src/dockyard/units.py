"""Docker's ways of writing sizes (``64m``) and durations (``1m30s``)."""

from __future__ import annotations

from dockyard.errors import InvalidArgument

__all__ = ["duration_ns", "human_duration", "ram_in_bytes"]

_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def ram_in_bytes(text: str) -> int:
    """Docker's RAMInBytes: 512, 64m, 1.5g (binary units)."""
    t = text.strip().lower()
    if t.endswith(("kb", "mb", "gb", "tb")):
        t = t[:-1]
    unit = _UNITS.get(t[-1:])
    number = t[:-1] if unit else t
    try:
        return int(float(number) * (unit or 1))
    except ValueError:
        raise InvalidArgument(f"invalid size: '{text}'") from None


def duration_ns(text: str) -> int:
    """A Go duration ("1m30s", "500ms", "2h") in nanoseconds."""
    units = {
        "ns": 1,
        "us": 1_000,
        "ms": 1_000_000,
        "s": 1_000_000_000,
        "m": 60_000_000_000,
        "h": 3_600_000_000_000,
    }
    total, number, i = 0.0, "", 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            number += ch
            i += 1
            continue
        unit = text[i : i + 2] if text[i : i + 2] in units else ch
        if unit not in units or not number:
            raise InvalidArgument(f'invalid duration "{text}"')
        total += float(number) * units[unit]
        number, i = "", i + len(unit)
    if number:
        raise InvalidArgument(f'invalid duration "{text}": missing unit')
    return int(total)


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
