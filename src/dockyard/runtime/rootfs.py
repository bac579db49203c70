"""The container's filesystem: mounts, devices, pivot_root, masked and read-only paths.

Runs inside the container's new mount namespace, in the init process, before
the user's program. Mount destinations are resolved with ``secure_join`` so a
symlink in an image can never point a mount at the host.
"""

from __future__ import annotations

import os
import stat

from dockyard.linux import syscalls as sc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "DEFAULT_DEVICES",
    "finish",
    "parse_mount_options",
    "pivot",
    "prepare",
    "secure_join",
]

_FLAGS = {
    "defaults": (0, 0),
    "ro": (sc.MS_RDONLY, 0),
    "rw": (0, sc.MS_RDONLY),
    "suid": (0, sc.MS_NOSUID),
    "nosuid": (sc.MS_NOSUID, 0),
    "dev": (0, sc.MS_NODEV),
    "nodev": (sc.MS_NODEV, 0),
    "exec": (0, sc.MS_NOEXEC),
    "noexec": (sc.MS_NOEXEC, 0),
    "sync": (sc.MS_SYNCHRONOUS, 0),
    "async": (0, sc.MS_SYNCHRONOUS),
    "dirsync": (sc.MS_DIRSYNC, 0),
    "remount": (sc.MS_REMOUNT, 0),
    "mand": (sc.MS_MANDLOCK, 0),
    "nomand": (0, sc.MS_MANDLOCK),
    "atime": (0, sc.MS_NOATIME),
    "noatime": (sc.MS_NOATIME, 0),
    "diratime": (0, sc.MS_NODIRATIME),
    "nodiratime": (sc.MS_NODIRATIME, 0),
    "bind": (sc.MS_BIND, 0),
    "rbind": (sc.MS_BIND | sc.MS_REC, 0),
    "relatime": (sc.MS_RELATIME, 0),
    "norelatime": (0, sc.MS_RELATIME),
    "strictatime": (sc.MS_STRICTATIME, 0),
    "nostrictatime": (0, sc.MS_STRICTATIME),
    "nosymfollow": (sc.MS_NOSYMFOLLOW, 0),
}
_PROPAGATION = {
    "private": sc.MS_PRIVATE,
    "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "slave": sc.MS_SLAVE,
    "rslave": sc.MS_SLAVE | sc.MS_REC,
    "shared": sc.MS_SHARED,
    "rshared": sc.MS_SHARED | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE,
    "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}

# (path, major, minor): the devices every container gets, as runc's AllowedDevices.
DEFAULT_DEVICES = (
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
)
_DEV_LINKS = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
)
# Flags a bind remount must repeat, or the kernel refuses it inside a user namespace.
_LOCKED = (
    (os.ST_NOSUID, sc.MS_NOSUID),
    (os.ST_NODEV, sc.MS_NODEV),
    (os.ST_NOEXEC, sc.MS_NOEXEC),
    (os.ST_NOATIME, sc.MS_NOATIME),
    (os.ST_NODIRATIME, sc.MS_NODIRATIME),
    (os.ST_RELATIME, sc.MS_RELATIME),
)


def parse_mount_options(options: list[str]) -> tuple[int, int, str]:
    """(flags, propagation flags, data) from OCI mount options, as runc parses them."""
    flags = prop = 0
    data = []
    for opt in options:
        if opt in _FLAGS:
            setf, clearf = _FLAGS[opt]
            flags = (flags | setf) & ~clearf
        elif opt in _PROPAGATION:
            prop |= _PROPAGATION[opt]
        else:
            data.append(opt)
    return flags, prop, ",".join(data)


_last_root: list = []  # [(path, dev, ino, Root)]: a container's set-up resolves many paths in one root


def secure_join(root: str, path: str) -> str:
    """``root/path`` with every symlink on the way resolved as if ``root`` were ``/``: the
    one in-root resolver (``inroot.Root.resolve``), as a host path for mount(2). The root's
    descriptor is kept for the next call while ``root`` still names the same directory."""
    from dockyard.inroot import Root

    st = os.stat(root)
    if _last_root and _last_root[0][:3] == (root, st.st_dev, st.st_ino):
        inside = _last_root[0][3]
    else:
        for entry in _last_root:
            entry[3].close()
        inside = Root(root)
        _last_root[:] = [(root, st.st_dev, st.st_ino, inside)]
    return os.path.join(root, inside.resolve(path))


def _locked_flags(path: str) -> int:
    st = os.statvfs(path)
    return sum(ms for st_flag, ms in _LOCKED if st.f_flag & st_flag)


def _ensure(dest: str, as_dir: bool) -> None:
    if as_dir:
        os.makedirs(dest, exist_ok=True)
        return
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if not os.path.lexists(dest):
        os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o755))


def _bind(source: str, dest: str, flags: int, prop: int) -> None:
    sc.mount(source, dest, None, sc.MS_BIND | (flags & sc.MS_REC))
    extra = flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
    if extra:
        sc.mount(None, dest, None, sc.MS_BIND | sc.MS_REMOUNT | extra | _locked_flags(dest))
    if prop:
        sc.mount(None, dest, None, prop)


def _mount_cgroup(dest: str, flags: int, ctx: dict[str, Any]) -> None:
    """Docker's layout: cgroup2 where the host is v2, else a tmpfs of v1 hierarchies."""
    ro = flags & sc.MS_RDONLY
    base = flags & ~sc.MS_RDONLY
    if ctx["cgroup_mode"] == "v2":
        try:
            sc.mount("cgroup2", dest, "cgroup2", flags)
        except PermissionError:
            sc.mount(ctx["cgroup_v2_path"], dest, None, sc.MS_BIND | sc.MS_REC)
        return
    sc.mount("tmpfs", dest, "tmpfs", base, "mode=755")
    for ctrl, host_dir in sorted(set((c, p) for c, p in (ctx["cgroup_v1_paths"] or {}).items())):
        sub = os.path.join(dest, ctrl.removeprefix("name="))
        os.makedirs(sub, exist_ok=True)
        if ctx["new_cgroupns"]:
            opts = ctrl if not ctrl.startswith("name=") else f"none,{ctrl}"
            try:
                sc.mount("cgroup", sub, "cgroup", base | ro, opts)
                continue
            except OSError:
                pass
        sc.mount(host_dir, sub, None, sc.MS_BIND)
        if ro:
            sc.mount(None, sub, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | base)
    if ro:
        sc.mount(None, dest, None, sc.MS_REMOUNT | sc.MS_RDONLY | base, "mode=755")


def mount_one(rootfs: str, bundle: str, m: dict[str, Any], ctx: dict[str, Any]) -> None:
    dest = secure_join(rootfs, m["destination"])
    flags, prop, data = parse_mount_options(m.get("options") or [])
    kind = m.get("type") or ("bind" if flags & sc.MS_BIND else "")
    source = m.get("source") or kind
    if kind == "bind" or flags & sc.MS_BIND:
        if not source.startswith("/"):
            source = os.path.join(bundle, source)
        _ensure(dest, os.path.isdir(source))
        _bind(source, dest, flags | sc.MS_BIND, prop)
        return
    _ensure(dest, True)
    if kind == "cgroup":
        _mount_cgroup(dest, flags, ctx)
    else:
        try:
            sc.mount(source, dest, kind, flags, data or None)
        except OSError as err:
            if kind == "devpts" and err.errno == 22 and data and "gid=" in data:
                # a user namespace with only its owner's ID mapped has no group tty (5)
                data = ",".join(o for o in data.split(",") if not o.startswith("gid="))
                sc.mount(source, dest, kind, flags, data or None)
                if prop:
                    sc.mount(None, dest, None, prop)
                return
            if kind != "sysfs" or not isinstance(err, PermissionError):
                raise
            # A user namespace that does not own the network namespace may not mount
            # sysfs; runc then binds the host's /sys read-only instead.
            sc.mount("/sys", dest, None, sc.MS_BIND | sc.MS_REC)
            sc.mount(None, dest, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | flags)
    if prop:
        sc.mount(None, dest, None, prop)


def _make_device(rootfs: str, dev: dict[str, Any], in_userns: bool) -> None:
    dest = secure_join(rootfs, dev["path"])
    kind = dev.get("type", "c")
    mode = dev.get("fileMode", 0o666) & 0o7777
    fmt = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[kind]
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if os.path.lexists(dest):
        os.unlink(dest)
    if in_userns:
        # mknod is refused in a user namespace: bind the host's node instead.
        _ensure(dest, False)
        sc.mount(dev["path"], dest, None, sc.MS_BIND)
        return
    rdev = os.makedev(dev.get("major", 0), dev.get("minor", 0)) if kind != "p" else 0
    os.mknod(dest, mode | fmt, rdev)
    os.chmod(dest, mode)
    os.chown(dest, dev.get("uid", 0), dev.get("gid", 0))


def prepare(spec: dict[str, Any], bundle: str, ctx: dict[str, Any]) -> str:
    """Mount everything under the rootfs; return its path. Runs before pivot_root."""
    linux = spec.get("linux") or {}
    rootfs = spec["root"]["path"]
    if not rootfs.startswith("/"):
        rootfs = os.path.join(bundle, rootfs)
    rootfs = os.path.realpath(rootfs)
    prop = _PROPAGATION.get(linux.get("rootfsPropagation", ""), sc.MS_SLAVE | sc.MS_REC)
    if ctx.get("host_mounts"):
        # The runtime's own mount namespace: the host's propagation is left as it is; the
        # root's bind mount is private, so what is mounted under it stays there.
        sc.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC)
        sc.mount(None, rootfs, None, sc.MS_PRIVATE | sc.MS_REC)
    else:
        # Keep our mounts from reaching the host, whatever the host's propagation is.
        sc.mount(
            None,
            "/",
            None,
            prop if prop & (sc.MS_SLAVE | sc.MS_PRIVATE) else sc.MS_SLAVE | sc.MS_REC,
        )
        sc.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC)
    for m in spec.get("mounts") or ():
        mount_one(rootfs, bundle, m, ctx)
    dev_mounted = any(
        m.get("destination", "").rstrip("/") == "/dev" for m in spec.get("mounts") or ()
    )
    if dev_mounted or os.path.isdir(os.path.join(rootfs, "dev")):
        defaults = [{"path": p, "type": "c", "major": a, "minor": b} for p, a, b in DEFAULT_DEVICES]
        for dev in defaults + list(linux.get("devices") or ()):
            _make_device(rootfs, dev, ctx["in_userns"])
        links = list(_DEV_LINKS)
        if os.path.exists("/proc/kcore"):
            links.append(("/proc/kcore", "/dev/core"))
        if os.path.isdir(os.path.join(rootfs, "dev/pts")):
            links.append(("pts/ptmx", "/dev/ptmx"))
        for target, link in links:
            path = secure_join(rootfs, link)
            if os.path.lexists(path):
                if link != "/dev/ptmx":
                    continue
                os.unlink(path)
            os.symlink(target, path)
    return rootfs


def pivot(rootfs: str, no_pivot: bool, chroot_only: bool = False) -> None:
    """Make ``rootfs`` the root and drop the host's mounts from view. ``chroot_only``: in
    the runtime's own mount namespace, where moving or pivoting would change the host's
    root for everyone, only this process's root changes (as runc does there)."""
    if chroot_only:
        os.chdir(rootfs)
        os.chroot(".")
        os.chdir("/")
        return
    if no_pivot:
        os.chdir(rootfs)
        sc.mount(rootfs, "/", None, sc.MS_MOVE)
        os.chroot(".")
        os.chdir("/")
        return
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        # pivot_root(".", ".") stacks the old root under the new one with no
        # directory for it (runc's trick); then the old root is detached.
        os.fchdir(new)
        sc.pivot_root(".", ".")
        os.fchdir(old)
        sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
        sc.umount2(".", sc.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old)
        os.close(new)


def finish(spec: dict[str, Any], host_mounts: bool = False) -> None:
    """After pivot_root: masked and read-only paths, a read-only root, root propagation."""
    linux = spec.get("linux") or {}
    for path in linux.get("maskedPaths") or ():
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY)
            else:
                sc.mount("/dev/null", path, None, sc.MS_BIND)
        except FileNotFoundError:
            pass
    for path in linux.get("readonlyPaths") or ():
        try:
            sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
        except FileNotFoundError:
            continue
        flags = sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_REC
        sc.mount(None, path, None, flags | _locked_flags(path))
    if (spec.get("root") or {}).get("readonly"):
        flags = sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY
        sc.mount(None, "/", None, flags | _locked_flags("/"))
    prop = _PROPAGATION.get(linux.get("rootfsPropagation", ""))
    if prop and prop & sc.MS_SHARED and not host_mounts:
        sc.mount(None, "/", None, prop)
