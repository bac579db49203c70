"""Snapshotters: committed layers by name (a chain ID), active snapshots by key.

Two implementations behind one interface, as containerd's:

- ``OverlaySnapshotter``: each committed layer is unpacked once into its own
  directory; an active snapshot is an upper + work directory over the chain of
  its parents, mounted as overlayfs. Lower directories are named in the mount
  options through short links (``l/XXXXXXXXXXXXXXXX``) relative to the
  snapshotter's root, so 120 layers and more fit in the one page the kernel
  reads options from (Docker's overlay2 does the same).
- ``CopySnapshotter``: for hosts without overlayfs. A snapshot is a full copy
  of its parent; mounts are bind mounts.

Layout under ``root``: ``committed/<hex of name>/``, ``active/<key>/``, ``l/``.
Each snapshot directory holds ``fs/`` (its content), for overlay ``work/``
when active, a ``parent`` file naming the parent, and ``link`` (its short link).
"""

from __future__ import annotations

import os
import sys
from collections import namedtuple

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.fsutil import mark_top_directory, remove_tree
from dockyard.linux import syscalls as sc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import BinaryIO

__all__ = ["CopySnapshotter", "Info", "OverlaySnapshotter", "Snapshotter", "unmount"]

_KEY_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-:")


class Info(namedtuple("Info", "name parent kind")):
    """A snapshot: its name or key, its parent's name, and "committed" or "active"."""

    __slots__ = ()


def _dirname(name: str) -> str:
    if not name or not set(name) <= _KEY_OK or name in (".", ".."):
        raise InvalidArgument(f"invalid snapshot name: {name!r}")
    return name.removeprefix("sha256:")


_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def _short_id() -> str:
    # RFC 4648 base32 of 10 random bytes, written out: the base64 module imports `re`,
    # which would cost every `run` about 5 ms
    n = int.from_bytes(os.urandom(10), "big")
    return "".join(_B32[(n >> shift) & 31] for shift in range(75, -1, -5))


def unmount(target: str) -> None:
    """Unmount ``target`` (lazily if busy); not mounted, or already gone, is fine."""
    try:
        sc.umount2(target, 0)
    except OSError as err:
        if err.errno in (2, 22):  # ENOENT: removed meanwhile; EINVAL: not a mount point
            return
        if err.errno == 16:  # EBUSY
            sc.umount2(target, sc.MNT_DETACH)
            return
        raise


class Snapshotter:
    """The shared bookkeeping; subclasses decide how content is laid out and mounted."""

    kind = "base"

    def __init__(self, root: str) -> None:
        self.root = root
        for sub in ("committed", "active", "l"):
            path = os.path.join(root, sub)
            if not os.path.isdir(path):
                os.makedirs(path, exist_ok=True)
            if sub != "l":
                # each snapshot in a block group of its own; also for roots made before this
                # (two ioctls: ~20 µs)
                mark_top_directory(path)

    # -- lookup
    def _dir(self, name: str, kind: str) -> str:
        return os.path.join(self.root, kind, _dirname(name))

    def _find(self, name: str) -> tuple[str, str]:
        for kind in ("committed", "active"):
            d = self._dir(name, kind)
            if os.path.isdir(d):
                return d, kind
        raise NotFound(f"no such snapshot: {name}")

    def exists(self, name: str) -> bool:
        try:
            self._find(name)
            return True
        except NotFound:
            return False

    def stat(self, name: str) -> Info:
        d, kind = self._find(name)
        return Info(name, self._parent_of(d), kind)

    def _parent_of(self, d: str) -> str | None:
        try:
            with open(os.path.join(d, "parent")) as f:
                return f.read() or None
        except FileNotFoundError:
            return None

    def _name_of(self, d: str) -> str:
        with open(os.path.join(d, "name")) as f:
            return f.read()

    def chain(self, name: str) -> list[str]:
        """Directories of ``name`` and its ancestors, nearest first."""
        out = []
        current: str | None = name
        while current:
            d, _kind = self._find(current)
            out.append(d)
            current = self._parent_of(d)
        return out

    def list(self) -> Iterator[Info]:
        for kind in ("committed", "active"):
            base = os.path.join(self.root, kind)
            for entry in sorted(os.listdir(base)):
                if ".removing-" in entry or ".tmp-" in entry:
                    continue  # being removed or made by another process
                d = os.path.join(base, entry)
                try:
                    yield Info(self._name_of(d), self._parent_of(d), kind)
                except (FileNotFoundError, NotADirectoryError):
                    continue  # gone meanwhile (a concurrent remove), or not whole yet

    def fs(self, name: str) -> str:
        """The directory holding this snapshot's own content (a layer's files, or an upper dir)."""
        d, _kind = self._find(name)
        return os.path.join(d, "fs")

    def usage(self, name: str) -> int:
        """Bytes used on disk by this snapshot's own content."""
        total = 0
        seen = set()
        for base, _dirs, files in os.walk(self.fs(name)):
            for f in files:
                st = os.lstat(os.path.join(base, f))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
        return total

    # -- life cycle
    def _new(self, name: str, parent: str | None, kind: str) -> str:
        if self.exists(name):
            raise Conflict(f"snapshot already exists: {name}")
        if parent is not None:
            _pd, pkind = self._find(parent)
            if pkind != "committed":
                raise InvalidArgument(f"parent snapshot is not committed: {parent}")
        d = self._dir(name, kind)
        tmp = f"{d}.tmp-{os.urandom(4).hex()}"
        link = _short_id()
        try:
            os.makedirs(os.path.join(tmp, "fs"))
            with open(os.path.join(tmp, "name"), "w") as f:
                f.write(name)
            with open(os.path.join(tmp, "parent"), "w") as f:
                f.write(parent or "")
            self._populate(tmp, parent)
            os.symlink(f"../{kind}/{os.path.basename(d)}/fs", os.path.join(self.root, "l", link))
            with open(os.path.join(tmp, "link"), "w") as f:
                f.write(link)
            os.rename(tmp, d)  # the snapshot appears whole or not at all
        except BaseException as err:
            # a failure or ^C half-way: nothing of it stays
            try:
                os.unlink(os.path.join(self.root, "l", link))
            except FileNotFoundError:
                pass
            remove_tree(tmp, ignore_errors=True)
            if isinstance(err, OSError) and os.path.isdir(d):
                raise Conflict(f"snapshot already exists: {name}") from None
            raise
        return d

    def _populate(self, d: str, parent: str | None) -> None:
        pass

    def prepare(self, key: str, parent: str | None) -> str:
        """A new writable snapshot on top of committed ``parent``; return its fs dir."""
        return os.path.join(self._new(key, parent, "active"), "fs")

    def reparent(self, key: str, parent: str | None) -> None:
        """Put active ``key``, made without a parent, on committed ``parent``: for a layer
        unpacked before its parent was in (it needs none of its parent's files: overlay only)."""
        d, kind = self._find(key)
        if kind != "active" or self.apply_mode != "overlay":
            raise InvalidArgument(f"snapshot {key} cannot change its parent")
        if parent is not None and self._find(parent)[1] != "committed":
            raise InvalidArgument(f"parent snapshot is not committed: {parent}")
        with open(os.path.join(d, "parent"), "w") as f:
            f.write(parent or "")

    def commit(self, name: str, key: str) -> None:
        """Turn active ``key`` into committed ``name`` (no longer writable)."""
        d, kind = self._find(key)
        if kind != "active":
            raise InvalidArgument(f"snapshot is not active: {key}")
        if self.exists(name):
            raise Conflict(f"snapshot already exists: {name}")
        target = self._dir(name, "committed")
        remove_tree(os.path.join(d, "work"), ignore_errors=True)
        try:
            os.unlink(os.path.join(d, _VOLATILE_BOOT))
        except FileNotFoundError:
            pass
        with open(os.path.join(d, "name"), "w") as f:
            f.write(name)
        try:
            os.rename(d, target)
        except OSError as err:
            with open(os.path.join(d, "name"), "w") as f:
                f.write(key)
            if err.errno in (17, 39):  # EEXIST, ENOTEMPTY: a concurrent commit of the same name
                raise Conflict(f"snapshot already exists: {name}") from None
            raise
        self._relink(target, "committed")

    def _link(self, d: str) -> str:
        with open(os.path.join(d, "link")) as f:
            return f.read()

    def _relink(self, d: str, kind: str) -> None:
        link = os.path.join(self.root, "l", self._link(d))
        tmp = link + ".new"
        os.symlink(f"../{kind}/{os.path.basename(d)}/fs", tmp)
        os.rename(tmp, link)

    def remove(self, name: str) -> None:
        """Delete a snapshot; refused while another snapshot names it as parent."""
        d, _kind = self._find(name)
        for info in self.list():
            if info.parent == name:
                raise Conflict(f"snapshot {name} has children, e.g. {info.name}")
        try:
            os.unlink(os.path.join(self.root, "l", self._link(d)))
        except FileNotFoundError:
            pass
        trash = f"{d}.removing-{os.urandom(4).hex()}"
        os.rename(d, trash)  # gone from view first, then from disk
        remove_tree(trash)

    def mount(self, key: str, target: str, readonly: bool = False, volatile: bool = False) -> None:
        """Mount ``key`` at ``target``. ``volatile``: the writes need not survive a host crash
        (a build step, a ``--rm`` container), so unmounting does not sync the filesystem
        underneath, which would write back every dirty page on it, not only this snapshot's."""
        raise NotImplementedError

    apply_mode = "flat"

    def unpack(self, name: str, parent: str | None, layer: BinaryIO) -> bool:
        """Unpack a layer tar as committed snapshot ``name`` over ``parent``, once.

        Returns False if ``name`` was already there (nothing read). A failure
        leaves no snapshot behind.
        """
        from dockyard.snapshot.apply import apply_layer

        if self.exists(name):
            return False
        key = f"unpack-{os.urandom(8).hex()}"
        fs = self.prepare(key, parent)
        try:
            apply_layer(layer, fs, mode=self.apply_mode)
            self.commit(name, key)
        except BaseException:
            self.remove(key)
            raise
        return True


class OverlaySnapshotter(Snapshotter):
    kind = "overlay"
    apply_mode = "overlay"

    def _populate(self, d: str, parent: str | None) -> None:
        os.mkdir(os.path.join(d, "work"))

    def lower_links(self, name: str) -> list[str]:
        """``l/XXXX`` for each committed ancestor of ``name``, nearest first."""
        chain = self.chain(name)
        start = 1 if self.stat(name).kind == "active" else 0
        return [f"l/{self._link(d)}" for d in chain[start:]]

    def mount(self, key: str, target: str, readonly: bool = False, volatile: bool = False) -> None:
        """Mount snapshot ``key`` at ``target`` as overlayfs (read-only for a committed one)."""
        d, kind = self._find(key)
        lowers = self.lower_links(key)
        if kind == "active" and not readonly:
            if not lowers:
                sc.mount(os.path.join(d, "fs"), target, None, sc.MS_BIND)
                return
            link = f"l/{self._link(d)}"
            rel_work = os.path.relpath(os.path.join(d, "work"), self.root)
            options = f"lowerdir={':'.join(lowers)},upperdir={link},workdir={rel_work}"
            _after_volatile(key, d)
            self._overlay(d, os.path.abspath(target), options, volatile)
            return
        if kind == "active":
            lowers = [f"l/{self._link(d)}", *lowers]
        if len(lowers) == 1:
            sc.mount(os.path.join(self.root, lowers[0]), target, None, sc.MS_BIND)
            sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY)
            return
        self._overlay(d, os.path.abspath(target), f"lowerdir={':'.join(lowers)}", False)

    def _overlay(self, d: str, target: str, options: str, volatile: bool) -> None:
        """The overlay mount itself, with ``options`` relative to the snapshotter's root."""
        if volatile:
            with open(os.path.join(d, _VOLATILE_BOOT), "w") as f:
                f.write(_boot_id())
            try:
                _mount_from(self.root, "overlay", target, options + ",volatile", quiet=True)
                return
            except OSError:
                pass  # a kernel before 5.10: a normal mount
        _mount_from(self.root, "overlay", target, options)


_VOLATILE_BOOT = "volatile-boot"


def _boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


def _after_volatile(key: str, d: str) -> None:
    """Overlay refuses an upper dir once mounted ``volatile`` (it leaves
    ``work/work/incompat/volatile`` behind) because unsynced writes may be lost in a crash.
    In the boot that wrote them they are intact (the page cache still holds them), so the
    marker goes; after a host restart the snapshot may be incomplete and is refused."""
    incompat = os.path.join(d, "work", "work", "incompat")
    if not os.path.lexists(os.path.join(incompat, "volatile")):
        return
    try:
        with open(os.path.join(d, _VOLATILE_BOOT)) as f:
            written = f.read().strip()
    except FileNotFoundError:
        written = ""
    if written != _boot_id():
        raise Conflict(
            f"snapshot {key} was written without sync before the host restarted: "
            "its files may be incomplete; remove it"
        )
    remove_tree(incompat)


def _mount_from(cwd: str, fstype: str, target: str, options: str, quiet: bool = False) -> None:
    """mount(2) with relative paths in ``options`` resolved from ``cwd`` (relative paths keep
    a deep image's options under the page that mount(2) takes).

    In a process of one thread (a monitor, the CLI) the working directory moves there and
    back, as no other code runs meanwhile; where threads run (the API server) a forked
    child changes directory instead, so theirs is untouched.
    """
    from dockyard import rootless

    if (
        rootless.active()
    ):  # overlay's own attributes as user.overlay.*, all a user namespace may set
        options += ",userxattr"
    if len(options) >= 4096:
        raise InvalidArgument(f"overlay mount options too long ({len(options)} bytes)")
    threading = sys.modules.get("threading")
    if threading is None or threading.active_count() == 1:
        back = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.chdir(cwd)
            sc.mount("overlay", target, fstype, 0, options)
        except OSError as err:
            if not quiet:
                raise OSError(
                    err.errno, f"mounting overlay on {target} failed: {err.strerror}"
                ) from None
            raise
        finally:
            os.fchdir(back)
            os.close(back)
        return
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(cwd)
            sc.mount("overlay", target, fstype, 0, options)
            code = 0
        except OSError as err:
            if not quiet:  # a first try (volatile, before kernel 5.10) fails silently
                os.write(2, f"dockyard: mount overlay on {target}: {err.strerror}\n".encode())
        finally:
            os._exit(code)
    _pid, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise OSError(f"mounting overlay on {target} failed")


class CopySnapshotter(Snapshotter):
    """Full copies: slower and bigger, but needs nothing from the kernel but bind mounts."""

    kind = "copy"

    def _populate(self, d: str, parent: str | None) -> None:
        if parent is None:
            return
        src = self.fs(parent)
        fs = os.path.join(d, "fs")
        os.rmdir(fs)
        # cp -a keeps owners, modes, devices, hardlinks, xattrs; reflinks where the fs can.
        import subprocess

        subprocess.run(["cp", "-a", "--reflink=auto", src, fs], check=True)

    def mount(self, key: str, target: str, readonly: bool = False, volatile: bool = False) -> None:
        sc.mount(self.fs(key), target, None, sc.MS_BIND)
        if readonly or self.stat(key).kind == "committed":
            sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY)


class FuseOverlaySnapshotter(OverlaySnapshotter):
    """The overlay layout mounted by fuse-overlayfs, for a user namespace whose kernel
    mounts no overlayfs there (before 5.11): the same lowers, upper and work directories,
    the same whiteouts; each mount is a fuse-overlayfs process, which ends when it is
    unmounted."""

    kind = "fuse-overlayfs"

    def _overlay(self, d: str, target: str, options: str, volatile: bool) -> None:
        _fuse_overlayfs(self.root, target, options)  # no volatile: FUSE writes through anyway

    def commit(self, name: str, key: str) -> None:
        # fuse-overlayfs marks an opaque directory with a .wh..wh..opq file where it cannot
        # set overlayfs's attributes, and a deletion with a .wh.NAME file where it cannot
        # make a 0/0 device: made overlayfs's markers before the upper becomes a layer, so
        # the kernel's overlay (and the layer's diff) read the snapshot as written
        d, kind = self._find(key)
        if kind == "active":
            _kernel_markers(os.path.join(d, "fs"))
        super().commit(name, key)


def _kernel_markers(upper: str) -> None:
    import stat

    from dockyard.snapshot.apply import overlay_xattrs

    for top, _dirs, files, fd in os.fwalk(upper):
        for name in files:
            if not name.startswith(".wh."):
                continue
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            device = stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
            if name == ".wh..opq" and device:
                # its opaque marker as a 0/0 device, beside its user.fuseoverlayfs.opaque
                os.unlink(name, dir_fd=fd)
                os.setxattr(top, overlay_xattrs() + "opaque", b"y", follow_symlinks=False)
            elif stat.S_ISREG(st.st_mode):
                os.unlink(name, dir_fd=fd)
                if name == ".wh..wh..opq":
                    os.setxattr(top, overlay_xattrs() + "opaque", b"y", follow_symlinks=False)
                else:
                    os.mknod(name[4:], stat.S_IFCHR, os.makedev(0, 0), dir_fd=fd)


def _fuse_overlayfs(cwd: str, target: str, options: str) -> None:
    """fuse-overlayfs with relative paths resolved from ``cwd``; returns once mounted (it
    forks into the background then)."""
    import shutil
    import subprocess

    binary = shutil.which("fuse-overlayfs")
    if binary is None:
        raise InvalidArgument(
            "the fuse-overlayfs snapshotter needs fuse-overlayfs (Debian: apt-get install fuse-overlayfs)"
        )
    proc = subprocess.run([binary, "-o", options, target], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [
            ln for ln in proc.stderr.splitlines() if ln.strip() and "unknown argument" not in ln
        ]
        raise OSError(
            f"mounting fuse-overlayfs on {target} failed: {lines[-1] if lines else proc.returncode}"
        )


SNAPSHOTTERS: dict[str, Callable[[str], Snapshotter]] = {
    "overlay": OverlaySnapshotter,
    "fuse-overlayfs": FuseOverlaySnapshotter,
    "copy": CopySnapshotter,
}
