"""An attach session: a client's hold on a container's streams, the same for every face.

The monitor speaks frames (``engine.stream``) on the container's attach socket. A session
reads them for its client: output chunks come back as ``(STDOUT|STDERR, bytes)``; the
exit frame ends the session with the exit code, and where the monitor asks the client to
finish (``ClientFinish``: the monitor of a ``run`` without ``-d`` leaves the end to the
attached client, so that ``--rm`` is done before the client exits) the session records
the exit, answers, and removes an ``AutoRemove`` container. The CLI draws the chunks on a
terminal, the builder prints them as progress lines, the API server writes them to a
hijacked connection; none of them speaks the monitor's protocol.
"""

from __future__ import annotations

import os

from dockyard import _json as json
from dockyard.engine import stream
from dockyard.errors import InvalidArgument, start_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from dockyard.engine.containers import Engine

__all__ = ["AttachSession", "DetachKeys", "parse_detach_keys"]


def parse_detach_keys(spec: str) -> bytes:
    """Docker's detach keys: ``ctrl-p,ctrl-q`` -> ``b"\\x10\\x11"``; ``""`` -> none."""
    out = bytearray()
    for key in filter(None, (k.strip() for k in spec.split(","))):
        if key.startswith("ctrl-") and len(key) == 6:
            out.append((ord(key[5].lower()) - ord("a") + 1) & 0x1F)
        elif len(key) == 1:
            out += key.encode()
        else:
            raise InvalidArgument(f"invalid detach keys ({spec}) provided")
    return bytes(out)


class DetachKeys:
    """Scans a client's input for the detach sequence, holding back a possible start of it."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self._pending = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(input to pass on now, whether the client detached)."""
        if not self.keys:
            return data, False
        pending = self._pending + data
        if self.keys in pending:
            self._pending = b""
            return pending.split(self.keys, 1)[0], True
        keep = next((n for n in range(len(self.keys) - 1, 0, -1)
                     if pending.endswith(self.keys[:n])), 0)  # fmt: skip
        self._pending = pending[len(pending) - keep :]
        return pending[: len(pending) - keep], False


class AttachSession:
    """One client on one container's attach socket: ``sock`` is the one a monitor started for
    this client handed over (``engine.start(cid, attach=True).attach``); without it the
    session connects to the running container's socket."""

    def __init__(self, engine: Engine, cid: str, sock: Any = None) -> None:
        if sock is None:
            import _socket

            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            try:
                with stream.ShortPath(os.path.join(engine.cdir(cid), "attach.sock")) as short:
                    sock.connect(short)
            except OSError:
                sock.close()
                raise
        self.engine, self.cid, self.sock = engine, cid, sock
        self.exit_code: int | None = None
        self._reader = stream.FrameReader()

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def done(self) -> bool:
        return self.exit_code is not None

    def send(self, data: bytes) -> None:
        if data:
            self.sock.sendall(stream.frame(stream.STDIN, data))

    def claim_finish(self) -> None:
        """Offer to record the exit (a client about to stop the container): the monitor
        then leaves the end to this session, unless the client it was started for is still
        attached, instead of starting an interpreter to finish it."""
        self.sock.sendall(stream.frame(stream.CLAIM, b""))

    def wait(self, timeout: float) -> bool:
        """Read (output dropped) until the exit or ``timeout`` seconds; whether it exited."""
        import select
        import time

        deadline = time.monotonic() + timeout
        while not self.done:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                ready, _, _ = select.select([self.sock], [], [], left)
            except InterruptedError:
                continue
            if ready:
                self.read()
        return True

    def close_stdin(self) -> None:
        self.sock.sendall(stream.frame(stream.STDIN_CLOSE, b""))

    def resize(self, height: int, width: int) -> None:
        self.sock.sendall(
            stream.frame(stream.RESIZE, json.dumps({"h": height, "w": width}).encode())
        )

    def read(self) -> list[tuple[int, bytes]]:
        """One read of the socket: the output chunks it held. After the exit (or the socket's
        end), ``done`` is true and ``exit_code`` set; a start error is raised as its class."""
        data = self.sock.recv(65536)
        if not data:
            self.exit_code = self.engine.wait(self.cid)
            return []
        out = []
        for kind, payload in self._reader.feed(data):
            if kind in (stream.STDOUT, stream.STDERR):
                out.append((kind, payload))
            elif kind == stream.EXIT:
                self._exited(json.loads(payload))
                break
        return out

    def _exited(self, info: dict[str, Any]) -> None:
        if info.get("Error"):
            raise start_error(info["Error"], info.get("ExitCode", 125))
        code = int(info.get("ExitCode", 0))
        if info.get("ClientFinish"):
            from dockyard.engine.monitor import finish_by_client

            finish_by_client(self.engine, self.cid, code)
            self.sock.sendall(stream.frame(stream.FINISHED, b""))
            try:
                os.unlink(os.path.join(self.engine.cdir(self.cid), "attach.sock"))
            except FileNotFoundError:
                pass
            if self.engine.record(self.cid)["host_config"].get("AutoRemove"):
                self.engine.remove(self.cid, force=True)
        self.exit_code = code

    def pump(self, on_output: Callable[[int, bytes], None]) -> int:
        """Read to the end, handing each chunk to ``on_output``; the exit code."""
        import select

        while not self.done:
            try:
                select.select([self.sock], [], [])
            except InterruptedError:
                continue
            for kind, payload in self.read():
                on_output(kind, payload)
        assert self.exit_code is not None
        return self.exit_code

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> AttachSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
