"""cgroups v1, v2 and hybrid behind one interface.

``detect()`` tells what the host runs; ``manager_for()`` builds the manager a
container uses; ``from_state()`` rebuilds it in a later command from what
``to_state()`` saved. Every manager offers: create, procs_files,
apply(resources), pids, freeze/thaw/is_frozen, kill_all, stats, destroy.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

__all__ = [
    "CgroupManager",
    "NullCgroup",
    "detect",
    "from_state",
    "manager_for",
    "mounts",
    "resolve_path",
]

_CGROUP2_MAGIC = 0x63677270


if TYPE_CHECKING:

    class CgroupManager(Protocol):
        version: int

        def to_state(self) -> dict[str, Any]: ...
        def create(self) -> None: ...
        def procs_files(self) -> list[str]:
            """Files a single-threaded child writes "0" to, to join this cgroup."""
            ...

        def apply(self, res: dict[str, Any]) -> None: ...
        def pids(self) -> list[int]: ...
        def is_frozen(self) -> bool: ...
        def freeze(self) -> None: ...
        def thaw(self) -> None: ...
        def kill_all(self, sig: int = 9) -> None: ...
        def stats(self) -> dict[str, Any]: ...
        def oom_kills(self) -> int:
            """Processes the kernel's OOM killer took in this cgroup: one file, not stats()."""
            ...

        def destroy(self) -> None: ...


class NullCgroup:
    """No cgroup at all (``--cgroup-manager=disabled`` or a host without cgroups)."""

    version = 0

    def to_state(self) -> dict[str, Any]:
        return {"version": 0}

    def create(self) -> None:
        pass

    def procs_files(self) -> list[str]:
        return []

    def apply(self, res: dict[str, Any]) -> None:
        if any(res.get(k) for k in ("memory", "cpu", "pids", "blockIO")):
            from dockyard.runtime.cgroups._files import warn

            warn("cgroups are disabled; resource limits not applied")

    def pids(self) -> list[int]:
        return []

    def is_frozen(self) -> bool:
        return False

    def freeze(self) -> None:
        raise OSError(95, "cgroups are disabled: cannot pause")

    def thaw(self) -> None:
        raise OSError(95, "cgroups are disabled: cannot resume")

    def kill_all(self, sig: int = 9) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {}

    def oom_kills(self) -> int:
        return 0

    def destroy(self) -> None:
        pass


_MOUNTS: list[tuple[str, str, str]] = []


def mounts() -> list[tuple[str, str, str]]:
    """(mount point, fs type, super options) of this process's mounts, read once."""
    if not _MOUNTS:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = right.split()
                _MOUNTS.append((left.split()[4], fields[0], fields[2] if len(fields) > 2 else ""))
    return _MOUNTS


def _statfs_type(path: str) -> int | None:
    # os.statvfs has no f_type; mountinfo tells the fs type without ctypes.
    kind = None
    for mountpoint, fstype, _opts in mounts():
        if mountpoint == path:
            kind = _CGROUP2_MAGIC if fstype == "cgroup2" else 0
    return kind


def detect(root: str = "/sys/fs/cgroup") -> str:
    """``v2`` (unified), ``hybrid`` (v1 plus a cgroup2 at root/unified), ``v1`` or ``none``."""
    kind = _statfs_type(root)
    if kind == _CGROUP2_MAGIC:
        return "v2"
    if not os.path.isdir(root) or not os.listdir(root):
        return "none"
    if _statfs_type(os.path.join(root, "unified")) == _CGROUP2_MAGIC:
        return "hybrid"
    return "v1"


def resolve_path(cgroups_path: str | None, container_id: str, systemd: bool = False) -> str:
    """The container's cgroup path relative to each hierarchy's root.

    Empty means ``/<id>`` (runc's default). A relative path is relative to the
    runtime's own cgroup. With ``--systemd-cgroup`` a ``slice:prefix:name`` path
    becomes ``/a.slice/a-b.slice/prefix-name.scope`` as systemd would lay it out.
    """
    if systemd and cgroups_path and cgroups_path.count(":") == 2:
        slice_, prefix, name = cgroups_path.split(":")
        slice_ = slice_ or "system.slice"
        parts = slice_.removesuffix(".slice").split("-")
        expanded = "/".join("-".join(parts[: i + 1]) + ".slice" for i in range(len(parts)))
        unit = f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
        return f"/{expanded}/{unit}"
    if not cgroups_path:
        return "/" + container_id
    if cgroups_path.startswith("/"):
        return cgroups_path
    return os.path.join(_own_cgroup(), cgroups_path)


def _own_cgroup() -> str:
    with open("/proc/self/cgroup") as f:
        for line in f:
            hid, ctrls, path = line.rstrip("\n").split(":", 2)
            if hid == "0" or "memory" in ctrls.split(",") or "pids" in ctrls.split(","):
                return path
    return "/"


def manager_for(mode: str, path: str, root: str = "/sys/fs/cgroup") -> CgroupManager:
    """Build a manager for cgroup ``path``.

    ``mode`` is ``auto`` (what the host runs; hybrid counts as v1, as in runc),
    ``v1``, ``v2`` (on a hybrid host: the cgroup2 hierarchy at root/unified), or
    ``disabled``.
    """
    from dockyard.runtime.cgroups.v1 import CgroupV1
    from dockyard.runtime.cgroups.v2 import CgroupV2

    host = detect(root)
    if mode == "disabled" or host == "none":
        return NullCgroup()
    if mode == "auto":
        mode = "v2" if host == "v2" else "v1"
    if mode == "v2":
        mount = root if host == "v2" else os.path.join(root, "unified")
        if host not in ("v2", "hybrid"):
            raise OSError(95, "this host has no cgroup v2 hierarchy")
        return CgroupV2.for_path(mount, path)
    if host == "v2":
        raise OSError(95, "this host has no cgroup v1 hierarchies")
    return CgroupV1.for_path(path)


def from_state(state: dict[str, Any]) -> CgroupManager:
    from dockyard.runtime.cgroups.v1 import CgroupV1
    from dockyard.runtime.cgroups.v2 import CgroupV2

    version = state.get("version", 0)
    if version == 1:
        return CgroupV1(state["paths"])
    if version == 2:
        return CgroupV2(state["mount"], state["path"])
    return NullCgroup()
