"""Paths that come from an image, a build context, a container or a client, opened inside
their root with no window for a race.

Every lookup goes through ``openat2(2)`` with ``RESOLVE_IN_ROOT``: the kernel resolves
each symlink (absolute ones included) and each ``..`` as if the root were ``/``, in the
same walk that opens the file, so a symlink swapped in between two steps cannot lead
out. Magic links (``/proc/PID/root``, ``/proc/PID/fd/N``) are refused on the way. Where
the kernel lacks openat2 (before 5.6), the same walk is made one component at a time
with ``O_NOFOLLOW``, symlinks read and resolved by hand against the root.

A ``Root`` hands out directory descriptors; callers then act on one name inside such a
directory (``os.open(name, dir_fd=...)``, ``os.mkdir``, ``os.symlink``, ...), never on
a path string the kernel would walk again.
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["Root", "clean", "fd_path", "proc_path", "remove_at", "split"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_MAX_HOPS = 255
_openat2_works: bool | None = None


def clean(path: str) -> str:
    """``path`` made relative to its root: ``.`` and empty parts dropped, ``..`` applied
    lexically (never above the root), as Go's ``filepath.Clean`` of ``/`` + path."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)


def split(rel: str) -> tuple[str, str]:
    """(parent, last name) of a cleaned relative path; ("", "") for the root."""
    parent, _, base = rel.rpartition("/")
    return parent, base


class Root:
    """An open root directory. Not thread-safe; ``close`` (or ``with``) releases it."""

    def __init__(self, path: str | None = None, fd: int | None = None) -> None:
        self.path = path or ""
        self.fd = os.open(path, _DIR_FLAGS) if fd is None else fd

    def __enter__(self) -> Root:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # -- lookups
    def open(self, rel: str, flags: int, mode: int = 0o644) -> int:
        """Open ``rel`` (a path under the root, symlinks followed inside it)."""
        global _openat2_works
        rel = clean(rel)
        if not rel:
            return (
                os.dup(self.fd) if flags & os.O_DIRECTORY else os.open(".", flags, dir_fd=self.fd)
            )
        if _openat2_works is not False:
            from dockyard.linux.syscalls import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

            try:
                fd = openat2(self.fd, rel, flags, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
            except OSError as err:
                if err.errno not in (errno.ENOSYS, errno.EPERM) or _openat2_works:
                    raise OSError(err.errno, os.strerror(err.errno), rel) from None
                _openat2_works = False
            else:
                _openat2_works = True
                return fd
        return self._walk_open(rel, flags, mode)

    def _walk_open(self, rel: str, flags: int, mode: int) -> int:
        """openat2's RESOLVE_IN_ROOT by hand: one component at a time, never following a
        symlink the kernel would resolve against the host's root."""
        todo = rel.split("/")
        stack: list[int] = [os.dup(self.fd)]
        hops = 0
        try:
            while todo:
                part = todo.pop(0)
                if part in ("", "."):
                    continue
                if part == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                    continue
                last = not todo
                here = stack[-1]
                try:
                    st = os.stat(part, dir_fd=here, follow_symlinks=False)
                except FileNotFoundError:
                    if last and flags & os.O_CREAT:
                        return os.open(
                            part, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=here
                        )
                    raise
                if stat.S_ISLNK(st.st_mode) and not (last and flags & os.O_NOFOLLOW):
                    hops += 1
                    if hops > _MAX_HOPS:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), rel)
                    target = os.readlink(part, dir_fd=here)
                    if target.startswith("/"):
                        while len(stack) > 1:
                            os.close(stack.pop())
                    todo = target.split("/") + todo
                    continue
                if last:
                    return os.open(part, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=here)
                stack.append(os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=here))
            return (
                os.dup(stack[-1])
                if flags & os.O_DIRECTORY
                else os.open(".", flags, dir_fd=stack[-1])
            )
        finally:
            for fd in stack:
                os.close(fd)

    def dir(self, rel: str) -> int:
        """A descriptor of directory ``rel`` (the caller closes it)."""
        return self.open(rel, _DIR_FLAGS)

    def lstat(self, rel: str) -> os.stat_result:
        """lstat of ``rel``: its parent resolved inside the root, its last name not followed."""
        parent, base = split(clean(rel))
        if not base:
            return os.stat(self.fd)
        fd = self.dir(parent)
        try:
            return os.stat(base, dir_fd=fd, follow_symlinks=False)
        finally:
            os.close(fd)

    def stat(self, rel: str) -> os.stat_result:
        fd = self.open(rel, os.O_PATH)
        try:
            return os.stat(fd)
        finally:
            os.close(fd)

    def exists(self, rel: str) -> bool:
        try:
            self.lstat(rel)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    def resolve(self, rel: str) -> str:
        """Where ``rel`` leads, as a path relative to the root: symlinks (the last one too)
        followed inside it, a missing part and what follows it taken as written (a
        dangling symlink's target included), as Docker's FollowSymlinkInScope."""
        todo = [p for p in clean(rel).split("/") if p]
        done: list[str] = []
        hops = 0
        while todo:
            part = todo.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            try:
                st = self.lstat("/".join([*done, part]))
            except (FileNotFoundError, NotADirectoryError):
                done.append(part)
                continue
            if not stat.S_ISLNK(st.st_mode):
                done.append(part)
                continue
            hops += 1
            if hops > _MAX_HOPS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), rel)
            pfd = self.dir("/".join(done))
            try:
                target = os.readlink(part, dir_fd=pfd)
            finally:
                os.close(pfd)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p and p != "."] + todo
        return "/".join(done)

    def makedirs(self, rel: str, mode: int = 0o755, owner: tuple[int, int] | None = None) -> int:
        """A descriptor of directory ``rel``, made with its missing parents (each owned by
        ``owner`` when given); an existing non-directory on the way is an error."""
        rel = clean(rel)
        try:
            return self.dir(rel)
        except FileNotFoundError:
            if not rel:
                raise
        parent, base = split(rel)
        pfd = self.makedirs(parent, mode, owner)
        try:
            try:
                os.mkdir(base, mode, dir_fd=pfd)
            except FileExistsError:
                pass  # made meanwhile, or a dangling symlink: the open below says which
            else:
                if owner is not None:
                    os.chown(base, *owner, dir_fd=pfd, follow_symlinks=False)
            return self.dir(rel)
        finally:
            os.close(pfd)

    def parent(self, rel: str, create: bool = False) -> tuple[int, str]:
        """(descriptor of ``rel``'s directory, its last name): the place to act on ``rel``
        itself without following it."""
        parent, base = split(clean(rel))
        return (self.makedirs(parent) if create else self.dir(parent)), base


def remove_at(dir_fd: int, name: str) -> None:
    """``rm -rf`` of ``name`` in ``dir_fd``; nothing below is followed."""
    from dockyard.fsutil import remove_tree

    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        remove_tree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def fd_path(fd: int) -> str:
    """The path of an open file as this process sees it. Through /proc where it is this
    process's; inside another PID namespace's /proc (``cp`` in a container), by changing
    to the directory and asking for the working directory, which the kernel gives
    relative to this process's root."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        pass
    here = os.open(".", os.O_PATH | os.O_CLOEXEC)
    try:
        os.fchdir(fd)
        return os.getcwd()
    finally:
        os.fchdir(here)
        os.close(here)


def proc_path(dir_fd: int, name: str = "") -> str:
    """A path naming ``name`` in ``dir_fd`` for calls that take no descriptor (setxattr,
    mount): the kernel takes the descriptor's directory as it is, then only ``name``."""
    return f"/proc/self/fd/{dir_fd}/{name}" if name else f"/proc/self/fd/{dir_fd}"
