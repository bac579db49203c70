"""Docker's ContainerJSON (``docker inspect``, ``GET /containers/{id}/json``) from a
container's record, its networking and its security settings."""

from __future__ import annotations

from dockyard import _json as json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.engine.containers import Engine

__all__ = ["container_json", "mount_points"]


def container_json(engine: Engine, rec: dict[str, Any]) -> dict[str, Any]:
    """Docker's ContainerJSON of a container's (reconciled) record."""
    from dockyard.engine.networking import settings
    from dockyard.engine.spec import seccomp_profile_name

    cid = rec["id"]
    cdir = engine.cdir(cid)
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
        "ResolvConfPath": f"{cdir}/resolv.conf",
        "HostnamePath": f"{cdir}/hostname",
        "HostsPath": f"{cdir}/hosts",
        "LogPath": f"{cdir}/{cid}-json.log",
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
