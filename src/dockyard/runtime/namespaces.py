"""OCI namespace types, their clone flags and their /proc/PID/ns names."""

from __future__ import annotations

import os

from dockyard.linux import syscalls as sc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["FLAGS", "PROC_NAMES", "join_order", "plan"]

FLAGS = {
    "pid": sc.CLONE_NEWPID,
    "network": sc.CLONE_NEWNET,
    "mount": sc.CLONE_NEWNS,
    "ipc": sc.CLONE_NEWIPC,
    "uts": sc.CLONE_NEWUTS,
    "user": sc.CLONE_NEWUSER,
    "cgroup": sc.CLONE_NEWCGROUP,
    "time": sc.CLONE_NEWTIME,
}
PROC_NAMES = {
    "pid": "pid",
    "network": "net",
    "mount": "mnt",
    "ipc": "ipc",
    "uts": "uts",
    "user": "user",
    "cgroup": "cgroup",
    "time": "time",
}
# The user namespace first: joining it grants the rights to join the others it owns.
# The mount namespace last, because joining it changes how later paths resolve.
_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")


def join_order(kind: str) -> int:
    return _ORDER.index(kind)


def plan(namespaces: list[dict[str, Any]]) -> tuple[int, list[tuple[str, int]]]:
    """(flags to unshare, [(type, fd to setns)] in join order) for a spec's namespaces.

    The fds are opened here, in the runtime's own view of the filesystem, so that
    the forked child can join them whatever it has unshared by then.
    """
    flags = 0
    joins: list[tuple[str, int]] = []
    seen = set()
    for ns in namespaces or ():
        kind = ns["type"]
        if kind not in FLAGS:
            raise ValueError(f"unknown namespace type: {kind}")
        if kind in seen:
            raise ValueError(f"namespace {kind} is listed twice")
        seen.add(kind)
        path = ns.get("path")
        if path:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as err:
                raise ValueError(f"cannot open {kind} namespace {path}: {err.strerror}") from None
            joins.append((kind, fd))
        else:
            flags |= FLAGS[kind]
    joins.sort(key=lambda j: join_order(j[0]))
    return flags, joins
