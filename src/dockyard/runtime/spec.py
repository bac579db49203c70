"""Reading a bundle's config.json, and the default one ``spec`` writes (as runc's)."""

from __future__ import annotations

import os

from dockyard import _json as json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["SpecError", "default_spec", "load_spec"]

_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


class SpecError(Exception):
    pass


def default_spec(rootless: bool = False) -> dict[str, Any]:
    """The config.json ``runc spec`` writes, so bundles move between runtimes unchanged."""
    spec: dict[str, Any] = {
        "ociVersion": "1.1.0",
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
            ],
            "cwd": "/",
            "capabilities": {k: list(_CAPS) for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "dockyard",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": [
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
            },
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [
                {"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")
            ],
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ],
        },
    }
    if rootless:
        linux = spec["linux"]
        linux.pop("resources")
        linux["uidMappings"] = [{"containerID": 0, "hostID": os.getuid(), "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": os.getgid(), "size": 1}]
        linux["namespaces"] = [
            {"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup", "user")
        ]
        spec["mounts"] = [m for m in spec["mounts"] if m["type"] != "sysfs"] + [
            {
                "destination": "/sys",
                "type": "none",
                "source": "/sys",
                "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
            }
        ]
    return spec


def load_spec(bundle: str) -> dict[str, Any]:
    path = os.path.join(bundle, "config.json")
    try:
        with open(path) as f:
            spec = json.loads(f.read())
    except FileNotFoundError:
        raise SpecError(f"no config.json in bundle {bundle}") from None
    except ValueError as err:
        raise SpecError(f"{path}: invalid JSON: {err}") from None
    if not isinstance(spec, dict):
        raise SpecError(f"{path}: not a JSON object")
    if not (spec.get("root") or {}).get("path"):
        raise SpecError(f"{path}: root.path is required")
    process = spec.get("process")
    if not process or not process.get("args"):
        raise SpecError(f"{path}: process.args must name a program")
    kinds = {ns.get("type") for ns in (spec.get("linux") or {}).get("namespaces") or []}
    for key in ("hostname", "domainname"):
        # as runc: in the runtime's own UTS namespace it would rename the host
        if spec.get(key) and "uts" not in kinds:
            raise SpecError(f"unable to set {key} without a private UTS namespace")
    return spec
