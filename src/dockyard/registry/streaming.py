"""Layers unpacked while they download.

A blob's bytes go to the content store (hashed, verified at the end) and, through
a bounded in-memory pipe, to a thread that unpacks them into a snapshot of their
own at the same time: the layer is written once from memory instead of being
read back from the stored blob after the download, and unpacking overlaps the
network. Only where a layer needs none of its parent's files to be unpacked (the
overlay snapshotter: whiteouts are character devices); the snapshot is put on its
parent and committed in order once the blob's digest and the config's diff IDs
check out. Whatever breaks the stream (a download restarted from the start, a
layer the unpacker refuses), the layer is unpacked from its verified blob after
all, as without streaming, and fails there if it must.
"""

from __future__ import annotations

import queue
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dockyard.image.store import ImageStore

__all__ = ["Pipe", "StreamedLayer"]


class StreamAborted(Exception):
    """The writer gave up on the stream; what was read of it is void."""


class Pipe:
    """One writer thread to one reader thread, at most ``depth`` chunks in between: a
    reader slower than the network slows the download instead of filling memory."""

    def __init__(self, depth: int = 8) -> None:
        self._chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(depth)
        self._head = b""  # the chunk being read, from ``_pos`` on
        self._pos = 0
        self._eof = False
        self.broken = False  # set by the reader when it stops reading: writes are dropped

    # -- writer side
    def write(self, chunk: bytes) -> None:
        self._put(chunk)

    def close(self) -> None:
        self._put(None)

    def fail(self, err: BaseException) -> None:
        self._put(err)

    def _put(self, item: bytes | BaseException | None) -> None:
        while not self.broken:
            try:
                self._chunks.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    # -- reader side: whole chunks handed on as they are, other reads copied once
    def _next(self) -> bool:
        """The next chunk as the head; False at the end of the stream."""
        while not self._eof:
            item = self._chunks.get()
            if item is None:
                self._eof = True
            elif isinstance(item, BaseException):
                raise StreamAborted(str(item))
            elif item:
                self._head, self._pos = item, 0
                return True
        return False

    def read(self, n: int = -1) -> bytes:
        want = n if n is not None and n >= 0 else 1 << 62
        parts = []
        while want:
            if self._pos >= len(self._head) and not self._next():
                break
            left = len(self._head) - self._pos
            if self._pos == 0 and want >= left:
                part = self._head
            else:
                part = self._head[self._pos : self._pos + want]
            self._pos += len(part)
            want -= len(part)
            parts.append(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def peek(self, n: int = 1) -> bytes:
        while len(self._head) - self._pos < n:
            rest = self._head[self._pos :]
            if not self._next():
                self._head, self._pos = rest, 0
                break
            self._head = rest + self._head
        return self._head[self._pos : self._pos + n]


class StreamedLayer:
    """The unpacking end of one blob's download, running in a thread of its own."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store
        self.pipe = Pipe()
        self._staged: tuple[str, str, int] | None = None
        self._thread = threading.Thread(target=self._unpack, daemon=True)
        self._thread.start()

    def _unpack(self) -> None:
        try:
            self._staged = self.store.stage_layer(self.pipe, direct=True)  # type: ignore[arg-type]
        except BaseException:  # the layer is unpacked from its blob instead
            self._staged = None
        finally:
            self.pipe.broken = True

    def result(self) -> tuple[str, str, int] | None:
        """(snapshot key, diff ID, size) once the download ended; None: unpack from the blob."""
        self._thread.join()
        return self._staged

    def discard(self) -> None:
        """The pull failed: stop, and remove what was unpacked."""
        self.pipe.fail(StreamAborted("pull abandoned"))
        self._thread.join()
        if self._staged is not None:
            self.store.snapshots.remove(self._staged[0])
            self._staged = None
