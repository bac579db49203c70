"""COPY and ADD into a mounted root filesystem, with Docker's rules.

- a relative destination is under WORKDIR; one ending in ``/``, or given more
  than one source, or naming a directory the image has, is a directory;
- a source directory's contents (not the directory) are copied;
- owners are 0:0 unless ``--chown`` (names looked up in the image's
  /etc/passwd and /etc/group); modes are kept unless ``--chmod``; times kept;
- ADD unpacks a local tar archive (plain, gzip, bzip2, xz, zstd) instead of copying it.

Every path inside the root goes through ``secure_join``, so a symlink in the
image cannot send a write outside it.
"""

from __future__ import annotations

import os
import shutil
import stat

from dockyard.errors import InvalidArgument
from dockyard.runtime.rootfs import secure_join

__all__ = ["copy_into", "owner_of"]


def _lookup(rootfs: str, table: str, name: str) -> int | None:
    try:
        with open(secure_join(rootfs, f"/etc/{table}")) as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) > 2 and fields[0] == name:
                    return int(fields[2])
    except (OSError, ValueError):
        pass
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
    try:
        with open(secure_join(rootfs, "/etc/passwd")) as f:
            for line in f:
                fields = line.split(":")
                if fields[0] == user and len(fields) > 3:
                    return int(fields[3])
    except (OSError, ValueError):
        pass
    return 0


def _ensure_dir(rootfs: str, path: str, owner: tuple[int, int]) -> str:
    """The directory ``path`` (inside the root), made with its missing parents."""
    real = secure_join(rootfs, path)
    if os.path.isdir(real):
        return real
    parent = os.path.dirname(path.rstrip("/")) or "/"
    if parent != path:
        _ensure_dir(rootfs, parent, owner)
    real = secure_join(rootfs, path)
    if os.path.lexists(real) and not os.path.isdir(real):
        os.unlink(real)
    os.mkdir(real, 0o755)
    os.lchown(real, *owner)
    return real


def _place(
    src: str, st: os.stat_result, target: str, owner: tuple[int, int], chmod: int | None
) -> None:
    if os.path.lexists(target) and not (stat.S_ISDIR(st.st_mode) and os.path.isdir(target)):
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        else:
            os.unlink(target)
    if stat.S_ISDIR(st.st_mode):
        if not os.path.isdir(target):
            os.mkdir(target)
        os.chmod(target, chmod if chmod is not None else stat.S_IMODE(st.st_mode))
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), target)
    elif stat.S_ISREG(st.st_mode):
        shutil.copyfile(src, target)  # sendfile(2) on Linux: the bytes never pass through Python
        os.chmod(target, chmod if chmod is not None else stat.S_IMODE(st.st_mode))
    else:
        return  # devices, fifos, sockets: not copied
    os.lchown(target, *owner)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _is_archive(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(262)
    if (
        head[:2] == b"\x1f\x8b"
        or head[:3] == b"BZh"
        or head[:6] == b"\xfd7zXZ\x00"
        or head[:4] == b"\x28\xb5\x2f\xfd"
    ):
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


def copy_into(rootfs: str, sources: list[tuple[str, str]], dest: str, workdir: str,
              owner: tuple[int, int] = (0, 0), chmod: int | None = None, unpack: bool = False,
              walk: object = None) -> None:  # fmt: skip
    """Copy ``sources`` — (host path, name as written) — to ``dest`` in ``rootfs``.

    ``walk(host_path)`` lists (host path, relative name, lstat) under a source directory,
    already filtered by .dockerignore."""
    if not dest.startswith("/"):
        dest = os.path.join(workdir or "/", dest)
    into_dir = dest.endswith("/") or len(sources) > 1 or os.path.isdir(secure_join(rootfs, dest))
    for host_path, _written in sources:
        st = os.lstat(host_path)
        if stat.S_ISDIR(st.st_mode):
            fresh = not os.path.isdir(secure_join(rootfs, dest))
            base = _ensure_dir(rootfs, dest, owner)
            os.chmod(base, chmod if chmod is not None else stat.S_IMODE(st.st_mode))
            for path, rel, est in walk(host_path):  # type: ignore[operator]
                if fresh:
                    # a directory made just now holds only what this loop put there, parents
                    # first and no directory through a symlink: plain joins are safe
                    target = os.path.join(base, rel)
                else:
                    target = secure_join(rootfs, os.path.join(dest, rel))
                    _ensure_dir(rootfs, os.path.dirname(os.path.join(dest, rel)), owner)
                _place(path, est, target, owner, chmod)
        elif unpack and stat.S_ISREG(st.st_mode) and _is_archive(host_path):
            from dockyard.snapshot.apply import apply_layer

            target = _ensure_dir(rootfs, dest, owner)
            with open(host_path, "rb") as f:
                apply_layer(f, target, mode="flat")
        else:
            name = os.path.basename(host_path)
            path = os.path.join(dest, name) if into_dir else dest
            _ensure_dir(rootfs, os.path.dirname(path.rstrip("/")) or "/", owner)
            _place(host_path, st, secure_join(rootfs, path), owner, chmod)


def write_file(
    rootfs: str, path: str, content: bytes, owner: tuple[int, int], chmod: int | None
) -> None:
    """``COPY <<EOF path``: a file from a heredoc."""
    _ensure_dir(rootfs, os.path.dirname(path) or "/", owner)
    target = secure_join(rootfs, path)
    if os.path.lexists(target) and not os.path.isdir(target):
        os.unlink(target)
    with open(target, "wb") as f:
        f.write(content)
    os.chmod(target, chmod if chmod is not None else 0o644)
    os.lchown(target, *owner)
