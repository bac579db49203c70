"""``cp`` between a container's root and the host, with the container's symlinks
resolved inside the container, never on the host.

Every path on the container's side is resolved with ``secure_join`` one entry
at a time, so a symlink the container planted (``/data -> /etc``) leads to the
container's /etc, not the host's.
"""

from __future__ import annotations

import os
import shutil
import stat

from dockyard.errors import InvalidArgument, NotFound
from dockyard.runtime.rootfs import secure_join

__all__ = ["copy_from", "copy_to"]


def _inside(rootfs: str, path: str, follow: bool = True) -> str:
    """Host path of container path ``path``; the last component is not followed unless ``follow``."""
    parent, _, base = path.rstrip("/").rpartition("/")
    real_parent = secure_join(rootfs, parent or "/")
    if not base or base == ".":
        return real_parent
    candidate = os.path.join(real_parent, base)
    if follow and os.path.islink(candidate):
        return secure_join(rootfs, os.path.join(parent or "/", base))
    return candidate


def _copy_entry(src: str, dst: str, archive: bool) -> None:
    st = os.lstat(src)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISDIR(st.st_mode):
        os.makedirs(dst, exist_ok=True)
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    elif stat.S_ISREG(st.st_mode):
        fd = os.open(
            dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    else:
        return  # devices and fifos are not copied, as docker cp leaves them out too
    if archive:
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def copy_from(rootfs: str, path: str, dest: str, follow_link: bool = False) -> None:
    """Container path ``path`` to host path ``dest`` (into it, if it is a directory)."""
    src = _inside(rootfs, path, follow=follow_link or path.endswith("/"))
    if not os.path.lexists(src):
        raise NotFound(f"Could not find the file {path} in container")
    if dest == "-":
        import sys
        import tarfile

        with tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as tar:
            tar.add(src, arcname=os.path.basename(src.rstrip("/")) or ".")
        return
    contents_only = path.endswith("/.")
    target = dest
    if os.path.isdir(dest) and not contents_only:
        target = os.path.join(dest, os.path.basename(src.rstrip("/")))
    if not os.path.isdir(src) or os.path.islink(src):
        _copy_entry(src, target, archive=True)
        return
    for base, dirs, files in os.walk(src):
        rel = os.path.relpath(base, src)
        out = os.path.normpath(os.path.join(target, rel))
        _copy_entry(base, out, archive=True)
        for name in dirs + files:
            p = os.path.join(base, name)
            if os.path.islink(p) or not os.path.isdir(p):
                _copy_entry(p, os.path.join(out, name), archive=True)


def copy_to(src: str, rootfs: str, path: str, archive: bool = False) -> None:
    """Host path ``src`` to container path ``path``; each write resolved inside the container."""
    if not os.path.lexists(src):
        raise InvalidArgument(f"could not find the file {src}")
    dest = _inside(rootfs, path)
    into_dir = os.path.isdir(dest) and not src.endswith("/.")
    base = path.rstrip("/") + "/" + os.path.basename(os.path.normpath(src)) if into_dir else path
    if not os.path.isdir(src):
        _copy_entry(src, _inside(rootfs, base, follow=False), archive)
        return
    for here, dirs, files in os.walk(src):
        rel = os.path.relpath(here, src)
        cpath = base if rel == "." else f"{base}/{rel}"
        target = _inside(rootfs, cpath, follow=False)
        if os.path.islink(target):
            os.unlink(target)  # never write through a link the container planted
        _copy_entry(here, target, archive)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(here, d))]:
            t = _inside(rootfs, f"{cpath}/{name}", follow=False)
            if os.path.lexists(t) and (os.path.islink(t) or not os.path.isdir(t)):
                os.unlink(t)
            _copy_entry(os.path.join(here, name), t, archive)
