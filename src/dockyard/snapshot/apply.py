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
import io
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from typing import BinaryIO

from dockyard.errors import InvalidArgument

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
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _set_xattrs(path: str, member: tarfile.TarInfo) -> None:
    for key, value in (member.pax_headers or {}).items():
        if key.startswith("SCHILY.xattr."):
            name = key[len("SCHILY.xattr.") :]
            raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
            try:
                os.setxattr(path, name, raw, follow_symlinks=False)
            except OSError as err:
                if err.errno not in (errno.ENOTSUP, errno.EPERM):
                    raise


def _make_parents(parent: str) -> None:
    os.makedirs(parent, mode=0o755, exist_ok=True)


def apply_layer(stream: BinaryIO, dest: str, mode: str = "overlay", decompress: bool = True) -> int:
    """Unpack the (possibly compressed) layer tar ``stream`` into ``dest``; return entries applied.

    ``mode`` is ``overlay`` or ``flat`` (see the module docstring); with
    ``decompress=False`` the stream is taken as a plain tar. Owners are
    applied numerically, as Docker does; directory mtimes are set last, since
    creating their entries changes them.
    """
    if mode not in ("overlay", "flat"):
        raise ValueError(f"unknown apply mode: {mode}")
    dest = os.path.realpath(dest)
    os.makedirs(dest, exist_ok=True)
    dir_times: list[tuple[str, float]] = []
    count = 0
    try:
        source = decompressed(stream) if decompress else stream
        tar = tarfile.open(fileobj=source, mode="r|")  # noqa: SIM115 - closed below
    except tarfile.TarError as err:
        raise LayerError(f"not a tar archive: {err}") from None
    try:
        for member in _members(tar):
            rel = normalise_name(member.name)
            if not rel:
                continue  # the root itself ("./")
            parent_rel, _, base = rel.rpartition("/")
            parent = _resolve_parent(dest, parent_rel, member.name)
            _make_parents(parent)
            path = os.path.join(parent, base)
            count += 1
            if base == OPAQUE:
                _opaque(parent, mode)
                continue
            if base.startswith(WHITEOUT_PREFIX):
                _whiteout(os.path.join(parent, base[len(WHITEOUT_PREFIX) :]), mode)
                continue
            _apply_entry(tar, member, path, dest, dir_times)
    except tarfile.TarError as err:
        raise LayerError(f"corrupt layer: {err}") from None
    except EOFError:
        raise LayerError("corrupt layer: truncated") from None
    finally:
        tar.close()
    for path, mtime in reversed(dir_times):
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    return count


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while True:
        member = tar.next()
        if member is None:
            return
        yield member


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


def _apply_entry(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    path: str,
    dest: str,
    dir_times: list[tuple[str, float]],
) -> None:
    existing = None
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        pass
    if existing is not None and not (member.isdir() and stat.S_ISDIR(existing.st_mode)):
        _remove(path)
    if member.isdir():
        if existing is None or not stat.S_ISDIR(existing.st_mode):
            os.mkdir(path, 0o700)
        dir_times.append((path, member.mtime))
    elif member.isreg():
        src = tar.extractfile(member)
        assert src is not None
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
        )
        with io.FileIO(fd, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    elif member.issym():
        os.symlink(member.linkname, path)
    elif member.islnk():
        target_rel = normalise_name(member.linkname)
        t_parent_rel, _, t_base = target_rel.rpartition("/")
        target = os.path.join(_resolve_parent(dest, t_parent_rel, member.name), t_base)
        if not os.path.lexists(target):
            raise LayerError(f"tar entry {member.name!r}: hardlink to missing {member.linkname!r}")
        os.link(target, path, follow_symlinks=False)
        return  # a hardlink shares the target's inode: metadata is the target's
    elif member.ischr() or member.isblk():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
    elif member.isfifo():
        os.mkfifo(path, 0o600)
    else:
        raise LayerError(f"tar entry {member.name!r}: unsupported type {member.type!r}")
    os.chown(path, member.uid, member.gid, follow_symlinks=False)
    if not member.issym():
        # chmod after chown: chown clears setuid/setgid bits.
        os.chmod(path, member.mode & 0o7777)
    _set_xattrs(path, member)
    if not member.isdir():
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
