"""The one exception tree of dockyard.

Exit code and HTTP status are class attributes, so the CLI and the API map an
error by its class, never by its message. Messages are lower-case one-liners
that name the object and the value (``no such container: web1``).
"""

from __future__ import annotations

__all__ = [
    "CommandNotExecutable",
    "CommandNotFound",
    "Conflict",
    "DockyardError",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "Unavailable",
]


class DockyardError(Exception):
    """dockyard itself failed: exit 125, HTTP 500."""

    exit_code = 125
    http_status = 500


class NotFound(DockyardError):
    http_status = 404


class Conflict(DockyardError):
    http_status = 409


class InvalidArgument(DockyardError):
    http_status = 400


class PermissionDenied(DockyardError):
    http_status = 403


class Unavailable(DockyardError):
    http_status = 503


class CommandNotExecutable(DockyardError):
    """The container's command exists but cannot be invoked (Docker: 126)."""

    exit_code = 126


class CommandNotFound(DockyardError):
    """The container's command does not exist (Docker: 127)."""

    exit_code = 127
