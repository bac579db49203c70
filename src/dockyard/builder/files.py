"""COPY and ADD into a mounted root filesystem, with Docker's rules.

- a relative destination is under WORKDIR; one ending in ``/``, or given more
  than one source, or naming a directory the image has, is a directory;
- a source directory's contents (not the directory) are copied;
- owners are 0:0 unless ``--chown`` (names looked up in the image's
  /etc/passwd and /etc/group); modes are kept unless ``--chmod``; times kept;
- ADD unpacks a local tar archive (plain, gzip, bzip2, xz, zstd) instead of copying it.

Both sides are opened inside their roots (``dockyard.inroot``): a source inside the
build context (or a stage's root), the destination inside the image. A symlink on
either side leads where it would if that root were ``/`` (the image's ``/out -> /real``
takes ``COPY f /out/f`` to ``/real/f``; the context's ``hostetc -> /etc`` leads to the
context's own ``etc``); symlinks inside a copied directory are copied as symlinks.
"""

from __future__ import annotations

import os
import stat

from dockyard.errors import InvalidArgument
from dockyard.inroot import Root, clean, remove_at

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["copy_into", "owner_of", "write_file"]


def _read_table(rootfs: str, table: str) -> list[list[str]]:
    try:
        with Root(rootfs) as root:
            fd = root.open(f"etc/{table}", os.O_RDONLY)
    except OSError:
        return []
    with os.fdopen(fd, errors="replace") as f:
        return [line.rstrip("\n").split(":") for line in f]


def _lookup(rootfs: str, table: str, name: str) -> int | None:
    for fields in _read_table(rootfs, table):
        if len(fields) > 2 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    return None


def owner_of(rootfs: str, spec: str) -> tuple[int, int]:
    """``--chown`` USER[:GROUP] -> (uid, gid), names from the image's files."""
    user, _, group = spec.partition(":")
    uid = int(user) if user.isdigit() else _lookup(rootfs, "passwd", user)
    if uid is None:
        raise InvalidArgument(
            f"unable to convert uid/gid chown string to host mapping: unknown user {user!r}"
        )
    if not group:
        gid = uid if user.isdigit() else _primary_gid(rootfs, user)
    else:
        gid = int(group) if group.isdigit() else _lookup(rootfs, "group", group)
    if gid is None:
        raise InvalidArgument(
            f"unable to convert uid/gid chown string to host mapping: unknown group {group!r}"
        )
    return uid, gid


def _primary_gid(rootfs: str, user: str) -> int:
    for fields in _read_table(rootfs, "passwd"):
        if fields[0] == user and len(fields) > 3 and fields[3].isdigit():
            return int(fields[3])
    return 0


def _dir(dst: Root, rel: str, owner: tuple[int, int]) -> int:
    """A descriptor of directory ``rel`` in the image, made (with its parents, owned by
    ``owner``) if missing; a non-directory in its place is replaced, as Docker does."""
    try:
        return dst.makedirs(rel, owner=owner)
    except (NotADirectoryError, FileExistsError):
        parent, base = rel.rpartition("/")[::2]
        pfd = _dir(dst, parent, owner)
        try:
            remove_at(pfd, base)
        finally:
            os.close(pfd)
        return dst.makedirs(rel, owner=owner)


def _copy_data(sfd: int, dfd: int) -> None:
    while True:
        try:
            n = os.copy_file_range(sfd, dfd, 1 << 30)
        except OSError:
            n = os.sendfile(dfd, sfd, None, 1 << 30)
        if not n:
            return


def _place(src: Root, src_rel: str, st: os.stat_result, pfd: int, base: str, owner: tuple[int, int],
           chmod: int | None) -> None:  # fmt: skip
    """One source entry (lstat ``st``) as ``base`` in the image directory ``pfd``."""
    try:
        existing = os.stat(base, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        existing = None
    if existing is not None and not (stat.S_ISDIR(st.st_mode) and stat.S_ISDIR(existing.st_mode)):
        remove_at(pfd, base)
        existing = None
    mode = chmod if chmod is not None else stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        if existing is None:
            os.mkdir(base, 0o700, dir_fd=pfd)
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            os.fchown(fd, *owner)
            os.fchmod(fd, mode)
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fd)
    elif stat.S_ISLNK(st.st_mode):
        sparent, sbase = src_rel.rpartition("/")[::2]
        sdir = src.dir(sparent)
        try:
            target = os.readlink(sbase, dir_fd=sdir)
        finally:
            os.close(sdir)
        os.symlink(target, base, dir_fd=pfd)
        os.chown(base, *owner, dir_fd=pfd, follow_symlinks=False)
        os.utime(base, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=pfd, follow_symlinks=False)
    elif stat.S_ISREG(st.st_mode):
        sfd = src.open(src_rel, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            dfd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                          dir_fd=pfd)  # fmt: skip
            try:
                _copy_data(sfd, dfd)
                os.fchown(dfd, *owner)
                os.fchmod(dfd, mode)  # after chown: chown clears setuid/setgid
                os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)
    # devices, fifos, sockets: not copied


def _is_archive(src: Root, rel: str) -> bool:
    fd = src.open(rel, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        head = f.read(262)
    if (
        head[:2] == b"\x1f\x8b"
        or head[:3] == b"BZh"
        or head[:6] == b"\xfd7zXZ\x00"
        or head[:4] == b"\x28\xb5\x2f\xfd"
    ):
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


def _unpack(src: Root, rel: str, target_fd: int) -> None:
    from dockyard.snapshot.apply import apply_layer

    fd = src.open(rel, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        head = f.read(6)
        f.seek(0)
        stream = f
        if head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
            import bz2
            import lzma

            stream = bz2.BZ2File(f) if head[:3] == b"BZh" else lzma.LZMAFile(f)  # type: ignore[assignment]  # noqa: SIM115
        apply_layer(stream, target_fd, mode="plain")  # type: ignore[arg-type]


def copy_into(rootfs: str, src_root: str, sources: list[tuple[str, str]], dest: str, workdir: str,
              owner: tuple[int, int] = (0, 0), chmod: int | None = None, unpack: bool = False,
              walk: Callable[[str], list[tuple[str, os.stat_result]]] | None = None) -> None:  # fmt: skip
    """Copy ``sources`` — (path inside ``src_root`` with its symlinks resolved, name as
    written) — to ``dest`` in ``rootfs``.

    ``walk(path)`` lists (path relative to that source directory, lstat) of all under
    it, parents first, already filtered by .dockerignore."""
    if not dest.startswith("/"):
        dest = os.path.join(workdir or "/", dest)
    with Root(rootfs) as dst, Root(src_root) as src:
        real_dest = dst.resolve(dest)
        dest_is_dir = _is_dir(dst, real_dest)
        into_dir = dest.endswith("/") or len(sources) > 1 or dest_is_dir
        for rel, written in sources:
            st = src.stat(rel) if rel else os.stat(src.fd)
            if stat.S_ISDIR(st.st_mode):
                top = _dir(dst, real_dest, owner)
                try:
                    os.fchmod(top, chmod if chmod is not None else stat.S_IMODE(st.st_mode))
                    for sub, est in walk(rel) if walk else []:
                        parent, base = sub.rpartition("/")[::2]
                        pfd = top if not parent else _dir_under(dst, real_dest, parent, owner)
                        try:
                            _place(
                                src, f"{rel}/{sub}" if rel else sub, est, pfd, base, owner, chmod
                            )
                        finally:
                            if pfd != top:
                                os.close(pfd)
                finally:
                    os.close(top)
            elif unpack and stat.S_ISREG(st.st_mode) and _is_archive(src, rel):
                target = _dir(dst, real_dest, owner)
                try:
                    _unpack(src, rel, target)
                finally:
                    os.close(target)
            else:
                name = os.path.basename(clean(written)) or os.path.basename(rel)
                path = f"{real_dest}/{name}" if into_dir else real_dest
                parent, base = clean(path).rpartition("/")[::2]
                pfd = _dir(dst, parent, owner)
                try:
                    _place(src, rel, st, pfd, base, owner, chmod)
                finally:
                    os.close(pfd)


def _is_dir(root: Root, rel: str) -> bool:
    try:
        return stat.S_ISDIR(root.stat(rel).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def _dir_under(dst: Root, top: str, parent: str, owner: tuple[int, int]) -> int:
    """The directory ``top/parent`` of the image: made by this copy a moment ago, or there
    before it (and then resolved inside the root like every other path)."""
    return _dir(dst, clean(f"{top}/{parent}"), owner)


def write_file(
    rootfs: str, path: str, content: bytes, owner: tuple[int, int], chmod: int | None
) -> None:
    """``COPY <<EOF path``: a file from a heredoc."""
    with Root(rootfs) as dst:
        real = dst.resolve(path)
        parent, base = real.rpartition("/")[::2]
        pfd = _dir(dst, parent, owner)
        try:
            try:
                existing = os.stat(base, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                existing = None
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                os.unlink(base, dir_fd=pfd)
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=pfd)  # fmt: skip
            try:
                os.write(fd, content)
                os.fchown(fd, *owner)
                os.fchmod(fd, chmod if chmod is not None else 0o644)
            finally:
                os.close(fd)
        finally:
            os.close(pfd)
