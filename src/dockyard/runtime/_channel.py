"""JSON-line messages between the runtime and the processes it forks.

Two pipes, both close-on-exec, so a successful execve closes the child's end
and the parent reads EOF: that is how "exec worked" is told apart from an
error message (crun's sync socket does the same).
"""

from __future__ import annotations

import os

from dockyard import _json as json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Channel", "ChildError"]


class ChildError(Exception):
    """An error reported by a forked child, with the errno it carried (0 if none)."""

    def __init__(self, message: str, errno: int = 0, kind: str = "") -> None:
        super().__init__(message)
        self.errno = errno
        self.kind = kind


class Channel:
    def __init__(self) -> None:
        self._down_r, self._down_w = os.pipe()  # parent -> child
        self._up_r, self._up_w = os.pipe()  # child -> parent
        self._buf = b""
        self._r = -1
        self._w = -1

    def as_parent(self) -> Channel:
        os.close(self._down_r)
        os.close(self._up_w)
        self._r, self._w = self._up_r, self._down_w
        return self

    def as_child(self) -> Channel:
        os.close(self._down_w)
        os.close(self._up_r)
        self._r, self._w = self._down_r, self._up_w
        return self

    def send(self, msg_type: str, /, **fields: Any) -> None:
        fields["type"] = msg_type
        data = json.dumps(fields).encode() + b"\n"
        while data:
            data = data[os.write(self._w, data) :]

    def recv(self) -> dict[str, Any] | None:
        """The next message, or None at EOF (the other side exited or exec'd)."""
        while b"\n" not in self._buf:
            chunk = os.read(self._r, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def expect(self, kind: str) -> dict[str, Any]:
        """Wait for a message of ``kind``; an error message from the child is raised."""
        msg = self.recv()
        if msg is None:
            raise ChildError(f"container process exited before {kind}")
        if msg["type"] == "error":
            raise ChildError(msg["message"], msg.get("errno", 0), msg.get("kind", ""))
        if msg["type"] != kind:
            raise ChildError(f"unexpected message {msg['type']} while waiting for {kind}")
        return msg

    def close(self) -> None:
        for fd in (self._r, self._w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._r = self._w = -1
