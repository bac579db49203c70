"""Apply an OCI/Docker layer tar to a directory, refusing anything that escapes it.

Three ways to apply, as the caller needs:

- ``overlay``: the directory holds this layer alone (an overlay lower dir).
  ``.wh.NAME`` becomes an overlay whiteout (a 0/0 character device) and
  ``.wh..wh..opq`` marks its directory opaque (``trusted.overlay.opaque=y``).
- ``flat``: the directory holds the layers below (copy snapshotter, export).
  ``.wh.NAME`` deletes NAME, ``.wh..wh..opq`` empties its directory of what
  lower layers put there.
- ``plain``: any tar (ADD of an archive, ``cp`` into a container): whiteout names
  are ordinary files, as Docker's untar treats them.

Every entry's directory is opened inside the destination with ``RESOLVE_IN_ROOT``
(``dockyard.inroot``), so a symlink the layer made, absolute or relative, leads
where it would inside the root, never out of it; the entry itself is then made
by name in that directory. Refused with ``LayerError``, nothing written outside:
``..`` in names, absolute names, whiteouts of ``.``/``..``/nothing, whiteout
names as directories, ``trusted.overlay.*`` attributes, unknown entry types.
"""

from __future__ import annotations

import errno
import os
import stat

from dockyard.errors import InvalidArgument
from dockyard.inroot import Root, proc_path, remove_at

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

__all__ = ["LayerError", "apply_layer", "decompressed", "normalise_name"]

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
_META_PREFIX = ".wh..wh."  # aufs's own bookkeeping (.wh..wh.plnk, ...): skipped, as Docker does
_RESERVED_XATTR = "trusted.overlay."


def overlay_xattrs() -> str:
    """The attributes overlayfs keeps its own state in: ``trusted.overlay.`` as root;
    ``user.overlay.`` in a user namespace (rootless), where only those can be set and the
    overlay is mounted ``userxattr``."""
    from dockyard import rootless

    return "user.overlay." if rootless.active() else _RESERVED_XATTR
_FD_CACHE = 64


class LayerError(InvalidArgument):
    """The layer cannot be applied; the message names the tar entry."""


def decompressed(stream: BinaryIO, verified: bool = False) -> BinaryIO:
    """``stream`` with gzip or zstd compression removed, told apart by magic bytes.
    ``verified``: the compressed bytes are checked against a digest (a blob), so gzip's
    CRC-32 can tell nothing more, and is not computed (a third of inflating)."""
    head = _peek(stream, 4)
    if head[:2] == b"\x1f\x8b":
        return _Gunzip(stream, crc=not verified)  # type: ignore[return-value]
    if head == b"\x28\xb5\x2f\xfd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)  # type: ignore[return-value]
    return stream


class _Gunzip:
    """gzip (all members) removed from ``raw``, inflated 1 MiB at a time and handed out from
    that: ``gzip.GzipFile`` inflates for each small read (a tar header is 512 bytes) and
    checks the CRC in Python. zlib checks each member's CRC and length itself (wbits 31);
    a bad or cut stream is an ``OSError`` without errno (or ``EOFError``), as GzipFile's."""

    _OUT = 1 << 20

    def __init__(self, raw: BinaryIO, crc: bool = True) -> None:
        import zlib

        self._zlib = zlib
        self._raw = raw
        self._crc = crc
        self._d = zlib.decompressobj(31) if crc else None
        self._head = b""  # without the CRC: a member's header, still being read
        self._out = 0  # bytes inflated from the current member (its trailer's ISIZE)
        self._members = 1 if crc else 0  # members begun (zlib counts its own)
        self._buf = b""
        self._pos = 0
        self._done = False

    def _fill(self) -> None:
        """Inflate up to ``_OUT`` more bytes into the buffer (or find the end)."""
        while True:
            d = self._d
            src = (d.unconsumed_tail if d is not None else b"") or self._raw.read(self._OUT)
            if not src:
                if (d is not None and not d.eof) or self._head or not self._members:
                    raise EOFError(
                        "compressed file ended before the end-of-stream marker was reached"
                    )
                self._done = True
                return
            if d is None:  # raw deflate: the member's header is taken off here
                src = self._member_header(src)
                if self._d is None:
                    continue
                d = self._d
            try:
                data = d.decompress(src, self._OUT)
            except self._zlib.error as err:
                raise OSError(f"bad gzip data: {err}") from None
            self._out += len(data)
            while d is not None and d.eof:  # a member may end where it begins (an empty one)
                rest = self._end_member(d.unused_data)
                if rest.lstrip(b"\0"):
                    data += self._next_member(rest)
                    d = self._d
                elif not self._tail_is_padding():
                    raise OSError("bad gzip data: garbage after the last member")
                else:
                    self._done = True
                    break
            if data or self._done:
                # what was handed out is dropped; nothing is copied when all of it was
                left = self._pos < len(self._buf)
                self._buf = self._buf[self._pos :] + data if left else data
                self._pos = 0
                return

    def _member_header(self, src: bytes) -> bytes:
        """Take a gzip member's header (RFC 1952) off the front of what has come; what
        follows it, with a raw inflater ready for it (or b"" while the header is short)."""
        data = self._head + src
        flags = data[3] if len(data) > 3 else 0
        pos = 10
        if len(data) >= 3 and (data[:3] != b"\x1f\x8b\x08" or flags & 0xE0):
            raise OSError("bad gzip data: not a gzip member")
        if len(data) >= 12 and flags & 4:  # FEXTRA
            pos += 2 + int.from_bytes(data[10:12], "little")
        for bit in (8, 16):  # FNAME, FCOMMENT: zero-terminated
            if flags & bit and pos <= len(data):
                end = data.find(b"\0", pos)
                pos = len(data) + 1 if end < 0 else end + 1
        if flags & 2:  # FHCRC
            pos += 2
        if len(data) < pos or (len(data) < 12 and flags & 4):
            self._head = data
            return b""
        self._head = b""
        self._d = self._zlib.decompressobj(-15)
        self._out = 0
        self._members += 1
        return data[pos:]

    def _end_member(self, rest: bytes) -> bytes:
        """After a member's deflate data: its trailer checked (without the CRC, its length),
        the inflater readied for the next member; what follows the trailer."""
        if self._crc:
            self._d = self._zlib.decompressobj(31)  # another member may follow
            return rest
        while len(rest) < 8:
            more = self._raw.read(8 - len(rest))
            if not more:
                raise EOFError("compressed file ended before the end-of-stream marker was reached")
            rest += more
        if int.from_bytes(rest[4:8], "little") != self._out & 0xFFFFFFFF:
            raise OSError("bad gzip data: incorrect length check")
        self._d = None
        return rest[8:]

    def _next_member(self, head: bytes) -> bytes:
        if not self._crc:
            head = self._member_header(head)
            if self._d is None:
                return b""
        try:
            data = self._d.decompress(head, self._OUT)  # type: ignore[union-attr]
        except self._zlib.error as err:
            raise OSError(f"bad gzip data: {err}") from None
        self._out += len(data)
        return data

    def _tail_is_padding(self) -> bool:
        while chunk := self._raw.read(self._OUT):
            if chunk.lstrip(b"\0"):
                return False
        return True

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            parts = [self._buf[self._pos :]]
            self._buf, self._pos = b"", 0
            while not self._done:
                self._fill()
                parts.append(self._buf)
                self._buf, self._pos = b"", 0
            return b"".join(parts)
        while len(self._buf) - self._pos < n and not self._done:
            self._fill()
        out = self._buf[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def read1(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes, from what is inflated already if any is (the tar reader's
        reads of file data): a whole inflated MiB is handed on as it is, not copied."""
        if self._pos >= len(self._buf) and not self._done:
            self._fill()
        end = len(self._buf) if n < 0 else self._pos + n
        out = self._buf[self._pos : end]
        self._pos += len(out)
        return out

    def close(self) -> None:
        pass


def _peek(stream: BinaryIO, n: int) -> bytes:
    peek = getattr(stream, "peek", None)
    if peek is not None:
        return peek(n)[:n]
    pos = stream.tell()
    data = stream.read(n)
    stream.seek(pos)
    return data


def normalise_name(name: str) -> str:
    """The entry's path relative to the layer root; LayerError if it leaves the root."""
    if name.startswith("/"):
        raise LayerError(f"tar entry {name!r}: absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"tar entry {name!r}: '..' in path")
    return "/".join(parts)


def _set_xattrs(fd_or_path: int | str, xattrs: dict[str, bytes]) -> None:
    for name, raw in xattrs.items():
        try:
            os.setxattr(fd_or_path, name, raw, follow_symlinks=isinstance(fd_or_path, int))
        except OSError as err:
            if err.errno not in (errno.ENOTSUP, errno.EPERM):
                raise


class _Unpacker:
    """State of one apply: open directories by relative path, and mtimes to set at the end."""

    def __init__(self, dest: str | int, mode: str, owner: tuple[int, int] | None,
                 no_replace_kind: bool) -> None:  # fmt: skip
        self.root = Root(dest) if isinstance(dest, str) else Root(fd=os.dup(dest))
        self.mode = mode
        self.owner = owner
        self.no_replace_kind = no_replace_kind
        # An empty destination (an overlay lower being made) cannot hold a path this
        # layer did not create, which saves an lstat per entry.
        self.fresh = not os.listdir(self.root.fd)
        self.fds: dict[str, int] = {}  # relative dir -> descriptor (a small cache)
        self.created: set[str] = set()
        self.dir_times: list[tuple[str, float]] = []
        self.direct = False

    def parent(self, parent_rel: str, entry: str) -> int:
        fd = self.fds.get(parent_rel)
        if fd is not None:
            return fd
        try:
            fd = self.root.makedirs(parent_rel)
        except (NotADirectoryError, FileExistsError):
            raise LayerError(f"tar entry {entry!r}: {parent_rel} is not a directory") from None
        if len(self.fds) >= _FD_CACHE:
            self.forget()
        self.fds[parent_rel] = fd
        return fd

    def forget(self, keep: str | None = None) -> None:
        """After removing something, a cached directory may be gone; ``keep`` (the
        directory the removal happened in) stays."""
        kept = self.fds.pop(keep, None) if keep is not None else None
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {} if kept is None else {keep: kept}

    def close(self) -> None:
        self.forget()
        self.root.close()


def apply_layer(stream: BinaryIO, dest: str | int, mode: str = "overlay", decompress: bool = True,
                direct: bool = False, owner: tuple[int, int] | None = None,
                no_replace_kind: bool = False, rebase: tuple[str, str] | None = None) -> int:  # fmt: skip
    """Unpack the (possibly compressed) layer tar ``stream`` into ``dest``; return entries applied.

    ``mode`` is ``overlay``, ``flat`` or ``plain`` (see the module docstring); with
    ``decompress=False`` the stream is taken as a plain tar. Owners are applied
    numerically, as Docker does, or all set to ``owner``; directory mtimes are set last,
    since creating their entries changes them. ``direct``: big files are written past the
    page cache (``O_DIRECT``), for a layer that streams in faster than memory pages fill.
    ``no_replace_kind``: a directory never replaces a non-directory or the other way round
    (``docker cp``'s noOverwriteDirNonDir). ``rebase`` (old, new): entries named ``old``
    or under it are renamed to ``new`` (``docker cp``'s RebaseArchiveEntries). ``dest``
    may be an open directory descriptor (the caller keeps it).
    """
    from dockyard.snapshot.tarstream import TarFormatError, TarReader

    if mode not in ("overlay", "flat", "plain"):
        raise ValueError(f"unknown apply mode: {mode}")
    if isinstance(dest, str):
        os.makedirs(dest, exist_ok=True)
    state = _Unpacker(dest, mode, owner, no_replace_kind)
    state.direct = direct
    count = 0
    name = ""
    try:
        source = decompressed(stream) if decompress else stream
        reader = TarReader(source)
        for entry in reader:
            name = entry.name
            if rebase is not None and (name == rebase[0] or name.startswith(rebase[0] + "/")):
                name = rebase[1] + name[len(rebase[0]) :]
            rel = normalise_name(name)
            if not rel:
                continue  # the root itself ("./")
            parent_rel, _, base = rel.rpartition("/")
            if mode != "plain":
                _check_whiteout_names(entry, parent_rel, base)
            for key in entry.xattrs:
                if key.startswith((_RESERVED_XATTR, "user.overlay.")):
                    raise LayerError(f"tar entry {name!r}: attribute {key} is overlayfs's own")
            pfd = state.parent(parent_rel, name)
            count += 1
            if mode != "plain" and base.startswith(WHITEOUT_PREFIX):
                if base == OPAQUE:
                    _opaque(pfd, mode)
                elif not base.startswith(_META_PREFIX):
                    _whiteout(pfd, base[len(WHITEOUT_PREFIX) :], mode)
                state.forget()
                continue
            _apply_entry(reader, entry, rel, pfd, base, state)
        for rel, mtime in reversed(state.dir_times):
            parent_rel, _, base = rel.rpartition("/")
            pfd = state.parent(parent_rel, rel)
            os.utime(base, (mtime, mtime), dir_fd=pfd, follow_symlinks=False)
    except TarFormatError as err:
        raise LayerError(f"corrupt layer: {err}") from None
    except (OSError, EOFError) as err:
        if isinstance(err, OSError) and not _is_stream_error(err):
            if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
                raise
            raise LayerError(f"tar entry {name!r}: {os.strerror(err.errno)}") from err
        raise LayerError(f"corrupt layer: {err}") from None
    finally:
        state.close()
    return count


def _check_whiteout_names(entry, parent_rel: str, base: str) -> None:  # type: ignore[no-untyped-def]
    """A whiteout removes one name beside it: never ``.``, ``..`` or nothing, never a
    directory on the way to another entry."""
    from dockyard.snapshot import tarstream as ts

    for part in parent_rel.split("/") if parent_rel else ():
        if part.startswith(WHITEOUT_PREFIX):
            raise LayerError(f"tar entry {entry.name!r}: whiteout {part!r} used as a directory")
    if not base.startswith(WHITEOUT_PREFIX) or (base.startswith(_META_PREFIX) and base != OPAQUE):
        return
    if entry.type not in (ts.REG, ts.AREG):
        raise LayerError(f"tar entry {entry.name!r}: a whiteout must be an empty file")
    target = base[len(WHITEOUT_PREFIX) :]
    if base != OPAQUE and target in ("", ".", ".."):
        raise LayerError(f"tar entry {entry.name!r}: whiteout of {target or 'nothing'!r}")


def _is_stream_error(err: OSError) -> bool:
    # gzip and zstd report bad input as OSError subclasses without an errno
    return err.errno is None


def _chmod_at(pfd: int, base: str, mode: int) -> None:
    """chmod of ``base`` (not a symlink) in ``pfd``. glibc does the no-follow form through
    /proc/self/fd, which is not there inside a container's mount namespace (``cp``): there the
    node, made just now in this directory, is changed by name."""
    try:
        os.chmod(base, mode, dir_fd=pfd, follow_symlinks=False)
    except (ValueError, NotImplementedError):
        os.chmod(base, mode, dir_fd=pfd)
    except OSError as err:
        if err.errno not in (errno.ENOTSUP, errno.ENOENT):
            raise
        os.chmod(base, mode, dir_fd=pfd)


def _rootless() -> bool:
    from dockyard import rootless

    return rootless.active()


def _chown(change: Any) -> None:
    """``change()``, an owner change; where a rootless user has only their own ID mapped,
    an owner outside the map cannot be set (EINVAL) and the file stays the user's."""
    try:
        change()
    except OSError as err:
        if err.errno != errno.EINVAL or not _rootless():
            raise


def _opaque(pfd: int, mode: str) -> None:
    if mode == "overlay":
        os.setxattr(proc_path(pfd), overlay_xattrs() + "opaque", b"y")
        return
    for name in os.listdir(pfd):
        remove_at(pfd, name)


def _whiteout(pfd: int, name: str, mode: str) -> None:
    remove_at(pfd, name)
    if mode == "overlay":
        os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)


_O_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
_DIRECT_MIN = 4 << 20  # below this, the aligned copy and the synchronous write cost more


def _apply_entry(reader, entry, rel: str, pfd: int, base: str, state: _Unpacker) -> None:  # type: ignore[no-untyped-def]
    from dockyard.snapshot import tarstream as ts

    kind = entry.type
    existing = None
    if not state.fresh or rel in state.created:
        try:
            existing = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            pass
    if existing is not None and not (kind == ts.DIR and stat.S_ISDIR(existing.st_mode)):
        if state.no_replace_kind and stat.S_ISDIR(existing.st_mode) != (kind == ts.DIR):
            what = "directory" if kind == ts.DIR else "non-directory"
            raise LayerError(f"cannot overwrite {'non-' * (kind == ts.DIR)}directory "
                             f"{'/' + rel!r} with {what} {entry.name!r}")  # fmt: skip
        remove_at(pfd, base)
        state.forget(keep=rel.rpartition("/")[0])
    state.created.add(rel)
    uid, gid = state.owner if state.owner is not None else (entry.uid, entry.gid)
    mode_bits = entry.mode & 0o7777
    if kind in (ts.REG, ts.AREG, ts.CONT):
        direct = None
        if state.direct and entry.size >= _DIRECT_MIN:
            try:
                fd = os.open(base, _O_CREATE | os.O_DIRECT, 0o600, dir_fd=pfd)
            except OSError:
                fd = os.open(base, _O_CREATE, 0o600, dir_fd=pfd)
            else:
                from dockyard.fsutil import DirectWriter

                direct = DirectWriter(fd)
        else:
            fd = os.open(base, _O_CREATE, 0o600, dir_fd=pfd)
        try:
            while chunk := reader.read(1 << 20):
                if direct is not None:
                    direct.write(chunk)
                else:
                    os.write(fd, chunk)
            if direct is not None:
                direct.flush()
            _chown(lambda: os.fchown(fd, uid, gid))
            os.fchmod(fd, mode_bits)  # after chown: chown clears setuid/setgid
            if entry.xattrs:
                _set_xattrs(fd, entry.xattrs)
            os.utime(fd, (entry.mtime, entry.mtime))
        finally:
            if direct is not None:
                direct.close()
            else:
                os.close(fd)
        return
    if kind == ts.DIR:
        if existing is None or not stat.S_ISDIR(existing.st_mode):
            os.mkdir(base, 0o700, dir_fd=pfd)
        state.dir_times.append((rel, entry.mtime))
    elif kind == ts.SYM:
        os.symlink(entry.linkname, base, dir_fd=pfd)
    elif kind == ts.LNK:
        target_rel = normalise_name(entry.linkname)
        t_parent_rel, _, t_base = target_rel.rpartition("/")
        try:
            tfd = state.root.dir(t_parent_rel)
        except (FileNotFoundError, NotADirectoryError):
            raise LayerError(
                f"tar entry {entry.name!r}: hardlink to missing {entry.linkname!r}"
            ) from None
        try:
            try:
                os.link(t_base, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                raise LayerError(
                    f"tar entry {entry.name!r}: hardlink to missing {entry.linkname!r}"
                ) from None
        finally:
            os.close(tfd)
        return  # a hardlink shares the target's inode: metadata is the target's
    elif kind in (ts.CHR, ts.BLK):
        fmt = stat.S_IFCHR if kind == ts.CHR else stat.S_IFBLK
        try:
            os.mknod(base, fmt | 0o600, os.makedev(entry.devmajor, entry.devminor), dir_fd=pfd)
        except PermissionError:
            if not _rootless():
                raise
            return  # no device nodes in a user namespace: skipped, as moby's archive skips them
    elif kind == ts.FIFO:
        os.mkfifo(base, 0o600, dir_fd=pfd)
    else:
        raise LayerError(f"tar entry {entry.name!r}: unsupported type {kind!r}")
    _chown(lambda: os.chown(base, uid, gid, dir_fd=pfd, follow_symlinks=False))
    if kind != ts.SYM:
        _chmod_at(pfd, base, mode_bits)
    if entry.xattrs:
        if kind == ts.DIR:
            dfd = os.open(
                base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd
            )
            try:
                _set_xattrs(dfd, entry.xattrs)
            finally:
                os.close(dfd)
        elif os.path.isdir(proc_path(pfd)):  # a /proc of this process: symlinks, devices, fifos
            _set_xattrs(proc_path(pfd, base), entry.xattrs)
    if kind != ts.DIR:
        os.utime(base, (entry.mtime, entry.mtime), dir_fd=pfd, follow_symlinks=False)
