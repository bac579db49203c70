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
    "ContainerNotFound",
    "DockyardError",
    "ImageNotFound",
    "InvalidArgument",
    "NameInUse",
    "NetworkNotFound",
    "NotFound",
    "NotImplementedHere",
    "NotModified",
    "NotRunning",
    "PermissionDenied",
    "Unavailable",
    "VolumeNotFound",
    "exit_code_for_kind",
    "start_error",
]


class DockyardError(Exception):
    """dockyard itself failed: exit 125, HTTP 500."""

    exit_code = 125
    http_status = 500


class NotFound(DockyardError):
    http_status = 404


class ContainerNotFound(NotFound):
    pass


class ImageNotFound(NotFound):
    pass


class NetworkNotFound(NotFound):
    pass


class VolumeNotFound(NotFound):
    pass


class Conflict(DockyardError):
    http_status = 409


class NameInUse(Conflict):
    """A container, network or volume name another object holds."""


class NotRunning(Conflict):
    """An action that needs a running container, on one that is not."""


class NotModified(DockyardError):
    """Nothing to do: already started, already stopped (HTTP 304; the CLI says nothing)."""

    http_status = 304


class InvalidArgument(DockyardError):
    http_status = 400


class PermissionDenied(DockyardError):
    http_status = 403


class Unavailable(DockyardError):
    http_status = 503


class NotImplementedHere(DockyardError):
    """What this engine (or this container's configuration) does not do: HTTP 501, as
    dockerd answers reading the logs of a driver that keeps none."""

    http_status = 501


class CommandNotExecutable(DockyardError):
    """The container's command exists but cannot be invoked (Docker: 126)."""

    exit_code = 126


class CommandNotFound(DockyardError):
    """The container's command does not exist (Docker: 127)."""

    exit_code = 127


# the one mapping of a failed start: the runtime's ``kind`` (from errno or a lookup) -> the
# class, whose ``exit_code`` is Docker's status (127, 126); anything else is 125
_START_ERRORS: dict[str, type[DockyardError]] = {
    "not-found": CommandNotFound,
    "not-executable": CommandNotExecutable,
}


def exit_code_for_kind(kind: str) -> int:
    """Docker's exit status for a container command that could not start."""
    return _START_ERRORS.get(kind, DockyardError).exit_code


def start_error(message: str, exit_code: int) -> DockyardError:
    """The error to raise for a start that failed with ``exit_code`` (127, 126 or other)."""
    cls = next((c for c in _START_ERRORS.values() if c.exit_code == exit_code), DockyardError)
    return cls(message)
