"""Let crun run on a hybrid cgroup host, for comparisons, and put the host back after.

crun refuses hosts where cgroup2 still owns a controller ("cgroups in hybrid
mode not supported"). Mounting each such controller as its own v1 hierarchy
moves it off cgroup2; unmounting hands it back, which the kernel sometimes
does only after a second mount and unmount (see shared/peers/anchors.sh).
"""

from __future__ import annotations

import os
import subprocess
import time

__all__ = ["crun_cgroup_fix", "undo_crun_cgroup_fix"]

_UNIFIED = "/sys/fs/cgroup/unified/cgroup.controllers"


def _v2_controllers() -> list[str]:
    try:
        with open(_UNIFIED) as f:
            return f.read().split()
    except OSError:
        return []


def _cgroups_in(ctrl: str) -> int:
    """How many cgroups the kernel still counts in ``ctrl``'s v1 hierarchy (dying ones too)."""
    with open("/proc/cgroups") as f:
        for line in f:
            fields = line.split()
            if fields and fields[0] == ctrl:
                return int(fields[2])
    return 0


def crun_cgroup_fix() -> list[str]:
    """Mount every cgroup2-owned controller as v1; return the ones mounted (to undo)."""
    mounted = []
    for ctrl in _v2_controllers():
        path = f"/sys/fs/cgroup/{ctrl}"
        os.makedirs(path, exist_ok=True)
        if subprocess.run(["mountpoint", "-q", path]).returncode == 0:
            continue
        # Right after an undo the kernel may still hold the old hierarchy: retry a while.
        deadline = time.monotonic() + 5
        while True:
            proc = subprocess.run(["mount", "-t", "cgroup", "-o", ctrl, "cgroup", path],
                                  capture_output=True, text=True)  # fmt: skip
            if proc.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise OSError(f"mount -t cgroup -o {ctrl}: {proc.stderr.strip()}")
            time.sleep(0.1)
        mounted.append(ctrl)
    return mounted


def undo_crun_cgroup_fix(mounted: list[str]) -> list[str]:
    """Give the controllers back to cgroup2; return those that did not come back."""
    stuck = []
    for ctrl in mounted:
        path = f"/sys/fs/cgroup/{ctrl}"
        for _try in range(3):
            if subprocess.run(["mountpoint", "-q", path]).returncode != 0:
                os.makedirs(path, exist_ok=True)
                subprocess.run(["mount", "-t", "cgroup", "-o", ctrl, "cgroup", path], check=False)
            for base, dirs, _files in os.walk(path, topdown=False):
                for d in dirs:
                    try:
                        os.rmdir(os.path.join(base, d))
                    except OSError:
                        pass
            # removed cgroups die when the kernel is done with them (seconds, after many
            # short-lived containers): unmounting before that leaves the hierarchy stuck
            deadline = time.monotonic() + 20
            while _cgroups_in(ctrl) > 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            subprocess.run(["umount", path], check=False)
            try:
                os.rmdir(path)
            except OSError:
                pass
            deadline = time.monotonic() + 2
            while ctrl not in _v2_controllers() and time.monotonic() < deadline:
                time.sleep(0.05)
            if ctrl in _v2_controllers():
                break
        else:
            stuck.append(ctrl)
    return stuck
