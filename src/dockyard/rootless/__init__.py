"""Rootless mode: dockyard run by a user without root.

The same engine runs, inside a user namespace that maps the user to root (and the
user's subordinate IDs to the IDs after it) and a mount namespace of its own, both held
by a small process of the user's (``rootless.userns``, podman's pause process). Every
``dockyard`` command of that user joins them first, so it sees the same overlay mounts
and may mount, chown and create namespaces as root does, over what the user owns only.
Containers' networks live in one more namespace of that user's, reached from the host
through slirp4netns; published ports are listened on by the user's port forwarder
(``rootless.ports``). State goes under the user's XDG directories.

This module is what every layer asks: whether this process runs rootless
(``active``), and where a rootless user's state and runtime files live.
"""

from __future__ import annotations

import os

__all__ = ["RootlessError", "active", "cgroups_delegated", "data_root", "private_dir", "run_dir"]

_active: bool | None = None


class RootlessError(Exception):
    """Rootless mode cannot start here; the message says why in one line."""


def active() -> bool:
    """True in a user namespace other than the host's (a rootless dockyard's, once
    joined): what may not be done there (cgroups, mknod, ports below 1024) is done
    another way or refused."""
    global _active
    if _active is None:
        try:
            with open("/proc/self/uid_map", "rb") as f:
                first = f.read().split()
        except OSError:
            first = []
        _active = first[:3] != [b"0", b"0", b"4294967295"]
    return _active


def cgroups_delegated() -> bool:
    """Whether this rootless process may make cgroups: a cgroup v2 host whose hierarchy
    gives this user a subtree of its own (systemd's ``Delegate=yes``). Never on a v1 or
    hybrid host: their hierarchies are root's."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    if len(lines) != 1 or not lines[0].startswith("0::"):
        return False
    own = "/sys/fs/cgroup" + lines[0][3:]
    return os.access(os.path.join(own, "cgroup.subtree_control"), os.W_OK)


def describe(snapshotter: str) -> dict[str, str]:
    """What ``info`` says of rootless mode: the ID maps, the backends chosen."""

    def maps(path: str) -> str:
        try:
            with open(path) as f:
                rows = [ln.split() for ln in f.read().splitlines() if ln.strip()]
        except OSError:
            return "?"
        return ", ".join(
            f"{a}->{b}" if c == "1" else f"{a}-{int(a) + int(c) - 1}->{b}-{int(b) + int(c) - 1}"
            for a, b, c in rows
        )

    uid, gid = maps("/proc/self/uid_map"), maps("/proc/self/gid_map")
    single = uid.count(",") == 0
    return {
        "IDMapping": f"uid {uid}; gid {gid}"
        + (" (only the user's own ID: no subordinate ranges)" if single else ""),
        "Snapshotter": {
            "overlay": "overlay (native, in the user namespace, userxattr)",
            "fuse-overlayfs": "fuse-overlayfs (a process per mount)",
            "copy": "copy (full copies; no overlayfs)",
        }.get(snapshotter, snapshotter),
        "Network": "slirp4netns (the user's network namespace; bridges inside it)",
        "Ports": "dockyard's forwarder (TCP; the client's address is not kept)",
        "Cgroups": "none: a delegated cgroup v2 subtree is found but not used yet; limits are discarded"
        if cgroups_delegated()
        else "none: this host does not delegate cgroups to this user; limits are discarded",
        "State": os.environ.get("DOCKYARD_ROOT", ""),
        "RunDir": run_dir(),
    }


def snapshotter(root: str) -> str:
    """``overlay`` where the kernel mounts overlayfs in this user namespace (5.11 and
    later) on the filesystem of ``root``, else ``copy``; found once per root and kept in
    ``<root>/rootless-snapshotter``."""
    kept = os.path.join(root, "rootless-snapshotter")
    try:
        with open(kept) as f:
            return f.read().strip() or "overlay"
    except OSError:
        pass
    import tempfile

    from dockyard.linux import syscalls as sc

    os.makedirs(root, exist_ok=True)
    probe = tempfile.mkdtemp(prefix=".overlay-probe-", dir=root)
    found = "fuse-overlayfs" if _fuse_usable() else "copy"
    try:
        for d in ("l", "u", "w", "m"):
            os.mkdir(os.path.join(probe, d))
        options = f"lowerdir={probe}/l,upperdir={probe}/u,workdir={probe}/w,userxattr"
        try:
            sc.mount("overlay", os.path.join(probe, "m"), "overlay", 0, options)
        except OSError:
            pass
        else:
            try:
                with open(os.path.join(probe, "m", "f"), "w") as f:
                    f.write("x")
                found = "overlay"
            finally:
                sc.umount2(os.path.join(probe, "m"), sc.MNT_DETACH)
    finally:
        import shutil

        shutil.rmtree(probe, ignore_errors=True)
    with open(kept, "w") as f:
        f.write(found + "\n")
    return found


def _fuse_usable() -> bool:
    import shutil

    return shutil.which("fuse-overlayfs") is not None and os.access("/dev/fuse", os.R_OK | os.W_OK)


def data_root(env: dict[str, str] | None = None) -> str:
    """``$XDG_DATA_HOME/dockyard``, else ``~/.local/share/dockyard``."""
    env = os.environ if env is None else env
    base = env.get("XDG_DATA_HOME") or os.path.join(_home(env), ".local", "share")
    return os.path.join(base, "dockyard")


def run_dir(env: dict[str, str] | None = None, uid: int | None = None) -> str:
    """``$XDG_RUNTIME_DIR/dockyard``, else ``/tmp/dockyard-<uid>`` (private to the user)."""
    env = os.environ if env is None else env
    if env.get("_DOCKYARD_RUN_DIR"):  # set once joined, where the user's uid reads as 0
        return env["_DOCKYARD_RUN_DIR"]
    uid = os.getuid() if uid is None else uid
    base = env.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base):
        return os.path.join(base, "dockyard")
    return f"/tmp/dockyard-{uid}"


def _home(env: dict[str, str]) -> str:
    home = env.get("HOME")
    if home:
        return home
    import pwd

    return pwd.getpwuid(os.getuid()).pw_dir


def private_dir(path: str, uid: int) -> None:
    """Create ``path`` 0700 for ``uid``, or check that it is that: a directory another
    user made first (under /tmp) would let that user into this one's state."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    import stat

    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
        raise RootlessError(f"{path} is not a directory of user {uid}: refusing to use it")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
