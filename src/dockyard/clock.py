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


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _parse_utc(text: str) -> float | None:
    """``YYYY-MM-DDTHH:MM:SS[.fraction]Z``, the shape dockyard writes, without datetime (a
    listing parses one per entry); None for any other shape."""
    if len(text) < 20 or text[-1] != "Z" or text[4] != "-" or text[7] != "-" or text[10] != "T":
        return None
    if text[13] != ":" or text[16] != ":" or (len(text) > 20 and text[19] != "."):
        return None
    digits = text[0:4] + text[5:7] + text[8:10] + text[11:13] + text[14:16] + text[17:19]
    if not digits.isdigit() or (len(text) > 21 and not text[20:-1].isdigit()):
        return None
    y, mo, d = int(digits[0:4]), int(digits[4:6]), int(digits[6:8])
    h, mi, s = int(digits[8:10]), int(digits[10:12]), int(digits[12:14])
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
        return None
    frac = float("0." + text[20:-1]) if len(text) > 21 else 0.0
    return _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s + frac


def parse_time(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 time (nanoseconds allowed); 0 if unparsable."""
    if not text:
        return 0.0
    fast = _parse_utc(text)
    if fast is not None:
        return fast
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
