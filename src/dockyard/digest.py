"""SHA-256 without ``hashlib``: importing it loads OpenSSL's bindings (~3 ms of a command
that needs one digest); the interpreter's own module computes the same."""

from __future__ import annotations

try:
    from _sha256 import sha256  # type: ignore[import-not-found]
except ImportError:  # Python 3.12 and later
    from _sha2 import sha256  # type: ignore[import-not-found,no-redef]

__all__ = ["sha256", "sha256_hex"]


def sha256_hex(data: bytes) -> str:
    return sha256(data).hexdigest()
