"""Docker's ContainerJSON (``docker inspect``, ``GET /containers/{id}/json``) from a
container's record, its networking and its security settings."""

from __future__ import annotations

import os

from dockyard import _json as json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.engine.containers import Engine

__all__ = ["container_json", "mount_points"]


def container_json(engine: Engine, cid: str) -> dict[str, Any]:
    """Docker's ContainerJSON."""
    from dockyard.engine.networking import settings
    from dockyard.engine.spec import seccomp_profile_name

    rec = engine.refresh(cid)
    cfg = rec["config"]
    args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
    status = rec["status"]
    return {
        "Id": cid,
        "Created": rec["created"],
        "Path": args[0] if args else "",
        "Args": args[1:],
        "State": {
            "Status": status,
            "Running": status in ("running", "paused"),
            "Paused": status == "paused",
            "Restarting": status == "restarting",
            "OOMKilled": bool(rec["oom_killed"]),
            "Dead": status == "dead",
            "Pid": rec["pid"] if status in ("running", "paused") else 0,
            "ExitCode": rec["exit_code"],
            "Error": rec["error"],
            "StartedAt": rec["started_at"],
            "FinishedAt": rec["finished_at"],
            **({"Health": json.loads(rec["health"])} if rec.get("health") else {}),
        },
        "Image": rec["image_id"],
        "ResolvConfPath": os.path.join(engine.cdir(cid), "resolv.conf"),
        "HostnamePath": os.path.join(engine.cdir(cid), "hostname"),
        "HostsPath": os.path.join(engine.cdir(cid), "hosts"),
        "LogPath": os.path.join(engine.cdir(cid), f"{cid}-json.log"),
        "Name": "/" + rec["name"],
        "RestartCount": rec["restart_count"],
        "Driver": engine.snapshotter,
        "SeccompProfile": seccomp_profile_name(rec["host_config"]),
        "HostConfig": rec["host_config"],
        "Mounts": mount_points(rec["host_config"]),
        "Config": cfg,
        "NetworkSettings": settings(engine, cid, rec),
    }


def mount_points(host: dict[str, Any]) -> list[dict[str, Any]]:
    """Docker's MountPoint list from the resolved mounts the engine keeps in HostConfig."""
    return [{"Type": m["Type"], "Name": m.get("Name", ""), "Source": m["Source"],
             "Destination": m["Target"], "Driver": "local" if m["Type"] == "volume" else "",
             "Mode": "", "RW": not m.get("ReadOnly"),
             "Propagation": "rprivate" if m["Type"] == "bind" else ""}
            for m in host.get("Mounts") or []]  # fmt: skip
