"""Container state kept under the runtime root, and the status derived from /proc.

``<root>/<id>/state.json`` holds what was decided at create time; the status is
never stored but read off the kernel each time, so a crash of any runtime
command cannot leave a stale "running".
"""

from __future__ import annotations

import os

from dockyard import _json as json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "OCI_VERSION",
    "ContainerNotFound",
    "list_ids",
    "load",
    "proc_start_time",
    "save",
    "state_dir",
    "status",
]

OCI_VERSION = "1.1.0"
EXEC_FIFO = "exec.fifo"


class ContainerNotFound(Exception):
    pass


def state_dir(root: str, container_id: str) -> str:
    # A leading dot is refused (runc allows it): the root's dot-entries are the runtime's own
    # (``.seccomp``, compiled filters).
    if not container_id or "/" in container_id or container_id.startswith("."):
        raise ValueError(f"invalid container id: {container_id!r}")
    return os.path.join(root, container_id)


def save(root: str, state: dict[str, Any]) -> None:
    path = os.path.join(state_dir(root, state["id"]), "state.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(state))
    os.rename(tmp, path)


def load(root: str, container_id: str) -> dict[str, Any]:
    try:
        with open(os.path.join(state_dir(root, container_id), "state.json")) as f:
            return json.loads(f.read())
    except (FileNotFoundError, NotADirectoryError):
        raise ContainerNotFound(f"container does not exist: {container_id}") from None


def list_ids(root: str) -> list[str]:
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if os.path.exists(os.path.join(root, n, "state.json")))


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat, or None if the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def status(root: str, state: dict[str, Any]) -> str:
    """created, running, paused or stopped, as the OCI runtime spec names them."""
    pid = state.get("pid") or 0
    if pid <= 0 or proc_start_time(pid) != state.get("init_start_time"):
        return "stopped"
    if os.path.exists(os.path.join(state_dir(root, state["id"]), EXEC_FIFO)):
        return "created"
    from dockyard.runtime.cgroups import from_state

    if from_state(state.get("cgroup") or {}).is_frozen():
        return "paused"
    return "running"
