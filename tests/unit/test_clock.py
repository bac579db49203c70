"""Timestamps: the fast parse of dockyard's own shape agrees with datetime's, to the
microsecond, and anything else still goes through datetime."""

from __future__ import annotations

import random
from datetime import datetime

from dockyard import clock


def _by_datetime(text: str) -> float:
    head, _, rest = text.removesuffix("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{rest[:6] or '0'}+00:00").timestamp()


def test_written_times_parse_back_as_datetime_reads_them() -> None:
    rng = random.Random(7)
    for _ in range(5000):
        t = rng.uniform(-2e9, 4.1e9)
        text = clock.rfc3339(t)
        assert abs(clock.parse_time(text) - _by_datetime(text)) < 2e-6, text
    for text in ("2024-02-29T23:59:59Z", "2000-03-01T00:00:00.5Z", "1900-03-01T12:00:00Z"):
        assert clock.parse_time(text) == _by_datetime(text)
    assert clock.parse_time("0001-01-01T00:00:00Z") == -62135596800.0  # Go's zero time


def test_other_shapes_and_garbage() -> None:
    assert clock.parse_time("2024-01-01T01:00:00+01:00") == 1704067200.0
    assert clock.parse_time("2024-01-01T00:00:00.25+00:00") == 1704067200.25
    for bad in ("", "yesterday", "2024-13-01T00:00:00Z", "2024-01-01T00:00:0xZ", "x" * 30):
        assert clock.parse_time(bad) == 0.0, bad
