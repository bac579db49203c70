"""Namespaces a container takes from another one: ``IpcMode``, ``PidMode`` (Docker's
``container:NAME``) and ``UTSMode`` (``container:NAME`` too, which Docker refuses on its
command line and pods use), resolved to the running container's namespace files when
the container starts. The network namespace has its own path (``engine.networking``)."""

from __future__ import annotations

from dockyard.engine import states
from dockyard.errors import Conflict

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.engine.containers import Engine

__all__ = ["KEYS", "check", "joins", "release_shm", "shm_for"]

# HostConfig key -> (OCI namespace type, the word dockerd's messages use)
KEYS = {"IpcMode": ("ipc", "IPC"), "PidMode": ("pid", "PID"), "UTSMode": ("uts", "UTS")}


def donor(mode: str) -> str | None:
    return mode.split(":", 1)[1] if mode.startswith("container:") else None


def check(engine: Engine, host: dict[str, Any]) -> None:
    """At create: each container named in a ``container:`` mode exists (NotFound else)."""
    for key in KEYS:
        name = donor(host.get(key) or "")
        if name is not None:
            engine.lookup(name)


def joins(engine: Engine, cid: str) -> dict[str, str]:
    """At start: OCI namespace type -> path of the namespace to join, for each
    ``container:`` mode; the donor must run, and share its IPC namespace (as dockerd)."""
    host = engine.record(cid)["host_config"]
    out = {}
    for key, (kind, word) in KEYS.items():
        name = donor(host.get(key) or "")
        if name is None:
            continue
        other = engine.refresh(engine.lookup(name))
        if other["status"] not in states.LIVE or not other["pid"]:
            raise Conflict(f"cannot join {word} of a non running container: {name}")
        if kind == "ipc" and (other["host_config"].get("IpcMode") or "private") not in (
            "shareable",
            "host",
        ):
            raise Conflict(
                "non-shareable IPC (hint: use IpcMode:shareable for the donor container)"
            )
        out[kind] = f"/proc/{other['pid']}/ns/{kind}"
    return out


def _shm_dir(engine: Engine, cid: str) -> str:
    import os

    return os.path.join(engine.cdir(cid), "shm")


def shm_for(engine: Engine, cid: str) -> str | None:
    """The host directory to bind as the container's /dev/shm, or None for a tmpfs of its
    own: a ``shareable`` container's is a tmpfs mounted by the engine in the host's mount
    namespace (a mount inside another container's namespace cannot be bound elsewhere),
    which containers joining its IPC namespace bind too, as dockerd does."""
    import os

    host = engine.record(cid)["host_config"]
    name = donor(host.get("IpcMode") or "")
    if name is not None:
        path = _shm_dir(engine, engine.lookup(name))
        return path if os.path.ismount(path) else None
    if host.get("IpcMode") != "shareable":
        return None
    path = _shm_dir(engine, cid)
    if not os.path.ismount(path):
        from dockyard.linux import syscalls as sc

        os.makedirs(path, exist_ok=True)
        size = host.get("ShmSize") or 64 << 20
        sc.mount(
            "shm",
            path,
            "tmpfs",
            sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC,
            f"mode=1777,size={size // 1024}k",
        )
    return path


def release_shm(engine: Engine, cid: str) -> None:
    """Unmount a stopped ``shareable`` container's /dev/shm (its joiners keep their bind)."""
    from dockyard.snapshot.snapshotter import unmount

    unmount(_shm_dir(engine, cid))
