"""A container's resource figures as Docker's stats JSON (``GET /containers/{id}/stats``).

The engine reports counters; percentages are the reader's to compute, as the docker
CLI computes them: CPU % is the container's CPU time over the host's in the same
interval, times the online CPUs (``cpu_stats`` against ``precpu_stats``); memory use
leaves out the inactive page cache the kernel can drop.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from dockyard.clock import now_rfc3339
from dockyard.engine import states

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from typing import Any

    from dockyard.engine.containers import Engine

__all__ = ["cpu_percent", "figures", "memory_used", "sample", "stream"]

_ZERO_TIME = "0001-01-01T00:00:00Z"


def _system_cpu_ns() -> int:
    """The host's CPU time in ns: the first line of /proc/stat (user to steal), as dockerd."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:9]
    return sum(int(v) for v in fields) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def _host_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def sample(engine: Engine, cid: str) -> dict[str, Any]:
    """One reading of container ``cid`` (an ID); ``precpu_stats`` empty."""
    rec = engine.record(cid)
    raw = figures(engine, cid) if rec["status"] in states.LIVE else {}
    cpu = raw.get("cpu") or {}
    throttling = cpu.get("throttling") or {}
    mem = raw.get("memory") or {}
    usage = mem.get("usage") or {}
    limit = usage.get("limit", 0)
    pids = raw.get("pids") or {}
    return {
        "read": now_rfc3339(),
        "preread": _ZERO_TIME,
        "id": cid,
        "name": "/" + rec["name"],
        "num_procs": 0,
        "pids_stats": {"current": pids.get("current", 0), **({"limit": pids["limit"]} if pids.get("limit") else {})},
        "cpu_stats": {
            "cpu_usage": {"total_usage": (cpu.get("usage") or {}).get("total", 0),
                          "usage_in_kernelmode": (cpu.get("usage") or {}).get("kernel", 0),
                          "usage_in_usermode": (cpu.get("usage") or {}).get("user", 0)},
            "system_cpu_usage": _system_cpu_ns(),
            "online_cpus": os.cpu_count() or 1,
            "throttling_data": {"periods": throttling.get("nr_periods", 0),
                                "throttled_periods": throttling.get("nr_throttled", 0),
                                "throttled_time": throttling.get("throttled_time", 0)},
        },
        "precpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
        "memory_stats": {
            "usage": usage.get("usage", 0),
            **({"max_usage": usage["max"]} if usage.get("max") else {}),
            "stats": mem.get("raw") or {},
            "limit": limit if 0 < limit < _host_memory() else _host_memory(),
            **({"failcnt": usage["failcnt"]} if "failcnt" in usage else {}),
        },
        "blkio_stats": {"io_service_bytes_recursive": (raw.get("blkio") or {}).get("io_service_bytes") or None,
                        "io_serviced_recursive": None, "io_queue_recursive": None,
                        "io_service_time_recursive": None, "io_wait_time_recursive": None,
                        "io_merged_recursive": None, "io_time_recursive": None, "sectors_recursive": None},
        "storage_stats": {},
        **({"networks": raw["networks"]} if raw.get("networks") else {}),
    }  # fmt: skip


def stream(engine: Engine, cid: str, interval: float = 1.0, follow: bool = True,
           stop: threading.Event | None = None) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Readings ``interval`` apart, each with the one before as ``precpu_stats`` (dockerd's
    one-shot-less form: without ``follow``, a single reading after one interval, so its
    CPU figure means something)."""
    prev = sample(engine, cid)
    while True:
        if stop is not None:
            if stop.wait(interval):
                return
        else:
            time.sleep(interval)
        cur = sample(engine, cid)
        cur["precpu_stats"], cur["preread"] = prev["cpu_stats"], prev["read"]
        yield cur
        if not follow:
            return
        prev = cur


def cpu_percent(stats: dict[str, Any]) -> float:
    """The docker CLI's CPU %: container CPU time over host CPU time, times online CPUs."""
    cur, pre = stats["cpu_stats"], stats.get("precpu_stats") or {}
    cpu_delta = cur["cpu_usage"]["total_usage"] - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    system_delta = cur.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    if cpu_delta <= 0 or system_delta <= 0 or not pre.get("system_cpu_usage"):
        return 0.0
    return cpu_delta / system_delta * (cur.get("online_cpus") or 1) * 100.0


def memory_used(stats: dict[str, Any]) -> int:
    """The docker CLI's memory use: usage less the inactive file cache (v1 and v2 names)."""
    mem = stats["memory_stats"]
    usage, detail = mem.get("usage", 0), mem.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):
        if key in detail and detail[key] < usage:
            return usage - detail[key]
    return usage


def figures(engine: Engine, cid: str) -> dict[str, Any]:
    """Memory, cpu, pids and block IO of a running container from its cgroup, and
    ``networks`` (Docker's per-interface counters) from its network namespace."""
    try:
        out = engine.runtime(cid).cgroup(cid).stats()
    except Exception:  # gone meanwhile: no figures
        return {}
    pid = engine.record(cid)["pid"]
    if pid:
        out["networks"] = _net_dev(pid)
    blkio = (out.get("blkio") or {}).get("io_service_bytes") or []
    if not any(e["value"] for e in blkio):
        # cgroup v1 counts block IO only on a queue some cgroup throttles (kernel 5.x on);
        # then the processes' own accounting (which includes what their reaped children
        # did) stands in
        try:
            pids = engine.runtime(cid).cgroup(cid).pids()
        except Exception:
            pids = []
        read, written = _proc_io(pids)
        out["blkio"] = {"io_service_bytes": [{"major": 0, "minor": 0, "op": "Read", "value": read},
                                             {"major": 0, "minor": 0, "op": "Write", "value": written}]}  # fmt: skip
    return out


_NET_FIELDS = ("rx_bytes", "rx_packets", "rx_errors", "rx_dropped", None, None, None, None,
               "tx_bytes", "tx_packets", "tx_errors", "tx_dropped")  # fmt: skip


def _proc_io(pids: list[int]) -> tuple[int, int]:
    """Bytes read from and written to storage by ``pids`` (and the children they reaped)."""
    read = written = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/io") as f:
                fields = dict(line.split(": ", 1) for line in f.read().splitlines())
        except (OSError, ValueError):
            continue
        read += int(fields.get("read_bytes", 0))
        written += max(
            int(fields.get("write_bytes", 0)) - int(fields.get("cancelled_write_bytes", 0)), 0
        )
    return read, written


def _net_dev(pid: int) -> dict[str, dict[str, int]]:
    """/proc/PID/net/dev (the counters of PID's network namespace), loopback left out."""
    out: dict[str, dict[str, int]] = {}
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return out
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        if name == "lo":
            continue
        values = rest.split()
        out[name] = {key: int(v) for key, v in zip(_NET_FIELDS, values, strict=False) if key}
    return out
