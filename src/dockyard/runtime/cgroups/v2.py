"""cgroup v2: one directory in the unified hierarchy.

The OCI spec speaks v1 units (cpu shares, blkio weight); they are converted
the way runc and crun convert them, so a spec means the same on both.
"""

from __future__ import annotations

import os
import time

from dockyard.runtime.cgroups._files import read, read_int, read_keyed, rmdir_retry, warn, write

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["CgroupV2", "blkio_weight_to_io", "shares_to_weight"]


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144) to cpu.weight (1..10000), as runc's ConvertCPUSharesToCgroupV2Value."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io(weight: int) -> int:
    """blkio.weight (10..1000) to io.weight (1..10000)."""
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


class CgroupV2:
    """A container's cgroup in a cgroup2 hierarchy mounted at ``mount``."""

    version = 2

    def __init__(self, mount: str, path: str) -> None:
        self.mount = mount
        self.path = path

    @classmethod
    def for_path(cls, mount: str, cgroup_path: str) -> CgroupV2:
        return cls(mount, os.path.join(mount, cgroup_path.lstrip("/")))

    def to_state(self) -> dict[str, Any]:
        return {"version": 2, "mount": self.mount, "path": self.path}

    def available(self) -> set[str]:
        return set((read(self.mount, "cgroup.controllers") or "").split())

    def create(self) -> None:
        # Enable each available controller on the way down, so the leaf gets them all.
        wanted = self.available()
        rel = os.path.relpath(self.path, self.mount)
        current = self.mount
        for part in rel.split(os.sep):
            have = set((read(current, "cgroup.subtree_control") or "").split())
            missing = wanted - have
            if missing:
                try:
                    write(current, "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))
                except OSError:
                    # A controller held by processes in ``current`` (no-internal-process
                    # rule) stays off; resources that need it are reported when applied.
                    for ctrl in missing:
                        try:
                            write(current, "cgroup.subtree_control", f"+{ctrl}")
                        except OSError:
                            pass
            wanted &= set((read(current, "cgroup.subtree_control") or "").split())
            current = os.path.join(current, part)
            os.makedirs(current, exist_ok=True)

    def procs_files(self) -> list[str]:
        # Written with "0" by a single-threaded child: moves the writer itself.
        return [os.path.join(self.path, "cgroup.procs")]

    def _has(self, controller: str, what: str) -> bool:
        enabled = set((read(os.path.dirname(self.path), "cgroup.subtree_control") or "").split())
        if controller in enabled:
            return True
        warn(f"cgroup controller {controller} is not available (cgroup v2 at {self.mount}); "
             f"{what} not applied")  # fmt: skip
        return False

    def apply(self, res: dict[str, Any]) -> None:
        mem = res.get("memory") or {}
        if any(mem.get(k) is not None for k in ("limit", "reservation", "swap")) and self._has(
            "memory", "memory limits"
        ):
            limit, swap = mem.get("limit"), mem.get("swap")
            if limit is not None:
                write(self.path, "memory.max", "max" if limit < 0 else limit)
            if swap is not None and os.path.exists(os.path.join(self.path, "memory.swap.max")):
                # v1's memsw counts memory+swap; v2's swap.max counts swap alone.
                if swap < 0:
                    write(self.path, "memory.swap.max", "max")
                elif limit is not None and limit > 0:
                    write(self.path, "memory.swap.max", max(swap - limit, 0))
            if mem.get("reservation") is not None:
                write(self.path, "memory.low", mem["reservation"])
        if mem.get("disableOOMKiller"):
            warn("disableOOMKiller has no cgroup v2 equivalent; not applied")
        cpu = res.get("cpu") or {}
        if any(cpu.get(k) is not None for k in ("shares", "quota", "period")) and self._has(
            "cpu", "cpu weight and quota"
        ):
            if cpu.get("shares"):
                write(self.path, "cpu.weight", shares_to_weight(cpu["shares"]))
            if cpu.get("quota") is not None or cpu.get("period"):
                quota = cpu.get("quota")
                period = cpu.get("period") or 100000
                write(
                    self.path, "cpu.max", f"{'max' if not quota or quota < 0 else quota} {period}"
                )
        if (cpu.get("cpus") or cpu.get("mems")) and self._has("cpuset", "cpuset"):
            if cpu.get("cpus"):
                write(self.path, "cpuset.cpus", cpu["cpus"])
            if cpu.get("mems"):
                write(self.path, "cpuset.mems", cpu["mems"])
        pids = res.get("pids") or {}
        if pids.get("limit") is not None and self._has("pids", "pids limit"):
            write(self.path, "pids.max", "max" if pids["limit"] <= 0 else pids["limit"])
        blkio = res.get("blockIO") or {}
        if blkio.get("weight") and self._has("io", "block IO weight"):
            write(self.path, "io.weight", f"default {blkio_weight_to_io(blkio['weight'])}")
        for hp in res.get("hugepageLimits") or ():
            if self._has("hugetlb", "hugepage limits"):
                write(self.path, f"hugetlb.{hp['pageSize']}.max", hp["limit"])
        if res.get("devices") is not None:
            # no devices.allow in v2: an eBPF program attached to the cgroup decides, from
            # the same rules v1 gets (the spec's, then the devices every container may use)
            from dockyard.linux.bpf import attach_device_filter
            from dockyard.runtime.cgroups.v1 import default_device_rules

            attach_device_filter(self.path, [*res["devices"], *default_device_rules()])
        for key, value in (res.get("unified") or {}).items():
            write(self.path, key, value)

    def pids(self) -> list[int]:
        text = read(self.path, "cgroup.procs")
        return [int(p) for p in text.split()] if text else []

    def is_frozen(self) -> bool:
        return read(self.path, "cgroup.freeze") == "1"

    def freeze(self) -> None:
        self._freeze(1)

    def thaw(self) -> None:
        self._freeze(0)

    def _freeze(self, value: int) -> None:
        write(self.path, "cgroup.freeze", value)
        deadline = time.monotonic() + 5
        while read_keyed(self.path, "cgroup.events").get("frozen") != value:
            if time.monotonic() > deadline:
                raise OSError(16, f"cgroup did not reach frozen={value}")
            time.sleep(0.001)

    def kill_all(self, sig: int = 9) -> None:
        if sig == 9 and os.path.exists(os.path.join(self.path, "cgroup.kill")):
            write(self.path, "cgroup.kill", 1)
            return
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def oom_kills(self) -> int:
        return read_keyed(self.path, "memory.events").get("oom_kill", 0)

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if os.path.exists(os.path.join(self.path, "memory.current")):
            events = read_keyed(self.path, "memory.events")
            out["memory"] = {
                "usage": {
                    "usage": read_int(self.path, "memory.current") or 0,
                    "max": read_int(self.path, "memory.peak") or 0,
                    "limit": read_int(self.path, "memory.max") or 0,
                    "failcnt": events.get("max", 0),
                },
                "oom_kill": events.get("oom_kill", 0),
                "raw": read_keyed(self.path, "memory.stat"),
            }
        cpu = read_keyed(self.path, "cpu.stat")
        out["cpu"] = {"usage": {"total": cpu.get("usage_usec", 0) * 1000}, "throttling": cpu}
        if os.path.exists(os.path.join(self.path, "pids.current")):
            out["pids"] = {
                "current": read_int(self.path, "pids.current") or 0,
                "limit": read_int(self.path, "pids.max") or 0,
            }
        io = _io_bytes(self.path)
        if io is not None:
            out["blkio"] = {"io_service_bytes": io}
        return out

    def destroy(self) -> None:
        for root, dirs, _files in os.walk(self.path, topdown=False):
            for name in dirs:
                rmdir_retry(os.path.join(root, name))
        rmdir_retry(self.path)


def _io_bytes(path: str) -> list[dict[str, Any]] | None:
    """io.stat's rbytes and wbytes per device, in blkio's shape (op Read and Write)."""
    try:
        with open(os.path.join(path, "io.stat")) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    out = []
    for line in lines:
        dev, *pairs = line.split()
        major, _, minor = dev.partition(":")
        values = dict(p.split("=", 1) for p in pairs if "=" in p)
        for key, op in (("rbytes", "Read"), ("wbytes", "Write")):
            if key in values:
                out.append(
                    {"major": int(major), "minor": int(minor), "op": op, "value": int(values[key])}
                )
    return out
