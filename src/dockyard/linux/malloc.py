"""glibc's allocator, tuned where dockyard moves bulk data."""

from __future__ import annotations

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_tuned = False


def keep_freed_memory() -> None:
    """Blocks of a megabyte allocated and freed by the thousand (a pull's chunks, a push's
    compressed blocks) come from the heap again instead of being mapped afresh, each page
    faulted in and zeroed: a fifth of a push's time here. What is freed stays with the
    process until it ends (a command) or trims (the API service does when idle)."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 64 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 256 << 20)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass
