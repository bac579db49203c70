"""A container's changes: as Docker's A/C/D list, and as a layer tar with whiteouts.

The changes are read from an overlay upper directory: a 0/0 character device
is a deletion, ``trusted.overlay.opaque=y`` on a directory hides everything
below it. Whether a path was Added or Changed is decided by looking it up in
the lower directories. Entries come in sorted order so the same changes give
the same tar, byte for byte.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterator
from typing import BinaryIO

from dockyard.snapshot.apply import OPAQUE, WHITEOUT_PREFIX

__all__ = ["changes", "is_whiteout", "write_layer"]

_OPAQUE_XATTR = "trusted.overlay.opaque"
# Overlay's own bookkeeping never goes into a layer.
_SKIP_XATTR_PREFIXES = ("trusted.overlay.", "security.selinux")


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _walk(upper: str, rel: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of everything under ``upper``, sorted, parents first."""
    here = os.path.join(upper, rel) if rel else upper
    for name in sorted(os.listdir(here)):
        child = f"{rel}/{name}" if rel else name
        st = os.lstat(os.path.join(upper, child))
        yield child, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(upper, child)


def _in_lower(rel: str, lowers: list[str]) -> bool:
    return any(os.path.lexists(os.path.join(lower, rel)) for lower in lowers)


def changes(upper: str, lowers: list[str]) -> list[tuple[str, str]]:
    """[(kind, "/path")] with kind A (added), C (changed) or D (deleted), sorted by path."""
    out = []
    for rel, st in _walk(upper):
        if is_whiteout(st):
            out.append(("D", "/" + rel))
        elif _in_lower(rel, lowers):
            out.append(("C", "/" + rel))
        else:
            out.append(("A", "/" + rel))
    return out


def _xattrs(path: str) -> dict[str, str]:
    found = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    for name in sorted(names):
        if name.startswith(_SKIP_XATTR_PREFIXES):
            continue
        value = os.getxattr(path, name, follow_symlinks=False)
        found["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    return found


def _info(rel: str, st: os.stat_result, path: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(rel)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = int(st.st_mtime)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
    elif stat.S_ISREG(st.st_mode):
        info.type = tarfile.REGTYPE
        info.size = st.st_size
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(st.st_mode):
        info.type = tarfile.FIFOTYPE
    else:
        raise ValueError(f"cannot put {path} in a layer: unsupported file type")
    info.pax_headers = _xattrs(path)
    return info


def write_layer(upper: str, out: BinaryIO) -> int:
    """Write the changes in ``upper`` to ``out`` as an uncompressed layer tar; return entries."""
    count = 0
    seen_inodes: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel, st in _walk(upper):
            path = os.path.join(upper, rel)
            if is_whiteout(st):
                parent, _, name = rel.rpartition("/")
                wh = tarfile.TarInfo(
                    f"{parent}/{WHITEOUT_PREFIX}{name}" if parent else WHITEOUT_PREFIX + name
                )
                wh.mtime = int(st.st_mtime)
                wh.uname = wh.gname = ""
                tar.addfile(wh)
                count += 1
                continue
            info = _info(rel, st, path)
            key = (st.st_dev, st.st_ino)
            if info.type == tarfile.REGTYPE and st.st_nlink > 1:
                if key in seen_inodes:
                    info.type, info.linkname, info.size = tarfile.LNKTYPE, seen_inodes[key], 0
                else:
                    seen_inodes[key] = rel
            if info.type == tarfile.REGTYPE:
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
            count += 1
            if info.type == tarfile.DIRTYPE and _is_opaque(path):
                opq = tarfile.TarInfo(f"{rel}/{OPAQUE}")
                opq.mtime = info.mtime
                opq.uname = opq.gname = ""
                tar.addfile(opq)
                count += 1
    return count
