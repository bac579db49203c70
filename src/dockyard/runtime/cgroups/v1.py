"""cgroup v1: one directory per hierarchy (memory, cpu, pids, freezer, ...).

Also used on hybrid hosts, where v1 owns the controllers that matter and a
cgroup2 hierarchy at /sys/fs/cgroup/unified holds the rest (as runc does).
"""

from __future__ import annotations

import os
import time

from dockyard.runtime.cgroups._files import read, read_int, read_keyed, rmdir_retry, warn, write

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["CgroupV1", "v1_hierarchies"]


def v1_hierarchies() -> dict[str, str]:
    """Map each v1 controller (and ``name=X`` hierarchy) to its mount point."""
    from dockyard.runtime.cgroups import mounts

    found: dict[str, str] = {}
    for mountpoint, fstype, opts in mounts():
        if fstype != "cgroup":
            continue
        for opt in opts.split(","):
            if opt in ("rw", "ro") or opt.startswith(("release_agent", "clone_children")):
                continue
            found.setdefault(opt, mountpoint)
    return found


# Devices every container may use whatever its spec says (runc's AllowedDevices).
_DEFAULT_DEVICE_RULES = (
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",  # null
    "c 1:5 rwm",  # zero
    "c 1:7 rwm",  # full
    "c 5:0 rwm",  # tty
    "c 1:8 rwm",  # random
    "c 1:9 rwm",  # urandom
    "c 5:1 rwm",  # console
    "c 5:2 rwm",  # ptmx
    "c 136:* rwm",  # pts
    "c 10:200 rwm",  # tun
)


def default_device_rules() -> list[dict[str, Any]]:
    """The devices every container may use (runc's AllowedDevices), as OCI device rules."""
    rules = []
    for entry in _DEFAULT_DEVICE_RULES:
        kind, numbers, access = entry.split()
        major, minor = numbers.split(":")
        rules.append({"allow": True, "type": kind, "access": access,
                      "major": None if major == "*" else int(major),
                      "minor": None if minor == "*" else int(minor)})  # fmt: skip
    return rules


class CgroupV1:
    """A container's cgroup across the v1 hierarchies.

    ``paths`` maps a controller name to the container's directory in that
    hierarchy; controllers that share a hierarchy share a directory.
    """

    version = 1

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = paths

    @classmethod
    def for_path(cls, cgroup_path: str, hierarchies: dict[str, str] | None = None) -> CgroupV1:
        hier = v1_hierarchies() if hierarchies is None else hierarchies
        rel = cgroup_path.lstrip("/")
        return cls({ctrl: os.path.join(mnt, rel) for ctrl, mnt in hier.items()})

    def to_state(self) -> dict[str, Any]:
        return {"version": 1, "paths": self.paths}

    def _dirs(self) -> list[str]:
        return sorted(set(self.paths.values()))

    def create(self) -> None:
        for path in self._dirs():
            os.makedirs(path, exist_ok=True)
        cpuset = self.paths.get("cpuset")
        if cpuset:
            _inherit_cpuset(cpuset)

    def procs_files(self) -> list[str]:
        # "tasks" moves one thread; for "0" (the writer itself) the kernel then skips the
        # global threadgroup rwsem, whose RCU sync costs ~10 ms per container start.
        # Callers are single-threaded forked children, so one thread is the process.
        return [os.path.join(d, "tasks") for d in self._dirs() if os.path.isdir(d)]

    def apply(self, res: dict[str, Any]) -> None:
        self._apply_memory(res.get("memory") or {})
        self._apply_cpu(res.get("cpu") or {})
        pids = res.get("pids") or {}
        if pids.get("limit") is not None and self._need("pids", "pids limit"):
            limit = pids["limit"]
            write(self.paths["pids"], "pids.max", "max" if limit <= 0 else limit)
        blkio = res.get("blockIO") or {}
        if blkio.get("weight") is not None and self._need("blkio", "block IO weight"):
            d = self.paths["blkio"]
            name = "blkio.weight" if os.path.exists(os.path.join(d, "blkio.weight")) else None
            if name is None and os.path.exists(os.path.join(d, "blkio.bfq.weight")):
                name = "blkio.bfq.weight"
            if name is None:
                warn("block IO weight is not supported by this host's I/O scheduler; not applied")
            else:
                write(d, name, blkio["weight"])
        for hp in res.get("hugepageLimits") or ():
            if self._need("hugetlb", "hugepage limits"):
                write(
                    self.paths["hugetlb"], f"hugetlb.{hp['pageSize']}.limit_in_bytes", hp["limit"]
                )
        if "devices" in self.paths and res.get("devices") is not None:
            self._apply_devices(res["devices"])

    def _need(self, controller: str, what: str) -> bool:
        if controller in self.paths and os.path.isdir(self.paths[controller]):
            return True
        warn(f"cgroup controller {controller} is not available (cgroup v1); {what} not applied")
        return False

    def _apply_memory(self, mem: dict[str, Any]) -> None:
        wanted = {k: mem.get(k) for k in ("limit", "reservation", "swap", "swappiness")}
        if not any(v is not None for v in wanted.values()) and not mem.get("disableOOMKiller"):
            return
        if not self._need("memory", "memory limits"):
            return
        d = self.paths["memory"]
        limit, swap = mem.get("limit"), mem.get("swap")
        has_memsw = os.path.exists(os.path.join(d, "memory.memsw.limit_in_bytes"))
        if swap is not None and not has_memsw:
            warn("swap accounting is off on this host (memory.memsw); swap limit not applied")
            swap = None
        # memsw must stay >= limit at every moment, so the order depends on direction (runc's
        # setMemoryAndSwap): going down, the limit first; going up, memsw first.
        if limit is not None and swap is not None:
            current = read_int(d, "memory.limit_in_bytes") or 0
            pairs = [("memory.limit_in_bytes", limit), ("memory.memsw.limit_in_bytes", swap)]
            if limit == -1 or limit > current:
                pairs.reverse()
            for name, value in pairs:
                write(d, name, value)
        elif limit is not None:
            write(d, "memory.limit_in_bytes", limit)
            if has_memsw and limit > 0:
                # Docker: --memory without --memory-swap allows as much swap again.
                try:
                    write(d, "memory.memsw.limit_in_bytes", limit * 2)
                except OSError:
                    pass
        elif swap is not None:
            write(d, "memory.memsw.limit_in_bytes", swap)
        if mem.get("reservation") is not None:
            write(d, "memory.soft_limit_in_bytes", mem["reservation"])
        if mem.get("swappiness") is not None and os.path.exists(
            os.path.join(d, "memory.swappiness")
        ):
            write(d, "memory.swappiness", mem["swappiness"])
        if mem.get("disableOOMKiller"):
            write(d, "memory.oom_control", 1)

    def _apply_cpu(self, cpu: dict[str, Any]) -> None:
        if any(cpu.get(k) is not None for k in ("shares", "quota", "period")) and self._need(
            "cpu", "cpu shares and quota"
        ):
            d = self.paths["cpu"]
            if cpu.get("shares"):
                write(d, "cpu.shares", cpu["shares"])
            if cpu.get("period"):
                write(d, "cpu.cfs_period_us", cpu["period"])
            if cpu.get("quota") is not None:
                write(d, "cpu.cfs_quota_us", cpu["quota"])
        if (cpu.get("cpus") or cpu.get("mems")) and self._need("cpuset", "cpuset"):
            if cpu.get("cpus"):
                write(self.paths["cpuset"], "cpuset.cpus", cpu["cpus"])
            if cpu.get("mems"):
                write(self.paths["cpuset"], "cpuset.mems", cpu["mems"])

    def _apply_devices(self, rules: list[dict[str, Any]]) -> None:
        d = self.paths["devices"]
        for rule in rules:
            kind = rule.get("type") or "a"
            major = "*" if rule.get("major") in (None, -1) else rule["major"]
            minor = "*" if rule.get("minor") in (None, -1) else rule["minor"]
            access = rule.get("access") or "rwm"
            entry = "a" if kind == "a" else f"{kind} {major}:{minor} {access}"
            write(d, "devices.allow" if rule.get("allow") else "devices.deny", entry)
        for entry in _DEFAULT_DEVICE_RULES:
            write(d, "devices.allow", entry)

    def pids(self) -> list[int]:
        for ctrl in ("pids", "freezer", "memory", "cpu", "name=systemd"):
            path = self.paths.get(ctrl)
            if path and os.path.isdir(path):
                text = read(path, "cgroup.procs")
                if text is None:
                    continue
                return [int(p) for p in text.split()]
        return []

    def is_frozen(self) -> bool:
        path = self.paths.get("freezer")
        return bool(path) and read(path, "freezer.state") in ("FROZEN", "FREEZING")

    def freeze(self) -> None:
        self._freezer("FROZEN")

    def thaw(self) -> None:
        self._freezer("THAWED")

    def _freezer(self, state: str) -> None:
        path = self.paths.get("freezer")
        if not path or not os.path.isdir(path):
            raise OSError(95, "the freezer cgroup controller is not available")
        deadline = time.monotonic() + 5
        while True:
            write(path, "freezer.state", state)
            if read(path, "freezer.state") == state:
                return
            if time.monotonic() > deadline:
                raise OSError(16, f"cgroup did not reach {state}")
            time.sleep(0.001)

    def kill_all(self, sig: int = 9) -> None:
        frozen = "freezer" in self.paths and os.path.isdir(self.paths["freezer"])
        if frozen:
            self.freeze()
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if frozen:
            self.thaw()

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        mem = self.paths.get("memory")
        if mem and os.path.isdir(mem):
            oom = read_keyed(mem, "memory.oom_control")
            out["memory"] = {
                "usage": {
                    "usage": read_int(mem, "memory.usage_in_bytes") or 0,
                    "max": read_int(mem, "memory.max_usage_in_bytes") or 0,
                    "limit": read_int(mem, "memory.limit_in_bytes") or 0,
                    "failcnt": read_int(mem, "memory.failcnt") or 0,
                },
                "oom_kill": oom.get("oom_kill", 0),
                "under_oom": oom.get("under_oom", 0),
                "raw": read_keyed(mem, "memory.stat"),
            }
        cpuacct = self.paths.get("cpuacct")
        cpu = self.paths.get("cpu")
        out["cpu"] = {
            "usage": {"total": (read_int(cpuacct, "cpuacct.usage") or 0) if cpuacct else 0},
            "throttling": read_keyed(cpu, "cpu.stat") if cpu else {},
        }
        pids = self.paths.get("pids")
        if pids and os.path.isdir(pids):
            out["pids"] = {
                "current": read_int(pids, "pids.current") or 0,
                "limit": read_int(pids, "pids.max") or 0,
            }
        blkio = self.paths.get("blkio")
        if blkio and os.path.isdir(blkio):
            out["blkio"] = {"io_service_bytes": _blkio_bytes(blkio)}
        return out

    def oom_kills(self) -> int:
        mem = self.paths.get("memory")
        return read_keyed(mem, "memory.oom_control").get("oom_kill", 0) if mem else 0

    def destroy(self) -> None:
        for path in self._dirs():
            # Children first: a container may have made sub-cgroups of its own.
            for root, dirs, _files in os.walk(path, topdown=False):
                for name in dirs:
                    rmdir_retry(os.path.join(root, name))
            rmdir_retry(path)


def _blkio_bytes(d: str) -> list[dict[str, Any]]:
    """blkio's bytes per device and operation, as runc's stats give them:
    [{"major", "minor", "op", "value"}]; the throttle file where CFQ's is gone."""
    for name in ("blkio.io_service_bytes_recursive", "blkio.throttle.io_service_bytes_recursive",
                 "blkio.throttle.io_service_bytes"):  # fmt: skip
        try:
            with open(os.path.join(d, name)) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        out = []
        for line in lines:
            fields = line.split()
            if len(fields) == 3 and ":" in fields[0]:
                major, _, minor = fields[0].partition(":")
                out.append(
                    {
                        "major": int(major),
                        "minor": int(minor),
                        "op": fields[1],
                        "value": int(fields[2]),
                    }
                )
        if any(e["value"] for e in out) or name.endswith("throttle.io_service_bytes"):
            return out
    return []


def _inherit_cpuset(path: str) -> None:
    """A new v1 cpuset is empty and takes no tasks until cpus and mems are copied down."""
    chain = []
    p = path
    while not (read(p, "cpuset.cpus") and read(p, "cpuset.mems")):
        chain.append(p)
        parent = os.path.dirname(p)
        if parent == p or not os.path.exists(os.path.join(parent, "cpuset.cpus")):
            return
        p = parent
    for d in reversed(chain):
        parent = os.path.dirname(d)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if not read(d, name):
                write(d, name, read(parent, name) or "")
