"""Frames on a container's attach socket, in the shape of Docker's stdcopy stream.

Each frame is an 8-byte header (stream id, three zero bytes, big-endian
length) and the payload. Streams: 0 stdin (client to monitor), 1 stdout,
2 stderr, 3 the container's exit (JSON payload: ``{"ExitCode": n, ...}``),
4 stdin closed, 5 terminal resize (JSON ``{"h": rows, "w": cols}``), 6 the client has
recorded the exit (sent after an exit frame that says ``"ClientFinish": true``), 7 the
client offers to record the exit (one about to stop the container; the monitor offers it
to the client it was started for first).
"""

from __future__ import annotations

import os
import struct

__all__ = [
    "CLAIM",
    "EXIT",
    "RESIZE",
    "STDERR",
    "STDIN",
    "STDIN_CLOSE",
    "STDOUT",
    "FrameReader",
    "ShortPath",
    "frame",
]

STDIN, STDOUT, STDERR, EXIT, STDIN_CLOSE, RESIZE, FINISHED, CLAIM = 0, 1, 2, 3, 4, 5, 6, 7
_HEADER = struct.Struct(">B3xI")


def frame(stream: int, payload: bytes) -> bytes:
    return _HEADER.pack(stream, len(payload)) + payload


class FrameReader:
    """Reassembles frames from a non-blocking socket's chunks."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out = []
        while len(self._buf) >= _HEADER.size:
            stream, size = _HEADER.unpack_from(self._buf)
            if len(self._buf) < _HEADER.size + size:
                break
            out.append((stream, self._buf[_HEADER.size : _HEADER.size + size]))
            self._buf = self._buf[_HEADER.size + size :]
        return out


def send_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


class ShortPath:
    """A short name for a socket path via /proc/self/fd: AF_UNIX paths are limited to
    108 bytes, and a container's directory under a deep root is longer than that."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.path = f"/proc/self/fd/{self._fd}/{os.path.basename(path)}"

    def __enter__(self) -> str:
        return self.path

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)
