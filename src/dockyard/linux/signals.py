"""Signal numbers and handlers without the ``signal`` module.

``import signal`` builds enums at start-up (about 4 ms per container start);
the ``_signal`` C module underneath has the same functions and constants.
"""

from __future__ import annotations

import _signal

__all__ = ["NAMES", "SIGKILL", "SIGTERM", "SIG_DFL", "number", "set_handler"]

SIG_DFL = _signal.SIG_DFL
SIGKILL = _signal.SIGKILL
SIGTERM = _signal.SIGTERM
NAMES = {
    name: getattr(_signal, name)
    for name in dir(_signal)
    if name.startswith("SIG") and not name.startswith(("SIG_", "SIGRTM")) and name.isupper()
}
set_handler = _signal.signal
pthread_sigmask = _signal.pthread_sigmask
SIG_SETMASK = _signal.SIG_SETMASK


def number(value: str) -> int:
    """``9``, ``KILL`` or ``SIGKILL`` (any case) to 9; ValueError for anything else."""
    text = value.upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return NAMES[text]
    except KeyError:
        raise ValueError(f"unknown signal: {value}") from None
