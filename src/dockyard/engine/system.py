"""System-wide figures as Docker reports them: ``info`` (``GET /info``)."""

from __future__ import annotations

import os
import platform

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.engine.containers import Engine

__all__ = ["info"]


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            return next((line.split("=", 1)[1].strip().strip('"') for line in f
                         if line.startswith("PRETTY_NAME=")), "Linux")  # fmt: skip
    except OSError:
        return "Linux"


def info(engine: Engine) -> dict[str, Any]:
    """Docker's SystemInfo for this engine and host."""
    from dockyard import __version__
    from dockyard.runtime import cgroups

    states = [r["status"] for r in engine.list(all_=True)]
    with open("/proc/meminfo") as f:
        total_kib = int(f.readline().split()[1])
    return {
        "ID": "", "Containers": len(states), "ContainersRunning": states.count("running"),
        "ContainersPaused": states.count("paused"),
        "ContainersStopped": len(states) - states.count("running") - states.count("paused"),
        "Images": sum(1 for _ in engine.images.images()), "ServerVersion": __version__,
        "Driver": engine.images.snapshotter_name, "CgroupDriver": "cgroupfs",
        "CgroupVersion": "2" if cgroups.detect() == "v2" else "1", "KernelVersion": platform.release(),
        "OperatingSystem": _os_name(), "OSType": "linux", "Architecture": platform.machine(),
        "NCPU": os.cpu_count() or 1, "MemTotal": total_kib * 1024, "Name": platform.node(),
        "DockerRootDir": engine.root, "DefaultRuntime": "dockyard-runtime",
        "Runtimes": {"dockyard-runtime": {}, "runc": {"path": "runc"}, "crun": {"path": "crun"}},
        "SecurityOptions": ["name=seccomp,profile=builtin"],
    }  # fmt: skip
