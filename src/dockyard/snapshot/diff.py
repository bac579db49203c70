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
from collections.abc import Iterator
from typing import BinaryIO

from dockyard.snapshot.apply import OPAQUE, WHITEOUT_PREFIX
from dockyard.snapshot.tarstream import BLK, CHR, DIR, FIFO, LNK, REG, SYM, TarWriter

__all__ = ["changes", "is_whiteout", "write_layer", "write_tree"]

# Overlay's own bookkeeping never goes into a layer.
_SKIP_XATTR_PREFIXES = (
    "trusted.overlay.",
    "user.overlay.",
    "user.fuseoverlayfs.",
    "security.selinux",
)


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque_xattr() -> str:
    from dockyard.snapshot.apply import overlay_xattrs

    return overlay_xattrs() + "opaque"


def _is_opaque(path: str) -> bool:
    try:
        if os.getxattr(path, _opaque_xattr(), follow_symlinks=False) == b"y":
            return True
    except OSError:
        pass
    try:  # what fuse-overlayfs marks where it cannot set overlayfs's own attributes
        return os.getxattr(path, "user.fuseoverlayfs.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _walk(
    upper: str, rel: str = "", exclude: frozenset[str] = frozenset()
) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of everything under ``upper``, sorted, parents first;
    paths in ``exclude`` ("/etc/hosts" style) and what is below them are left out."""
    here = os.path.join(upper, rel) if rel else upper
    for name in sorted(os.listdir(here)):
        child = f"{rel}/{name}" if rel else name
        if "/" + child in exclude:
            continue
        st = os.lstat(os.path.join(upper, child))
        yield child, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(upper, child, exclude)


def _in_lower(rel: str, lowers: list[str]) -> bool:
    return any(os.path.lexists(os.path.join(lower, rel)) for lower in lowers)


def changes(
    upper: str, lowers: list[str], exclude: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """[(kind, "/path")] with kind A (added), C (changed) or D (deleted), sorted by path.

    A directory copied up only because an ``exclude`` path was made in it (``/etc`` for
    ``/etc/hosts``), its owner and mode as below, is no change: Docker makes those in an
    init layer under the container's."""
    out = []
    holders = {p.rstrip("/").rsplit("/", 1)[0].lstrip("/") for p in exclude}
    for rel, st in _walk(upper, exclude=exclude):
        if is_whiteout(st):
            out.append(("D", "/" + rel))
        elif _in_lower(rel, lowers):
            if rel in holders and stat.S_ISDIR(st.st_mode) and _same_as_below(rel, st, lowers):
                out.append(("=", "/" + rel))
            else:
                out.append(("C", "/" + rel))
        else:
            out.append(("A", "/" + rel))
    kept = []
    for n, (kind, path) in enumerate(out):
        if kind == "=":
            if any(p.startswith(path + "/") for _k, p in out[n + 1 :]):
                kept.append(("C", path))
            continue
        kept.append((kind, path))
    return kept


def _same_as_below(rel: str, st: os.stat_result, lowers: list[str]) -> bool:
    for lower in lowers:
        try:
            below = os.lstat(os.path.join(lower, rel))
        except FileNotFoundError:
            continue
        return (below.st_mode, below.st_uid, below.st_gid) == (st.st_mode, st.st_uid, st.st_gid)
    return False


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


def _add(tar: TarWriter, root: str, rel: str, st: os.stat_result,
         seen_inodes: dict[tuple[int, int], str]) -> None:  # fmt: skip
    """One file of ``root`` as a tar member: owner, mode, mtime, xattrs; a second name of
    a regular file already written becomes a hardlink to the first."""
    path = os.path.join(root, rel)
    mode = st.st_mode
    kind, size, linkname, major, minor = DIR, 0, "", 0, 0
    if stat.S_ISREG(mode):
        kind, size = REG, st.st_size
        if st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            if key in seen_inodes:
                kind, size, linkname = LNK, 0, seen_inodes[key]
            else:
                seen_inodes[key] = rel
    elif stat.S_ISLNK(mode):
        kind, linkname = SYM, os.readlink(path)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = CHR if stat.S_ISCHR(mode) else BLK
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(mode):
        kind = FIFO
    elif not stat.S_ISDIR(mode):
        raise ValueError(f"cannot put {path} in a layer: unsupported file type")
    tar.add(rel, kind, mode=stat.S_IMODE(mode), uid=st.st_uid, gid=st.st_gid, size=size,
            mtime=int(st.st_mtime), linkname=linkname, devmajor=major, devminor=minor,
            pax=_xattrs(path), source=path if kind == REG else None)  # fmt: skip


def _overlay_items(
    upper: str, exclude: frozenset[str]
) -> Iterator[tuple[str, str, os.stat_result | None]]:
    """("entry" | "whiteout" | "opaque", relative path, lstat) from an overlay upper dir."""
    for rel, st in _walk(upper, exclude=exclude):
        if is_whiteout(st):
            yield "whiteout", rel, st
            continue
        yield "entry", rel, st
        if stat.S_ISDIR(st.st_mode) and _is_opaque(os.path.join(upper, rel)):
            yield "opaque", rel, st


def _same(a: os.stat_result, b: os.stat_result, pa: str, pb: str) -> bool:
    keys = ("st_mode", "st_uid", "st_gid", "st_size", "st_mtime_ns", "st_rdev")
    # Directories count as changed when their mtime moved (an entry came or went), as
    # in Docker's naive diff, so both snapshotters report the same paths.
    if any(getattr(a, k) != getattr(b, k) for k in keys):
        return False
    if stat.S_ISLNK(a.st_mode):
        return os.readlink(pa) == os.readlink(pb)
    return True


def compare(
    lower: str, upper: str, exclude: frozenset[str] = frozenset()
) -> tuple[list[str], list[str]]:
    """(added or changed, deleted) relative paths of ``upper`` against ``lower``, full trees both."""
    changed, deleted = [], []
    for rel, st in _walk(upper, exclude=exclude):
        try:
            lst = os.lstat(os.path.join(lower, rel))
        except FileNotFoundError:
            changed.append(rel)
            continue
        if not _same(st, lst, os.path.join(upper, rel), os.path.join(lower, rel)):
            changed.append(rel)
    gone_dirs: list[str] = []
    for rel, _st in _walk(lower, exclude=exclude):
        if any(rel.startswith(d + "/") for d in gone_dirs):
            continue
        if not os.path.lexists(os.path.join(upper, rel)):
            deleted.append(rel)
            if stat.S_ISDIR(_st.st_mode):
                gone_dirs.append(rel)
    return changed, deleted


def _compare_items(
    lower: str, upper: str, exclude: frozenset[str]
) -> Iterator[tuple[str, str, os.stat_result | None]]:
    changed, deleted = compare(lower, upper, exclude)
    wanted = set(changed)
    for rel in changed + deleted:  # a changed path needs its directories in the layer too
        parent = rel.rpartition("/")[0]
        while parent and parent not in wanted:
            wanted.add(parent)
            parent = parent.rpartition("/")[0]
    items = [(rel, "entry") for rel in wanted] + [(rel, "whiteout") for rel in deleted]
    for rel, kind in sorted(items, key=lambda i: i[0].split("/")):
        yield kind, rel, os.lstat(os.path.join(upper, rel)) if kind == "entry" else None


def changes_compare(
    lower: str, upper: str, exclude: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """Docker's A/C/D list for a copy snapshot against its parent's tree (a directory
    changed only by ``exclude`` paths made in it is left out, as in ``changes``)."""
    changed, deleted = compare(lower, upper, exclude)
    out = [("C" if os.path.lexists(os.path.join(lower, r)) else "A", "/" + r) for r in changed]
    out += [("D", "/" + r) for r in deleted]
    holders = {p.rstrip("/").rsplit("/", 1)[0].lstrip("/") for p in exclude}
    kept = []
    for kind, path in out:
        rel = path[1:]
        if kind == "C" and rel in holders and not any(p.startswith(path + "/") for _k, p in out):
            st = os.lstat(os.path.join(upper, rel))
            if stat.S_ISDIR(st.st_mode) and _same_as_below(rel, st, [lower]):
                continue
        kept.append((kind, path))
    return sorted(kept, key=lambda c: c[1])


def write_layer(
    upper: str, out: BinaryIO, lower: str | None = None, exclude: frozenset[str] = frozenset()
) -> int:
    """Write a layer tar to ``out``; return the number of entries.

    Without ``lower``, ``upper`` is an overlay upper dir (whiteouts as 0/0
    devices). With ``lower``, both are full trees and the layer holds what
    ``upper`` changed against ``lower`` (the copy snapshotter's case).
    """
    items = (
        _overlay_items(upper, exclude) if lower is None else _compare_items(lower, upper, exclude)
    )
    count = 0
    seen_inodes: dict[tuple[int, int], str] = {}
    tar = TarWriter(out)
    for kind, rel, st in items:
        if kind == "whiteout":
            parent, _, name = rel.rpartition("/")
            marker = f"{parent}/{WHITEOUT_PREFIX}{name}" if parent else WHITEOUT_PREFIX + name
            tar.add(marker, REG, mtime=int(st.st_mtime) if st else 0)
        elif kind == "opaque":
            tar.add(f"{rel}/{OPAQUE}", REG, mtime=int(st.st_mtime) if st else 0)
        else:
            assert st is not None
            _add(tar, upper, rel, st, seen_inodes)
        count += 1
    tar.close()
    return count


def write_tree(root: str, out: BinaryIO) -> int:
    """A whole directory tree as a plain tar (owners, modes, times, xattrs, hardlinks kept)."""
    count = 0
    seen_inodes: dict[tuple[int, int], str] = {}
    tar = TarWriter(out)
    for rel, st in _walk(root):
        _add(tar, root, rel, st, seen_inodes)
        count += 1
    tar.close()
    return count
