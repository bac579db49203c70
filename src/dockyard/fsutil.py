"""Filesystem helpers cheap enough for every command's start-up.

``shutil`` imports ``fnmatch`` and so ``re`` (about 10 ms here); removing a
container's directory is on the path of every ``run --rm``.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "ChunkReader",
    "DirectWriter",
    "mark_top_directory",
    "remove_tree",
    "scratch_dir",
    "stale_scratch_dirs",
]


def remove_tree(path: str, ignore_errors: bool = False, dir_fd: int | None = None) -> None:
    """``rm -rf path`` through directory file descriptors: a symlink inside is removed,
    never followed, so a tree a container could write to cannot redirect the removal.
    With ``dir_fd``, ``path`` is a name in that directory."""
    try:
        for _root, dirs, files, fd in os.fwalk(
            path, topdown=False, follow_symlinks=False, dir_fd=dir_fd
        ):
            for name in files:
                os.unlink(name, dir_fd=fd)
            for name in dirs:
                try:
                    os.rmdir(name, dir_fd=fd)
                except NotADirectoryError:  # a symlink to a directory
                    os.unlink(name, dir_fd=fd)
        os.rmdir(path, dir_fd=dir_fd)
    except FileNotFoundError:
        if not ignore_errors and not os.path.lexists(
            path if dir_fd is None else f"/proc/self/fd/{dir_fd}/{path}"
        ):
            return
        if not ignore_errors:
            raise
    except OSError:
        if not ignore_errors:
            raise


class scratch_dir:
    """``with scratch_dir(base, prefix) as path``: a fresh directory ``base/prefixXXXX/work``
    locked (flock on its parent) while in use and removed afterwards. What a killed
    process leaves is told apart from one in use by the lock (``stale_scratch_dirs``).
    The work directory sits one level down so that nothing a tar puts in it, were it to
    escape once, lands beside anything but its own lock directory."""

    def __init__(self, base: str, prefix: str) -> None:
        self.base, self.prefix = base, prefix
        self.top = ""
        self._fd = -1

    def __enter__(self) -> str:
        import fcntl
        import tempfile

        os.makedirs(self.base, mode=0o700, exist_ok=True)
        self.top = tempfile.mkdtemp(prefix=self.prefix, dir=self.base)
        self._fd = os.open(self.top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        work = os.path.join(self.top, "work")
        os.mkdir(work, 0o700)
        return work

    def __exit__(self, *exc: object) -> None:
        remove_tree(self.top, ignore_errors=True)
        os.close(self._fd)


def stale_scratch_dirs(base: str) -> list[str]:
    """Scratch directories under ``base`` that no running process holds."""
    import fcntl

    out = []
    try:
        names = sorted(os.listdir(base))
    except FileNotFoundError:
        return out
    for name in names:
        path = os.path.join(base, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            out.append(path)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        finally:
            os.close(fd)
        out.append(path)
    return out


_FS_IOC_GETFLAGS, _FS_IOC_SETFLAGS = 0x80086601, 0x40086602
_FS_TOPDIR_FL = 0x00020000


def mark_top_directory(path: str) -> bool:
    """Mark ``path`` as the top of unrelated hierarchies (``chattr +T``), so that ext4 puts
    each directory made in it in a block group of its own choosing, not next to its siblings.

    Why: on ext4 without a journal, creating a file skips every inode of its group freed in
    the last minutes, one by one; in a group where a layer was just removed, unpacking or
    copying a new one of the same size costs quadratic time (measured: a 505-file COPY step
    0.5 s slower). Elsewhere the flag is unknown or harmless; False where it could not be set."""
    import array
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        flags = array.array("l", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
        if not flags[0] & _FS_TOPDIR_FL:
            flags[0] |= _FS_TOPDIR_FL
            fcntl.ioctl(fd, _FS_IOC_SETFLAGS, flags, True)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


class DirectWriter:
    """Appends to a file opened with ``O_DIRECT`` (which it owns), through an aligned buffer:
    the data goes to the disk without passing through (and filling) the page cache. The
    tail is padded to the block size and the file truncated back at ``flush``."""

    _BUF = 4 << 20  # a multiple of every block size O_DIRECT may ask alignment to
    _ALIGN = 4096

    def __init__(self, fd: int) -> None:
        import mmap

        self._fd = fd
        self._buf = mmap.mmap(-1, self._BUF)  # page-aligned, as O_DIRECT wants
        self._used = 0
        self._size = 0
        self._done = False

    def _flush_buffer(self, length: int) -> None:
        view = memoryview(self._buf)[:length]
        try:
            try:
                written = os.write(self._fd, view)
            except OSError as err:
                if err.errno != 22:  # EINVAL: a filesystem that opens O_DIRECT but cannot write so
                    raise
                import fcntl

                flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
                fcntl.fcntl(
                    self._fd, fcntl.F_SETFL, flags & ~os.O_DIRECT
                )  # on through the page cache
                written = os.write(self._fd, view)
            if written != length:
                raise OSError(f"short write of {length} bytes")
        finally:
            view.release()

    def write(self, data: bytes) -> None:
        assert not self._done, "write after flush"
        view = memoryview(data)
        while view:
            n = min(len(view), self._BUF - self._used)
            self._buf[self._used : self._used + n] = view[:n]
            self._used += n
            view = view[n:]
            if self._used == self._BUF:
                self._flush_buffer(self._BUF)
                self._used = 0
        self._size += len(data)

    def flush(self) -> None:
        if self._done:
            return
        self._done = True
        if self._used:
            padded = -(-self._used // self._ALIGN) * self._ALIGN
            self._buf[self._used : padded] = bytes(padded - self._used)
            self._flush_buffer(padded)
            os.ftruncate(self._fd, self._size)

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self._buf.close()


class ChunkReader:
    """A file-like ``read`` over an iterator of byte chunks (a tar arriving in pieces: from
    a copy child, from an HTTP request body)."""

    def __init__(self, chunks: Any) -> None:
        self._chunks = iter(chunks)
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._chunks)
            except StopIteration:
                break
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out
