"""Times as Docker writes and reads them: RFC 3339 with nanoseconds, and ``--since``/``--until``.

Only ``time`` at module level: the monitor (``engine.lean``) imports this on every start.
"""

from __future__ import annotations

import time

__all__ = ["now_rfc3339", "parse_time", "rfc3339", "time_bound"]

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def rfc3339(t: float) -> str:
    """``t`` (seconds since the epoch) as Docker's UTC timestamp with nanoseconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def now_rfc3339() -> str:
    return rfc3339(time.time())


def parse_time(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 time (nanoseconds allowed); 0 if unparsable."""
    if not text:
        return 0.0
    iso = text.replace("Z", "+00:00")
    head, dot, rest = iso.partition(".")
    if dot:
        frac = "".join(ch for ch in rest if ch.isdigit())
        tz = rest[len(frac) :]
        iso = f"{head}.{frac[:6]}{tz}"
    try:
        from datetime import datetime

        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return 0.0


def time_bound(text: str | None) -> float | None:
    """A ``--since``/``--until`` value: RFC 3339, Unix seconds, or a duration back from now
    (``10m``); None when not given."""
    if not text:
        return None
    if text[-1] in _UNIT_SECONDS and text[:-1].isdigit():
        return time.time() - int(text[:-1]) * _UNIT_SECONDS[text[-1]]
    value = parse_time(text)
    if value:
        return value
    try:
        return float(text)
    except ValueError:
        from dockyard.errors import InvalidArgument

        raise InvalidArgument(f"invalid time: {text}") from None
