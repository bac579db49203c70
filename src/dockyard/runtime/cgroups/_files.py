"""Small file helpers shared by the cgroup managers."""

from __future__ import annotations

import os
import sys
import time

__all__ = ["read", "read_int", "read_keyed", "rmdir_retry", "warn", "write"]


def write(directory: str, name: str, value: str | int) -> None:
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, str(value).encode())
    except OSError as err:
        raise OSError(err.errno, f"writing {value!s} to {path}: {err.strerror}") from None
    finally:
        os.close(fd)


def read(directory: str, name: str) -> str | None:
    try:
        with open(os.path.join(directory, name)) as f:
            return f.read().strip()
    except OSError:
        return None


def read_int(directory: str, name: str) -> int | None:
    text = read(directory, name)
    if text is None or text == "max":
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


def read_keyed(directory: str, name: str) -> dict[str, int]:
    """Parse ``key value`` lines (memory.stat, cpu.stat, memory.events, oom_control)."""
    out: dict[str, int] = {}
    for line in (read(directory, name) or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


# warnings for resources this host cannot enforce, kept for whoever drives the runtime to
# show (the runtime's CLI prints them as it goes, the engine hands them to its client)
_warnings: list[str] = []
_sink: list[object] = []


def warn(message: str) -> None:
    if _sink:
        _sink[0](message)  # type: ignore[operator]
    else:
        _warnings.append(message)


def take_warnings() -> list[str]:
    """The warnings kept since the last call."""
    out = _warnings[:]
    del _warnings[:]
    return out


def print_warnings_as_they_come(prefix: str) -> None:
    """For a command line: each warning as one stderr line, at once."""
    _sink[:] = [lambda message: sys.stderr.write(f"{prefix}{message}\n")]


def rmdir_retry(path: str, timeout: float = 2.0) -> None:
    """Remove a cgroup directory; the kernel keeps it busy for a moment after the last exit."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
