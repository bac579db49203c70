"""Blobs by sha256 digest: ingest, verify, rename; garbage collection.

Layout under the store's root (the OCI image layout's ``blobs/`` plus a
scratch area)::

    blobs/sha256/<hex>      committed, immutable, verified content
    ingest/<random>         in-flight writes; never visible as blobs

A write goes to ``ingest/``, is hashed while written, fsynced, checked against
the expected digest and size, and renamed into ``blobs/``. A crash at any
point leaves at most a file in ``ingest/`` (removed by ``clean_ingest``); two
writers of the same blob both succeed and one copy is kept (containerd's
local content store works the same way).
"""

from __future__ import annotations

import os
from collections import namedtuple

from dockyard.errors import InvalidArgument, NotFound
from dockyard.fsutil import DirectWriter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import BinaryIO

__all__ = ["BlobLocks", "ContentStore", "Descriptor", "DigestMismatch", "Writer", "check_digest"]

_HEX = frozenset("0123456789abcdef")
_CHUNK = 1 << 20


class DigestMismatch(InvalidArgument):
    """Content does not hash to, or is not the size of, what it claims to be."""


def check_digest(digest: str) -> str:
    """Return ``digest`` if it is a well-formed sha256 digest, else raise InvalidArgument."""
    if not (isinstance(digest, str) and len(digest) == 71 and digest.startswith("sha256:")
            and _HEX.issuperset(digest[7:])):  # fmt: skip
        raise InvalidArgument(f"invalid digest: {digest!r}")
    return digest


class Descriptor(namedtuple("Descriptor", "digest size")):
    """What identifies a blob: its digest and size (an OCI descriptor without media type)."""

    __slots__ = ()


class Writer:
    """Streams one blob into the store; use through ``ContentStore.writer()``."""

    def __init__(self, store: ContentStore, expected: str | None, size: int | None,
                 direct: bool = False) -> None:  # fmt: skip
        self._store = store
        self._expected = check_digest(expected) if expected else None
        self._size = size
        import hashlib

        self._hash = hashlib.sha256()
        self._written = 0
        self.existed = False  # set by commit(): the blob was in the store already
        self._path = os.path.join(store.root, "ingest", os.urandom(16).hex())
        self._file: BinaryIO | DirectWriter | None = None
        if direct:
            # the blob is unpacked from memory as it arrives (a pull): written through the
            # page cache it would cost a copy into fresh pages, then their write-back at the
            # fsync; written directly, the disk write alone
            try:
                fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o644)
            except OSError:
                pass  # a filesystem without O_DIRECT (tmpfs): through the page cache
            else:
                self._file = DirectWriter(fd)
        if self._file is None:
            self._file = open(self._path, "xb")  # noqa: SIM115 - closed in commit/abort

    @property
    def written(self) -> int:
        return self._written

    def write(self, data: bytes) -> None:
        assert self._file is not None, "writer already closed"
        self._file.write(data)
        self._hash.update(data)
        self._written += len(data)
        if self._size is not None and self._written > self._size:
            raise DigestMismatch(f"blob larger than its expected size {self._size}")

    def commit(self) -> Descriptor:
        """Verify and make the blob visible; the temp file is gone afterwards either way."""
        assert self._file is not None, "writer already closed"
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            digest = "sha256:" + self._hash.hexdigest()
            if self._size is not None and self._written != self._size:
                raise DigestMismatch(
                    f"size mismatch for {self._expected or digest}: "
                    f"expected {self._size} bytes, got {self._written}"
                )
            if self._expected is not None and digest != self._expected:
                raise DigestMismatch(f"digest mismatch: expected {self._expected}, got {digest}")
            target = self._store.path(digest)
            self.existed = os.path.exists(target)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            # rename() replaces atomically: a concurrent writer of the same
            # content leaves one identical file either way.
            os.rename(self._path, target)
            _fsync_dir(os.path.dirname(target))
            return Descriptor(digest, self._written)
        finally:
            self.abort()

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        try:
            os.unlink(self._path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ContentStore:
    """Content-addressed blobs under ``root``.

    Thread- and process-safe for writers: every write has its own temp file and
    the final rename is atomic. Deleting a blob while another process reads it
    is safe on Linux (the reader keeps its open file).
    """

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)
        os.makedirs(os.path.join(root, "ingest"), exist_ok=True)

    def path(self, digest: str) -> str:
        check_digest(digest)
        return os.path.join(self.root, "blobs", "sha256", digest[7:])

    def exists(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def size(self, digest: str) -> int:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            raise NotFound(f"no such blob: {digest}") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"no such blob: {digest}") from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def writer(
        self, expected: str | None = None, size: int | None = None, direct: bool = False
    ) -> Writer:
        """A new blob; ``direct``: written past the page cache (``O_DIRECT``)."""
        return Writer(self, expected, size, direct)

    def ingest(self, source: bytes | BinaryIO | Iterable[bytes], expected: str | None = None,
               size: int | None = None) -> Descriptor:  # fmt: skip
        """Store ``source`` (bytes, a binary file or chunks); verify it if ``expected``.

        A blob already present with the expected digest is not read again.
        Raises DigestMismatch, leaving nothing behind, when the content is not
        what ``expected``/``size`` say.
        """
        if expected and self.exists(expected) and (size is None or self.size(expected) == size):
            return Descriptor(expected, self.size(expected))
        with self.writer(expected, size) as w:
            for chunk in _chunks(source):
                w.write(chunk)
            return w.commit()

    def verify(self, digest: str) -> bool:
        """Re-hash a stored blob: True if it still matches its name."""
        import hashlib

        h = hashlib.sha256()
        with self.open(digest) as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        return "sha256:" + h.hexdigest() == digest

    def delete(self, digest: str) -> bool:
        try:
            os.unlink(self.path(digest))
            return True
        except FileNotFoundError:
            return False

    def digests(self) -> Iterator[str]:
        base = os.path.join(self.root, "blobs", "sha256")
        for name in os.listdir(base):
            if len(name) == 64:
                yield "sha256:" + name

    def gc(self, referenced: Iterable[str]) -> list[Descriptor]:
        """Delete every blob not in ``referenced``; return what was removed."""
        keep = set(referenced)
        removed = []
        for digest in list(self.digests()):
            if digest not in keep:
                size = self.size(digest)
                if self.delete(digest):
                    removed.append(Descriptor(digest, size))
        return removed

    def clean_ingest(self) -> int:
        """Remove temp files left by writers that died; call when no writer runs."""
        base = os.path.join(self.root, "ingest")
        names = os.listdir(base)
        for name in names:
            try:
                os.unlink(os.path.join(base, name))
            except FileNotFoundError:
                pass
        return len(names)


def _chunks(source: bytes | BinaryIO | Iterable[bytes]) -> Iterator[bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        yield bytes(source)
        return
    read = getattr(source, "read", None)
    if read is not None:
        while chunk := read(_CHUNK):
            yield chunk
        return
    yield from source  # type: ignore[misc]


class BlobLocks:
    """flock()s on the blobs a pull or import needs, so that a failing one deletes only what
    no concurrent one also needs. 256 lock files, by the digest's first byte: two blobs
    sharing one only make a cleanup keep a blob that ``system check --repair`` removes."""

    def __init__(self, content_root: str) -> None:
        self.dir = os.path.join(content_root, "locks")
        os.makedirs(self.dir, exist_ok=True)
        self.held: list[int] = []

    def _open(self, digest: str) -> int:
        return os.open(
            os.path.join(self.dir, digest[7:9]), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )

    def share(self, digests: list[str]) -> None:
        import fcntl

        for stripe in sorted({d[:9] for d in digests}):
            fd = self._open(stripe)
            fcntl.flock(fd, fcntl.LOCK_SH)
            self.held.append(fd)

    def exclusive(self, digests: set[str]) -> set[str]:
        """Those of ``digests`` no other pull holds (locked until ``release``)."""
        import fcntl

        free: set[str] = set()
        stripes: dict[str, bool] = {}
        for digest in sorted(digests):
            stripe = digest[:9]
            if stripe not in stripes:
                fd = self._open(stripe)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    self.held.append(fd)
                    stripes[stripe] = True
                except BlockingIOError:
                    os.close(fd)
                    stripes[stripe] = False
            if stripes[stripe]:
                free.add(digest)
        return free

    def release(self) -> None:
        for fd in self.held:
            os.close(fd)
        self.held = []
