"""Apply an OCI/Docker layer tar to a directory, refusing anything that escapes it.

Two ways to apply, as the caller needs:

- ``overlay``: the directory holds this layer alone (an overlay lower dir).
  ``.wh.NAME`` becomes an overlay whiteout (a 0/0 character device) and
  ``.wh..wh..opq`` marks its directory opaque (``trusted.overlay.opaque=y``).
- ``flat``: the directory holds the layers below (copy snapshotter, export).
  ``.wh.NAME`` deletes NAME, ``.wh..wh..opq`` empties its directory of what
  lower layers put there.

Refused with ``LayerError`` and nothing written outside the directory: absolute
names, ``..``, paths through a symlink that leads out of the directory,
hardlinks to outside, and entries of unknown type.
"""

from __future__ import annotations

import errno
import os
import stat

from dockyard.errors import InvalidArgument
from dockyard.fsutil import remove_tree

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

__all__ = ["LayerError", "apply_layer", "decompressed", "normalise_name"]

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
_OPAQUE_XATTR = "trusted.overlay.opaque"
_MAX_SYMLINK_HOPS = 255


class LayerError(InvalidArgument):
    """The layer cannot be applied; the message names the tar entry."""


def decompressed(stream: BinaryIO) -> BinaryIO:
    """``stream`` with gzip or zstd compression removed, told apart by magic bytes."""
    head = _peek(stream, 4)
    if head[:2] == b"\x1f\x8b":
        import gzip

        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    if head == b"\x28\xb5\x2f\xfd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)  # type: ignore[return-value]
    return stream


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


def _resolve_parent(root: str, rel_dir: str, entry: str) -> str:
    """The real directory for ``rel_dir`` under ``root``; symlinks followed only inside it."""
    resolved: list[str] = []
    todo = [p for p in rel_dir.split("/") if p]
    hops = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if not resolved:
                raise LayerError(
                    f"tar entry {entry!r}: path goes through a symlink out of the layer"
                )
            resolved.pop()
            continue
        here = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            target = os.readlink(here)
            if target.startswith("/") or hops > _MAX_SYMLINK_HOPS:
                raise LayerError(
                    f"tar entry {entry!r}: path goes through a symlink out of the layer"
                )
            todo = [p for p in target.split("/") if p not in ("", ".")] + todo
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise LayerError(
                f"tar entry {entry!r}: {'/'.join([*resolved, part])} is not a directory"
            )
        resolved.append(part)
    return os.path.join(root, *resolved)


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        remove_tree(path)
    else:
        os.unlink(path)


def _set_xattrs(path: str, xattrs: dict[str, bytes]) -> None:
    for name, raw in xattrs.items():
        try:
            os.setxattr(path, name, raw, follow_symlinks=False)
        except OSError as err:
            if err.errno not in (errno.ENOTSUP, errno.EPERM):
                raise


class _Unpacker:
    """State of one apply: the directories known to exist, and mtimes to set at the end."""

    def __init__(self, dest: str, mode: str) -> None:
        self.dest = dest
        self.mode = mode
        # An empty destination (an overlay lower being made) cannot hold a path this
        # layer did not create, which saves an lstat per entry.
        self.fresh = not os.listdir(dest)
        self.dirs: dict[str, str] = {"": dest}  # relative dir -> real path, verified
        self.created: set[str] = set()
        self.dir_times: list[tuple[str, float]] = []
        self.direct = False

    def parent(self, parent_rel: str, entry: str) -> str:
        real = self.dirs.get(parent_rel)
        if real is None:
            real = _resolve_parent(self.dest, parent_rel, entry)
            os.makedirs(real, mode=0o755, exist_ok=True)
            self.dirs[parent_rel] = real
        return real

    def forget(self) -> None:
        """After removing or replacing something, the known-directory cache may lie."""
        self.dirs = {"": self.dest}


def apply_layer(stream: BinaryIO, dest: str, mode: str = "overlay", decompress: bool = True,
                direct: bool = False) -> int:  # fmt: skip
    """Unpack the (possibly compressed) layer tar ``stream`` into ``dest``; return entries applied.

    ``mode`` is ``overlay`` or ``flat`` (see the module docstring); with
    ``decompress=False`` the stream is taken as a plain tar. Owners are
    applied numerically, as Docker does; directory mtimes are set last, since
    creating their entries changes them. ``direct``: big files are written past the page
    cache (``O_DIRECT``), for a layer that streams in faster than memory pages fill.
    """
    from dockyard.snapshot.tarstream import TarFormatError, TarReader

    if mode not in ("overlay", "flat"):
        raise ValueError(f"unknown apply mode: {mode}")
    dest = os.path.realpath(dest)
    os.makedirs(dest, exist_ok=True)
    state = _Unpacker(dest, mode)
    state.direct = direct
    count = 0
    try:
        source = decompressed(stream) if decompress else stream
        reader = TarReader(source)
        for entry in reader:
            rel = normalise_name(entry.name)
            if not rel:
                continue  # the root itself ("./")
            parent_rel, _, base = rel.rpartition("/")
            parent = state.parent(parent_rel, entry.name)
            count += 1
            if base == OPAQUE:
                _opaque(parent, mode)
                state.forget()
                continue
            if base.startswith(WHITEOUT_PREFIX):
                _whiteout(os.path.join(parent, base[len(WHITEOUT_PREFIX) :]), mode)
                state.forget()
                continue
            _apply_entry(reader, entry, rel, os.path.join(parent, base), state)
    except TarFormatError as err:
        raise LayerError(f"corrupt layer: {err}") from None
    except (OSError, EOFError) as err:
        if isinstance(err, OSError) and not _is_stream_error(err):
            raise
        raise LayerError(f"corrupt layer: {err}") from None
    for path, mtime in reversed(state.dir_times):
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    return count


def _is_stream_error(err: OSError) -> bool:
    # gzip and zstd report bad input as OSError subclasses without an errno
    return err.errno is None


def _opaque(directory: str, mode: str) -> None:
    if mode == "overlay":
        os.setxattr(directory, _OPAQUE_XATTR, b"y")
        return
    for name in os.listdir(directory):
        _remove(os.path.join(directory, name))


def _whiteout(path: str, mode: str) -> None:
    _remove(path)
    if mode == "overlay":
        os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


_O_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
_DIRECT_MIN = 4 << 20  # below this, the aligned copy and the synchronous write cost more


def _apply_entry(reader, entry, rel: str, path: str, state: _Unpacker) -> None:  # type: ignore[no-untyped-def]
    from dockyard.snapshot import tarstream as ts

    kind = entry.type
    existing = None
    if not state.fresh or rel in state.created:
        try:
            existing = os.lstat(path)
        except FileNotFoundError:
            pass
    if existing is not None and not (kind == ts.DIR and stat.S_ISDIR(existing.st_mode)):
        _remove(path)
        state.forget()
    state.created.add(rel)
    mode_bits = entry.mode & 0o7777
    if kind == ts.REG:
        direct = None
        if state.direct and entry.size >= _DIRECT_MIN:
            try:
                fd = os.open(path, _O_CREATE | os.O_DIRECT, 0o600)
            except OSError:
                fd = os.open(path, _O_CREATE, 0o600)
            else:
                from dockyard.fsutil import DirectWriter

                direct = DirectWriter(fd)
        else:
            fd = os.open(path, _O_CREATE, 0o600)
        try:
            while chunk := reader.read(1 << 20):
                if direct is not None:
                    direct.write(chunk)
                else:
                    os.write(fd, chunk)
            if direct is not None:
                direct.flush()
            os.fchown(fd, entry.uid, entry.gid)
            os.fchmod(fd, mode_bits)  # after chown: chown clears setuid/setgid
            if entry.xattrs:
                _set_xattrs(path, entry.xattrs)
            os.utime(fd, (entry.mtime, entry.mtime))
        finally:
            if direct is not None:
                direct.close()
            else:
                os.close(fd)
        return
    if kind == ts.DIR:
        if existing is None or not stat.S_ISDIR(existing.st_mode):
            os.mkdir(path, 0o700)
        state.dirs[rel] = path
        state.dir_times.append((path, entry.mtime))
    elif kind == ts.SYM:
        os.symlink(entry.linkname, path)
        state.forget()  # a new symlink may sit where a cached directory path goes
    elif kind == ts.LNK:
        target_rel = normalise_name(entry.linkname)
        t_parent_rel, _, t_base = target_rel.rpartition("/")
        target = os.path.join(_resolve_parent(state.dest, t_parent_rel, entry.name), t_base)
        if not os.path.lexists(target):
            raise LayerError(f"tar entry {entry.name!r}: hardlink to missing {entry.linkname!r}")
        os.link(target, path, follow_symlinks=False)
        return  # a hardlink shares the target's inode: metadata is the target's
    elif kind in (ts.CHR, ts.BLK):
        fmt = stat.S_IFCHR if kind == ts.CHR else stat.S_IFBLK
        os.mknod(path, fmt | 0o600, os.makedev(entry.devmajor, entry.devminor))
    elif kind == ts.FIFO:
        os.mkfifo(path, 0o600)
    else:
        raise LayerError(f"tar entry {entry.name!r}: unsupported type {kind!r}")
    os.chown(path, entry.uid, entry.gid, follow_symlinks=False)
    if kind != ts.SYM:
        os.chmod(path, mode_bits)
    if entry.xattrs:
        _set_xattrs(path, entry.xattrs)
    if kind != ts.DIR:
        os.utime(path, (entry.mtime, entry.mtime), follow_symlinks=False)
